"""Saving figures: real PNG/PDF files of the expected size, atomic, no pyplot state."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpimg
from PIL import Image

from minerflow.errors import InputError
from minerflow.plotting.classifier import plot_roc_curves
from minerflow.plotting.limits import plot_pvalue_map
from minerflow.plotting.metrics import roc_curve
from minerflow.plotting.save import FigureJob, draw_figures, save_figure

AXIS = np.linspace(-1.0, 1.0, 11)
THETAS = np.stack(np.meshgrid(AXIS, AXIS, indexing="ij"), axis=-1).reshape(-1, 2)


def p_values():
    return np.exp(-0.5 * np.sum(THETAS**2, axis=1) / 0.3)


def test_png_and_pdf_are_complete_and_sized(tmp_path):
    figure = plot_pvalue_map(THETAS, p_values(), method="truth")
    paths = save_figure(figure, tmp_path / "limits" / "pvalue_truth.v1")
    assert paths == [
        tmp_path / "limits" / "pvalue_truth.v1.png",
        tmp_path / "limits" / "pvalue_truth.v1.pdf",
    ]
    width, height = (figure.get_size_inches() * 100).round().astype(int)
    with Image.open(paths[0]) as png:
        assert png.format == "PNG" and png.size == (width, height)
    pixels = mpimg.imread(paths[0])
    assert pixels.shape[:2] == (height, width)
    assert np.ptp(pixels[..., :3]) > 0.5  # drawn content, not a blank canvas
    pdf = paths[1].read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [p.name for p in sorted(paths)]


def test_pdf_is_reproducible(tmp_path):
    curve = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    first = save_figure(plot_roc_curves({"fold 0": curve}), tmp_path / "a", ("pdf",))[0]
    second = save_figure(plot_roc_curves({"fold 0": curve}), tmp_path / "b", ("pdf",))[0]
    assert first.read_bytes() == second.read_bytes()


def test_failed_save_keeps_the_previous_file(tmp_path):
    figure = plot_pvalue_map(THETAS, p_values())
    (target,) = save_figure(figure, tmp_path / "map", ("png",))
    before = target.read_bytes()
    figure.axes[0].set_xlabel(r"$\broken$")  # mathtext error at draw time
    with pytest.raises(ValueError):
        save_figure(figure, tmp_path / "map", ("png",))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]  # no temporary left behind


def test_unknown_format_is_an_input_error(tmp_path):
    figure = plot_pvalue_map(THETAS, p_values())
    with pytest.raises(InputError, match=r"formats: expected one or more of"):
        save_figure(figure, tmp_path / "map", ("png", "bmp"))
    assert not any(tmp_path.iterdir())


def test_figures_do_not_touch_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_pvalue_map(THETAS, p_values())
    assert plt.get_fignums() == before
    assert plt.rcParams["font.size"] == plt.rcParamsDefault["font.size"]


def test_draw_figures_writes_every_job_in_order_and_reports_a_failed_one(tmp_path):
    jobs = [
        FigureJob(f"pvalue_{i}", plot_pvalue_map, (THETAS, p_values() ** (i + 1)), {"method": "m"})
        for i in range(3)
    ]
    paths = draw_figures(jobs, tmp_path, ("png",))
    assert paths == [tmp_path / f"pvalue_{i}.png" for i in range(3)]
    serial = save_figure(
        jobs[2].function(*jobs[2].args, **jobs[2].kwargs), tmp_path / "one", ("png",)
    )
    # drawn in another process or here: the same pixels
    np.testing.assert_array_equal(mpimg.imread(paths[2]), mpimg.imread(serial[0]))
    broken = FigureJob("broken", plot_pvalue_map, (THETAS, p_values()[:-1]))
    with pytest.raises(InputError, match=r"values: expected shape \(121,\), got \(120,\)"):
        draw_figures([*jobs, broken], tmp_path / "again", ("png",))
