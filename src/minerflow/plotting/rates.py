"""Total cross section over the parameter plane and along a line through it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from minerflow.errors import InputError
from minerflow.plotting.grid import grid_image
from minerflow.plotting.limits import DEFAULT_PARAMETER_LABELS
from minerflow.plotting.style import axis_label, colour, new_figure, styled

__all__ = ["plot_cross_section_map", "plot_cross_section_slice"]

_LOG_RANGE = 30.0  # use a log colour scale when σ spans more than this factor


def _inner_levels(low: float, high: float, n: int, log: bool) -> list[float]:
    """About ``n`` round contour values well inside (low, high): none hugging the extremes."""
    spacing = (np.log(high) - np.log(low)) if log else (high - low)
    margin = 0.05 * spacing
    if log:
        candidates = np.geomspace(low, high, n + 2)[1:-1]
        rounded = [float(f"{value:.2g}") for value in candidates]
        return sorted(
            {v for v in rounded if np.log(low) + margin < np.log(v) < np.log(high) - margin}
        )
    ticks = MaxNLocator(n + 1).tick_values(low, high)
    return [float(t) for t in ticks if low + margin < t < high - margin]


@styled
def plot_cross_section_map(
    thetas: np.ndarray,
    cross_sections: np.ndarray,
    *,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    unit: str = "pb",
    levels: Sequence[float] | int = 6,
    theta_ref: Sequence[float] | None = None,
    reference_label: str = "SM",
    title: str | None = None,
) -> Figure:
    """σ(θ) on a grid as a colour map with labelled iso-σ contours.

    ``thetas`` (n_grid, 2), ``cross_sections`` (n_grid,) in ``unit``. The colour scale is
    logarithmic when σ is positive and spans more than a factor 30. ``levels`` is a number
    of contour lines or their explicit values; ``theta_ref`` marks a reference point.
    """
    x, y, image = grid_image(thetas, cross_sections, source="cross_sections")
    if not np.all(np.isfinite(image)):
        raise InputError("plot_cross_section_map", "cross_sections", "finite values")
    positive = image.min() > 0.0
    use_log = positive and image.max() / image.min() > _LOG_RANGE
    norm = LogNorm(image.min(), image.max()) if use_log else Normalize(image.min(), image.max())
    figure, ax = new_figure(figsize=(8.0, 6.8))
    mesh = ax.pcolormesh(x, y, image, norm=norm, shading="gouraud", rasterized=True)
    mesh.set_gid("map:cross_section")
    if isinstance(levels, int):
        levels = _inner_levels(image.min(), image.max(), levels, use_log)
    contours = ax.contour(x, y, image, levels=levels, colors="white", linewidths=1.2)
    contours.set_gid("contour:cross_section")
    ax.clabel(contours, fmt=lambda value: f"{value:.3g}", fontsize="x-small")
    if theta_ref is not None:
        ax.plot(
            *theta_ref,
            ls="none",
            marker="*",
            ms=17,
            mfc="white",
            mec="black",
            label=reference_label,
        )
        ax.legend(loc="upper right", frameon=True, framealpha=0.8)
    ax.set_xlabel(parameter_labels[0])
    ax.set_ylabel(parameter_labels[1])
    figure.colorbar(mesh, ax=ax, label=axis_label("σ", unit))
    if title:
        ax.set_title(title)
    return figure


@styled
def plot_cross_section_slice(
    values: np.ndarray,
    cross_sections: np.ndarray | Mapping[str, np.ndarray],
    *,
    parameter_label: str = DEFAULT_PARAMETER_LABELS[0],
    unit: str = "pb",
    uncertainties: Mapping[str, np.ndarray] | None = None,
    reference: float | None = None,
    reference_label: str = "SM",
    log_y: bool = False,
    title: str | None = None,
) -> Figure:
    """σ along one parameter (others fixed), one line per curve, optional ±1σ bands.

    ``cross_sections`` is one array or a mapping label → array, each of the length of
    ``values``; ``uncertainties`` maps the same labels to absolute uncertainties.
    """
    values = np.asarray(values, dtype=np.float64)
    curves = (
        dict(cross_sections)
        if isinstance(cross_sections, Mapping)
        else {"σ": np.asarray(cross_sections)}
    )
    figure, ax = new_figure(figsize=(8.0, 6.2))
    for index, (label, sigma) in enumerate(curves.items()):
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != values.shape:
            raise InputError(
                "plot_cross_section_slice", label, f"shape {values.shape}, got {sigma.shape}"
            )
        line_colour = colour(index)
        ax.plot(values, sigma, color=line_colour, lw=2.2, label=label)
        if uncertainties is not None and label in uncertainties:
            error = np.asarray(uncertainties[label], dtype=np.float64)
            ax.fill_between(values, sigma - error, sigma + error, color=line_colour, alpha=0.25)
    if reference is not None:
        ax.axvline(reference, color="dimgray", ls=":", lw=1.5, label=reference_label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(values.min(), values.max())
    ax.set_xlabel(parameter_label)
    ax.set_ylabel(axis_label("σ", unit))
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return figure
