"""Fisher information on the parameters θ: truth, rate, histograms, and from a score estimator.

For a Poisson process with differential cross section split into cells e (events, histogram
bins, or the total rate) the Fisher information at θ for luminosity L is

    I_ij(θ) = L Σ_e ∂_iσ_e(θ) ∂_jσ_e(θ) / σ_e(θ)

(Brehmer, Cranmer, Kling, Plehn, arXiv:1612.05261; MadMiner arXiv:1907.10621, sec. 4.3). Using
every weighted event as a cell gives the full ("truth") information of the Monte-Carlo sample;
one cell with the total cross section gives the rate information; histogram bins give the
information of that histogram. With an estimated score t̂(x) (SALLY) the kinematic information
is ``n · E[t̂ t̂ᵀ]`` with ``n = L·σ(θ)`` expected events. Cells with σ_e ≤ 0 carry no information.

Near θ the expected log-likelihood ratio is ``−½ Δθᵀ I Δθ``, so the contour of
``q = Δθᵀ I Δθ = χ²_{dof}⁻¹(CL)`` is the linearised limit (:func:`linearized_contour`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy import special

from minerflow.errors import InputError
from minerflow.physics.histograms import (
    adaptive_edges,
    bin_count,
    bin_index,
    bin_sums,
    with_flow_bins,
)

__all__ = [
    "WeightedEvents",
    "cell_information",
    "histogram_information",
    "linearized_contour",
    "profile_information",
    "project_information",
    "rate_information",
    "score_information",
    "truth_information",
]

_SOURCE = "fisher information"


class WeightedEvents(Protocol):
    """Events with morphed weights and their gradients (e.g. ``weighted_events.MorphedEvents``)."""

    observations: np.ndarray

    def weights(self, thetas: np.ndarray) -> np.ndarray: ...

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray: ...

    def columns(self, names: Sequence[str]) -> np.ndarray: ...


class SupportsScore(Protocol):
    """A local score estimator: ``evaluate_score(x) -> (n_x, n_p)``."""

    def evaluate_score(self, x: np.ndarray) -> np.ndarray: ...


def cell_information(sigma: np.ndarray, gradients: np.ndarray, luminosity: float) -> np.ndarray:
    """``L Σ_e ∂_iσ_e ∂_jσ_e / σ_e`` over cells with ``σ_e > 0``; sigma (n,), gradients (n, p).

    >>> cell_information(np.array([2.0]), np.array([[1.0, 3.0]]), 10.0).tolist()
    [[5.0, 15.0], [15.0, 45.0]]
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    gradients = np.asarray(gradients, dtype=np.float64)
    if gradients.shape[:1] != sigma.shape:
        raise InputError(
            _SOURCE, "gradients", f"one row per cell ({sigma.shape}), got {gradients.shape}"
        )
    inverse = np.divide(1.0, sigma, out=np.zeros_like(sigma), where=sigma > 0)
    return luminosity * np.einsum("e,ei,ej->ij", inverse, gradients, gradients)


