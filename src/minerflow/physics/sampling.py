"""Augmented training samples: unweighted events at chosen θ with their joint ratio and score.

The event file holds weighted events ``w_i,b`` at a few benchmarks; morphing gives the
weight at any θ, ``dσ_i(θ) = Σ_b w_b(θ) w_i,b``. Drawing events with probability
``p_i(θ) = dσ_i(θ) / Σ_j dσ_j(θ)`` (with replacement) gives an unweighted sample
``x ~ p(x|θ)``; because every event also carries its latent history z, the same weights give
the *joint* quantities the SALLY/ALICES/RASCAL family of losses needs
(arXiv:1805.00013, 1805.00020, 1808.00973):

* joint likelihood ratio ``r(x,z|θa,θb) = (dσ(z|θa)/σ(θa)) / (dσ(z|θb)/σ(θb))``,
* joint score ``t(x,z|θ) = ∇θ dσ(z|θ)/dσ(z|θ) − ∇θ σ(θ)/σ(θ)``.

Speed: one pass over each partition gives the per-group sums ``S_g = Σ w_i`` and
second moments ``Q_g = Σ w_i w_iᵀ`` (g = generating benchmark), from which every σ(θ), ∇σ(θ)
and Monte-Carlo uncertainty follows in closed form; the unweighting then evaluates the
weights of all sampling points of a call that draw from the same events (in closest-benchmark
mode: one benchmark's run) as one matrix product, then cumulative sums and ``searchsorted``,
instead of rescanning the file per θ as MadMiner does. A partition that fits in
``max_cached_bytes`` is read once and kept in memory; larger ones are streamed in chunks.

Decisions where we depart from MadMiner's ``SampleAugmenter`` (each documented where made):

1. Partitions tile the file exactly (MadMiner drops one event at each boundary) and their
   weight correction is the exact inverse fraction of events in the partition.
2. In :meth:`SampleAugmenter.sample_train_ratio` the y=1 half uses the *same* θ0 points as
   the y=0 half (MadMiner redraws random θ0 for the y=1 half).
3. Negative weights get probability 0 and the remaining probabilities are renormalised over
   the positive weights (MadMiner normalises by the signed sum, so its cumulative sum can
   exceed 1 and cut off the last events of the file).
4. Samples are split over parameter points so they add up to exactly ``n_samples``, and every
   output is jointly shuffled (MadMiner keeps rows grouped by θ, so a trailing validation
   split would see only the last θ points).
5. Every output includes ``event_index``, the file row each sample row came from, so it can
   be checked that no training event enters a test sample.
6. Splits outside [0, 1] are an error (MadMiner silently samples from the whole file).

As in MadMiner, σ(θ) in r and t is the signed sum over the events a sample draws from
(negative weights included: it is the cross-section estimate), and x, θ, r, t are float32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from minerflow.errors import InputError
from minerflow.io.madminer_file import EventFile, k_factors, read_event_file
from minerflow.physics.parameters import ThetaSpec, resolve_thetas

__all__ = [
    "LARGE_XSEC_UNCERTAINTY",
    "SMALL_N_EFFECTIVE",
    "Partition",
    "PartitionName",
    "SampleAugmenter",
    "SamplingWarning",
    "partitions",
]

PartitionName = Literal["train", "validation", "test", "all"]

#: Below this many effective events a sample is dominated by a handful of heavy events.
SMALL_N_EFFECTIVE = 100.0
#: Relative Monte-Carlo uncertainty of σ(θ) above which the sample is flagged.
LARGE_XSEC_UNCERTAINTY = 0.1
#: Elements of one (events × θ) block of morphed weights: bounds memory (≈ 130 MB float64).
_BLOCK_ELEMENTS = 1 << 24


class SamplingWarning(UserWarning):
    """A sample that is statistically weak: few effective events, noisy σ, negative weights."""


@dataclass(frozen=True)
class Partition:
    """Events ``[start, stop)`` of a file of ``n_total`` events, in file order.

    ``correction_factor = n_total / n_events`` rescales summed weights so they estimate the
    full cross section (the file is pre-shuffled, so a slice is a random subsample).
    """

    name: str
    start: int
    stop: int
    n_total: int

    @property
    def n_events(self) -> int:
        """Number of events in the partition."""
        return self.stop - self.start

    @property
    def correction_factor(self) -> float:
        """Exact inverse fraction of the file's events that lie in this partition."""
        if self.n_events == 0:
            raise InputError("partition", self.name, "a non-empty partition (it has no events)")
        return self.n_total / self.n_events


