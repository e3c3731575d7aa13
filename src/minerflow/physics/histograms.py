"""Weighted N-dimensional histograms with binning whose Monte-Carlo uncertainty is bounded.

Histograms are the density estimate of the `histo`, `sally` and `sallino` limit modes and the
"events" of the histogram Fisher information (MadMiner, arXiv:1907.10621, sec. 4). Two choices
differ from MadMiner on purpose (its notes, sec. 9):

* automatic binning starts from weighted-quantile edges and then merges neighbouring bins until
  every non-empty bin has a relative Monte-Carlo uncertainty ``sqrt(sum w^2) / sum w`` at most a
  bound (MadMiner issue #323), instead of a fixed number of quantile bins;
* values outside the outer edges always fall into the outer bins (filling and lookup agree); an
  explicit under/overflow bin is an edge at ``-inf`` / ``+inf`` (:func:`with_flow_bins`). For
  densities the width of each outer bin is capped at twice its neighbour's, at both ends.

Arrays of values are ``(n_events, n_dims)`` (a 1-D array is one dimension); edges are one
increasing array per dimension; bins are numbered C-order (last dimension fastest).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from minerflow.errors import InputError

__all__ = [
    "DEFAULT_FLOOR",
    "Histogram",
    "adaptive_edges",
    "bin_count",
    "bin_index",
    "bin_sums",
    "bin_volumes",
    "bins_shape",
    "default_bins",
    "fill_histogram",
    "log_probabilities",
    "weighted_quantiles",
    "with_flow_bins",
]

DEFAULT_FLOOR = 1e-12
"""Probability added to every bin before renormalising, so an empty bin has a finite log."""

Edges = tuple[np.ndarray, ...]


def _as_2d(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return values[:, None]
    if values.ndim != 2:
        raise InputError(
            "histogram", "values", f"(n_events,) or (n_events, n_dims), got {values.shape}"
        )
    return values


def _check_edges(edges: Sequence[np.ndarray] | np.ndarray) -> Edges:
    if isinstance(edges, np.ndarray) and edges.ndim == 1:
        edges = (edges,)
    checked = tuple(np.asarray(e, dtype=np.float64) for e in edges)
    for axis, e in enumerate(checked):
        if e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0) or np.isnan(e).any():
            raise InputError("histogram", f"edges[{axis}]", "at least 2 strictly increasing values")
    return checked


def default_bins(n_dims: int) -> tuple[int, ...]:
    """Initial number of quantile bins per axis before merging: 25 in 1-D, 8x8 in 2-D, else 5."""
    per_axis = {1: 25, 2: 8}.get(n_dims, 5)
    return (per_axis,) * n_dims


def with_flow_bins(edges: Sequence[np.ndarray] | np.ndarray) -> Edges:
    """Add an underflow and an overflow bin (edges at -inf and +inf) to every axis."""
    return tuple(np.concatenate(([-np.inf], e, [np.inf])) for e in _check_edges(edges))


def weighted_quantiles(
    values: np.ndarray, weights: np.ndarray, quantiles: np.ndarray
) -> np.ndarray:
    """Quantiles of a weighted sample, each event placed at the middle of its cumulative weight.

    Negative weights are treated as zero here (quantiles need a monotone cumulative sum).

    >>> weighted_quantiles(np.array([1.0, 2.0, 3.0]), np.ones(3), np.array([0.0, 0.5, 1.0]))
    array([1., 2., 3.])
    """
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    w = np.clip(np.asarray(weights, dtype=np.float64)[order], 0.0, None)
    total = w.sum()
    if total <= 0:
        raise InputError("histogram", "weights", "a positive total weight")
    position = (np.cumsum(w) - 0.5 * w) / total
    return np.interp(quantiles, position, v)


def bins_shape(edges: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Number of bins along each dimension of a binning given by its ``edges``."""
    return tuple(len(e) - 1 for e in edges)


def bin_count(edges: Sequence[np.ndarray]) -> int:
    """Total number of bins (the length of a flat C-order bin array) of ``edges``."""
    return int(np.prod(bins_shape(edges)))


