"""Expected-limit figures: p-value maps with nσ contours, per method and all methods together.

Convention (stated on every figure through the legend): the nσ region is the set of θ whose
p-value exceeds the two-sided Gaussian tail probability of n standard deviations,
``p > 2Φ(−n)`` — 0.3173 for 1σ and 0.0455 for 2σ. With p from the asymptotic χ² of
``q = −2Δlog L`` with k degrees of freedom (Wilks), this is ``q < F⁻¹_χ²_k(1 − 2Φ(−n))``;
for k = 2 parameters ``q < 2.30`` (1σ) and ``q < 6.18`` (2σ). Contours are drawn on the
p-value array itself, so they do not depend on k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import special

from minerflow.errors import InputError
from minerflow.plotting.grid import grid_image
from minerflow.plotting.style import colour, new_figure, styled

__all__ = [
    "DEFAULT_PARAMETER_LABELS",
    "delta_chi2",
    "plot_limit_contours",
    "plot_limit_spread",
    "plot_pvalue_map",
    "plot_pvalue_maps",
    "sigma_p_value",
]

DEFAULT_PARAMETER_LABELS: tuple[str, str] = (r"$\theta_0$", r"$\theta_1$")
_SIGMA_WIDTHS = {1: 2.6, 2: 1.4, 3: 0.9}
_TRUTH_COLOUR = "black"
_KIN_SUFFIXES = ("-kin", "_kin")


def sigma_p_value(n_sigma: float) -> float:
    """Two-sided Gaussian tail probability ``2Φ(−n)``: the p-value that bounds an nσ region.

    >>> round(sigma_p_value(1), 4), round(sigma_p_value(2), 4)
    (0.3173, 0.0455)
    """
    return float(2.0 * special.ndtr(-n_sigma))  # two-sided normal tail


def delta_chi2(n_sigma: float, dof: int) -> float:
    """``q = −2Δlog L`` threshold of the nσ region for ``dof`` parameters (Wilks' theorem).

    >>> round(delta_chi2(1, 2), 2), round(delta_chi2(2, 2), 2)
    (2.3, 6.18)
    """
    return float(special.chdtri(dof, sigma_p_value(n_sigma)))  # χ² inverse survival function


def _is_kinematic_only(name: str) -> bool:
    return name.lower().endswith(_KIN_SUFFIXES)


def _base_name(name: str) -> str:
    """The method a (possibly kinematics-only) name belongs to, case-insensitively."""
    return (name[:-4] if _is_kinematic_only(name) else name).lower()


def _sigma_width(n_sigma: int) -> float:
    return _SIGMA_WIDTHS.get(n_sigma, 0.8)


def _draw_contours(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    p_image: np.ndarray,
    sigmas: Sequence[int],
    *,
    line_colour: str,
    linestyle: str = "solid",
    gid: str,
) -> None:
    """nσ contours of a p-value image, line width by n (thick 1σ, thin 2σ)."""
    order = sorted(sigmas, reverse=True)  # increasing p-value levels, as contour() needs
    levels = [sigma_p_value(n) for n in order]
    if np.nanmax(p_image) <= levels[0] or np.nanmin(p_image) >= levels[-1]:
        return  # the region covers nothing or everything: no line to draw
    contours = ax.contour(
        x,
        y,
        p_image,
        levels=levels,
        colors=line_colour,
        linestyles=linestyle,
        linewidths=[_sigma_width(n) for n in order],
    )
    contours.set_gid(gid)


def _best_fit_index(p_values: np.ndarray, best_fit: int | None) -> int:
    return int(np.nanargmax(p_values)) if best_fit is None else int(best_fit)


def _mark(ax: Axes, point: Sequence[float], *, kind: str, face: str, label: str) -> None:
    if kind == "best":
        ax.plot(*point, ls="none", marker="*", ms=17, mfc=face, mec="black", mew=1.2, label=label)
    else:
        ax.plot(*point, ls="none", marker="P", ms=13, mfc=face, mec="white", mew=1.2, label=label)


def _sigma_handles(sigmas: Sequence[int], line_colour: str) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            color=line_colour,
            lw=_sigma_width(n),
            label=f"{n}σ (p = {sigma_p_value(n):.4f})",
        )
        for n in sorted(sigmas)
    ]


def _checked(
    thetas: np.ndarray, values: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0 + 1e-9):
        raise InputError(name, "p_values", "values in [0, 1]")
    return grid_image(thetas, values, source=name)


def _colour_image(
    p_image: np.ndarray, colour_by: str, dof: int, p_min: float
) -> tuple[np.ndarray, Normalize, str]:
    clipped = np.clip(p_image, p_min, 1.0)
    if colour_by == "p_value":
        return clipped, LogNorm(vmin=p_min, vmax=1.0), "p-value"
    if colour_by == "q":
        q = special.chdtri(dof, clipped)
        return q, Normalize(vmin=0.0, vmax=float(special.chdtri(dof, p_min))), r"$-2\,\Delta\log L$"
    raise InputError("plot_pvalue_map", "colour_by", "'p_value' or 'q'")


@dataclass(frozen=True)
class _MapStyle:
    """What every p-value map panel of one figure shares (the public keyword options)."""

    colour_by: str
    dof: int
    p_min: float
    sigmas: Sequence[int]
    truth_p_values: np.ndarray | None
    theta_true: Sequence[float] | None
    parameter_labels: Sequence[str]

    @property
    def colourbar_extend(self) -> str:
        """The colour bar's arrow: log p is clipped below ``p_min``, q above its image."""
        return "min" if self.colour_by == "p_value" else "max"


def _map_panel(
    ax: Axes,
    thetas: np.ndarray,
    p_values: np.ndarray,
    name: str,
    best_fit: int | None,
    style: _MapStyle,
):
    x, y, p_image = _checked(thetas, p_values, name)
    image, norm, colour_label = _colour_image(p_image, style.colour_by, style.dof, style.p_min)
    mesh = ax.pcolormesh(x, y, image, norm=norm, shading="nearest", rasterized=True)
    mesh.set_gid(f"map:{name}")
    _draw_contours(ax, x, y, p_image, style.sigmas, line_colour="white", gid=f"contour:{name}")
    if style.truth_p_values is not None:
        tx, ty, truth_image = _checked(thetas, style.truth_p_values, "truth")
        _draw_contours(
            ax,
            tx,
            ty,
            truth_image,
            style.sigmas,
            line_colour=_TRUTH_COLOUR,
            linestyle="dashed",
            gid="contour:truth",
        )
    best = np.asarray(thetas, dtype=np.float64)[_best_fit_index(np.asarray(p_values), best_fit)]
    _mark(ax, best, kind="best", face="white", label="Best fit")
    if style.theta_true is not None:
        _mark(ax, style.theta_true, kind="truth", face=_TRUTH_COLOUR, label=r"True $\theta$")
    ax.set_xlabel(style.parameter_labels[0])
    ax.set_ylabel(style.parameter_labels[1])
    # a map is read off its colours and contours, not minor ticks, which would cost half the
    # drawing time of a figure of several maps (matplotlib lays out every tick)
    ax.minorticks_off()
    return mesh, colour_label


def _map_legend_handles(ax: Axes, style: _MapStyle, method: str | None) -> list:
    handles: list = []
    if method is not None:
        outline = [patheffects.withStroke(linewidth=4.5, foreground="dimgray")]
        handles.append(Line2D([], [], color="white", lw=2.2, path_effects=outline, label=method))
    handles += _sigma_handles(style.sigmas, "dimgray")
    if style.truth_p_values is not None:
        handles.append(Line2D([], [], color=_TRUTH_COLOUR, ls="dashed", lw=2, label="Truth"))
    markers, _ = ax.get_legend_handles_labels()
    return handles + markers


@styled
def plot_pvalue_map(
    thetas: np.ndarray,
    p_values: np.ndarray,
    *,
    method: str = "estimate",
    best_fit: int | None = None,
    truth_p_values: np.ndarray | None = None,
    theta_true: Sequence[float] | None = None,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    sigmas: Sequence[int] = (1, 2),
    colour_by: str = "p_value",
    dof: int = 2,
    p_min: float = 1e-4,
    title: str | None = None,
) -> Figure:
    """Expected p-value over the θ grid for one method, with nσ contours and the best fit.

    ``thetas`` (n_grid, 2) and ``p_values`` (n_grid,) as returned by the limits code;
    ``best_fit`` is an index into ``thetas`` (default: the largest p-value).
    ``colour_by="q"`` colours by ``−2Δlog L = F⁻¹_χ²(1−p; dof)`` instead of log p.
    Values below ``p_min`` are shown at ``p_min``. The truth contours (dashed) and the
    true θ marker are drawn when given.
    """
    style = _MapStyle(colour_by, dof, p_min, sigmas, truth_p_values, theta_true, parameter_labels)
    figure, ax = new_figure(figsize=(8.0, 7.2))
    mesh, colour_label = _map_panel(ax, thetas, p_values, method, best_fit, style)
    figure.colorbar(mesh, ax=ax, label=colour_label, extend=style.colourbar_extend)
    handles = _map_legend_handles(ax, style, method)
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 3))
    if title:
        ax.set_title(title)
    return figure


