"""Expected and observed asymptotic limits on a grid of parameter points.

For every grid point θ the extended log-likelihood of a data set is

    log L(θ) = log Pois(n | L·σ(θ))  +  n · Σ_i w_i ℓ_i(θ),

with ``ℓ_i(θ) = log p̂(x_i|θ)`` (or any ``log r̂(x_i|θ, θ_ref)``: the reference drops out of
differences), event weights ``w_i`` summing to one, ``n`` events and luminosity ``L``. Expected
limits use the Asimov data set (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727): the events of
a Monte-Carlo sample weighted by ``dσ_i(θ_true)/σ(θ_true)`` with ``n = L·σ(θ_true)``, not rounded,
so the maximum is at θ_true. The test statistic ``q(θ) = −2 [log L(θ) − max_θ' log L(θ')]``
follows a χ² distribution with as many degrees of freedom as parameters (Wilks), so
``p(θ) = χ²_sf(q(θ), dof)``; this is MadMiner's ``AsymptoticLimits`` (arXiv:1907.10621, sec. 4).

The modes differ only in ℓ: ``rate`` (none), ``histo`` (histograms of observables), ``ml`` (a
likelihood-ratio or density estimator), ``sally`` (histograms of an estimated score t̂(x)),
``sallino`` (1-D histograms of ``h = t̂·Δθ/|Δθ|``, Δθ = θ − θ_ref), ``truth`` (an exact
log-likelihood, e.g. the toy simulator's). Differences from MadMiner (its quirks, notes sec. 9):
cross section and Asimov data come from the same events; histograms use the binning of
:mod:`minerflow.physics.histograms` (bounded MC uncertainty; last-bin cap); the Asimov count is
not rounded. Work is batched over θ and events, so memory stays bounded on large grids.

Nuisance parameters ν (systematics; per-event factors ``exp(Σ a ν + b ν²)``, Gaussian
constraints ``−½|ν|²``) are profiled in the ``rate`` and ``histo`` modes: at each θ,
``log L_p(θ) = max_ν [log L(θ, ν) − ½|ν|²]`` by L-BFGS with analytic gradients, all points of
a batch in one optimisation (their problems are independent); the Asimov data are at ν = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from scipy import optimize, special, stats

from minerflow.errors import InputError
from minerflow.physics.histograms import (
    DEFAULT_FLOOR,
    Histogram,
    adaptive_edges,
    bin_index,
    bin_sums,
    bin_volumes,
    log_probabilities,
)

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFile, EventFileHeader
    from minerflow.physics.sampling import Partition

__all__ = [
    "MODES",
    "DensityEstimator",
    "LimitResult",
    "MorphedEvents",
    "Morphing",
    "NuisanceEffects",
    "RatioEstimator",
    "ScoreEstimator",
    "expected_limits",
    "log_poisson",
    "observed_limits",
    "p_values",
    "theta_grid",
]

Mode = Literal["rate", "histo", "ml", "sally", "sallino", "truth"]
MODES: tuple[str, ...] = ("rate", "histo", "ml", "sally", "sallino", "truth")
_SOURCE = "limits"
LogLikelihood = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Morphing(Protocol):
    """Anything that gives morphing weights and their θ-gradients (e.g. ``Morpher``)."""

    def weights(self, thetas: np.ndarray) -> np.ndarray: ...

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class RatioEstimator(Protocol):
    """A parameterised ratio estimator: log r̂(x|θ) for all (θ, x) pairs, ``(n_theta, n_x)``."""

    def evaluate_log_likelihood_ratio(
        self, x: np.ndarray, thetas: np.ndarray, test_all_combinations: bool = ...
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


@runtime_checkable
class DensityEstimator(Protocol):
    """A conditional density estimator: log p̂(x|θ) for all (θ, x) pairs, ``(n_theta, n_x)``."""

    def evaluate_log_likelihood(self, x: np.ndarray, thetas: np.ndarray) -> object: ...


@runtime_checkable
class ScoreEstimator(Protocol):
    """A local score estimator (SALLY): t̂(x) at its reference point, ``(n_x, n_p)``."""

    def evaluate_score(self, x: np.ndarray) -> np.ndarray: ...


def theta_grid(
    ranges: Sequence[tuple[float, float]], resolutions: int | Sequence[int]
) -> np.ndarray:
    """Regular grid ``(Π resolutions, n_p)``, first parameter slowest (as MadMiner).

    >>> theta_grid([(-1, 1), (0, 1)], [3, 2]).tolist()
    [[-1.0, 0.0], [-1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    if isinstance(resolutions, int | np.integer):
        resolutions = [int(resolutions)] * len(ranges)
    if len(resolutions) != len(ranges) or not ranges:
        raise InputError(_SOURCE, "resolutions", f"one per range ({len(ranges)})")
    axes = []
    for i, ((lo, hi), n) in enumerate(zip(ranges, resolutions, strict=True)):
        if n < 1 or not lo <= hi:
            raise InputError(_SOURCE, f"ranges[{i}]", f"min <= max and resolution >= 1, got {n}")
        axes.append(np.linspace(lo, hi, int(n)))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


@dataclass(frozen=True, eq=False)
class NuisanceEffects:
    """Per-event effect of nuisance parameters ν on the weights (MadMiner's nuisance morphing).

    ``dσ_i(θ, ν) = dσ_i(θ) · exp(Σ_j a_ij ν_j + b_ij ν_j²)``: ``linear`` holds a, ``quadratic``
    holds b, both ``(n_events, n_nuisance)``. Each ν_j has a Gaussian constraint N(0, 1).
    """

    names: tuple[str, ...]
    linear: np.ndarray
    quadratic: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.linear.shape[0], len(self.names))
        if self.linear.shape != shape or self.quadratic.shape != shape:
            raise InputError(_SOURCE, "nuisance", f"coefficients of shape {shape}")

    @classmethod
    def from_weights(
        cls,
        names: Sequence[str],
        reference: np.ndarray,
        positive: np.ndarray,
        negative: np.ndarray,
    ) -> NuisanceEffects:
        """Coefficients from weights at ν_j = 0 (``reference``, (n,)), +1 and −1 ((n, n_ν)).

        With both shifts ``a = ½ log(w₊/w₋)``, ``b = ½ log(w₊w₋/w₀²)`` (the exponent through
        the three points); where a column of ``negative`` is NaN, ``a = log(w₊/w₀)``, ``b = 0``.
        Undefined values (zero weights) become 0 and all are clipped to [−10, 10].
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.log(positive / reference[:, None])
            down = np.log(negative / reference[:, None])
            two_sided = ~np.isnan(negative).all(axis=0)
            linear = np.where(two_sided, 0.5 * (up - down), up)
            quadratic = np.where(two_sided, 0.5 * (up + down), 0.0)
        clean = [np.clip(np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0), -10, 10)
                 for c in (linear, quadratic)]  # fmt: skip
        return cls(tuple(names), clean[0], clean[1])

    def log_factors(self, nu: np.ndarray) -> np.ndarray:
        """``Σ_j a_ij ν_kj + b_ij ν_kj²`` for every ν row and event: ``(n_nu, n_events)``."""
        nu = np.atleast_2d(nu)
        return nu @ self.linear.T + (nu**2) @ self.quadratic.T


@dataclass(frozen=True, eq=False)
class MorphedEvents:
    """Weighted Monte-Carlo events whose weight at any θ comes from morphing.

    ``benchmark_weights`` are already corrected (k-factors, partition fraction), so that
    ``Σ_i dσ_i(θ)`` estimates the total cross section σ(θ) in pb.
    """

    observations: np.ndarray
    benchmark_weights: np.ndarray
    morpher: Morphing
    observable_names: tuple[str, ...] = ()
    nuisance: NuisanceEffects | None = None

    def __post_init__(self) -> None:
        x, w = self.observations, self.benchmark_weights
        if x.ndim != 2 or w.ndim != 2 or len(x) != len(w):
            raise InputError(_SOURCE, "events", f"(n, n_x) and (n, n_b), got {x.shape}, {w.shape}")
        if self.observable_names and len(self.observable_names) != x.shape[1]:
            raise InputError(_SOURCE, "observable_names", f"{x.shape[1]} names")
        if self.nuisance is not None and len(self.nuisance.linear) != len(x):
            raise InputError(_SOURCE, "nuisance", f"coefficients for {len(x)} events")

    @classmethod
    def from_event_file(
        cls, event_file: EventFile, partition: Partition | None = None
    ) -> MorphedEvents:
        """The events of ``partition`` (default: all), weights × k-factors × correction factor.

        With partitions that tile the file (:func:`minerflow.physics.sampling.partitions`), the
        test partition gives both the Asimov data and σ(θ), the training partition the templates.
        """
        from minerflow.io.madminer_file import k_factors

        header = event_file.header
        start, stop = (0, event_file.n_events)
        factor = 1.0
        if partition is not None:
            start, stop, factor = partition.start, partition.stop, partition.correction_factor
        weights = event_file.weights(start, stop, include_nuisance=bool(header.nuisance_parameters))
        ids = event_file.sampling_benchmarks(start, stop)
        weights *= (factor * k_factors(header, ids))[:, None]
        n_phys = header.n_physics_benchmarks
        return cls(
            observations=event_file.observations(start, stop),
            benchmark_weights=weights[:, :n_phys],
            morpher=header.morpher(),
            observable_names=tuple(header.observable_names),
            nuisance=_file_nuisance(header, weights) if header.nuisance_parameters else None,
        )

    def __len__(self) -> int:
        return len(self.observations)

    def weights(self, thetas: np.ndarray) -> np.ndarray:
        """Event weights ``dσ_i(θ)``: ``(n_theta, n_events)``."""
        return self.morpher.weights(np.atleast_2d(thetas)) @ self.benchmark_weights.T

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray:
        """``∇_θ dσ_i(θ)``: ``(n_theta, n_p, n_events)``."""
        return self.morpher.weight_gradients(np.atleast_2d(thetas)) @ self.benchmark_weights.T

    def cross_sections(self, thetas: np.ndarray) -> np.ndarray:
        """``σ(θ) = Σ_i dσ_i(θ)`` without forming per-event weights: ``(n_theta,)``."""
        return self.morpher.weights(np.atleast_2d(thetas)) @ self.benchmark_weights.sum(axis=0)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The observables called ``names``, ``(n_events, len(names))``."""
        return _columns(self.observations, self.observable_names, names)


def _file_nuisance(header: EventFileHeader, weights: np.ndarray) -> NuisanceEffects:
    """Nuisance coefficients from a file's nuisance benchmarks (weights at the reference θ)."""
    reference = weights[:, header.reference_benchmark_index or 0]
    nps = header.nuisance_parameters
    positive = np.column_stack(
        [weights[:, header.benchmark_index(n.benchmark_positive)] for n in nps]
    )
    negative = np.column_stack([
        weights[:, header.benchmark_index(n.benchmark_negative)]
        if n.benchmark_negative is not None else np.full(len(weights), np.nan)
        for n in nps
    ])  # fmt: skip
    return NuisanceEffects.from_weights([n.name for n in nps], reference, positive, negative)


def _columns(x: np.ndarray, known: Sequence[str], names: Sequence[str]) -> np.ndarray:
    index = []
    for name in names:
        if name not in known:
            raise InputError(_SOURCE, "observables", f"one of {list(known)}, got {name!r}")
        index.append(list(known).index(name))
    return x[:, index]


@dataclass(frozen=True, eq=False)
class LimitResult:
    """Limits on a grid: the log-likelihood-ratio map, its two terms, p-values and best fit.

    ``kinematic`` is ``n · Σ_i w_i ℓ_i(θ)`` and ``rate`` the Poisson log-probability, both
    before the maximum is subtracted (zeros where a term is not included);
    ``log_likelihood_ratio`` is their sum (plus ``constraint``) minus its maximum (≤ 0).
    With nuisance parameters profiled, every term is taken at the profiled ``nuisance_values``
    (``(n_grid, n_ν)``) and ``constraint`` is ``−½|ν̂|²``; otherwise both are None/zeros.
    """

    mode: str
    grid: np.ndarray
    log_likelihood_ratio: np.ndarray
    kinematic: np.ndarray
    rate: np.ndarray
    p_values: np.ndarray
    best_fit_index: int
    dof: int
    n_events: float
    histograms: tuple[Histogram, ...] = field(default=())
    constraint: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nuisance_values: np.ndarray | None = None

    @property
    def best_fit(self) -> np.ndarray:
        """The grid point with the largest likelihood."""
        return self.grid[self.best_fit_index]

    @property
    def test_statistic(self) -> np.ndarray:
        """``q(θ) = −2 Δlog L(θ)``."""
        return -2.0 * self.log_likelihood_ratio

    def allowed(self, confidence_level: float) -> np.ndarray:
        """Mask of grid points inside the region at ``confidence_level`` (p > 1 − CL)."""
        return self.p_values > 1.0 - confidence_level


def log_poisson(n: float | np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``log Pois(n|μ) = n log μ − μ − log Γ(n+1)`` for real n ≥ 0 (Asimov counts), −inf for μ ≤ 0.

    >>> float(log_poisson(2, np.array([3.0]))[0]) == float(np.log(9 / 2) - 3)
    True
    """
    mu = np.asarray(mu, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = special.xlogy(n, mu) - mu - special.gammaln(np.asarray(n, np.float64) + 1.0)
    return np.where(mu > 0, value, -np.inf)


def p_values(log_likelihood: np.ndarray, dof: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Subtract the maximum and return ``(Δlog L, p, best index)``; ``p = χ²_sf(−2Δlog L, dof)``.

    >>> round(float(p_values(np.array([0.0, -1.0]), 1)[1][1]), 6)  # q = 2, one dof
    0.157299
    """
    best = int(np.argmax(log_likelihood))
    delta = log_likelihood - log_likelihood[best]
    return delta, stats.chi2.sf(-2.0 * delta, dof), best


@dataclass(frozen=True)
class _Data:
    """The data a likelihood is evaluated on: events, normalised weights, event count."""

    x: np.ndarray
    weights: np.ndarray
    n_events: float


@dataclass(frozen=True)
class _Batching:
    max_pairs: int

    def event_slices(self, n: int) -> list[slice]:
        step = max(1, min(n, self.max_pairs))
        return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), step)]

    def theta_slices(self, n_theta: int, n_events: int) -> list[slice]:
        step = max(1, self.max_pairs // max(1, min(n_events, self.max_pairs)))
        return [slice(i, min(i + step, n_theta)) for i in range(0, n_theta, step)]


def _pointwise_term(
    evaluate: LogLikelihood, data: _Data, grid: np.ndarray, batching: _Batching, what: str
) -> np.ndarray:
    """``Σ_i w_i ℓ_i(θ)`` for ℓ given per (θ, x) pair, batched over θ and events."""
    out = np.zeros(len(grid))
    for ts in batching.theta_slices(len(grid), len(data.x)):
        for es in batching.event_slices(len(data.x)):
            values = np.asarray(evaluate(data.x[es], grid[ts]), dtype=np.float64)
            if values.shape != (ts.stop - ts.start, es.stop - es.start):
                raise InputError(what, "output", f"shape (n_theta, n_x), got {values.shape}")
            if not np.isfinite(values).all():
                raise InputError(what, "output", "finite log-likelihood values")
            out[ts] += values @ data.weights[es]
    return out


def _estimator_function(estimator: object) -> LogLikelihood:
    """ℓ(x, θ) of a density estimator (log p̂) or, failing that, a ratio estimator (log r̂)."""
    if isinstance(estimator, DensityEstimator):

        def density(x: np.ndarray, thetas: np.ndarray) -> np.ndarray:
            value = estimator.evaluate_log_likelihood(x, thetas)
            return value[0] if isinstance(value, tuple) else value

        return density
    if isinstance(estimator, RatioEstimator):

        def ratio(x: np.ndarray, thetas: np.ndarray) -> np.ndarray:
            return estimator.evaluate_log_likelihood_ratio(x, thetas, test_all_combinations=True)[0]

        return ratio
    raise InputError(_SOURCE, "estimator", "a ratio or density estimator for mode 'ml'")


@dataclass(frozen=True)
class _HistogramSettings:
    bins: int | Sequence[int] | Sequence[np.ndarray] | None
    max_relative_uncertainty: float
    keep: bool


@dataclass(frozen=True)
class _Binning:
    """One binning of a summary statistic for the whole grid, and the data's mass per bin."""

    edges: tuple[np.ndarray, ...]
    template_index: np.ndarray
    data_mass: np.ndarray
    log_volume: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.log_volume)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(e) - 1 for e in self.edges)


