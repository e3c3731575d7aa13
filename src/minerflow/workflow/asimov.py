"""A fixed-size, weight-preserving subsample of the Asimov data set for estimator-based limits.

The ``ml`` expected limit needs ℓ̂(x_i, θ) for every event of the test partition and every grid
point: tens of thousands of events × hundreds of points of network evaluations, most of the
evaluation step's time. The Asimov kinematic term is a weighted mean,
``n Σ_i w_i ℓ(x_i, θ)`` with ``Σ w_i = 1``, and an unbiased estimate of it with ``N`` equal
weights ``1/N`` comes from drawing events with probability ``w_i``. Drawing them by
*systematic resampling* (one uniform offset ``u``, points ``(u + k)/N`` on the cumulative
weights, Kitagawa 1996) along an order that keeps nearby events together (a boustrophedon path
through the observables' rank space) stratifies the sample in x: each event appears
``⌊N w_i⌋`` or ``⌈N w_i⌉`` times, every region of phase space gets its share of weight to
within ``1/N``, and the error of the mean falls much faster than the ``N^{-1/2}`` of independent
draws. On the demo's toy (30 000 test events, 25 × 25 grid, n ≈ 30 expected events) 2 000
events change ``q = −2Δlog L`` by at most about 0.07 inside the 2σ region (0.09 without the
rate term), against about 1.3 for the same resampling in file order and 0.3 between the full
partition and the exact expectation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["asimov_subsample", "phase_space_order"]


def phase_space_order(observations: np.ndarray, cells: int) -> np.ndarray:
    """Event order along a boustrophedon path through the observables' rank space.

    Each observable but the last is cut into ``cells`` quantile cells; cells are visited in
    mixed-radix order, every axis reversing its direction whenever the cells before it moved by
    one (so consecutive events are neighbours in x), and events within a cell are ordered by
    the last observable. Returns indices into ``observations``.

    >>> phase_space_order(np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), 2).tolist()
    [1, 0, 3, 2]
    """
    x = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    n, d = x.shape
    ranks = np.argsort(np.argsort(x, axis=0, kind="stable"), axis=0, kind="stable") / max(n, 1)
    key = np.zeros(n)
    parity = np.zeros(n, dtype=np.int64)
    for axis in range(d - 1):
        cell = np.minimum((ranks[:, axis] * cells).astype(np.int64), cells - 1)
        key = key * cells + np.where(parity % 2 == 1, cells - 1 - cell, cell)
        parity += cell
    last = ranks[:, d - 1]  # in [0, (n - 1)/n]: stays inside the cell's unit of the key
    reversed_last = (n - 1) / max(n, 1) - last
    return np.argsort(key + np.where(parity % 2 == 1, reversed_last, last), kind="stable")


def asimov_subsample(
    observations: np.ndarray, weights: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Indices of ``size`` events that stand for the weighted Asimov set with equal weights.

    Systematic resampling with probability ``w_i / Σ w`` along :func:`phase_space_order` (see
    the module docstring); an event may appear more than once. ``None`` when the full set is
    needed as it is: no more events than ``size``, or negative weights (which equal-weight
    events cannot represent).
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) <= size or (w < 0).any() or not w.sum() > 0:
        return None
    d = np.asarray(observations).reshape(len(w), -1).shape[1]
    cells = max(1, int(np.ceil(size ** (1.0 / d))))
    order = phase_space_order(observations, cells)
    cumulative = np.cumsum(w[order] / w.max())  # scaled: subnormal weights keep their shares
    points = (rng.random() + np.arange(size)) / size * cumulative[-1]
    return order[np.minimum(np.searchsorted(cumulative, points, side="right"), len(w) - 1)]
