"""Profiling the limits' likelihood over nuisance parameters ν with Gaussian constraints.

Nuisance parameters rescale every event weight by ``exp(Σ_j a_ij ν_j + b_ij ν_j²)``
(:class:`~minerflow.physics.weighted_events.NuisanceEffects`). At each grid point θ the
profiled log-likelihood is

    log L_p(θ) = max_ν [log Pois(n | L σ(θ, ν)) + n Σ_b A_b log p_b(θ, ν) − ½|ν|²],

the rate term and/or the histogram term of :mod:`minerflow.physics.limits` (``A_b`` the data's
mass in bin b, ``p_b`` the floored template probabilities of :func:`log_probabilities`), each
ν_j constrained by N(0, 1) (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727; MadMiner
arXiv:1907.10621, sec. 4). The maximum is found by L-BFGS with analytic gradients, all points
of a batch of θ in one optimisation (their problems are independent, so the summed objective
separates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from minerflow.errors import InputError
from minerflow.physics.histograms import DEFAULT_FLOOR, bin_sums
from minerflow.physics.weighted_events import MorphedEvents, NuisanceEffects

__all__ = ["TemplateBinning", "log_poisson", "profile_likelihood"]

# Errors keep the source of the limits code that profiles.
_SOURCE = "limits"


def log_poisson(n: float | np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``log Pois(n|μ) = n log μ − μ − log Γ(n+1)`` for real n ≥ 0 (Asimov counts), −inf for μ ≤ 0.

    >>> float(log_poisson(2, np.array([3.0]))[0]) == float(np.log(9 / 2) - 3)
    True
    """
    mu = np.asarray(mu, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = special.xlogy(n, mu) - mu - special.gammaln(np.asarray(n, np.float64) + 1.0)
    return np.where(mu > 0, value, -np.inf)


@dataclass(frozen=True)
class TemplateBinning:
    """One binning of a summary statistic for the whole grid, and the data's mass per bin."""

    edges: tuple[np.ndarray, ...]
    template_index: np.ndarray
    data_mass: np.ndarray
    log_volume: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.log_volume)


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
        histogram: tuple[np.ndarray, NuisanceEffects, TemplateBinning] | None,
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


def profile_likelihood(
    grid: np.ndarray,
    n_events: float,
    luminosity: float,
    rate_events: MorphedEvents | None,
    histogram: tuple[MorphedEvents, TemplateBinning] | None,
    theta_slices: Sequence[slice],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Profile ν at every grid point: ``(kinematic, rate, ν̂)``, or None if nothing depends on ν.

    ``rate_events`` give σ(θ, ν) of the rate term (None: no rate term); ``histogram`` the
    templates and binning of the histogram term (None: none); ``n_events`` the data count.
    Both terms are returned at ``ν̂`` (zeros for a term left out), ``ν̂`` is
    ``(n_grid, n_ν)``; the points of each slice of ``theta_slices`` are fitted together.
    """
    templates, binning = (None, None) if histogram is None else histogram
    used = [e.nuisance for e in (rate_events, templates) if e is not None]
    if all(u is None for u in used):
        return None
    names = next(u.names for u in used if u is not None)
    if any(u is not None and u.names != names for u in used):
        raise InputError(_SOURCE, "nuisance", f"the same nuisance parameters {names} everywhere")
    n_nu = len(names)
    kinematic, rate, nu_hat = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros((len(grid), n_nu))
    for ts in theta_slices:
        thetas = grid[ts]
        rate_part = histogram_part = None
        if rate_events is not None:
            rate_part = (rate_events.weights(thetas), _effects(rate_events, n_nu))
        if templates is not None and binning is not None:
            histogram_part = (templates.weights(thetas), _effects(templates, n_nu), binning)
        likelihood = _ProfiledLikelihood(n_events, luminosity, rate_part, histogram_part)
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


def _effects(events: MorphedEvents, n_nu: int) -> NuisanceEffects:
    """The events' nuisance effects, or none (all coefficients zero) if they have none."""
    if events.nuisance is not None:
        return events.nuisance
    zeros = np.zeros((len(events), n_nu))
    return NuisanceEffects(tuple(f"nu_{j}" for j in range(n_nu)), zeros, zeros)