def _fixed_binning(
    summary_data: np.ndarray,
    summary_templates: np.ndarray,
    data: _Data,
    templates: MorphedEvents,
    grid: np.ndarray,
    settings: _HistogramSettings,
) -> _Binning:
    """Explicit edges, or adaptive ones on the templates weighted by the grid average of the
    normalised weights ``dσ_i(θ)/σ(θ)`` (linear in the benchmark weights: O(n_grid) cost)."""
    sigma = templates.cross_sections(grid)
    if np.any(sigma <= 0):
        raise InputError(_SOURCE, "cross section", "positive σ(θ) at every grid point")
    edges = _explicit_edges(settings.bins, summary_templates.shape[1])
    if edges is None:
        mean_morphing = (templates.morpher.weights(grid) / sigma[:, None]).mean(axis=0)
        edges = adaptive_edges(
            summary_templates,
            templates.benchmark_weights @ mean_morphing,
            settings.bins,  # type: ignore[arg-type]
            settings.max_relative_uncertainty,
        )
    n_bins = int(np.prod([len(e) - 1 for e in edges]))
    return _Binning(
        edges=edges,
        template_index=bin_index(summary_templates, edges),
        data_mass=bin_sums(bin_index(summary_data, edges), n_bins, data.weights),
        log_volume=np.log(bin_volumes(edges)).ravel(),
    )


