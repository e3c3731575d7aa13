"""Fisher-information ellipses: the linearised confidence region each information source implies.

For Fisher information I at θ_ref the expected log-likelihood ratio is, to second order,
``q(θ) = −2Δlog L ≈ (θ − θ_ref)ᵀ I (θ − θ_ref)`` (Cramér–Rao; Brehmer et al.,
arXiv:1612.05261). The region at confidence level CL for k = 2 parameters is the ellipse
``q(θ) = F⁻¹_χ²_2(CL)`` (2.30 for 68.27 %, 5.99 for 95 %). A rank-deficient I (the rate
alone constrains one direction only) gives an unbounded strip, drawn as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy import special

from minerflow.errors import InputError
from minerflow.plotting.limits import DEFAULT_PARAMETER_LABELS
from minerflow.plotting.style import colour, new_figure, styled

__all__ = ["fisher_ellipse", "plot_fisher_ellipses"]

_NEGATIVE_TOLERANCE = 1e-4  # eigenvalues above −tol·λ_max count as zero (rounding)
_FLOOR = 1e-10  # zero eigenvalues are drawn as λ_max·floor: a strip beyond any axis range
_BOUNDED = 1e-6  # ellipses with λ_min/λ_max above this set the default axis range


def _eigen(information: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    information = np.asarray(information, dtype=np.float64)
    if information.shape != (2, 2) or not np.all(np.isfinite(information)):
        raise InputError(name, "information", f"a finite 2×2 matrix, got {information.shape}")
    if not np.allclose(information, information.T, rtol=1e-8, atol=0.0):
        raise InputError(name, "information", "a symmetric matrix")
    eigenvalues, eigenvectors = np.linalg.eigh(information)
    top = eigenvalues[-1]
    if top <= 0.0 or eigenvalues[0] < -_NEGATIVE_TOLERANCE * top:
        raise InputError(name, "information", f"positive semi-definite, eigenvalues {eigenvalues}")
    return np.maximum(eigenvalues, _FLOOR * top), eigenvectors


def fisher_ellipse(
    information: np.ndarray,
    theta_ref: Sequence[float],
    threshold: float,
    n_points: int = 361,
) -> np.ndarray:
    """Points (n_points, 2) of the closed curve ``(θ−θ_ref)ᵀ I (θ−θ_ref) = threshold``.

    >>> curve = fisher_ellipse(np.diag([4.0, 1.0]), (1.0, 0.0), 1.0)
    >>> float(curve[:, 0].max()), float(curve[:, 1].max())
    (1.5, 1.0)
    """
    eigenvalues, eigenvectors = _eigen(information, "fisher_ellipse")
    angle = np.linspace(0.0, 2.0 * np.pi, n_points)
    unit = np.stack([np.cos(angle), np.sin(angle)])
    offsets = eigenvectors @ (np.sqrt(threshold / eigenvalues)[:, None] * unit)
    return np.asarray(theta_ref, dtype=np.float64) + offsets.T


@styled
def plot_fisher_ellipses(
    informations: Mapping[str, np.ndarray],
    *,
    theta_ref: Sequence[float] = (0.0, 0.0),
    cl: float = 0.6827,
    parameter_labels: Sequence[str] = DEFAULT_PARAMETER_LABELS,
    reference_label: str = "SM",
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One ellipse per information source (e.g. truth, rate, histo, SALLY) at one CL.

    The default axis range is 1.3× the largest half-width of the bounded ellipses, so a
    rate-only strip does not blow the plot up; pass ``xlim``/``ylim`` to override.
    """
    if not informations:
        raise InputError("plot_fisher_ellipses", "informations", "at least one matrix")
    if not 0.0 < cl < 1.0:
        raise InputError("plot_fisher_ellipses", "cl", f"a value in (0, 1), got {cl}")
    threshold = float(special.chdtri(2, 1.0 - cl))  # χ² quantile
    centre = np.asarray(theta_ref, dtype=np.float64)
    figure, ax = new_figure(figsize=(9.6, 6.8))
    half_widths: list[np.ndarray] = []
    for index, (name, information) in enumerate(informations.items()):
        eigenvalues, _ = _eigen(information, name)
        curve = fisher_ellipse(information, centre, threshold)
        (line,) = ax.plot(curve[:, 0], curve[:, 1], color=colour(index), lw=2.4, label=name)
        line.set_gid(f"ellipse:{name}")
        if eigenvalues[0] > _BOUNDED * eigenvalues[-1]:
            covariance = np.linalg.inv(np.asarray(information, dtype=np.float64))
            half_widths.append(np.sqrt(threshold * np.diag(covariance)))
    if half_widths:
        span = 1.3 * np.max(half_widths, axis=0)
    else:  # only strips: show a few widths of the tightest direction
        span = np.full(2, 3.0 * np.sqrt(threshold / max(np.max(i) for i in informations.values())))
    ax.plot(*centre, ls="none", marker="P", ms=12, mfc="black", mec="white", label=reference_label)
    ax.set_xlim(xlim or (centre[0] - span[0], centre[0] + span[0]))
    ax.set_ylim(ylim or (centre[1] - span[1], centre[1] + span[1]))
    ax.set_xlabel(parameter_labels[0])
    ax.set_ylabel(parameter_labels[1])
    figure.legend(loc="outside right upper", title=f"{100 * cl:.4g} % CL")
    if title:
        ax.set_title(title)
    return figure
