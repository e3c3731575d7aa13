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
``log L_p(θ) = max_ν [log L(θ, ν) − ½|ν|²]`` (:mod:`minerflow.physics.profiling`); the Asimov
data are at ν = 0. The weighted events themselves are :mod:`minerflow.physics.weighted_events`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict, Unpack, runtime_checkable

import numpy as np
from scipy import special

from minerflow.errors import InputError
from minerflow.physics.histograms import (
    DEFAULT_FLOOR,
    Histogram,
    adaptive_edges,
    bin_count,
    bin_index,
    bin_sums,
    bin_volumes,
    bins_shape,
    log_probabilities,
)
from minerflow.physics.profiling import TemplateBinning, log_poisson, profile_likelihood
from minerflow.physics.weighted_events import MorphedEvents, NuisanceEffects, select_columns

__all__ = [
    "MODES",
    "DensityEstimator",
    "LimitOptions",
    "LimitResult",
    # re-exported for callers of the limits: they live in weighted_events and profiling
    "MorphedEvents",
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


def p_values(log_likelihood: np.ndarray, dof: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Subtract the maximum and return ``(Δlog L, p, best index)``; ``p = χ²_sf(−2Δlog L, dof)``.

    >>> round(float(p_values(np.array([0.0, -1.0]), 1)[1][1]), 6)  # q = 2, one dof
    0.157299
    """
    best = int(np.argmax(log_likelihood))
    delta = log_likelihood - log_likelihood[best]
    return delta, special.chdtrc(dof, -2.0 * delta), best  # χ² survival function


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


def _fixed_binning(
    summary_data: np.ndarray,
    summary_templates: np.ndarray,
    data: _Data,
    templates: MorphedEvents,
    grid: np.ndarray,
    settings: _HistogramSettings,
) -> TemplateBinning:
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
    n_bins = bin_count(edges)
    return TemplateBinning(
        edges=edges,
        template_index=bin_index(summary_templates, edges),
        data_mass=bin_sums(bin_index(summary_data, edges), n_bins, data.weights),
        log_volume=np.log(bin_volumes(edges)).ravel(),
    )


def _fixed_histogram_term(
    binning: TemplateBinning,
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


def _histograms(binning: TemplateBinning, weights: np.ndarray, sums: np.ndarray) -> list[Histogram]:
    sums2 = bin_sums(binning.template_index, binning.n_bins, weights**2)
    shape = bins_shape(binning.edges)
    return [
        Histogram(binning.edges, s.reshape(shape), s2.reshape(shape))
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
    """``Σ_i w_i log[f̂(h_θ(x_i)|θ) / f̂(h_θ(x_i)|θ_ref)]`` with ``h_θ = t̂·Δθ/|Δθ|``.

    The summary statistic changes with θ, so densities of different statistics cannot be
    compared across the grid; the ratio of the statistic's density at θ and at the reference
    (same 1-D binning per θ) can: it is the likelihood ratio of the sufficient statistic of
    the local model along Δθ (1805.00020, SALLINO). Without the reference term the regions
    missed the truth (IoU 0.1-0.2 on the toy even with the exact score).
    """
    delta = grid - theta_ref
    norm = np.linalg.norm(delta, axis=1)
    direction = np.where(
        (norm > 1e-6)[:, None], delta / np.where(norm > 1e-6, norm, 1.0)[:, None], 0.0
    )
    direction[norm <= 1e-6, 0] = 1.0
    explicit = _explicit_edges(settings.bins, 1)
    out = np.zeros(len(grid))
    kept: list[Histogram] = []
    w_ref = templates.weights(np.asarray(theta_ref, dtype=float).reshape(1, -1))[0]
    for ts in batching.theta_slices(len(grid), len(templates)):
        w = templates.weights(grid[ts])
        h_templates = scores_templates @ direction[ts].T
        h_data = scores_data @ direction[ts].T
        for k in range(ts.stop - ts.start):
            edges = explicit or adaptive_edges(
                h_templates[:, k], w[k], settings.bins, settings.max_relative_uncertainty
            )
            n_bins = len(edges[0]) - 1
            template_bins = bin_index(h_templates[:, k], edges)
            sums = bin_sums(template_bins, n_bins, w[k])
            log_ratio = log_probabilities(sums) - log_probabilities(
                bin_sums(template_bins, n_bins, w_ref)
            )
            mass = bin_sums(bin_index(h_data[:, k], edges), n_bins, data.weights)
            out[ts.start + k] = log_ratio @ mass
            if settings.keep:
                sums2 = bin_sums(bin_index(h_templates[:, k], edges), n_bins, w[k] ** 2)
                kept.append(Histogram(edges, sums, sums2, DEFAULT_FLOOR))
    return out, tuple(kept)


def _limits(
    mode: str,
    data: _Data,
    events: MorphedEvents,
    grid: np.ndarray,
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
    binning: TemplateBinning | None = None
    if mode == "histo":
        if not observables:
            raise InputError(_SOURCE, "observables", "at least one observable name for 'histo'")
        s_data = select_columns(data.x, events.observable_names, observables)
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
    if profile_nuisance:
        n_work = max(len(events), len(templates) if binning is not None else 0)
        profiled = profile_likelihood(
            grid,
            data.n_events,
            luminosity,
            events if include_xsec else None,
            None if binning is None else (templates, binning),
            batching.theta_slices(len(grid), n_work),
        )
        if profiled is not None:
            kinematic, rate, nu_hat = profiled
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


class LimitOptions(TypedDict, total=False):
    """Keyword options of :func:`expected_limits` and :func:`observed_limits` (default first).

    ``include_xsec`` (True): add the Poisson rate term. ``templates`` (None: ``events``): the
    events histogram modes fill their templates from, reweighted to each θ (e.g. the training
    partition). ``observables`` (()): the observables of ``histo``. ``bins`` (None, automatic):
    an int or one int per axis (initial quantile bins, then merged until
    ``sqrt(Σw²)/Σw <= max_relative_uncertainty`` (0.2) in every bin), or explicit edges per
    axis. ``estimator`` (None): ratio/density estimator (``ml``) or score estimator (``sally``,
    ``sallino``). ``log_likelihood(x, thetas) -> (n_theta, n_x)`` (None): for ``truth``.
    ``theta_ref`` (None: 0): the reference point of ``sallino``. ``dof`` (None: the number of
    parameters): degrees of freedom of the χ². ``max_batch_pairs`` (2²⁰): at most this many
    (θ, event) pairs are evaluated at once. ``keep_histograms`` (True): return the templates.
    ``profile_nuisance`` (True): if the events carry nuisance effects, profile them (``rate``
    and ``histo``; kept histograms are the nominal ν = 0 templates).
    """

    include_xsec: bool
    templates: MorphedEvents | None
    observables: Sequence[str]
    bins: int | Sequence[int] | Sequence[np.ndarray] | None
    max_relative_uncertainty: float
    estimator: object | None
    log_likelihood: LogLikelihood | None
    theta_ref: np.ndarray | Sequence[float] | None
    dof: int | None
    max_batch_pairs: int
    keep_histograms: bool
    profile_nuisance: bool


def expected_limits(
    mode: Mode,
    events: MorphedEvents,
    grid: np.ndarray,
    theta_true: np.ndarray | Sequence[float],
    luminosity: float,
    **options: Unpack[LimitOptions],
) -> LimitResult:
    """Expected limits from the Asimov data set of ``events`` at ``theta_true``.

    ``events`` (the test partition) give the Asimov data, ``w_i = dσ_i(θ_true)/σ(θ_true)``,
    ``n = L·σ(θ_true)``, and σ(θ) of the rate term; histogram modes fill their templates from
    ``templates`` (default ``events``). :class:`LimitOptions` lists the keyword options. See
    the module docstring for the formulas (arXiv:1007.1727, 1907.10621).
    """
    theta_true = np.asarray(theta_true, dtype=np.float64).reshape(1, -1)
    weights = events.weights(theta_true)[0]
    sigma = float(weights.sum())
    if not sigma > 0:
        raise InputError(_SOURCE, "theta_true", f"a point with positive cross section, σ={sigma}")
    data = _Data(events.observations, weights / sigma, luminosity * sigma)
    return _limits(mode, data, events, grid, luminosity, **options)


def observed_limits(
    mode: Mode,
    x_observed: np.ndarray,
    events: MorphedEvents,
    grid: np.ndarray,
    luminosity: float,
    *,
    n_observed: float | None = None,
    multiplicity: np.ndarray | Sequence[int] | None = None,
    **options: Unpack[LimitOptions],
) -> LimitResult:
    """Limits from observed events ``x_observed``, as :func:`expected_limits`.

    ``multiplicity`` (default one each) says how often each row was observed: an event seen
    k times is evaluated once and weighs k times. ``n_observed`` (default the number of
    observations, ``Σ multiplicity``) is the count in the Poisson term and scales the
    kinematic term; ``events`` give σ(θ) and, unless ``templates`` is set, the templates.
    """
    x = np.atleast_2d(np.asarray(x_observed, dtype=np.float64))
    if mode != "rate" and x.shape[1] != events.observations.shape[1]:
        raise InputError(
            _SOURCE, "x_observed", f"{events.observations.shape[1]} columns, got {x.shape[1]}"
        )
    counts = np.ones(len(x)) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    if counts.shape != (len(x),) or not (counts > 0).all():
        raise InputError(_SOURCE, "multiplicity", f"{len(x)} positive counts, one per row")
    n = float(counts.sum()) if n_observed is None else float(n_observed)
    if n < 0 or (mode != "rate" and len(x) == 0):
        raise InputError(_SOURCE, "x_observed", "observed events (and n_observed >= 0)")
    weights = counts / max(float(counts.sum()), 1.0)
    return _limits(mode, _Data(x, weights, n), events, grid, luminosity, **options)