def _fixed_histogram_term(
    binning: _Binning,
    templates: MorphedEvents,
    grid: np.ndarray,
    settings: _HistogramSettings,
    batching: _Batching,
) -> tuple[np.ndarray, tuple[Histogram, ...]]:
    """``Σ_i w_i log f̂(s(x_i)|θ)`` for every θ, templates reweighted batch by batch."""
    out = np.zeros(len(grid))
    kept: list[Histogram] = []
    for ts in batching.theta_slices(len(grid), len(templates)):
        w = templates.weights(grid[ts])
        sums = bin_sums(binning.template_index, binning.n_bins, w)
        out[ts] = (log_probabilities(sums) - binning.log_volume) @ binning.data_mass
        if settings.keep:
            kept += _histograms(binning, w, sums)
    return out, tuple(kept)


def _histograms(binning: _Binning, weights: np.ndarray, sums: np.ndarray) -> list[Histogram]:
    sums2 = bin_sums(binning.template_index, binning.n_bins, weights**2)
    return [
        Histogram(binning.edges, s.reshape(binning.shape), s2.reshape(binning.shape))
        for s, s2 in zip(sums, sums2, strict=True)
    ]


def _explicit_edges(
    bins: int | Sequence[int] | Sequence[np.ndarray] | None, n_dims: int
) -> tuple[np.ndarray, ...] | None:
    if bins is None or isinstance(bins, int | np.integer):
        return None
    items = list(bins)
    if all(isinstance(b, int | np.integer) for b in items):
        return None
    if len(items) != n_dims:
        raise InputError(_SOURCE, "bins", f"edges for {n_dims} dimensions, got {len(items)}")
    return tuple(np.asarray(b, dtype=np.float64) for b in items)