@styled
def plot_pvalue_maps(
    thetas: np.ndarray,
    p_values: Mapping[str, np.ndarray],
    *,
    truth_p_values: np.ndarray | None = None,
    theta_true: Sequence[float] | None = None,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    sigmas: Sequence[int] = (1, 2),
    colour_by: str = "p_value",
    dof: int = 2,
    p_min: float = 1e-4,
    ncols: int | None = None,
) -> Figure:
    """All methods side by side, one panel each, on one shared colour scale.

    ``p_values`` maps a method name (the panel title) to its p-values on ``thetas``.
    """
    if not p_values:
        raise InputError("plot_pvalue_maps", "p_values", "at least one method")
    n = len(p_values)
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    figure, axes = new_figure(
        nrows, ncols, figsize=(4.4 * ncols + 1.6, 4.3 * nrows + 1.0), sharex=True, sharey=True
    )
    axes = np.atleast_1d(axes).ravel()
    style = _MapStyle(colour_by, dof, p_min, sigmas, truth_p_values, theta_true, parameter_labels)
    mesh = colour_label = None
    for ax, (name, values) in zip(axes, p_values.items(), strict=False):
        mesh, colour_label = _map_panel(ax, thetas, values, name, None, style)
        ax.set_title(name)
        ax.label_outer()
    for ax in axes[n:]:
        ax.set_visible(False)
    figure.colorbar(mesh, ax=list(axes[:n]), label=colour_label, extend=style.colourbar_extend)
    handles = _map_legend_handles(axes[0], style, None)
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 5))
    return figure


