"""Estimated vs true per-event quantities (log r, score): how well did the estimator learn?

Each panel is a 2-D histogram (hexagonal bins, log colour scale) of the pairs with the
diagonal ``estimate = truth`` and, in the legend, Pearson's correlation coefficient ρ and
the mean squared error ``MSE = mean((estimate − truth)²)`` of the plotted pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minerflow.errors import InputError
from minerflow.plotting.limits import DEFAULT_PARAMETER_LABELS
from minerflow.plotting.style import new_figure, styled

__all__ = ["correlation_summary", "plot_log_r_correlation", "plot_score_correlation"]


def correlation_summary(truth: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """Pearson ρ and mean squared error of the pairs, the two numbers every panel reports.

    >>> correlation_summary(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0]))
    (0.9819805060619656, 0.3333333333333333)
    """
    rho = float(np.corrcoef(truth, estimate)[0, 1])
    mse = float(np.mean((estimate - truth) ** 2))
    return rho, mse


def _pairs(truth: np.ndarray, estimate: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray, int]:
    truth = np.asarray(truth, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if truth.shape != estimate.shape:
        raise InputError("correlation plot", key, f"shape {truth.shape}, got {estimate.shape}")
    keep = np.isfinite(truth) & np.isfinite(estimate)
    if keep.sum() < 2:
        raise InputError("correlation plot", key, "at least two finite pairs")
    return truth[keep], estimate[keep], int(keep.size - keep.sum())


def _panel(
    ax: Axes,
    truth: np.ndarray,
    estimate: np.ndarray,
    *,
    quantity: str,
    method: str,
    dropped: int,
    gridsize: int,
):
    low = min(truth.min(), estimate.min())
    high = max(truth.max(), estimate.max())
    pad = 0.04 * (high - low or 1.0)
    extent = (low - pad, high + pad)
    hexes = ax.hexbin(
        truth,
        estimate,
        gridsize=gridsize,
        bins="log",
        mincnt=1,
        extent=(*extent, *extent),
        linewidths=0.0,
        rasterized=True,
    )
    hexes.set_gid("hexbin")
    ax.plot(extent, extent, color="black", ls="--", lw=1.5, label="estimate = truth")
    rho, mse = correlation_summary(truth, estimate)
    summary = f"ρ = {rho:.3f}, MSE = {mse:.3g}"
    if dropped:
        summary += f" ({dropped} non-finite dropped)"
    handles = [
        *ax.get_legend_handles_labels()[0],
        Line2D([], [], ls="none", label=summary),
    ]
    ax.legend(handles=handles, loc="upper left", handlelength=1.2, title=method)
    ax.set_xlim(extent)
    ax.set_ylim(extent)
    ax.set_aspect("equal")
    ax.set_xlabel(f"True {quantity}")
    ax.set_ylabel(f"Estimated {quantity}")
    return hexes


@styled
def plot_log_r_correlation(
    true_log_r: np.ndarray,
    estimated_log_r: np.ndarray,
    *,
    method: str = "estimate",
    quantity: str = r"$\log\,r(x\,|\,\theta_0, \theta_1)$",
    gridsize: int = 60,
    title: str | None = None,
) -> Figure:
    """Estimated vs true log-likelihood ratio, all events and θ points pooled.

    Arrays of any equal shape (e.g. ``(n_theta, n_x)``); non-finite pairs are left out and
    counted in the legend.
    """
    truth, estimate, dropped = _pairs(true_log_r, estimated_log_r, "estimated_log_r")
    figure, ax = new_figure(figsize=(7.8, 6.8))
    hexes = _panel(
        ax, truth, estimate, quantity=quantity, method=method, dropped=dropped, gridsize=gridsize
    )
    figure.colorbar(hexes, ax=ax, label="Events per bin")
    if title:
        ax.set_title(title)
    return figure


@styled
def plot_score_correlation(
    true_score: np.ndarray,
    estimated_score: np.ndarray,
    *,
    method: str = "estimate",
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    gridsize: int = 50,
    title: str | None = None,
) -> Figure:
    """Estimated vs true score ``t(x|θ) = ∇_θ log p(x|θ)``, one panel per component.

    ``true_score`` and ``estimated_score`` have shape ``(n_events, n_parameters)``; component
    i is labelled ``t`` with the i-th parameter label as subscript text.
    """
    true_score = np.asarray(true_score, dtype=np.float64)
    estimated_score = np.asarray(estimated_score, dtype=np.float64)
    if true_score.ndim != 2 or true_score.shape[1] > len(parameter_labels):
        raise InputError(
            "plot_score_correlation",
            "true_score",
            f"shape (n_events, n_parameters ≤ {len(parameter_labels)}), got {true_score.shape}",
        )
    n_components = true_score.shape[1]
    figure, axes = new_figure(1, n_components, figsize=(6.6 * n_components + 1.0, 6.4))
    axes = np.atleast_1d(axes)
    for i, ax in enumerate(axes):
        truth, estimate, dropped = _pairs(
            true_score[:, i], estimated_score[..., i], "estimated_score"
        )
        hexes = _panel(
            ax,
            truth,
            estimate,
            quantity=f"score ({parameter_labels[i]})",
            method=method,
            dropped=dropped,
            gridsize=gridsize,
        )
        figure.colorbar(hexes, ax=ax, label="Events per bin")
    if title:
        figure.suptitle(title)
    return figure
