"""p-value maps and contour figures: the plotted arrays, levels and lines, read back."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import LogNorm, to_rgba
from scipy import stats

from minerflow.errors import InputError
from minerflow.plotting.grid import grid_image
from minerflow.plotting.limits import (
    delta_chi2,
    plot_limit_contours,
    plot_limit_spread,
    plot_pvalue_map,
    plot_pvalue_maps,
    sigma_p_value,
)
from minerflow.plotting.style import PALETTE

AXIS = np.linspace(-4.0, 4.0, 41)
THETAS = np.stack(np.meshgrid(AXIS, AXIS, indexing="ij"), axis=-1).reshape(-1, 2)


def gaussian_p_values(centre=(0.0, 0.0), width=1.0):
    """p-values of q = |θ − c|²/w² with 2 dof: the 1σ contour is a circle of radius w·√2.30."""
    q = np.sum((THETAS - np.asarray(centre)) ** 2, axis=1) / width**2
    return stats.chi2.sf(q, 2)


def artist(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {[a.get_gid() for a in ax.get_children()]}"
    return found[0]


def test_sigma_conventions():
    assert sigma_p_value(1) == pytest.approx(0.317311, abs=1e-6)
    assert sigma_p_value(2) == pytest.approx(0.045500, abs=1e-6)
    assert delta_chi2(1, 2) == pytest.approx(2.2957, abs=1e-4)
    assert delta_chi2(2, 2) == pytest.approx(6.1801, abs=1e-4)
    assert delta_chi2(1, 1) == pytest.approx(1.0)


def test_grid_image_accepts_any_point_order(rng):
    values = np.arange(THETAS.shape[0], dtype=float)
    order = rng.permutation(THETAS.shape[0])
    x, y, image = grid_image(THETAS[order], values[order])
    np.testing.assert_array_equal(x, AXIS)
    np.testing.assert_array_equal(y, AXIS)
    # ij flattening: value index = i_x * n_y + i_y, image is [y, x]
    assert image[3, 5] == 5 * AXIS.size + 3


def test_grid_image_rejects_a_ragged_grid():
    with pytest.raises(InputError, match="full rectangular grid"):
        grid_image(THETAS[:-1], np.zeros(THETAS.shape[0] - 1))


def test_pvalue_map_draws_the_data_levels_and_markers():
    p = gaussian_p_values(centre=(1.0, -0.6), width=1.3)
    truth = gaussian_p_values()
    figure = plot_pvalue_map(
        THETAS,
        p,
        method="ALICES",
        truth_p_values=truth,
        theta_true=(0.0, 0.0),
        parameter_labels=("CWL2", "CPWL2"),
    )
    ax = figure.axes[0]
    mesh = artist(ax, "map:ALICES")
    _, _, image = grid_image(THETAS, p)
    np.testing.assert_allclose(mesh.get_array().reshape(image.shape), np.clip(image, 1e-4, 1))
    assert isinstance(mesh.norm, LogNorm) and (mesh.norm.vmin, mesh.norm.vmax) == (1e-4, 1.0)
    contours = artist(ax, "contour:ALICES")
    np.testing.assert_allclose(contours.levels, [sigma_p_value(2), sigma_p_value(1)])
    # the 1σ line of an isotropic Gaussian is the circle |θ − c| = w √Δχ²
    radius = np.hypot(*(contours.allsegs[1][0] - (1.0, -0.6)).T)
    np.testing.assert_allclose(radius, 1.3 * np.sqrt(delta_chi2(1, 2)), rtol=0.02)
    truth_contours = artist(ax, "contour:truth")
    assert truth_contours.linestyles == "dashed"
    best = next(line for line in ax.lines if line.get_label() == "Best fit")
    np.testing.assert_allclose(np.ravel(best.get_xydata()), THETAS[np.argmax(p)])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("CWL2", "CPWL2")
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[:3] == ["ALICES", "1σ (p = 0.3173)", "2σ (p = 0.0455)"]
    assert {"Truth", "Best fit", r"True $\theta$"} <= set(legend)


def test_pvalue_map_coloured_by_q():
    p = gaussian_p_values(width=2.0)
    figure = plot_pvalue_map(THETAS, p, colour_by="q", best_fit=0)
    mesh = artist(figure.axes[0], "map:estimate")
    _, _, image = grid_image(THETAS, p)
    q = stats.chi2.isf(np.clip(image, 1e-4, 1.0), 2)
    np.testing.assert_allclose(mesh.get_array().reshape(image.shape), q)
    best = next(line for line in figure.axes[0].lines if line.get_label() == "Best fit")
    np.testing.assert_allclose(np.ravel(best.get_xydata()), THETAS[0])
    assert figure.axes[1].get_ylabel() == r"$-2\,\Delta\log L$"


def test_pvalue_map_rejects_values_outside_unit_interval():
    with pytest.raises(InputError, match="ALICES: p_values: expected values in"):
        plot_pvalue_map(THETAS, gaussian_p_values() * 2, method="ALICES")


def test_side_by_side_maps_share_one_colour_scale():
    methods = {name: gaussian_p_values(width=w) for name, w in [("A", 1.0), ("B", 1.5), ("C", 2)]}
    methods["D"] = gaussian_p_values(centre=(1, 1))
    figure = plot_pvalue_maps(THETAS, methods, ncols=3)
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["A", "B", "C", "D"]
    assert sum(not ax.get_visible() for ax in figure.axes) == 2  # 2×3 grid, 4 used
    norms = {
        (artist(ax, f"map:{n}").norm.vmin, artist(ax, f"map:{n}").norm.vmax)
        for ax, n in zip(panels, methods, strict=True)
    }
    assert norms == {(1e-4, 1.0)}
    for ax, (name, p) in zip(panels, methods.items(), strict=True):
        _, _, image = grid_image(THETAS, p)
        np.testing.assert_allclose(
            artist(ax, f"map:{name}").get_array().reshape(image.shape), np.clip(image, 1e-4, 1)
        )


def test_all_contours_on_one_panel_with_dashed_kin_variants():
    p_values = {
        "ALICES": gaussian_p_values(width=1.0),
        "ALICES-Kin": gaussian_p_values(width=1.5),
        "SALLY": gaussian_p_values(width=1.2),
        "sally_kin": gaussian_p_values(width=1.8),
    }
    figure = plot_limit_contours(
        THETAS, p_values, truth_p_values=gaussian_p_values(width=0.9), theta_true=(0, 0)
    )
    ax = figure.axes[0]
    styles = {name: artist(ax, f"contour:{name}") for name in [*p_values, "truth"]}
    assert styles["ALICES"].linestyles == "solid"
    assert styles["ALICES-Kin"].linestyles == "dashed"
    assert styles["sally_kin"].linestyles == "dashed"
    np.testing.assert_allclose(styles["ALICES"].get_edgecolor()[0], to_rgba(PALETTE[0]))
    np.testing.assert_allclose(styles["ALICES-Kin"].get_edgecolor()[0], to_rgba(PALETTE[0]))
    np.testing.assert_allclose(styles["sally_kin"].get_edgecolor()[0], to_rgba(PALETTE[1]))
    np.testing.assert_allclose(styles["truth"].get_edgecolor()[0], to_rgba("black"))
    # wider likelihood -> larger 1σ circle, radius w √2.30 each
    for name, width in [("ALICES", 1.0), ("ALICES-Kin", 1.5), ("truth", 0.9)]:
        radius = np.hypot(*styles[name].allsegs[1][0].T)
        np.testing.assert_allclose(radius, width * np.sqrt(delta_chi2(1, 2)), rtol=0.02)
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[:6] == [*p_values, "Truth", r"True $\theta$"]
    assert (ax.get_xlim(), ax.get_ylim()) == ((-4.0, 4.0), (-4.0, 4.0))


def test_contours_over_one_methods_p_value_map():
    p_values = {"ALICES": gaussian_p_values(width=1.0), "SALLY": gaussian_p_values(width=1.6)}
    figure = plot_limit_contours(THETAS, p_values, background="SALLY")
    ax = figure.axes[0]
    mesh = artist(ax, "map:SALLY")
    _, _, image = grid_image(THETAS, p_values["SALLY"])
    np.testing.assert_allclose(mesh.get_array().reshape(image.shape), np.clip(image, 1e-4, 1))
    assert isinstance(mesh.norm, LogNorm) and (mesh.norm.vmin, mesh.norm.vmax) == (1e-4, 1.0)
    assert mesh.get_zorder() < artist(ax, "contour:ALICES").get_zorder()  # under the lines
    assert figure.axes[1].get_ylabel() == "p-value (SALLY)"
    # without a background: no map, no colour bar
    plain = plot_limit_contours(THETAS, p_values)
    assert len(plain.axes) == 1
    assert not [a for a in plain.axes[0].get_children() if str(a.get_gid()).startswith("map:")]


def test_background_must_be_one_of_the_methods():
    with pytest.raises(InputError, match="background: expected one of"):
        plot_limit_contours(THETAS, {"ALICES": gaussian_p_values()}, background="alices")


def test_spread_figure_draws_members_and_the_std_of_q():
    p = gaussian_p_values(width=1.2)
    members = np.stack([gaussian_p_values(centre=(c, 0.0), width=1.2) for c in (-0.5, 0.5)])
    q_std = np.abs(np.sum(THETAS, axis=1))
    figure = plot_limit_spread(THETAS, p, members, q_std, method="alices_ensemble")
    left, right = figure.axes[:2]
    np.testing.assert_allclose(
        artist(left, "map:alices_ensemble").get_array().ravel(),
        np.clip(grid_image(THETAS, p)[2], 1e-4, 1).ravel(),
    )
    for k, centre in enumerate((-0.5, 0.5)):  # each member's 1σ circle, dotted
        member = artist(left, f"member:{k}")
        assert member.linestyles == "dotted" and list(member.levels) == [sigma_p_value(1)]
        radius = np.hypot(*(member.allsegs[0][0] - (centre, 0.0)).T)
        np.testing.assert_allclose(radius, 1.2 * np.sqrt(delta_chi2(1, 2)), rtol=0.02)
    spread = artist(right, "map:q_std")
    np.testing.assert_allclose(spread.get_array().ravel(), grid_image(THETAS, q_std)[2].ravel())
    assert right.get_title() == "spread over 2 members"
    assert "members (1σ)" in [t.get_text() for t in figure.legends[0].get_texts()]