def _sallino_term(
    scores_data: np.ndarray,
    scores_templates: np.ndarray,
    data: _Data,
    templates: MorphedEvents,
    grid: np.ndarray,
    theta_ref: np.ndarray,
    settings: _HistogramSettings,
    batching: _Batching,
) -> tuple[np.ndarray, tuple[Histogram, ...]]:
    """``Σ_i w_i log f̂(h(x_i;θ)|θ)``, ``h = t̂·Δθ/|Δθ|``, a 1-D adaptive binning per θ."""
    delta = grid - theta_ref
    norm = np.linalg.norm(delta, axis=1)
    direction = np.where(
        (norm > 1e-6)[:, None], delta / np.where(norm > 1e-6, norm, 1.0)[:, None], 0.0
    )
    direction[norm <= 1e-6, 0] = 1.0
    explicit = _explicit_edges(settings.bins, 1)
    out = np.zeros(len(grid))
    kept: list[Histogram] = []
    for ts in batching.theta_slices(len(grid), len(templates)):
        w = templates.weights(grid[ts])
        h_templates = scores_templates @ direction[ts].T
        h_data = scores_data @ direction[ts].T
        for k in range(ts.stop - ts.start):
            edges = explicit or adaptive_edges(
                h_templates[:, k], w[k], settings.bins, settings.max_relative_uncertainty
            )
            n_bins = len(edges[0]) - 1
            sums = bin_sums(bin_index(h_templates[:, k], edges), n_bins, w[k])
            log_density = log_probabilities(sums) - np.log(bin_volumes(edges))
            mass = bin_sums(bin_index(h_data[:, k], edges), n_bins, data.weights)
            out[ts.start + k] = log_density @ mass
            if settings.keep:
                sums2 = bin_sums(bin_index(h_templates[:, k], edges), n_bins, w[k] ** 2)
                kept.append(Histogram(edges, sums, sums2, DEFAULT_FLOOR))
    return out, tuple(kept)