@styled
def plot_limit_contours(
    thetas: np.ndarray,
    p_values: Mapping[str, np.ndarray],
    *,
    truth_p_values: np.ndarray | None = None,
    theta_true: Sequence[float] | None = None,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    sigmas: Sequence[int] = (1, 2),
    show_best_fit: bool = True,
    background: str | None = None,
    p_min: float = 1e-4,
    title: str | None = None,
) -> Figure:
    """Every method's nσ contours on one panel, as the seed MadMiner workflow compares them.

    A name ending in ``-Kin`` (or ``_kin``) is the kinematics-only variant (limit without the
    rate term) of the method without that suffix, compared case-insensitively: it gets the
    base method's colour and a dashed line. The truth contours are drawn in black when given.
    ``background`` names one entry of ``p_values`` whose p-value map (log scale, clipped at
    ``p_min``, with a colour bar) is drawn under the contours (the seed's ``all_methods_pvalue``).
    """
    if not p_values:
        raise InputError("plot_limit_contours", "p_values", "at least one method")
    if background is not None and background not in p_values:
        raise InputError("plot_limit_contours", "background", f"one of {list(p_values)}")
    figure, ax = new_figure(figsize=(10.5, 7.2))
    if background is not None:
        x, y, p_image = _checked(thetas, p_values[background], background)
        mesh = ax.pcolormesh(
            x,
            y,
            np.clip(p_image, p_min, 1.0),
            norm=LogNorm(vmin=p_min, vmax=1.0),
            cmap="Greys",
            alpha=0.45,
            shading="nearest",
            rasterized=True,
            zorder=0,
        )
        mesh.set_gid(f"map:{background}")
        figure.colorbar(mesh, ax=ax, label=f"p-value ({background})", extend="min", pad=0.02)
    colours: dict[str, str] = {}
    handles: list = []
    for name, values in p_values.items():
        base = _base_name(name)
        line_colour = colours.setdefault(base, colour(len(colours)))
        style = "dashed" if _is_kinematic_only(name) else "solid"
        x, y, p_image = _checked(thetas, values, name)
        _draw_contours(
            ax,
            x,
            y,
            p_image,
            sigmas,
            line_colour=line_colour,
            linestyle=style,
            gid=f"contour:{name}",
        )
        if show_best_fit:
            best = np.asarray(thetas, dtype=np.float64)[_best_fit_index(np.asarray(values), None)]
            ax.plot(*best, ls="none", marker="*", ms=12, mfc=line_colour, mec="black", mew=0.8)
        handles.append(Line2D([], [], color=line_colour, ls=style, lw=2.2, label=name))
    if truth_p_values is not None:
        x, y, truth_image = _checked(thetas, truth_p_values, "truth")
        _draw_contours(
            ax, x, y, truth_image, sigmas, line_colour=_TRUTH_COLOUR, gid="contour:truth"
        )
        handles.append(Line2D([], [], color=_TRUTH_COLOUR, lw=2.2, label="Truth"))
    if theta_true is not None:
        _mark(ax, theta_true, kind="truth", face=_TRUTH_COLOUR, label=r"True $\theta$")
        handles.append(ax.get_legend_handles_labels()[0][-1])
    handles += _sigma_handles(sigmas, "dimgray")
    if show_best_fit:
        handles.append(
            Line2D([], [], ls="none", marker="*", ms=12, mfc="white", mec="black", label="Best fit")
        )
    x_all, y_all = np.asarray(thetas, dtype=np.float64).T
    ax.set_xlim(x_all.min(), x_all.max())
    ax.set_ylim(y_all.min(), y_all.max())
    ax.set_xlabel(parameter_labels[0])
    ax.set_ylabel(parameter_labels[1])
    figure.legend(handles=handles, loc="outside right upper")
    if title:
        ax.set_title(title)
    return figure