def _at(
    events: WeightedEvents, theta: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    theta = np.asarray(theta, dtype=np.float64).reshape(1, -1)
    return events.weights(theta)[0], events.weight_gradients(theta)[0].T


def truth_information(
    events: WeightedEvents, theta: np.ndarray | Sequence[float], luminosity: float
) -> np.ndarray:
    """Full information of the weighted sample: every event is a cell (needs the joint score)."""
    sigma, gradients = _at(events, theta)
    return cell_information(sigma, gradients, luminosity)


def rate_information(
    events: WeightedEvents, theta: np.ndarray | Sequence[float], luminosity: float
) -> np.ndarray:
    """Information of the total rate alone: ``L ∇σ ∇σᵀ / σ``."""
    sigma, gradients = _at(events, theta)
    return cell_information(sigma.sum(keepdims=True), gradients.sum(0, keepdims=True), luminosity)


def histogram_information(
    events: WeightedEvents,
    theta: np.ndarray | Sequence[float],
    luminosity: float,
    observables: Sequence[str],
    bins: int | Sequence[float] | Sequence[int | Sequence[float]],
    ranges: Sequence[tuple[float, float]] | tuple[float, float] | None = None,
    max_relative_uncertainty: float = 0.2,
) -> np.ndarray:
    """Information of a histogram of one or two (or more) observables; bins are the cells.

    Per observable, ``bins`` is explicit edges (plus an underflow and an overflow bin), or an
    int: with a range, that many equal-width bins in it (plus under/overflow); without a
    range, at most that many bins with bounded Monte-Carlo uncertainty
    (:func:`minerflow.physics.histograms.adaptive_edges` at θ), covering every value.
    For one observable, ``bins`` and ``ranges`` may be given without the outer list.
    """
    n_dims = len(observables)
    if n_dims == 0:
        raise InputError(_SOURCE, "observables", "at least one observable name")
    per_axis_bins = [bins] if n_dims == 1 and not _is_nested(bins) else list(bins)  # type: ignore[arg-type]
    if ranges is None:
        per_axis_ranges: list[tuple[float, float] | None] = [None] * n_dims
    elif n_dims == 1 and not _is_nested(ranges):
        per_axis_ranges = [ranges]  # type: ignore[list-item]
    else:
        per_axis_ranges = list(ranges)  # type: ignore[arg-type]
    if len(per_axis_bins) != n_dims or len(per_axis_ranges) != n_dims:
        raise InputError(_SOURCE, "bins", f"one binning (and range) per observable ({n_dims})")

    values = events.columns(observables)
    sigma, gradients = _at(events, theta)
    edges: list[np.ndarray] = []
    for axis, (spec, limits) in enumerate(zip(per_axis_bins, per_axis_ranges, strict=True)):
        if isinstance(spec, int | np.integer):
            if limits is None:
                edges.append(
                    adaptive_edges(values[:, axis], sigma, int(spec), max_relative_uncertainty)[0]
                )
                continue
            spec = np.linspace(limits[0], limits[1], int(spec) + 1)
        edges.append(with_flow_bins(np.asarray(spec, dtype=np.float64))[0])
    index = bin_index(values, edges)
    n_bins = bin_count(edges)
    return cell_information(
        bin_sums(index, n_bins, sigma), bin_sums(index, n_bins, gradients.T).T, luminosity
    )


def _is_nested(spec: object) -> bool:
    return isinstance(spec, Sequence | np.ndarray) and any(
        isinstance(s, Sequence | np.ndarray)
        for s in spec  # type: ignore[union-attr]
    )


def score_information(
    estimator: SupportsScore,
    events: WeightedEvents,
    theta: np.ndarray | Sequence[float],
    luminosity: float,
    *,
    include_rate: bool = True,
    batch_size: int = 100_000,
) -> np.ndarray:
    """``n · Σ_i ŵ_i t̂(x_i) t̂(x_i)ᵀ`` (+ rate information): SALLY's Fisher information.

    ``ŵ_i = dσ_i(θ)/σ(θ)`` over ``events`` (e.g. the test partition), ``n = L·σ(θ)``; θ is the
    point the score estimator was trained at. Events are scored in batches of ``batch_size``.
    """
    if batch_size < 1:
        raise InputError(_SOURCE, "batch_size", "a positive integer")
    sigma, _ = _at(events, theta)
    total = float(sigma.sum())
    if not total > 0:
        raise InputError(_SOURCE, "theta", f"a point with positive cross section, σ={total}")
    x = events.observations
    info = np.zeros((0, 0))
    for start in range(0, len(x), batch_size):
        t = np.asarray(estimator.evaluate_score(x[start : start + batch_size]), np.float64)
        w = sigma[start : start + batch_size] / total
        part = luminosity * total * np.einsum("e,ei,ej->ij", w, t, t)
        info = part if info.size == 0 else info + part
    if include_rate:
        info = info + rate_information(events, theta, luminosity)
    return info


def project_information(information: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Information on a subset of parameters with the others fixed: the sub-matrix."""
    keep = list(keep)
    return np.asarray(information)[np.ix_(keep, keep)]


def profile_information(information: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Information on ``keep`` with the other parameters profiled (Schur complement).

    ``I_kk − I_kr I_rr⁻¹ I_rk`` (pseudo-inverse, so a non-informative block is harmless).

    >>> profile_information(np.array([[2.0, 1.0], [1.0, 1.0]]), [0]).tolist()
    [[1.0]]
    """
    info = np.asarray(information, dtype=np.float64)
    keep = list(keep)
    rest = [i for i in range(info.shape[0]) if i not in keep]
    if not rest:
        return info[np.ix_(keep, keep)]
    mixed = info[np.ix_(keep, rest)]
    return info[np.ix_(keep, keep)] - mixed @ np.linalg.pinv(info[np.ix_(rest, rest)]) @ mixed.T


def linearized_contour(
    information: np.ndarray,
    center: np.ndarray | Sequence[float],
    confidence_level: float = 0.68,
    dof: int | None = None,
    n_points: int = 200,
) -> np.ndarray:
    """Points ``(n_points, 2)`` of the ellipse ``Δθᵀ I Δθ = χ²_{dof}⁻¹(CL)`` around ``center``.

    The linearised (Gaussian) limit a 2x2 information matrix implies; ``dof`` defaults to 2.
    """
    info = np.asarray(information, dtype=np.float64)
    if info.shape != (2, 2):
        raise InputError(_SOURCE, "information", f"a 2x2 matrix, got {info.shape}")
    values, vectors = np.linalg.eigh(0.5 * (info + info.T))
    if values.min() <= 0:
        raise InputError(_SOURCE, "information", "a positive-definite matrix (finite contour)")
    if not 0 < confidence_level < 1:
        raise InputError(_SOURCE, "confidence_level", "a probability in (0, 1)")
    q = special.chdtri(2 if dof is None else dof, 1.0 - confidence_level)  # χ² quantile
    angle = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    return (
        np.asarray(center, dtype=np.float64) + (vectors @ (circle * np.sqrt(q / values)[:, None])).T
    )