def partitions(n_events: int, test_split: float, validation_split: float) -> dict[str, Partition]:
    """Train / validation / test / all ranges of a file of ``n_events`` events.

    Train is the first ``round((1 − test − val)·N)`` events, validation runs up to
    ``round((1 − test)·N)``, test takes the rest. The three tile ``[0, N)`` exactly: no event
    is lost or shared (MadMiner skips one event at each boundary). Splits must lie in [0, 1]
    with ``test + val ≤ 1`` (MadMiner silently falls back to the whole file instead).

    >>> {k: (p.start, p.stop) for k, p in partitions(10, 0.2, 0.2).items()}
    {'train': (0, 6), 'validation': (6, 8), 'test': (8, 10), 'all': (0, 10)}
    """
    for key, value in (("test_split", test_split), ("validation_split", validation_split)):
        if not 0.0 <= value <= 1.0:
            raise InputError("sampling", key, f"a fraction in [0, 1], got {value}")
    if test_split + validation_split > 1.0:
        raise InputError(
            "sampling",
            "validation_split",
            f"test_split + validation_split ≤ 1, got {test_split} + {validation_split}",
        )
    if n_events < 0:
        raise InputError("sampling", "n_events", f"a non-negative count, got {n_events}")
    train_stop = round((1.0 - test_split - validation_split) * n_events)
    test_start = max(train_stop, round((1.0 - test_split) * n_events))
    bounds = {
        "train": (0, train_stop),
        "validation": (train_stop, test_start),
        "test": (test_start, n_events),
        "all": (0, n_events),
    }
    return {name: Partition(name, lo, hi, n_events) for name, (lo, hi) in bounds.items()}


@dataclass(frozen=True)
class _Stats:
    """Per-group weight sums of one partition; group g = generating benchmark + 1 (0 = bkg)."""

    sums: np.ndarray  # (n_g, n_b)   Σ_i w_i
    squares: np.ndarray  # (n_g, n_b, n_b)   Σ_i w_i w_iᵀ
    counts: np.ndarray  # (n_g,)


@dataclass(frozen=True)
class _Draw:
    """Rows drawn by :meth:`SampleAugmenter._draw`, ordered by set."""

    index: np.ndarray  # (n,) file row of each drawn event
    x: np.ndarray  # (n, n_x)
    weights: np.ndarray  # (n, n_b) raw benchmark weights of the drawn events
    set_of_row: np.ndarray  # (n,) sampling set of each row
    set_sums: np.ndarray  # (n_sets, n_b) Σ of coefficient-scaled weights each set samples from
    n_effective: float


@dataclass(frozen=True)
class _Chunk:
    start: int  # file row of the first event
    x: np.ndarray
    weights: np.ndarray
    groups: np.ndarray  # sampling benchmark + 1
    _members: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)

    def rows_in(self, groups: np.ndarray) -> np.ndarray:
        """Rows (in file order) of the events generated in ``groups``; memoised, since a
        cached partition is reused by every draw."""
        key = tuple(int(g) for g in groups)
        if key not in self._members:
            self._members[key] = np.flatnonzero(np.isin(self.groups, groups))
        return self._members[key]