@styled
def plot_limit_spread(
    thetas: np.ndarray,
    p_values: np.ndarray,
    member_p_values: np.ndarray,
    q_std: np.ndarray,
    *,
    method: str = "ensemble",
    truth_p_values: np.ndarray | None = None,
    theta_true: Sequence[float] | None = None,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    sigmas: Sequence[int] = (1, 2),
    p_min: float = 1e-4,
) -> Figure:
    """An ensemble's limit and how much its members disagree, in two panels.

    Left: the ensemble's p-value map and nσ contours (white), every member's 1σ contour
    (dotted grey: the band that training randomness leaves) and the truth when given. Right:
    the member standard deviation of ``q = −2Δlog L`` (``q_std``), with the ensemble's
    contours. ``member_p_values`` has shape ``(n_members, n_grid)``.
    """
    members = np.atleast_2d(np.asarray(member_p_values, dtype=np.float64))
    style = _MapStyle("p_value", 2, p_min, sigmas, truth_p_values, theta_true, parameter_labels)
    figure, (left, right) = new_figure(1, 2, figsize=(13.5, 6.4), sharex=True, sharey=True)
    mesh, colour_label = _map_panel(left, thetas, p_values, method, None, style)
    figure.colorbar(mesh, ax=left, label=colour_label, extend=style.colourbar_extend)
    for k, member in enumerate(members):
        x, y, image = _checked(thetas, member, f"{method} member {k}")
        _draw_contours(
            left, x, y, image, [1], line_colour="lightgrey", linestyle="dotted", gid=f"member:{k}"
        )
    left.set_title(method)
    x, y, spread = grid_image(thetas, np.asarray(q_std, dtype=np.float64), source="q_std")
    spread_mesh = right.pcolormesh(x, y, spread, cmap="magma", shading="nearest", rasterized=True)
    spread_mesh.set_gid("map:q_std")
    _, _, p_image = _checked(thetas, p_values, method)
    _draw_contours(right, x, y, p_image, sigmas, line_colour="white", gid=f"contour:{method}:q")
    figure.colorbar(spread_mesh, ax=right, label=r"member std of $-2\,\Delta\log L$")
    right.set_title(f"spread over {len(members)} members")
    right.set_xlabel(parameter_labels[0])
    handles = _map_legend_handles(left, style, method)
    handles.append(Line2D([], [], color="lightgrey", ls="dotted", lw=2.2, label="members (1σ)"))
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 4))
    return figure
