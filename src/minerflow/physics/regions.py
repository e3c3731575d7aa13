"""Confidence regions on a θ grid and how much two of them overlap.

A region at confidence level CL is the set ``{θ : p(θ) > 1 − CL}`` of the asymptotic
p-values of :mod:`minerflow.physics.limits`. Two regions A and B (an estimator's and the exact
likelihood's, say) are compared by their intersection over union ``|A ∩ B| / |A ∪ B|``: the
Jaccard index of the two sets, measured by area, 1 when they coincide and 0 when disjoint.

Why a finer grid: on the workflow's 25×25 grid the 68 % region of the toy with the rate term
holds about 17 points, so one point crossing the boundary moves the IoU by ~0.06 — the grid,
not the estimator, would decide the figure. Both likelihoods can be evaluated anywhere, so
one can evaluate them on a finer grid directly; cheaper and as exact, :func:`refine_map`
interpolates a log-likelihood map from its grid onto a grid ``refinement`` times finer with
cubic splines. An expected log-likelihood is smooth in θ (a quadratic form near its
maximum), so the spline finds the contours to a small fraction of a coarse cell: for the toy's
exact likelihood, log L refined from 25×25 to 241×241 is within 0.002 of the directly
evaluated one inside the 99 % region, and the 68 % and 95 % regions are identical (IoU 1).
:func:`region_overlaps` does the whole comparison; as all cells are equal, the fraction of
cells is the fraction of area.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import make_interp_spline

from minerflow.errors import InputError
from minerflow.physics.limits import p_values, theta_grid

__all__ = [
    "CONFIDENCE_LEVELS",
    "REFINEMENT",
    "intersection_over_union",
    "refine_map",
    "region_mask",
    "region_overlaps",
]

CONFIDENCE_LEVELS: tuple[float, ...] = (0.68, 0.95)
REFINEMENT = 10  # 25×25 → 241×241: a coarse cell becomes 10×10 fine cells
_SOURCE = "regions"


def region_mask(p_values: np.ndarray, confidence_level: float) -> np.ndarray:
    """Points inside the region at ``confidence_level``: ``p > 1 − CL`` (boolean, same shape).

    >>> region_mask(np.array([0.9, 0.4, 0.04]), 0.68).tolist()
    [True, True, False]
    """
    if not 0.0 < confidence_level < 1.0:
        raise InputError(_SOURCE, "confidence_level", f"a number in (0, 1), got {confidence_level}")
    p = np.asarray(p_values, dtype=np.float64)
    if np.isnan(p).any():
        raise InputError(_SOURCE, "p_values", "no NaN values")
    return p > 1.0 - confidence_level


def intersection_over_union(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """``|A ∩ B| / |A ∪ B|`` of two boolean masks on the same grid (Jaccard index).

    Symmetric, 1 for equal masks (two empty regions are equal: 1), 0 for disjoint ones.

    >>> intersection_over_union(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool))
    0.3333333333333333
    """
    a, b = np.asarray(mask_a), np.asarray(mask_b)
    for key, mask in (("mask_a", a), ("mask_b", b)):
        if mask.dtype != np.bool_:
            raise InputError(_SOURCE, key, f"a boolean mask, got dtype {mask.dtype}")
    if a.shape != b.shape:
        raise InputError(_SOURCE, "mask_b", f"the shape of mask_a {a.shape}, got {b.shape}")
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def refine_map(
    values: np.ndarray,
    ranges: Sequence[tuple[float, float]],
    resolutions: int | Sequence[int],
    refinement: int = REFINEMENT,
) -> tuple[np.ndarray, np.ndarray]:
    """A map on ``theta_grid(ranges, resolutions)`` interpolated onto a finer grid.

    Returns ``(fine_grid, fine_values)`` with ``(n − 1)·refinement + 1`` points per axis (the
    coarse points are fine points too), by an interpolating cubic spline along each axis in
    turn (not-a-knot ends, scipy's ``make_interp_spline``; degree n − 1 on an axis with
    n < 4 points), so polynomials of degree ≤ 3 per axis come out exact. Meant for smooth
    maps such as a log-likelihood ratio, not for p-values near 0 or masks: interpolate
    log L, then take p-values on the fine grid.
    """
    theta_grid(ranges, resolutions)  # validates ranges and resolutions
    axes_resolutions = _resolutions(ranges, resolutions)
    n_points = int(np.prod(axes_resolutions))
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_points,):
        raise InputError(_SOURCE, "values", f"one value per grid point ({n_points},)")
    if not np.isfinite(values).all():
        raise InputError(_SOURCE, "values", "finite values (a grid where σ(θ) > 0)")
    if not isinstance(refinement, int) or refinement < 1:
        raise InputError(_SOURCE, "refinement", f"an integer ≥ 1, got {refinement!r}")
    for i, n in enumerate(axes_resolutions):
        if n > 1 and not ranges[i][0] < ranges[i][1]:
            raise InputError(_SOURCE, f"ranges[{i}]", "min < max on an axis with several points")
    fine_resolutions = [(n - 1) * refinement + 1 for n in axes_resolutions]
    table = values.reshape(axes_resolutions)
    for axis, (n, n_fine) in enumerate(zip(axes_resolutions, fine_resolutions, strict=True)):
        if n > 1:
            lo, hi = ranges[axis]
            spline = make_interp_spline(np.linspace(lo, hi, n), table, k=min(3, n - 1), axis=axis)
            table = spline(np.linspace(lo, hi, n_fine))
    return theta_grid(ranges, fine_resolutions), table.ravel()


def region_overlaps(
    log_likelihood_a: np.ndarray,
    log_likelihood_b: np.ndarray,
    ranges: Sequence[tuple[float, float]],
    resolutions: int | Sequence[int],
    confidence_levels: Sequence[float] = CONFIDENCE_LEVELS,
    refinement: int = REFINEMENT,
    dof: int | None = None,
) -> dict[float, float]:
    """IoU of the regions of two log-likelihood maps on one grid, per confidence level.

    Both maps (any offset: the maximum is subtracted) are refined with :func:`refine_map`;
    p-values are ``χ²_sf(−2 Δlog L, dof)`` on the fine grid (``dof`` defaults to the number of
    parameters, as :func:`minerflow.physics.limits.p_values`); the regions are compared with
    :func:`intersection_over_union`. ``refinement=1`` compares the grid points themselves.
    """
    n_parameters = len(ranges)
    dof = n_parameters if dof is None else int(dof)
    p = [
        p_values(refine_map(values, ranges, resolutions, refinement)[1], dof)[1]
        for values in (log_likelihood_a, log_likelihood_b)
    ]
    return {
        cl: intersection_over_union(region_mask(p[0], cl), region_mask(p[1], cl))
        for cl in confidence_levels
    }


def _resolutions(
    ranges: Sequence[tuple[float, float]], resolutions: int | Sequence[int]
) -> list[int]:
    """Points per axis, as :func:`minerflow.physics.limits.theta_grid` reads them."""
    if isinstance(resolutions, int | np.integer):
        return [int(resolutions)] * len(ranges)
    return [int(n) for n in resolutions]