class _ProfiledLikelihood:
    """log L(θ_k, ν_k) − ½|ν_k|² and its ν-gradient for a batch of θ (rate and/or histogram).

    Rate: ``log Pois(n | L Σ_i dσ_i(θ) e^{f_i(ν)})``; histogram: ``n Σ_b A_b log p_b(θ, ν)``
    with ``p_b = (S_b/ΣS + ε)/(1 + Bε)`` (as :func:`log_probabilities`), ``S_b`` the template
    weights in bin b with their nuisance factors. Gradients: ``∂e^{f_i}/∂ν_j = e^{f_i}
    (a_ij + 2 b_ij ν_j)``.
    """

    def __init__(
        self,
        n_events: float,
        luminosity: float,
        rate: tuple[np.ndarray, NuisanceEffects] | None,
        histogram: tuple[np.ndarray, NuisanceEffects, _Binning] | None,
    ) -> None:
        self.n, self.luminosity, self.rate, self.histogram = n_events, luminosity, rate, histogram

    def rate_term(self, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.rate is None:
            return np.zeros(len(nu)), np.zeros_like(nu)
        weights, effects = self.rate
        wf = weights * np.exp(effects.log_factors(nu))
        sigma = wf.sum(axis=1)
        gradient = wf @ effects.linear + 2.0 * nu * (wf @ effects.quadratic)
        value = log_poisson(self.n, self.luminosity * sigma)
        return value, (self.n / sigma - self.luminosity)[:, None] * gradient

    def histogram_term(self, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.histogram is None:
            return np.zeros(len(nu)), np.zeros_like(nu)
        weights, effects, binning = self.histogram
        wf = weights * np.exp(effects.log_factors(nu))
        index, n_bins = binning.template_index, binning.n_bins
        sums = bin_sums(index, n_bins, wf)
        gradient = np.stack(
            [
                bin_sums(index, n_bins, wf * effects.linear[:, j])
                + 2.0 * nu[:, j : j + 1] * bin_sums(index, n_bins, wf * effects.quadratic[:, j])
                for j in range(nu.shape[1])
            ],
            axis=-1,
        )
        positive = sums > 0
        sums = np.where(positive, sums, 0.0)
        gradient = np.where(positive[..., None], gradient, 0.0)
        total = sums.sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        fraction = sums / total[:, None]
        d_fraction = (
            gradient / total[:, None, None]
            - fraction[..., None] * gradient.sum(axis=1)[:, None, :] / total[:, None, None]
        )
        log_p = np.log(fraction + DEFAULT_FLOOR) - np.log1p(n_bins * DEFAULT_FLOOR)
        mass = binning.data_mass
        value = self.n * ((log_p - binning.log_volume) @ mass)
        d_value = self.n * np.einsum(
            "kbj,b->kj", d_fraction / (fraction + DEFAULT_FLOOR)[..., None], mass
        )
        return value, d_value

    def negative(self, flat: np.ndarray, shape: tuple[int, int]) -> tuple[float, np.ndarray]:
        """Minus the batch's summed profiled log-likelihood and its gradient (for L-BFGS)."""
        nu = flat.reshape(shape)
        rate, d_rate = self.rate_term(nu)
        kin, d_kin = self.histogram_term(nu)
        value = np.sum(rate + kin) - 0.5 * np.sum(nu**2)
        return -float(value), -(d_rate + d_kin - nu).ravel()


def _profile(
    data: _Data,
    events: MorphedEvents,
    templates: MorphedEvents,
    grid: np.ndarray,
    luminosity: float,
    include_xsec: bool,
    binning: _Binning | None,
    batching: _Batching,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile the nuisance parameters at every grid point: (kinematic, rate, ν̂)."""
    used = [e.nuisance for e in _nuisance_sources(events, templates, include_xsec, binning)]
    names = next(u.names for u in used if u is not None)
    if any(u is not None and u.names != names for u in used):
        raise InputError(_SOURCE, "nuisance", f"the same nuisance parameters {names} everywhere")
    n_nu = len(names)
    kinematic, rate, nu_hat = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros((len(grid), n_nu))
    n_work = max(len(events), len(templates) if binning is not None else 0)
    for ts in batching.theta_slices(len(grid), n_work):
        thetas = grid[ts]
        likelihood = _ProfiledLikelihood(
            data.n_events,
            luminosity,
            (events.weights(thetas), _effects(events, n_nu)) if include_xsec else None,
            (templates.weights(thetas), _effects(templates, n_nu), binning)
            if binning is not None
            else None,
        )
        shape = (len(thetas), n_nu)
        fit = optimize.minimize(
            likelihood.negative,
            np.zeros(shape).ravel(),
            args=(shape,),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-9},
        )
        nu = fit.x.reshape(shape)
        nu_hat[ts] = nu
        rate[ts] = likelihood.rate_term(nu)[0]
        kinematic[ts] = likelihood.histogram_term(nu)[0]
    return kinematic, rate, nu_hat


def _nuisance_sources(
    events: MorphedEvents, templates: MorphedEvents, include_xsec: bool, binning: _Binning | None
) -> list[MorphedEvents]:
    """The event samples whose weights enter the likelihood (rate, then histogram templates)."""
    return [e for e, used in ((events, include_xsec), (templates, binning is not None)) if used]


def _effects(events: MorphedEvents, n_nu: int) -> NuisanceEffects:
    """The events' nuisance effects, or none (all coefficients zero) if they have none."""
    if events.nuisance is not None:
        return events.nuisance
    zeros = np.zeros((len(events), n_nu))
    return NuisanceEffects(tuple(f"nu_{j}" for j in range(n_nu)), zeros, zeros)


def _limits(
    mode: str,
    data: _Data,
    events: MorphedEvents,
    grid: np.ndarray,
    luminosity: float,
    *,
    include_xsec: bool,
    templates: MorphedEvents | None,
    observables: Sequence[str],
    bins: int | Sequence[int] | Sequence[np.ndarray] | None,
    max_relative_uncertainty: float,
    estimator: object | None,
    log_likelihood: LogLikelihood | None,
    theta_ref: np.ndarray | Sequence[float] | None,
    dof: int | None,
    max_batch_pairs: int,
    keep_histograms: bool,
    profile_nuisance: bool,
) -> LimitResult:
    grid = np.atleast_2d(np.asarray(grid, dtype=np.float64))
    if mode not in MODES:
        raise InputError(_SOURCE, "mode", f"one of {list(MODES)}, got {mode!r}")
    if mode == "rate" and not include_xsec:
        raise InputError(_SOURCE, "include_xsec", "True for mode 'rate' (nothing else to fit)")
    if not luminosity > 0:
        raise InputError(_SOURCE, "luminosity", f"a positive number, got {luminosity}")
    if max_batch_pairs < 1:
        raise InputError(_SOURCE, "max_batch_pairs", "a positive integer")
    batching = _Batching(max_batch_pairs)
    templates = events if templates is None else templates
    has_nuisance = events.nuisance is not None or templates.nuisance is not None
    if profile_nuisance and has_nuisance and mode not in ("rate", "histo"):
        raise InputError(
            _SOURCE, "profile_nuisance", f"False for mode {mode!r} (profiling: rate, histo)"
        )
    settings = _HistogramSettings(bins, max_relative_uncertainty, keep_histograms)

    kinematic = np.zeros(len(grid))
    histograms: tuple[Histogram, ...] = ()
    binning: _Binning | None = None
    if mode == "histo":
        if not observables:
            raise InputError(_SOURCE, "observables", "at least one observable name for 'histo'")
        s_data = _columns(data.x, events.observable_names, observables)
        binning = _fixed_binning(
            s_data, templates.columns(observables), data, templates, grid, settings
        )
        kinematic, histograms = _fixed_histogram_term(binning, templates, grid, settings, batching)
    elif mode in ("sally", "sallino"):
        if not isinstance(estimator, ScoreEstimator):
            raise InputError(_SOURCE, "estimator", f"a score estimator for mode {mode!r}")
        t_data = np.asarray(estimator.evaluate_score(data.x), dtype=np.float64)
        t_templates = np.asarray(estimator.evaluate_score(templates.observations), np.float64)
        if mode == "sally":
            binning = _fixed_binning(t_data, t_templates, data, templates, grid, settings)
            kinematic, histograms = _fixed_histogram_term(
                binning, templates, grid, settings, batching
            )
        else:
            ref = np.zeros(grid.shape[1]) if theta_ref is None else np.asarray(theta_ref, float)
            kinematic, histograms = _sallino_term(
                t_data, t_templates, data, templates, grid, ref, settings, batching
            )
    elif mode == "ml":
        function = _estimator_function(estimator)
        kinematic = _pointwise_term(function, data, grid, batching, "estimator")
    elif mode == "truth":
        if log_likelihood is None:
            raise InputError(_SOURCE, "log_likelihood", "a callable (x, thetas) for 'truth'")
        kinematic = _pointwise_term(log_likelihood, data, grid, batching, "log_likelihood")
    kinematic = data.n_events * kinematic

    rate = np.zeros(len(grid))
    if include_xsec:
        rate = log_poisson(data.n_events, luminosity * events.cross_sections(grid))
    constraint, nu_hat = np.zeros(len(grid)), None
    sources = _nuisance_sources(events, templates, include_xsec, binning)
    if profile_nuisance and any(e.nuisance is not None for e in sources):
        kinematic, rate, nu_hat = _profile(
            data, events, templates, grid, luminosity, include_xsec, binning, batching
        )
        constraint = -0.5 * np.sum(nu_hat**2, axis=1)
    dof = grid.shape[1] if dof is None else int(dof)
    delta, p, best = p_values(kinematic + rate + constraint, dof)
    return LimitResult(
        mode=mode,
        grid=grid,
        log_likelihood_ratio=delta,
        kinematic=kinematic,
        rate=rate,
        p_values=p,
        best_fit_index=best,
        dof=dof,
        n_events=float(data.n_events),
        histograms=histograms,
        constraint=constraint,
        nuisance_values=nu_hat,
    )


def expected_limits(
    mode: Mode,
    events: MorphedEvents,
    grid: np.ndarray,
    theta_true: np.ndarray | Sequence[float],
    luminosity: float,
    *,
    include_xsec: bool = True,
    templates: MorphedEvents | None = None,
    observables: Sequence[str] = (),
    bins: int | Sequence[int] | Sequence[np.ndarray] | None = None,
    max_relative_uncertainty: float = 0.2,
    estimator: object | None = None,
    log_likelihood: LogLikelihood | None = None,
    theta_ref: np.ndarray | Sequence[float] | None = None,
    dof: int | None = None,
    max_batch_pairs: int = 1 << 20,
    keep_histograms: bool = True,
    profile_nuisance: bool = True,
) -> LimitResult:
    """Expected limits from the Asimov data set of ``events`` at ``theta_true``.

    ``events`` (the test partition) give the Asimov data, ``w_i = dσ_i(θ_true)/σ(θ_true)``,
    ``n = L·σ(θ_true)``, and σ(θ) of the rate term. Histogram modes fill their templates from
    ``templates`` (e.g. the training partition; default ``events``) reweighted to each θ.
    ``bins``: None (automatic), an int or one int per axis (initial quantile bins, then merged
    until ``sqrt(Σw²)/Σw <= max_relative_uncertainty`` in every bin), or explicit edges per axis.
    ``estimator``: ratio/density estimator (``ml``) or score estimator (``sally``, ``sallino``);
    ``log_likelihood(x, thetas) -> (n_theta, n_x)`` for ``truth``; ``theta_ref`` the reference
    point of ``sallino`` (default 0). At most ``max_batch_pairs`` (θ, event) pairs are
    evaluated at once. If the events carry nuisance effects, ``profile_nuisance`` profiles them
    (``rate`` and ``histo``; kept histograms are the nominal ν = 0 templates). See the module
    docstring for the formulas (arXiv:1007.1727, 1907.10621).
    """
    theta_true = np.asarray(theta_true, dtype=np.float64).reshape(1, -1)
    weights = events.weights(theta_true)[0]
    sigma = float(weights.sum())
    if not sigma > 0:
        raise InputError(_SOURCE, "theta_true", f"a point with positive cross section, σ={sigma}")
    data = _Data(events.observations, weights / sigma, luminosity * sigma)
    return _limits(
        mode,
        data,
        events,
        grid,
        luminosity,
        include_xsec=include_xsec,
        templates=templates,
        observables=observables,
        bins=bins,
        max_relative_uncertainty=max_relative_uncertainty,
        estimator=estimator,
        log_likelihood=log_likelihood,
        theta_ref=theta_ref,
        dof=dof,
        max_batch_pairs=max_batch_pairs,
        keep_histograms=keep_histograms,
        profile_nuisance=profile_nuisance,
    )


def observed_limits(
    mode: Mode,
    x_observed: np.ndarray,
    events: MorphedEvents,
    grid: np.ndarray,
    luminosity: float,
    *,
    n_observed: float | None = None,
    include_xsec: bool = True,
    templates: MorphedEvents | None = None,
    observables: Sequence[str] = (),
    bins: int | Sequence[int] | Sequence[np.ndarray] | None = None,
    max_relative_uncertainty: float = 0.2,
    estimator: object | None = None,
    log_likelihood: LogLikelihood | None = None,
    theta_ref: np.ndarray | Sequence[float] | None = None,
    dof: int | None = None,
    max_batch_pairs: int = 1 << 20,
    keep_histograms: bool = True,
    profile_nuisance: bool = True,
) -> LimitResult:
    """Limits from observed events ``x_observed`` (equal weights), as :func:`expected_limits`.

    ``n_observed`` (default ``len(x_observed)``) is the count in the Poisson term and scales
    the kinematic term; ``events`` give σ(θ) and, unless ``templates`` is set, the templates.
    """
    x = np.atleast_2d(np.asarray(x_observed, dtype=np.float64))
    if mode != "rate" and x.shape[1] != events.observations.shape[1]:
        raise InputError(
            _SOURCE, "x_observed", f"{events.observations.shape[1]} columns, got {x.shape[1]}"
        )
    n = float(len(x)) if n_observed is None else float(n_observed)
    if n < 0 or (mode != "rate" and len(x) == 0):
        raise InputError(_SOURCE, "x_observed", "observed events (and n_observed >= 0)")
    weights = np.full(len(x), 1.0 / max(len(x), 1))
    return _limits(
        mode,
        _Data(x, weights, n),
        events,
        grid,
        luminosity,
        include_xsec=include_xsec,
        templates=templates,
        observables=observables,
        bins=bins,
        max_relative_uncertainty=max_relative_uncertainty,
        estimator=estimator,
        log_likelihood=log_likelihood,
        theta_ref=theta_ref,
        dof=dof,
        max_batch_pairs=max_batch_pairs,
        keep_histograms=keep_histograms,
        profile_nuisance=profile_nuisance,
    )