@dataclass(frozen=True)
class _Picks:
    """Output buffers of one draw, filled block by block."""

    index: np.ndarray
    x: np.ndarray
    weights: np.ndarray
    n_eff: np.ndarray  # per distinct θ
    negative: np.ndarray  # per distinct θ: events with dσ_i(θ) < 0


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` along the first axis; ``np.take`` is many times faster than fancy
    indexing for narrow 2-D arrays."""
    return np.take(array, rows, axis=0)


def _split_counts(n: int, n_sets: int) -> np.ndarray:
    """``n`` split over ``n_sets`` as evenly as possible (the first ones get one more)."""
    base, extra = divmod(int(n), n_sets)
    counts = np.full(n_sets, base, dtype=np.int64)
    counts[:extra] += 1
    return counts


def _cycle(thetas: np.ndarray, n_sets: int) -> np.ndarray:
    """Repeat a list of points cyclically to ``n_sets`` rows (MadMiner's set layout)."""
    return thetas[np.arange(n_sets) % len(thetas)]


def _single_spec_sampler(
    name: str, score: bool, default_partition: PartitionName, doc: str
) -> Callable[..., dict[str, np.ndarray]]:
    """A public ``SampleAugmenter.<name>`` method: draw at the points of one θ spec.

    The four single-spec samplers differ only in whether they add ``t_xz`` and in their
    default partition, so they share this one signature (see ``SampleAugmenter._single``).
    """

    def sample(
        self: SampleAugmenter,
        theta: ThetaSpec | np.ndarray,
        n_samples: int,
        rng: np.random.Generator,
        partition: PartitionName = default_partition,
    ) -> dict[str, np.ndarray]:
        return self._single(theta, n_samples, rng, partition, score=score)

    sample.__name__, sample.__qualname__ = name, f"SampleAugmenter.{name}"
    sample.__doc__ = doc
    return sample


class SampleAugmenter:
    """Draw augmented training and test samples from a MadMiner event file.

    ``sample_only_from_closest_benchmark`` (MadMiner's default): a sample at θ uses only
    events generated at the physics benchmark nearest to θ (Euclidean, benchmarks with
    generated events only), plus background, whose weights at θ vary least. Otherwise all
    events are used, each scaled by its run's k-factor
    (:func:`~minerflow.io.madminer_file.k_factors`).

    Every ``sample_*`` method takes a θ spec (:mod:`minerflow.physics.parameters`) or an
    explicit ``(n_sets, n_p)`` array, the number of samples and a ``numpy`` generator, and
    returns a dict keyed by MadMiner's file stems (``x``, ``theta``/``theta0``/``theta1``, ``y``,
    ``r_xz``, ``t_xz``/``t_xz0``/``t_xz1``) plus ``event_index`` and ``n_effective``
    (``1 / max_i p_i``, the minimum over the sampling points). x, θ, r and t are float32 and
    y float64, as MadMiner writes them.
    """

    def __init__(
        self,
        event_file: EventFile | str | os.PathLike[str],
        test_split: float = 0.2,
        validation_split: float = 0.2,
        sample_only_from_closest_benchmark: bool = True,
        *,
        chunk_size: int = 1 << 18,
        max_cached_bytes: int = 1 << 30,
    ) -> None:
        self.event_file = (
            event_file if isinstance(event_file, EventFile) else read_event_file(event_file)
        )
        self.header = self.event_file.header
        self.partitions = partitions(self.header.n_events, test_split, validation_split)
        self.sample_only_from_closest_benchmark = sample_only_from_closest_benchmark
        if chunk_size < 1:
            raise InputError("sampling", "chunk_size", f"a positive integer, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.max_cached_bytes = int(max_cached_bytes)
        self._morpher = self.header.morpher() if self.header.has_morphing else None
        self._cache: dict[str, _Chunk] = {}
        self._stats: dict[str, _Stats] = {}
        n_phys = self.header.n_physics_benchmarks
        # k-factor of each group (background, then each physics benchmark)
        self._group_k = k_factors(self.header, np.arange(-1, n_phys))

    # ----------------------------------------------------------------------------- reading
    def _chunks(self, partition: Partition) -> Iterator[_Chunk]:
        """The partition's events in chunks of ``chunk_size``, read from the file.

        A partition that fits in ``max_cached_bytes`` is read once and then served from memory
        as a single chunk (one pass per draw instead of two).
        """
        if partition.name in self._cache:
            yield self._cache[partition.name]
            return
        n_cols = self.header.n_observables + self.header.n_physics_benchmarks + 1
        cacheable = partition.n_events * n_cols * 8 <= self.max_cached_bytes
        kept: list[_Chunk] = []
        for chunk in self.event_file.iter_chunks(self.chunk_size, partition.start, partition.stop):
            item = _Chunk(
                chunk.start, chunk.observations, chunk.weights, chunk.sampling_benchmarks + 1
            )
            if cacheable:
                kept.append(item)
            yield item
        if cacheable and kept:
            self._cache[partition.name] = _Chunk(
                partition.start,
                np.concatenate([c.x for c in kept]),
                np.concatenate([c.weights for c in kept]),
                np.concatenate([c.groups for c in kept]),
            )

    def _partition(self, name: str) -> Partition:
        if name not in self.partitions:
            known = list(self.partitions)
            raise InputError("sampling", "partition", f"one of {known}, got {name!r}")
        partition = self.partitions[name]
        if partition.n_events == 0:
            raise InputError(
                self.event_file.path, "partition", f"events in the {name} partition (it is empty)"
            )
        return partition

    def _partition_stats(self, partition: Partition) -> _Stats:
        """Per-group Σw and Σwwᵀ of a partition (one pass, then cached)."""
        if partition.name not in self._stats:
            n_b = self.header.n_physics_benchmarks
            sums = np.zeros((n_b + 1, n_b))
            squares = np.zeros((n_b + 1, n_b, n_b))
            counts = np.zeros(n_b + 1, dtype=np.int64)
            for chunk in self._chunks(partition):
                order = np.argsort(chunk.groups, kind="stable")
                sorted_weights = _take(chunk.weights, order)
                sizes = np.bincount(chunk.groups, minlength=n_b + 1)
                bounds = np.concatenate([[0], np.cumsum(sizes)])
                for g in np.flatnonzero(sizes):
                    w = sorted_weights[bounds[g] : bounds[g + 1]]
                    sums[g] += w.sum(axis=0)
                    squares[g] += w.T @ w
                counts += sizes
            self._stats[partition.name] = _Stats(sums, squares, counts)
        return self._stats[partition.name]

    # ----------------------------------------------------------------------------- morphing
    def _morph(self, thetas: np.ndarray) -> np.ndarray:
        """Morphing weights ``w_b(θ)`` (n_theta, n_b); without morphing, benchmarks only."""
        if self._morpher is not None:
            return self._morpher.weights(thetas)
        values = self.header.benchmark_values[: self.header.n_physics_benchmarks]
        match = np.all(np.isclose(thetas[:, None, :], values[None], rtol=0, atol=1e-12), axis=2)
        if not match.any(axis=1).all():
            bad = thetas[~match.any(axis=1)][0].tolist()
            raise InputError(
                self.event_file.path, "morphing", f"a morphing group to sample at θ={bad}"
            )
        return (match.argmax(axis=1)[:, None] == np.arange(values.shape[0])[None, :]).astype(float)

    def _morph_gradients(self, thetas: np.ndarray) -> np.ndarray:
        """``∂w_b/∂θ`` (n_theta, n_p, n_b); needs the file's morphing group."""
        if self._morpher is None:
            raise InputError(self.event_file.path, "morphing", "a morphing group for t(x,z)")
        return self._morpher.weight_gradients(thetas)

    def _closest(self, thetas: np.ndarray) -> np.ndarray:
        """Group (benchmark + 1) of the physics benchmark nearest to each θ, among those with
        generated events; 0 (background only) if no benchmark has events."""
        n_phys = self.header.n_physics_benchmarks
        generated = self.header.signal_events
        if generated is None:
            generated = self._partition_stats(self.partitions["all"]).counts[1:]
        values = self.header.benchmark_values[:n_phys]
        distance = np.linalg.norm(thetas[:, None, :] - values[None], axis=2)
        distance[:, np.asarray(generated[:n_phys]) <= 0] = np.inf
        if not np.isfinite(distance).any():
            return np.zeros(len(thetas), dtype=np.int64)
        return 1 + distance.argmin(axis=1)

    def _coefficients(self, thetas: np.ndarray) -> np.ndarray:
        """Weight factor of each event group for samples drawn at each θ: (n_theta, n_g).

        Closest-benchmark mode: 1 for the nearest physics benchmark with generated events
        and for background, 0 elsewhere (no k-factor: one run alone estimates σ). Otherwise
        the k-factor of every group.
        """
        n_g = self.header.n_physics_benchmarks + 1
        if not self.sample_only_from_closest_benchmark:
            return np.broadcast_to(self._group_k, (len(thetas), n_g)).copy()
        coefficients = np.zeros((len(thetas), n_g))
        coefficients[:, 0] = 1.0
        coefficients[np.arange(len(thetas)), self._closest(thetas)] = 1.0
        return coefficients

    def _populations(self, thetas: np.ndarray) -> list[tuple[np.ndarray | None, np.ndarray]]:
        """Sampling points grouped by the events they draw from: (groups or None = all, columns).

        Closest-benchmark mode: one population per nearest benchmark (its run + background),
        so each θ only touches the events it may use. Otherwise all events, k-factored.
        """
        if not self.sample_only_from_closest_benchmark:
            return [(None, np.arange(len(thetas)))]
        closest = self._closest(thetas)
        return [
            (np.unique([0, group]), np.flatnonzero(closest == group))
            for group in np.unique(closest)
        ]

    # ----------------------------------------------------------------------------- drawing
    def _draw(
        self, partition: Partition, thetas: np.ndarray, counts: np.ndarray, rng: np.random.Generator
    ) -> _Draw:
        """Draw ``counts[j]`` events at ``thetas[j]`` for every set j, with replacement.

        Probabilities ``p_i ∝ max(dσ_i(θ), 0)`` over the events the set may use. All distinct
        θ are unweighted together: per chunk of events one matrix product gives ``dσ`` for
        every θ, a cumulative sum per θ, and ``searchsorted`` of uniform numbers picks the
        events. The uniforms are drawn before any pass and events stay in file order, so the
        result does not depend on the chunk size. Rows come back ordered by set.
        """
        stats = self._partition_stats(partition)
        unique, inverse = np.unique(thetas, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        u_weights = self._morph(unique)
        self._check_xsec(unique, u_weights, self._coefficients(unique), stats)
        # output rows of each distinct θ, in set order
        starts = np.concatenate([[0], np.cumsum(counts)])
        rows_of = [
            np.concatenate(
                [np.arange(starts[j], starts[j + 1]) for j in np.flatnonzero(inverse == q)]
            )
            for q in range(len(unique))
        ]
        fractions = [rng.random(len(rows)) for rows in rows_of]
        n_total = int(starts[-1])
        out = _Picks(
            index=np.empty(n_total, dtype=np.int64),
            x=np.empty((n_total, self.header.n_observables)),
            weights=np.empty((n_total, self.header.n_physics_benchmarks)),
            n_eff=np.full(len(unique), np.inf),
            negative=np.zeros(len(unique), dtype=np.int64),
        )
        for groups, columns in self._populations(unique):
            columns = columns[[len(rows_of[q]) > 0 for q in columns]]
            n_events = int(stats.counts.sum() if groups is None else stats.counts[groups].sum())
            if partition.name not in self._cache:
                n_events = min(n_events, self.chunk_size)
            block = max(1, _BLOCK_ELEMENTS // max(n_events, 1))
            for lo in range(0, len(columns), block):
                cols = columns[lo : lo + block]
                self._draw_block(
                    partition, groups, cols, unique, u_weights, rows_of, fractions, out
                )
        self._warn_sample(unique, out.n_eff, out.negative, rows_of, partition)
        drawn = [q for q in range(len(unique)) if len(rows_of[q])]
        return _Draw(
            index=out.index,
            x=out.x,
            weights=out.weights,
            set_of_row=np.repeat(np.arange(len(thetas)), counts),
            set_sums=self._coefficients(thetas) @ stats.sums,
            n_effective=float(out.n_eff[drawn].min()) if drawn else float("inf"),
        )

    def _draw_block(
        self,
        partition: Partition,
        groups: np.ndarray | None,
        cols: np.ndarray,
        unique: np.ndarray,
        u_weights: np.ndarray,
        rows_of: Sequence[np.ndarray],
        fractions: Sequence[np.ndarray],
        out: _Picks,
    ) -> None:
        """Unweight the θ columns ``cols`` over the events of ``groups`` (None: all, k-factored).

        One pass over the partition when it is cached (a single chunk), else two: the first
        gives each chunk's total per θ, the second picks the events.
        """
        morph = u_weights[cols]  # (n_cols, n_b)
        largest = np.zeros(len(cols))

        def cumulative(chunk: _Chunk, first_pass: bool) -> tuple[np.ndarray | None, np.ndarray]:
            rows = None if groups is None else chunk.rows_in(groups)
            weights = chunk.weights if rows is None else _take(chunk.weights, rows)
            if groups is None:
                weights = weights * self._group_k[chunk.groups][:, None]
            dsigma = morph @ weights.T  # (n_cols, n_rows): each θ a contiguous row
            if first_pass:
                out.negative[cols] += (dsigma < 0).sum(axis=1)
            np.maximum(dsigma, 0.0, out=dsigma)
            if first_pass and dsigma.shape[1]:
                np.maximum(largest, dsigma.max(axis=1), out=largest)
            np.cumsum(dsigma, axis=1, out=dsigma)
            return rows, dsigma

        kept: list[tuple[_Chunk, np.ndarray | None, np.ndarray]] = []
        chunk_totals = []
        for chunk in self._chunks(partition):
            rows, cum = cumulative(chunk, first_pass=True)
            chunk_totals.append(cum[:, -1] if cum.shape[1] else np.zeros(len(cols)))
            kept.append((chunk, rows, cum))
        if len(kept) > 1:  # not cached: free the sums, recompute them chunk by chunk below
            kept = []
        ends = np.cumsum(chunk_totals, axis=0)  # (n_chunks, n_cols)
        totals = ends[-1]
        if (totals <= 0).any():
            bad = unique[cols[np.flatnonzero(totals <= 0)[0]]]
            raise InputError(
                self.event_file.path,
                partition.name,
                f"events with positive weight at θ={bad.round(4).tolist()} among the events "
                "a sample there may use",
            )
        with np.errstate(divide="ignore"):
            out.n_eff[cols] = totals / largest
        targets = [fractions[q] * totals[k] for k, q in enumerate(cols)]
        in_chunk = [
            np.searchsorted(ends[:, k], targets[k], side="right").clip(max=len(ends) - 1)
            for k in range(len(cols))
        ]
        passes = kept or ((chunk, *cumulative(chunk, False)) for chunk in self._chunks(partition))
        for c, (chunk, rows, cum) in enumerate(passes):
            offset = ends[c - 1] if c else np.zeros(len(cols))
            for k, q in enumerate(cols):
                here = np.flatnonzero(in_chunk[k] == c)
                if not here.size:
                    continue
                needles = targets[k][here] - offset[k]
                order = np.argsort(needles)  # sorted needles: cache-friendly binary search
                local = np.empty(len(needles), dtype=np.int64)
                local[order] = np.searchsorted(cum[k], needles[order], side="right")
                overflow = local >= cum.shape[1]
                if overflow.any():  # rounding at the chunk's end: take its last positive event
                    local[overflow] = np.flatnonzero(np.diff(cum[k], prepend=0.0) > 0)[-1]
                position = local if rows is None else rows[local]
                target_rows = rows_of[q][here]
                out.index[target_rows] = chunk.start + position
                out.x[target_rows] = _take(chunk.x, position)
                out.weights[target_rows] = _take(chunk.weights, position)

    # ----------------------------------------------------------------------------- checks
    def _check_xsec(
        self, thetas: np.ndarray, weights: np.ndarray, coefficients: np.ndarray, stats: _Stats
    ) -> None:
        """Warn when σ(θ)'s Monte-Carlo uncertainty √(Σ dσ_i²) exceeds 10 % of σ(θ)."""
        sigma = np.einsum("tg,gb,tb->t", coefficients, stats.sums, weights)
        variance = np.einsum("tg,gbc,tb,tc->t", coefficients**2, stats.squares, weights, weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.sqrt(np.maximum(variance, 0.0)) / np.abs(sigma)
        noisy = ~(relative <= LARGE_XSEC_UNCERTAINTY)
        if noisy.any():
            worst = int(np.nanargmax(np.where(noisy, relative, -1.0)))
            warnings.warn(
                f"Monte-Carlo uncertainty of σ(θ) exceeds {LARGE_XSEC_UNCERTAINTY:.0%} at "
                f"{int(noisy.sum())} of {len(thetas)} sampling points (worst "
                f"{relative[worst]:.0%} at θ={thetas[worst].round(3).tolist()})",
                SamplingWarning,
                stacklevel=4,
            )

    def _warn_sample(
        self,
        thetas: np.ndarray,
        n_eff: np.ndarray,
        negative: np.ndarray,
        rows_of: Sequence[np.ndarray],
        partition: Partition,
    ) -> None:
        used = np.array([len(rows) > 0 for rows in rows_of])
        if (negative[used] > 0).any():
            warnings.warn(
                f"{int(negative[used].max())} events of the {partition.name} partition have a "
                f"negative weight at {int((negative[used] > 0).sum())} sampling point(s); they "
                "are given probability 0",
                SamplingWarning,
                stacklevel=4,
            )
        small = used & (n_eff < SMALL_N_EFFECTIVE)
        if small.any():
            worst = int(np.argmin(np.where(small, n_eff, np.inf)))
            warnings.warn(
                f"only {n_eff[worst]:.1f} effective events at θ={thetas[worst].round(3).tolist()} "
                f"({int(small.sum())} of {int(used.sum())} sampling points below "
                f"{SMALL_N_EFFECTIVE:.0f}): the sample repeats a few heavy events",
                SamplingWarning,
                stacklevel=4,
            )

    # ----------------------------------------------------------------------------- augmentation
    def _thetas(
        self,
        spec: ThetaSpec | np.ndarray,
        n_samples: int | None,
        rng: np.random.Generator | None,
    ) -> np.ndarray:
        """A spec or explicit array as a ``(n_sets, n_p)`` float64 array (≤ n_samples sets)."""
        if isinstance(spec, np.ndarray | list | tuple):
            thetas = np.asarray(spec, dtype=np.float64)
            thetas = thetas.reshape(1, -1) if thetas.ndim == 1 else thetas
            n_p = self.header.n_parameters
            if thetas.ndim != 2 or thetas.shape[1] != n_p or len(thetas) == 0:
                raise InputError("sampling", "theta", f"shape (n_sets, {n_p}), got {thetas.shape}")
            if n_samples is not None and len(thetas) > n_samples:
                raise InputError(
                    "sampling", "n_samples", f"at least {len(thetas)} samples, got {n_samples}"
                )
            return thetas
        return resolve_thetas(spec, self.header, n_samples, rng)

    def _relative(
        self, draw: _Draw, thetas: np.ndarray, which: np.ndarray, rows: np.ndarray, score: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``dσ_i(θ)/σ(θ)`` and optionally ``t(x,z|θ)`` for drawn ``rows`` at ``thetas[which]``.

        σ(θ) and ∇σ(θ) are sums over the events the row's set samples from, so the ratio of
        two such terms is the joint ratio estimated consistently from one event population.
        """
        unique, inverse = np.unique(thetas, axis=0, return_inverse=True)
        pick = inverse.reshape(-1)[which]
        morph = _take(self._morph(unique), pick)
        event_weights = _take(draw.weights, rows)
        set_sums = _take(draw.set_sums, draw.set_of_row[rows])
        dsigma = np.einsum("nb,nb->n", morph, event_weights)
        sigma = np.einsum("nb,nb->n", morph, set_sums)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = dsigma / sigma
        if not score:
            return relative, None
        gradient = _take(self._morph_gradients(unique), pick)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (
                np.einsum("npb,nb->np", gradient, event_weights) / dsigma[:, None]
                - np.einsum("npb,nb->np", gradient, set_sums) / sigma[:, None]
            )
        return relative, t

    def _single(
        self,
        theta: ThetaSpec | np.ndarray,
        n_samples: int,
        rng: np.random.Generator,
        partition: str,
        score: bool,
    ) -> dict[str, np.ndarray]:
        """x ~ p(x|θ) at the points of one spec, with θ and optionally t(x,z|θ)."""
        thetas = self._thetas(theta, n_samples, rng)
        counts = _split_counts(n_samples, len(thetas))
        draw = self._draw(self._partition(partition), thetas, counts, rng)
        rows = np.arange(len(draw.index))
        out = {"x": draw.x, "theta": _take(thetas, draw.set_of_row)}
        if score:
            out["t_xz"] = self._relative(draw, thetas, draw.set_of_row, rows, True)[1]
        return self._finish(out, draw.index, draw.n_effective, rng)

    @staticmethod
    def _finish(
        arrays: dict[str, np.ndarray | None],
        index: np.ndarray,
        n_effective: float,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Shuffle all rows jointly and cast to MadMiner's dtypes."""
        order = rng.permutation(len(index))
        out: dict[str, np.ndarray] = {}
        for key, value in arrays.items():
            if value is None:
                continue
            value = _take(np.asarray(value), order)
            out[key] = value.astype(np.float64 if key == "y" else np.float32)
            if key in ("y", "r_xz"):
                out[key] = out[key].reshape(-1, 1)
        out["event_index"] = index[order]
        out["n_effective"] = np.asarray(n_effective)
        return out

    # ----------------------------------------------------------------------------- public
    sample_train_plain = _single_spec_sampler(
        "sample_train_plain",
        False,
        "train",
        """Unweighted ``x ~ p(x|θ)`` with its θ: keys ``x``, ``theta``.""",
    )
    sample_train_local = _single_spec_sampler(
        "sample_train_local",
        True,
        "train",
        """Sample for local score methods (SALLY, SALLINO): ``x``, ``theta``, ``t_xz`` at θ.

        ``t(x,z|θ) = ∇θ dσ(z|θ)/dσ(z|θ) − ∇θ σ(θ)/σ(θ)`` (arXiv:1805.00020, eq. 16).
        """,
    )
    sample_train_density = _single_spec_sampler(
        "sample_train_density",
        True,
        "train",
        """Sample for density methods (NDE, SCANDAL): as the local one, θ usually from a prior.""",
    )
    sample_test = _single_spec_sampler(
        "sample_test",
        False,
        "test",
        """Unweighted evaluation sample from the test partition: ``x``, ``theta``.""",
    )

    def sample_train_ratio(
        self,
        theta0: ThetaSpec | np.ndarray,
        theta1: ThetaSpec | np.ndarray,
        n_samples: int,
        rng: np.random.Generator,
        partition: PartitionName = "train",
    ) -> dict[str, np.ndarray]:
        """Sample for ratio methods (CARL, ROLR, ALICE(S), RASCAL, CASCAL).

        Half the rows are drawn at θ0 (``y = 0``), half at θ1 (``y = 1``), jointly shuffled;
        every row carries ``theta0``, ``theta1``, ``r_xz = r(x,z|θ0,θ1)`` and
        ``t_xz = t(x,z|θ0)`` (arXiv:1805.00020, 1808.00973). The point lists of θ0 and θ1
        are cycled to a common number of sets; set k pairs ``θ0[k]`` with ``θ1[k]`` in *both*
        halves — MadMiner redraws random θ0 for the y=1 half, so its y=0 and y=1 rows see
        different θ0 and the classifier is asked to separate unmatched pairs. ``t_xz`` is
        left out for files without morphing.
        """
        return self._ratio((theta0, theta1), n_samples, rng, partition, more=False)

    def sample_train_more_ratios(
        self,
        theta0: ThetaSpec | np.ndarray,
        theta1: ThetaSpec | np.ndarray,
        n_samples: int,
        rng: np.random.Generator,
        additional_thetas: Sequence[ThetaSpec | np.ndarray] = (),
        partition: PartitionName = "train",
    ) -> dict[str, np.ndarray]:
        """Ratio sample for double-parameterised estimators: also ``t_xz0`` and ``t_xz1``.

        As :meth:`sample_train_ratio` (without ``t_xz``), plus the scores at both points.
        Each additional spec θe reuses the drawn events: the y=0 rows again with
        ``θ1 := θe`` and the y=1 rows again with ``θ0 := θe`` (labels stay: they say which
        of the two points the event was drawn from), so the sample grows by ``n_samples``
        rows per additional spec.
        """
        specs = (theta0, theta1, *additional_thetas)
        return self._ratio(specs, n_samples, rng, partition, more=True)

    def _ratio(
        self,
        specs: Sequence[ThetaSpec | np.ndarray],
        n_samples: int,
        rng: np.random.Generator,
        partition: str,
        more: bool,
    ) -> dict[str, np.ndarray]:
        """Ratio sample at ``specs`` = (θ0, θ1, additional θ...); ``more``: scores at both."""
        n_first, n_second = n_samples - n_samples // 2, n_samples // 2
        points0, points1, *extras = [self._thetas(s, n_second or n_first, rng) for s in specs]
        n_sets = max(len(points0), len(points1), *(len(e) for e in extras))
        sets0, sets1 = _cycle(points0, n_sets), _cycle(points1, n_sets)
        extra_sets = [_cycle(e, n_sets) for e in extras]
        counts = np.concatenate([_split_counts(n_first, n_sets), _split_counts(n_second, n_sets)])
        draw = self._draw(self._partition(partition), np.concatenate([sets0, sets1]), counts, rng)
        pair = draw.set_of_row % n_sets  # set k of each row, in both halves
        y = (draw.set_of_row >= n_sets).astype(np.float64)
        rows = np.arange(len(pair))
        # (θ0 list, θ1 list) per block of rows: the drawn rows, then one copy per extra point
        blocks = [(sets0, sets1, rows)]
        for extra in extra_sets:
            first, second = rows[y == 0], rows[y == 1]
            blocks += [(sets0, extra, first), (extra, sets1, second)]
        score = self._morpher is not None
        parts: dict[str, list[np.ndarray]] = {}
        for numerator, denominator, block_rows in blocks:
            which = pair[block_rows]
            rel0, t0 = self._relative(draw, numerator, which, block_rows, score)
            rel1, t1 = self._relative(draw, denominator, which, block_rows, score and more)
            with np.errstate(divide="ignore", invalid="ignore"):
                r_xz = rel0 / rel1
            values = {
                "x": _take(draw.x, block_rows),
                "theta0": _take(numerator, which),
                "theta1": _take(denominator, which),
                "y": y[block_rows],
                "r_xz": r_xz,
                **({"t_xz0": t0, "t_xz1": t1} if more else {"t_xz": t0}),
                "index": draw.index[block_rows],
            }
            for key, value in values.items():
                if value is not None:
                    parts.setdefault(key, []).append(value)
        arrays = {key: np.concatenate(value) for key, value in parts.items()}
        index = arrays.pop("index")
        return self._finish(dict(arrays), index, draw.n_effective, rng)

    def cross_sections(
        self,
        thetas: ThetaSpec | np.ndarray,
        partition: PartitionName = "all",
        rng: np.random.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """σ(θ), its Monte-Carlo uncertainty and ∇σ(θ) from a partition's weighted events.

        Always all events with k-factors (whatever the sampling mode) and the partition's
        correction factor, so the numbers estimate the full cross section:
        ``σ(θ) = f Σ_i k_i dσ_i(θ)``, ``δσ = f √(Σ_i (k_i dσ_i)²)``. Returns ``theta``,
        ``xsec``, ``xsec_uncertainty`` and, with morphing, ``xsec_gradient`` (n_theta, n_p).
        ``rng`` is needed only for random-point specs.
        """
        points = self._thetas(thetas, None, rng)
        part = self._partition(partition)
        stats = self._partition_stats(part)
        factor = part.correction_factor
        k = self._group_k
        morph = self._morph(points)
        total = k @ stats.sums
        out = {
            "theta": points,
            "xsec": factor * morph @ total,
            "xsec_uncertainty": factor
            * np.sqrt(np.einsum("g,gbc,tb,tc->t", k**2, stats.squares, morph, morph).clip(0)),
        }
        if self._morpher is not None:
            out["xsec_gradient"] = factor * self._morph_gradients(points) @ total
        return out