def bin_index(values: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Flat (C-order) bin number of every event; values beyond the outer edges go to outer bins."""
    values = _as_2d(values)
    edges = _check_edges(edges)
    if values.shape[1] != len(edges):
        raise InputError("histogram", "values", f"{len(edges)} columns, got {values.shape[1]}")
    per_axis = [
        np.searchsorted(e[1:-1], values[:, axis], side="right") for axis, e in enumerate(edges)
    ]
    return np.ravel_multi_index(per_axis, bins_shape(edges))


def bin_sums(index: np.ndarray, n_bins: int, weights: np.ndarray) -> np.ndarray:
    """Per-bin sums of one weight set ``(n,) -> (n_bins,)`` or of many ``(k, n) -> (k, n_bins)``.

    Many sets are summed with one ``bincount`` over offset bin numbers, without a Python loop.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1:
        return np.bincount(index, weights=weights, minlength=n_bins)
    n_sets = weights.shape[0]
    offsets = (np.arange(n_sets) * n_bins)[:, None] + index[None, :]
    return np.bincount(offsets.ravel(), weights=weights.ravel(), minlength=n_sets * n_bins).reshape(
        n_sets, n_bins
    )


def log_probabilities(sum_weights: np.ndarray, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """log of bin probabilities ``(max(S_b, 0) + ε) / (Σ max(S, 0) + n ε)`` along the last axis.

    Negative bin sums (possible with NLO weights) count as empty; the floor ε keeps empty bins
    finite so that one Asimov event in an empty template bin does not give ``-inf``.
    """
    s = np.clip(np.asarray(sum_weights, dtype=np.float64), 0.0, None)
    total = s.sum(axis=-1, keepdims=True)
    total = np.where(total > 0, total, 1.0)
    p = s / total + floor
    return np.log(p) - np.log(p.sum(axis=-1, keepdims=True))


def bin_volumes(edges: Sequence[np.ndarray]) -> np.ndarray:
    """Bin volumes, with the width of each outer bin capped at twice its neighbour's.

    The cap keeps densities of long (or infinite under/overflow) tail bins from vanishing.
    A single bin of infinite width has width 1 (its density is then its probability).
    """
    widths = []
    for e in _check_edges(edges):
        w = np.diff(e)
        if len(w) > 1:
            w[0] = min(w[0], 2.0 * w[1])
            w[-1] = min(w[-1], 2.0 * w[-2])
        w = np.where(np.isfinite(w), w, 1.0)
        widths.append(w)
    volume = widths[0]
    for w in widths[1:]:
        volume = np.multiply.outer(volume, w)
    return volume


@dataclass(frozen=True)
class Histogram:
    """A filled weighted histogram: edges, bin sums of w and of w², and floored densities."""

    edges: Edges
    sum_weights: np.ndarray
    sum_weights_squared: np.ndarray
    floor: float = DEFAULT_FLOOR

    @property
    def n_dims(self) -> int:
        return len(self.edges)

    @property
    def shape(self) -> tuple[int, ...]:
        return bins_shape(self.edges)

    @cached_property
    def relative_uncertainty(self) -> np.ndarray:
        """``sqrt(Σw²)/Σw`` per bin: 0 for empty bins, inf where the sum is not positive."""
        return _relative_uncertainty(self.sum_weights, self.sum_weights_squared)

    @cached_property
    def probabilities(self) -> np.ndarray:
        """Normalised bin contents with the floor (see :func:`log_probabilities`)."""
        return np.exp(log_probabilities(self.sum_weights.ravel(), self.floor)).reshape(self.shape)

    @cached_property
    def densities(self) -> np.ndarray:
        """Probabilities per unit volume (outer widths capped, see :func:`bin_volumes`)."""
        return self.probabilities / bin_volumes(self.edges)

    def log_density(self, values: np.ndarray) -> np.ndarray:
        """log density of the bin holding each event (outer bins absorb out-of-range values)."""
        return np.log(self.densities.ravel())[bin_index(values, self.edges)]

    def log_probability(self, values: np.ndarray) -> np.ndarray:
        """log probability of the bin holding each event."""
        return np.log(self.probabilities.ravel())[bin_index(values, self.edges)]


def _relative_uncertainty(s: np.ndarray, s2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(np.clip(s2, 0.0, None)) / s
    rel = np.where(s > 0, rel, np.inf)
    return np.where(s2 > 0, rel, 0.0)


def fill_histogram(
    values: np.ndarray,
    weights: np.ndarray,
    edges: Sequence[np.ndarray] | np.ndarray,
    floor: float = DEFAULT_FLOOR,
) -> Histogram:
    """Fill a histogram with weighted events (values ``(n,)`` or ``(n, d)``, weights ``(n,)``)."""
    edges = _check_edges(edges)
    weights = np.asarray(weights, dtype=np.float64)
    index = bin_index(values, edges)
    if weights.shape != index.shape:
        raise InputError("histogram", "weights", f"shape {index.shape}, got {weights.shape}")
    n_bins = bin_count(edges)
    shape = bins_shape(edges)
    return Histogram(
        edges=edges,
        sum_weights=bin_sums(index, n_bins, weights).reshape(shape),
        sum_weights_squared=bin_sums(index, n_bins, weights**2).reshape(shape),
        floor=floor,
    )


def _quantile_edges(values: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    edges = weighted_quantiles(values, weights, np.linspace(0.0, 1.0, n_bins + 1))
    scale = max(float(np.abs(edges).max()), 1.0)
    keep = np.concatenate(([True], np.diff(edges) > 1e-9 * scale))
    edges = edges[keep]
    if len(edges) < 2:
        centre = float(edges[0])
        edges = np.array([centre - 0.5, centre + 0.5])
    return edges


def _merged_sums(fine: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Sum a fine grid ``(k, *fine_shape)`` into the coarse bins starting at ``cuts``."""
    out = fine
    for axis, starts in enumerate(cuts):
        out = np.add.reduceat(out, starts, axis=axis + 1)
    return out


def adaptive_edges(
    values: np.ndarray,
    weights: np.ndarray,
    n_bins: int | Sequence[int] | None = None,
    max_relative_uncertainty: float = 0.1,
) -> Edges:
    """Binning whose every non-empty bin has ``sqrt(Σw²)/Σw <= max_relative_uncertainty``.

    For each choice of at most ``n_bins`` weighted-quantile bins per axis (:func:`default_bins`
    when None), repeatedly take the worst bin and merge it with the neighbouring slab (any axis,
    either side) that leaves the merged bin most precise, until the bound holds; keep the
    choice with the most non-empty bins (trying more bins first, fewer only while they could
    still win). ``weights`` may be one set ``(n,)`` or several ``(k, n)`` (one per parameter
    point): the bound then holds for every set. Bins no event reaches are allowed. If even one
    bin per axis violates the bound, that single bin is returned. Merging works on the bin sums
    of the quantile grid, so it needs no loop over events.
    """
    values = _as_2d(values)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n_events, n_dims = values.shape
    if weights.shape[1] != n_events:
        raise InputError("histogram", "weights", f"{n_events} per set, got {weights.shape[1]}")
    if not max_relative_uncertainty > 0:
        raise InputError("histogram", "max_relative_uncertainty", "a positive number")
    if n_bins is None:
        n_bins = default_bins(n_dims)
    elif isinstance(n_bins, int | np.integer):
        n_bins = (int(n_bins),) * n_dims
    if len(n_bins) != n_dims or min(n_bins) < 1:
        raise InputError("histogram", "n_bins", f"{n_dims} positive integers, got {n_bins}")

    positive = np.clip(weights, 0.0, None)
    sums = positive.sum(axis=1, keepdims=True)
    quantile_weights = (positive / np.where(sums > 0, sums, 1.0)).mean(axis=0)
    candidates = sorted(
        itertools.product(*(range(n, 0, -1) for n in n_bins)),
        key=lambda c: (-int(np.prod(c)), max(c) - min(c)),
    )
    best: tuple[int, Edges] | None = None
    for counts in candidates:
        if best is not None and int(np.prod(counts)) <= best[0]:
            break
        quantile = [
            _quantile_edges(values[:, a], quantile_weights, n) for a, n in enumerate(counts)
        ]
        edges = _merge_until_bounded(values, weights, quantile, max_relative_uncertainty)
        filled = bin_sums(bin_index(values, edges), bin_count(edges), weights**2).max(axis=0)
        n_filled = int(np.count_nonzero(filled))
        if best is None or n_filled > best[0]:
            best = (n_filled, edges)
    assert best is not None
    return best[1]


def _merge_until_bounded(
    values: np.ndarray, weights: np.ndarray, fine_edges: list[np.ndarray], bound: float
) -> Edges:
    """Greedy merging of a quantile grid until every non-empty bin meets the bound."""
    fine_shape = bins_shape(fine_edges)
    index = bin_index(values, fine_edges)
    s = bin_sums(index, bin_count(fine_edges), weights).reshape(-1, *fine_shape)
    s2 = bin_sums(index, bin_count(fine_edges), weights**2).reshape(-1, *fine_shape)
    cuts = [np.arange(n) for n in fine_shape]
    while True:
        rel = _relative_uncertainty(_merged_sums(s, cuts), _merged_sums(s2, cuts)).max(axis=0)
        worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
        if rel[worst] <= bound or all(len(c) == 1 for c in cuts):
            break
        cuts = _merge_worst(s, s2, cuts, worst)
    return tuple(np.concatenate((e[c], e[-1:])) for e, c in zip(fine_edges, cuts, strict=True))


def _merge_worst(
    s: np.ndarray, s2: np.ndarray, cuts: list[np.ndarray], worst: tuple[int, ...]
) -> list[np.ndarray]:
    """Remove the one cut next to bin ``worst`` that leaves the merged bin most precise."""
    best: tuple[float, int, int] | None = None
    for axis, starts in enumerate(cuts):
        for neighbour in (worst[axis] - 1, worst[axis] + 1):
            if not 0 <= neighbour < len(starts):
                continue
            removed = max(neighbour, worst[axis])
            trial = [*cuts[:axis], np.delete(starts, removed), *cuts[axis + 1 :]]
            merged_bin = list(worst)
            merged_bin[axis] = min(neighbour, worst[axis])
            rel = _relative_uncertainty(_merged_sums(s, trial), _merged_sums(s2, trial))
            score = float(rel[(slice(None), *merged_bin)].max())
            if best is None or score < best[0]:
                best = (score, axis, removed)
    assert best is not None  # at least one axis has more than one bin
    _, axis, removed = best
    return [*cuts[:axis], np.delete(cuts[axis], removed), *cuts[axis + 1 :]]
