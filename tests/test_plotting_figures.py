"""Correlation, rate, Fisher, training and classifier figures: plotted data read back."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
from scipy import stats

from minerflow.errors import InputError
from minerflow.plotting.classifier import (
    plot_confusion_matrix,
    plot_output_distributions,
    plot_roc_curves,
    weighted_histogram,
)
from minerflow.plotting.correlations import (
    correlation_summary,
    plot_log_r_correlation,
    plot_score_correlation,
)
from minerflow.plotting.fisher import fisher_ellipse, plot_fisher_ellipses
from minerflow.plotting.grid import grid_image
from minerflow.plotting.metrics import roc_curve, weighted_confusion_matrix, weighted_ks_test
from minerflow.plotting.rates import plot_cross_section_map, plot_cross_section_slice
from minerflow.plotting.training import best_epoch, plot_training_history


def by_gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def legend_texts(container):
    legend = container.get_legend() if hasattr(container, "get_legend") else None
    legend = legend or container.legends[0]
    return [text.get_text() for text in legend.get_texts()]


# --- correlations -------------------------------------------------------------------------


def test_log_r_correlation_counts_every_pair_and_reports_rho_and_mse(rng):
    truth = rng.normal(size=(5, 200))
    estimate = truth + rng.normal(0, 0.2, size=truth.shape)
    estimate[0, 0] = np.nan
    figure = plot_log_r_correlation(truth, estimate, method="ALICES")
    ax = figure.axes[0]
    hexes = by_gid(ax, "hexbin")
    assert hexes.get_array().sum() == truth.size - 1  # counts of all finite pairs
    keep = np.isfinite(estimate)
    rho, mse = correlation_summary(truth[keep], estimate[keep])
    assert rho == pytest.approx(np.corrcoef(truth[keep], estimate[keep])[0, 1])
    assert legend_texts(ax)[-1] == f"ρ = {rho:.3f}, MSE = {mse:.3g} (1 non-finite dropped)"
    diagonal = ax.lines[0].get_xydata()
    np.testing.assert_allclose(diagonal[:, 0], diagonal[:, 1])
    assert ax.get_legend().get_title().get_text() == "ALICES"


def test_score_correlation_has_one_panel_per_component(rng):
    truth = rng.normal(size=(300, 2))
    estimate = 0.5 * truth
    figure = plot_score_correlation(truth, estimate, parameter_labels=("a", "b"))
    panels = [ax for ax in figure.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == ["True score (a)", "True score (b)"]
    for i, ax in enumerate(panels):
        rho, mse = correlation_summary(truth[:, i], estimate[:, i])
        assert rho == pytest.approx(1.0)
        assert mse == pytest.approx(np.mean(0.25 * truth[:, i] ** 2))
        assert legend_texts(ax)[-1] == f"ρ = {rho:.3f}, MSE = {mse:.3g}"


def test_correlation_rejects_mismatched_shapes():
    with pytest.raises(InputError, match="estimated_log_r: expected shape"):
        plot_log_r_correlation(np.zeros(3), np.zeros(4))


# --- rates --------------------------------------------------------------------------------


AXIS = np.linspace(-2.0, 2.0, 21)
THETAS = np.stack(np.meshgrid(AXIS, AXIS, indexing="ij"), axis=-1).reshape(-1, 2)


def test_cross_section_map_linear_and_log_scales():
    sigma = 1.0 + THETAS[:, 0] ** 2 + 0.5 * THETAS[:, 1] ** 2
    figure = plot_cross_section_map(THETAS, sigma, theta_ref=(0, 0), unit="fb")
    ax = figure.axes[0]
    mesh = by_gid(ax, "map:cross_section")
    _, _, image = grid_image(THETAS, sigma)
    np.testing.assert_allclose(mesh.get_array().reshape(image.shape), image)
    assert type(mesh.norm) is Normalize  # factor 7 range: linear
    levels = by_gid(ax, "contour:cross_section").levels
    assert np.all((levels > sigma.min()) & (levels < sigma.max()))
    assert figure.axes[1].get_ylabel() == "σ [fb]"
    wide = plot_cross_section_map(THETAS, np.exp(3 * THETAS[:, 0]))
    assert isinstance(by_gid(wide.axes[0], "map:cross_section").norm, LogNorm)


def test_cross_section_slice_lines_and_bands():
    values = np.linspace(-1, 1, 11)
    curves = {"morphing": 1 + values**2, "exact": 1 + 1.01 * values**2}
    figure = plot_cross_section_slice(
        values, curves, uncertainties={"morphing": 0.1 * np.ones(11)}, reference=0.0
    )
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_allclose(lines["morphing"].get_ydata(), curves["morphing"])
    np.testing.assert_allclose(lines["exact"].get_xdata(), values)
    assert len(ax.collections) == 1  # one band
    assert legend_texts(ax) == ["morphing", "exact", "SM"]
    with pytest.raises(InputError, match="exact: expected shape"):
        plot_cross_section_slice(values, {"exact": np.ones(3)})


# --- Fisher ellipses ----------------------------------------------------------------------


def test_fisher_ellipses_lie_on_the_chi2_quadratic_form():
    informations = {
        "truth": np.array([[7.28, 0.04], [0.04, 6.5]]),
        "histo": np.array([[3.55, 0.16], [0.16, 0.048]]),
        "rate": np.array([[1.421815, -0.081916], [-0.081916, 0.004719]]),  # rank one
    }
    figure = plot_fisher_ellipses(informations, theta_ref=(1.0, -1.0), cl=0.95)
    ax = figure.axes[0]
    threshold = stats.chi2.ppf(0.95, 2)
    for name in ("truth", "histo"):
        offsets = by_gid(ax, f"ellipse:{name}").get_xydata() - (1.0, -1.0)
        q = np.einsum("ni,ij,nj->n", offsets, informations[name], offsets)
        np.testing.assert_allclose(q, threshold, rtol=1e-10)
    # default range: 1.3 × the largest bounded half-width sqrt(Δχ² · (I⁻¹)_ii), from "histo"
    half = np.sqrt(threshold * np.diag(np.linalg.inv(informations["histo"])))
    np.testing.assert_allclose(ax.get_xlim(), 1.0 + np.array([-1.3, 1.3]) * half[0])
    # the rank-one rate information is a strip: its curve leaves the plotted range
    rate = by_gid(ax, "ellipse:rate").get_xydata()
    assert np.abs(rate).max() > 1e3 * np.abs(np.array(ax.get_xlim())).max()
    assert legend_texts(figure)[:3] == ["truth", "histo", "rate"]
    assert figure.legends[0].get_title().get_text() == "95 % CL"


def test_fisher_ellipse_rejects_indefinite_information():
    with pytest.raises(InputError, match="positive semi-definite"):
        fisher_ellipse(np.array([[1.0, 0.0], [0.0, -1.0]]), (0, 0), 1.0)


# --- training curves ----------------------------------------------------------------------


def test_training_history_lines_best_epoch_and_log_scale():
    train = {"loss": [4.0, 2.0, 1.0, 0.5, 0.3], "mse_score": [2.0, 1.0, 0.5, 0.2, 0.1]}
    validation = {"loss": [4.5, 2.5, 1.2, 1.3, 1.6], "mse_score": [2.1, 1.1, 0.7, 0.4, 0.5]}
    figure = plot_training_history(train, validation)
    ax = figure.axes[0]
    lines = {line.get_gid(): line for line in ax.lines if line.get_gid()}
    np.testing.assert_array_equal(lines["train:loss"].get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(lines["validation:loss"].get_ydata(), validation["loss"])
    assert lines["validation:mse_score"].get_linestyle() == "--"
    assert lines["train:mse_score"].get_linestyle() == "-"
    assert best_epoch(validation["loss"]) == 3
    assert "best epoch (3)" in legend_texts(figure)
    assert ax.get_yscale() == "log"  # 0.1 … 4.5 spans more than a factor 10
    flat = plot_training_history({"loss": [1.0, 0.9, 0.8]}, monitor="loss")
    assert flat.axes[0].get_yscale() == "linear"
    assert "best epoch (3)" in legend_texts(flat)


# --- classifier figures -------------------------------------------------------------------


def test_roc_figure_draws_the_computed_curves(rng):
    labels = np.repeat([1, 0], 100)
    curves = {}
    for fold in range(2):
        scores = rng.normal(size=200) + labels
        curves[f"fold {fold}"] = roc_curve(scores, labels)
    curves["combined"] = roc_curve(rng.normal(size=200) * 3 + labels, labels)
    figure = plot_roc_curves(curves)
    ax = figure.axes[0]
    for name, curve in curves.items():
        line = by_gid(ax, f"roc:{name}")
        np.testing.assert_array_equal(line.get_xdata(), curve.false_positive_rate)
        np.testing.assert_array_equal(line.get_ydata(), curve.true_positive_rate)
    assert by_gid(ax, "roc:combined").get_color() == "black"
    assert legend_texts(ax)[1:] == [f"{n} (AUC = {c.auc:.3f})" for n, c in curves.items()]


def test_output_distributions_show_normalised_histograms_and_ks(rng):
    train = {
        "signal": (rng.normal(1, 1, 500), rng.uniform(0.5, 1.5, 500)),
        "bkg": rng.normal(size=800),
    }
    test = {"signal": rng.normal(1, 1, 200), "bkg": rng.normal(0.5, 1, 300)}
    edges = np.linspace(-3, 4, 15)
    figure = plot_output_distributions(train, test, bins=edges)
    ax = figure.axes[0]
    heights, _ = weighted_histogram(*train["signal"], edges)
    np.testing.assert_allclose(by_gid(ax, "train:signal").get_data()[0], heights)
    points, errors = weighted_histogram(test["bkg"], np.ones(300), edges)
    parts = [a for a in ax.get_children() if a.get_gid() == "test:bkg"]
    (marker,) = [a for a in parts if isinstance(a, Line2D)]  # the points
    (bars,) = [a for a in parts if isinstance(a, LineCollection)]  # their error bars
    np.testing.assert_allclose(marker.get_ydata(), points)
    lengths = [segment[1, 1] - segment[0, 1] for segment in bars.get_segments()]
    np.testing.assert_allclose(lengths, 2 * errors)
    ks = weighted_ks_test(train["bkg"], test["bkg"])
    assert f"bkg (KS p = {ks.p_value:.1e})" in legend_texts(figure)
    assert ks.p_value < 1e-3  # shifted test sample: flagged
    with pytest.raises(InputError, match="the same names"):
        plot_output_distributions(train, {"signal": test["signal"]})


def test_weighted_histogram_density_integrates_to_contained_fraction():
    values = np.array([0.5, 1.5, 2.5, 9.0])
    weights = np.array([1.0, 2.0, 1.0, 4.0])
    heights, errors = weighted_histogram(values, weights, np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(heights, [1 / 8, 3 / 16])
    np.testing.assert_allclose(errors, [1 / 8, np.sqrt(5) / 16])


def test_confusion_matrix_figure_shows_the_matrix_and_cell_values():
    matrix = weighted_confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), n_classes=3)
    figure = plot_confusion_matrix(matrix, ["HH", "tt", "DY"])
    ax = figure.axes[0]
    np.testing.assert_array_equal(by_gid(ax, "confusion").get_array(), matrix)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.50", "0.50", "0.00", "0.00", "1.00", "0.00", "0.00", "1.00", "0.00"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["HH", "tt", "DY"]
    with pytest.raises(InputError, match="shape"):
        plot_confusion_matrix(matrix, ["a", "b"])
