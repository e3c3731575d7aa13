"""Toy simulator: a two-parameter EFT-like process whose likelihood is known exactly.

It is minerflow's default input and the truth every estimator and limit is checked against,
so every quantity below is either closed-form or a converged one-dimensional quadrature.

Model
-----
Latent (parton-level) ``z = (p, φ)``: leading-jet ``p = pT ∈ [p_min, ∞)`` GeV and the jet
azimuthal separation ``φ = Δφ_jj ∈ [0, π]``. With ``u = p / p_scale`` and couplings
``g(θ) = (1, θ₀, θ₁)`` the amplitude is ``A(z|θ) = Σ_i g_i A_i(z)`` with factorised terms

    A_i(z) = a_i(p) b_i(φ),   a_i(p) = Σ_m α_im u^{m/2} (m = 0,1,2),   b_i(φ) = Σ_n β_in cos nφ.

The squared matrix element adds an incoherent SM piece (a helicity configuration that does not
interfere), ``D(z|θ) = A(z|θ)² + η A_0(z)²``, which keeps ``D > 0`` everywhere so that the
reweighting factors between benchmarks stay bounded. The joint differential cross section is

    dσ(z|θ) / (dp dφ) = N · base(p)/π · D(z|θ),   base(p) = e^{-(p-p_min)/λ} / λ,

exactly quadratic in θ, i.e. ``dσ(z|θ) = g(θ)ᵀ M(z) g(θ)`` with
``M_ij(z) = N base(p)/π · E_ij A_i(z) A_j(z)`` (``E = 1`` except ``E_00 = 1 + η``): the six
morphing components ``[[0,0],[0,1],[0,2],[1,0],[1,1],[2,0]]`` (max power 2 per parameter).
``σ(θ) = g(θ)ᵀ S g(θ)`` with ``S = ∫ M(z) dz`` in closed form (incomplete gamma functions).
``N`` is fixed by the SM cross section ``σ(0) = sm_cross_section`` (pb).

Detector: ``x_pT ~ N(p, (r p)²)`` and ``x_Δφ = fold(φ + s ε)``, ``ε ~ N(0, 1)``, folded back
into ``[0, π]`` (reflection at 0 and π), whose density is the sum of the reflected Gaussian
images. Observables ``pt_j1`` and ``delta_phi_jj``.

Exact likelihood: ``p(x|θ) = g(θ)ᵀ Q(x) g(θ) / σ(θ)`` with
``Q_ij(x) = N E_ij P_ij(x_pT) Φ_ij(x_Δφ)``, a product of two one-dimensional integrals:
``P_ij(x) = ∫ base(p) a_i(p) a_j(p) N(x; p, r p) dp`` by composite Gauss–Legendre quadrature
in ``log p``, and, because each ``b_i b_j`` is an even 2π-periodic cosine series,
``Φ_ij(x) = (1/π) ∫_R b_i(φ) b_j(φ) N(x; φ, s) dφ = (1/π) Σ_n c_n cos(n x) e^{-n² s²/2}``
(the reflected images unfold onto the whole real line), in closed form.
The score follows analytically from the quadratic form,
``t(x|θ) = 2 (Q(x) g)_{1:} / (gᵀ Q(x) g) − 2 (S g)_{1:} / σ(θ)``, and the joint quantities
(Brehmer et al., arXiv:1805.00020, 1805.12244) from ``M(z)``:
``r(x,z|θ₀,θ₁) = [D(z|θ₀)/σ(θ₀)] / [D(z|θ₁)/σ(θ₁)]``,
``t(x,z|θ) = 2 (M(z) g)_{1:} / D(z|θ) − ∇σ(θ)/σ(θ)`` (the transfer function cancels).

Events are generated like one MadGraph run per benchmark (unweighted at θ_b, reweighted to
every benchmark), see :meth:`ToySimulator.generate`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import optimize, special

from minerflow.errors import InputError
from minerflow.io import madminer_file
from minerflow.physics.morphing import find_components, morphing_matrix

__all__ = [
    "BENCHMARK_NAMES",
    "BENCHMARK_VALUES",
    "DEFAULT_LIMIT_REGION",
    "DEFAULT_LIMIT_RESOLUTIONS",
    "DEFAULT_LUMINOSITY",
    "DEFAULT_THETA_TRUE",
    "DEFAULT_TOY",
    "OBSERVABLE_NAMES",
    "PARAMETER_NAMES",
    "ToyEvents",
    "ToySimulator",
    "cross_section",
    "expected_log_likelihood_ratio",
    "expected_p_values",
    "fisher_information",
    "log_likelihood",
    "log_likelihood_ratio",
    "score",
    "write_event_file",
]

_SOURCE = "toy simulator"

PARAMETER_NAMES: tuple[str, str] = ("c_W", "c_Wtil")
OBSERVABLE_NAMES: tuple[str, str] = ("pt_j1", "delta_phi_jj")
_OBSERVABLE_DEFINITIONS = ("j[0].pt", "abs(j[0].deltaphi(j[1]))")

# SM reference plus a regular pentagon around it: six points on no common conic, so they fix
# all six quadratic components, and the symmetric layout keeps the morphing matrix well
# conditioned (condition number 5.2, morphing weights |w_b(θ)| ≤ 1.72 on [-1, 1]²).
_PENTAGON_ANGLES = np.pi / 2 + 2 * np.pi * np.arange(5) / 5
BENCHMARK_NAMES: tuple[str, ...] = ("sm", *(f"pentagon_{k}" for k in range(1, 6)))
BENCHMARK_VALUES: np.ndarray = np.vstack(
    [[0.0, 0.0], np.column_stack([np.cos(_PENTAGON_ANGLES), np.sin(_PENTAGON_ANGLES)])]
)
BENCHMARK_VALUES.setflags(write=False)

# Default expected-limit setting for the toy: the exact 95 % CL region (2 dof) lies well inside
# the region and spans many cells of the 25 x 25 grid (see the module tests).
DEFAULT_THETA_TRUE: tuple[float, float] = (0.0, 0.0)
DEFAULT_LIMIT_REGION: tuple[tuple[float, float], tuple[float, float]] = ((-1.0, 1.0), (-1.0, 1.0))
DEFAULT_LIMIT_RESOLUTIONS: tuple[int, int] = (25, 25)
DEFAULT_LUMINOSITY: float = 1e4  # pb⁻¹ (10 fb⁻¹, the MadMiner workflow default)

_TAIL_DECAY_LENGTHS = 80.0  # latent pT integrals stop at p_min + 80 λ (e^-80 of the mass)
_OBSERVED_TAIL_DECAY_LENGTHS = 60.0  # x_pT integrals stop at p_min + 60 λ
_ENVELOPE_SAFETY = 1.0 + 1e-9  # rounding margin on the (exact) rejection envelope
_PROPOSAL_STRETCHES = (1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
_CHUNK = 4096  # events per block when convolving (bounds memory to a few MB)


def _gauss_legendre_log_panels(
    lo: float, hi: float, step: float, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``∫_lo^hi f(p) dp`` as composite Gauss–Legendre in ``v = log p``.

    Equal panels in ``log p`` resolve a Gaussian whose width grows with ``p`` (the pT
    resolution ``r p``) with the same number of nodes at every scale.
    """
    v_lo, v_hi = math.log(lo), math.log(hi)
    n_panels = max(1, math.ceil((v_hi - v_lo) / step))
    edges = np.linspace(v_lo, v_hi, n_panels + 1)
    ref_nodes, ref_weights = np.polynomial.legendre.leggauss(order)
    half = 0.5 * np.diff(edges)[:, None]
    v = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half * ref_nodes[None, :]
    p = np.exp(v.ravel())
    return p, (half * ref_weights[None, :]).ravel() * p


def _gauss_legendre(lo: float, hi: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on ``[lo, hi]``."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    half = 0.5 * (hi - lo)
    return lo + half * (nodes + 1.0), half * weights


def _series(
    coefficients: tuple[float, ...], basis: tuple[float | np.ndarray, ...], n: int
) -> np.ndarray:
    """``Σ_k c_k f_k`` over basis functions (arrays or the constant 1.0), skipping zero ``c_k``."""
    out = np.zeros(n)
    for coefficient, function in zip(coefficients, basis, strict=True):
        if coefficient:
            out += coefficient * function
    return out


def _fold_angle(phi: np.ndarray) -> np.ndarray:
    """Reflect angles back into ``[0, π]`` (Δφ of two jets is unsigned and 2π-periodic)."""
    return np.pi - np.abs(np.pi - np.mod(phi, 2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class ToyEvents:
    """Generated events in file order, with the latent ``z`` that produced each ``x``.

    ``weights[i, b]`` is event i's cross-section weight (pb) at benchmark b; each run's weights
    sum to σ at any benchmark on their own (MadMiner's ``sample_summary`` convention).
    """

    latent: np.ndarray  # (n, 2): pT, Δφ at parton level
    observations: np.ndarray  # (n, 2): pt_j1, delta_phi_jj after smearing
    weights: np.ndarray  # (n, n_benchmarks)
    sampling_benchmarks: np.ndarray  # (n,) int64
    signal_events: np.ndarray  # (n_benchmarks,) int64


@dataclass(frozen=True)
class ToySimulator:
    """Settings of the toy process; methods give exact likelihoods and generate events.

    ``pt_coefficients[i]`` are ``α_i`` on the basis ``(1, √u, u)``, ``phi_coefficients[i]``
    are ``β_i`` on ``(1, cos φ, cos 2φ)`` (see the module docstring). Quadrature settings:
    panels of ``quadrature_step`` in ``log pT`` with ``quadrature_order`` nodes each, and
    ``phi_quadrature_order`` Gauss–Legendre nodes in ``Δφ`` for integrals over observables.
    """

    pt_min: float = 30.0
    pt_decay: float = 50.0
    pt_scale: float = 100.0
    pt_coefficients: tuple[tuple[float, float, float], ...] = (
        (1.0, 0.0, 0.0),
        (0.0, 0.0, 1.0),
        (0.0, 1.2, 0.0),
    )
    phi_coefficients: tuple[tuple[float, float, float], ...] = (
        (1.0, 0.0, 0.0),
        (1.0, 0.0, 0.5),
        (0.0, 1.0, 0.0),
    )
    incoherent_fraction: float = 0.2
    sm_cross_section: float = 0.003
    pt_resolution: float = 0.1
    phi_resolution: float = 0.3
    parameter_names: tuple[str, str] = PARAMETER_NAMES
    benchmark_names: tuple[str, ...] = BENCHMARK_NAMES
    benchmark_values: tuple[tuple[float, float], ...] = field(
        default_factory=lambda: tuple(map(tuple, BENCHMARK_VALUES.tolist()))
    )
    parameter_range: tuple[float, float] = (-1.0, 1.0)
    quadrature_step: float = 0.05
    quadrature_order: int = 8
    phi_quadrature_order: int = 32

    def __post_init__(self) -> None:
        def fail(key: str, expected: str) -> InputError:
            return InputError(_SOURCE, key, expected)

        for name in ("pt_min", "pt_decay", "pt_scale", "sm_cross_section", "quadrature_step"):
            if not getattr(self, name) > 0:
                raise fail(name, f"a positive number, got {getattr(self, name)!r}")
        for name in ("pt_resolution", "phi_resolution"):
            if not 0 < getattr(self, name) < 1:
                raise fail(name, f"a resolution in (0, 1), got {getattr(self, name)!r}")
        if not self.incoherent_fraction > 0:
            raise fail("incoherent_fraction", "a positive number (keeps weights bounded)")
        for name in ("pt_coefficients", "phi_coefficients"):
            if np.shape(getattr(self, name)) != (3, 3):
                raise fail(name, "3 rows (A_0, A_1, A_2) of 3 coefficients")
        if (
            np.asarray(self.pt_coefficients)[0, 0] == 0
            or np.asarray(self.phi_coefficients)[0, 0] == 0
        ):
            raise fail("pt_coefficients, phi_coefficients", "an SM amplitude A_0 = const + ...")
        values = np.asarray(self.benchmark_values, dtype=np.float64)
        if values.shape != (len(self.benchmark_names), 2):
            raise fail("benchmark_values", f"shape ({len(self.benchmark_names)}, 2)")
        if not np.array_equal(values[0], [0.0, 0.0]):
            raise fail("benchmark_values", "the SM (0, 0) as the first, reference benchmark")
        if self.quadrature_order < 2 or self.phi_quadrature_order < 2:
            raise fail("quadrature_order", "at least 2 nodes")

    # ------------------------------------------------------------------ structure constants

    @cached_property
    def _incoherent(self) -> np.ndarray:
        """``E_ij``: 1, except ``1 + η`` on the SM-SM entry (the incoherent SM piece)."""
        factor = np.ones((3, 3))
        factor[0, 0] += self.incoherent_fraction
        return factor

    @cached_property
    def _pt_products(self) -> np.ndarray:
        """``C[i,j,m]``: ``a_i a_j = Σ_m C_ijm u^{m/2}``, m = 0..4."""
        alpha = np.asarray(self.pt_coefficients, dtype=np.float64)
        return np.array([[np.convolve(alpha[i], alpha[j]) for j in range(3)] for i in range(3)])

    @cached_property
    def _phi_products(self) -> np.ndarray:
        """``H[i,j,n]``: ``b_i b_j = Σ_n H_ijn cos nφ`` (cos a·cos b = ½cos(a−b) + ½cos(a+b))."""
        beta = np.asarray(self.phi_coefficients, dtype=np.float64)
        out = np.zeros((3, 3, 5))
        for a in range(3):
            for b in range(3):
                half = 0.5 * np.outer(beta[:, a], beta[:, b])
                out[:, :, abs(a - b)] += half
                out[:, :, a + b] += half
        return out

    @cached_property
    def _pt_moments(self) -> np.ndarray:
        """``μ_m = ∫ base(p) u^{m/2} dp = e^{p_min/λ} (λ/p_s)^{m/2} Γ(m/2+1, p_min/λ)``."""
        k = np.arange(5) / 2.0 + 1.0
        start = self.pt_min / self.pt_decay
        upper_gamma = special.gammaincc(k, start) * special.gamma(k)
        return math.exp(start) * (self.pt_decay / self.pt_scale) ** (k - 1.0) * upper_gamma

    @cached_property
    def _unit_term_cross_sections(self) -> np.ndarray:
        """``S/N``: ``E_ij (Σ_m C_ijm μ_m) H_ij0`` (``(1/π)∫_0^π cos nφ dφ = δ_n0``)."""
        return (
            self._incoherent * (self._pt_products @ self._pt_moments) * self._phi_products[..., 0]
        )

    @cached_property
    def normalisation(self) -> float:
        """``N`` (pb): fixes ``σ(θ = 0)`` to ``sm_cross_section``."""
        return self.sm_cross_section / float(self._unit_term_cross_sections[0, 0])

    @cached_property
    def term_cross_sections(self) -> np.ndarray:
        """``S`` (3, 3) in pb: ``σ(θ) = g(θ)ᵀ S g(θ)``."""
        return self.normalisation * self._unit_term_cross_sections

    @cached_property
    def _pt_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Latent pT quadrature nodes and weights on ``[p_min, p_min + 80 λ]``."""
        p_max = self.pt_min + _TAIL_DECAY_LENGTHS * self.pt_decay
        return _gauss_legendre_log_panels(
            self.pt_min, p_max, self.quadrature_step, self.quadrature_order
        )

    def _base(self, p: np.ndarray) -> np.ndarray:
        """The falling pT spectrum ``base(p) = e^{−(p−p_min)/λ}/λ`` (0 below ``p_min``)."""
        shifted = p - self.pt_min
        return np.exp(-np.maximum(shifted, 0.0) / self.pt_decay) * (shifted >= 0) / self.pt_decay

    # ------------------------------------------------------------------ θ and term matrices

    def _couplings(self, thetas: np.ndarray, key: str = "thetas") -> np.ndarray:
        """``g(θ) = (1, θ₀, θ₁)`` for every θ: ``(n_theta, 3)``."""
        arr = np.asarray(thetas, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
            raise InputError(
                _SOURCE, key, f"finite values of shape (n_theta, 2), got {np.shape(thetas)}"
            )
        return np.column_stack([np.ones(len(arr)), arr])

    @staticmethod
    def _points(values: np.ndarray, key: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise InputError(_SOURCE, key, f"shape (n_events, 2), got {arr.shape}")
        return arr

    def _amplitude_terms(self, z: np.ndarray) -> np.ndarray:
        """``A_i(z) = a_i(pT) b_i(Δφ)`` for latent points ``z`` (n, 2): ``(3, n)``, term-major.

        Term-major because every use contracts over the three terms (``g(θ)ᵀ A``), which is a
        fast ``(k, 3) @ (3, n)`` product, while ``(n, 3) @ (3, k)`` is slow in BLAS.
        """
        z = self._points(z, "z")
        u = z[:, 0] / self.pt_scale
        cos_phi = np.cos(z[:, 1])
        pt_basis = (1.0, np.sqrt(u), u)
        phi_basis = (1.0, cos_phi, 2.0 * cos_phi * cos_phi - 1.0)
        out = np.empty((3, len(z)))
        for i in range(3):
            a = _series(self.pt_coefficients[i], pt_basis, len(z))
            out[i] = a * _series(self.phi_coefficients[i], phi_basis, len(z))
        return out

    def squared_amplitude(self, z: np.ndarray, thetas: np.ndarray) -> np.ndarray:
        """``D(z|θ) = A(z|θ)² + η A_0(z)²`` (dimensionless): ``(n_theta, n)``."""
        amp = self._amplitude_terms(z)
        return (self._couplings(thetas) @ amp) ** 2 + self.incoherent_fraction * amp[0] ** 2

    def _latent_terms(self, z: np.ndarray) -> np.ndarray:
        """``M(z)`` (n, 3, 3) with ``dσ(z|θ) = gᵀ M(z) g`` per unit pT and Δφ (pb/GeV/rad)."""
        z = self._points(z, "z")
        amp = self._amplitude_terms(z).T
        inside = (z[:, 1] >= 0) & (z[:, 1] <= np.pi)
        scale = np.where(inside, self.normalisation * self._base(z[:, 0]) / np.pi, 0.0)
        return scale[:, None, None] * self._incoherent * amp[:, :, None] * amp[:, None, :]

    def _pt_convolutions(self, x_pt: np.ndarray) -> np.ndarray:
        """``P_m(x) = ∫ base(p) u^{m/2} N(x; p, r p) dp`` for m = 0..4: ``(n, 5)``."""
        p, w = self._pt_nodes
        inverse_width = 1.0 / (self.pt_resolution * p)
        powers = (p[:, None] / self.pt_scale) ** (np.arange(5)[None, :] / 2.0)
        powers *= (w * self._base(p) * inverse_width / math.sqrt(2.0 * math.pi))[:, None]
        out = np.empty((len(x_pt), 5))
        for start in range(0, len(x_pt), _CHUNK):
            # Gaussian exponent (x − p)/(r p) = x/(r p) − 1/r, evaluated in place
            arg = np.multiply.outer(x_pt[start : start + _CHUNK], inverse_width)
            arg -= 1.0 / self.pt_resolution
            np.square(arg, out=arg)
            arg *= -0.5
            np.exp(arg, out=arg)
            out[start : start + _CHUNK] = arg @ powers
        return out

    def _pt_factors(self, x_pt: np.ndarray) -> np.ndarray:
        """``P_ij(x_pT)`` flattened over (i, j): ``(n, 9)``."""
        return self._pt_convolutions(x_pt) @ self._pt_products.reshape(9, 5).T

    def _phi_factors(self, x_phi: np.ndarray) -> np.ndarray:
        """``Φ_ij(x_Δφ) = (1/π) Σ_n H_ijn cos(n x) e^{−n²s²/2}`` (0 outside [0, π]): ``(n, 9)``."""
        n = np.arange(5)
        harmonics = np.cos(np.outer(x_phi, n)) * np.exp(-0.5 * (n * self.phi_resolution) ** 2)
        inside = (x_phi >= 0) & (x_phi <= np.pi)
        return (
            np.where(inside[:, None], harmonics / np.pi, 0.0) @ self._phi_products.reshape(9, 5).T
        )

    def _observed_terms(self, x: np.ndarray) -> np.ndarray:
        """``Q(x)`` (n, 3, 3) with ``dσ(x|θ) = gᵀ Q(x) g`` per unit x (zero outside support)."""
        x = self._points(x, "x")
        product = self._pt_factors(x[:, 0]) * self._phi_factors(x[:, 1])
        return self.normalisation * product.reshape(-1, 3, 3) * self._incoherent

    @staticmethod
    def _paired(g: np.ndarray, n: int) -> np.ndarray:
        """Couplings row-paired with ``n`` events (a single θ is broadcast)."""
        if len(g) == 1:
            return np.broadcast_to(g, (n, 3))
        if len(g) != n:
            raise InputError(
                _SOURCE, "thetas", f"one θ per event when not testing all combinations ({n})"
            )
        return g

    def _quadratic(self, g: np.ndarray, terms: np.ndarray, all_combinations: bool) -> np.ndarray:
        """``gᵀ T g``: ``(n_theta, n)`` for all combinations, else ``(n,)`` row-paired."""
        n = len(terms)
        if all_combinations:
            outer = (g[:, :, None] * g[:, None, :]).reshape(len(g), 9)
            return outer @ terms.reshape(n, 9).T
        g = self._paired(g, n)
        return np.einsum("ni,nij,nj->n", g, terms, g)

    def _quadratic_gradient(
        self, g: np.ndarray, terms: np.ndarray, all_combinations: bool
    ) -> np.ndarray:
        """``∇_θ(gᵀ T g) = 2 (T g)_{1:}``: ``(n_theta, n, 2)``, else ``(n, 2)`` row-paired."""
        n = len(terms)
        if all_combinations:
            return 2.0 * (g @ terms[:, 1:, :].reshape(2 * n, 3).T).reshape(len(g), n, 2)
        return 2.0 * np.einsum("npj,nj->np", terms[:, 1:, :], self._paired(g, n))

    def _log_ratio(
        self,
        terms_of: Callable[[np.ndarray], np.ndarray],
        points: np.ndarray,
        theta0: np.ndarray,
        theta1: np.ndarray,
        all_combinations: bool,
    ) -> np.ndarray:
        """``log[gᵀTg/σ](θ₀) − log[gᵀTg/σ](θ₁)`` with ``T = terms_of(points)``.

        One code path for the joint (latent ``z``) and the observed (``x``) log ratio; θ are
        checked before the points, pairing as in :meth:`_quadratic`.
        """
        g0, g1 = np.broadcast_arrays(
            self._couplings(theta0, "theta0"), self._couplings(theta1, "theta1")
        )
        terms = terms_of(points)
        f0 = self._quadratic(g0, terms, all_combinations)
        f1 = self._quadratic(g1, terms, all_combinations)
        xs_ratio = np.log(self.cross_section(g0[:, 1:])) - np.log(self.cross_section(g1[:, 1:]))
        log_r = np.log(f0, out=f0)
        log_r -= np.log(f1, out=f1)
        log_r -= xs_ratio[:, None] if all_combinations else xs_ratio
        return log_r

    def _score(
        self,
        terms_of: Callable[[np.ndarray], np.ndarray],
        points: np.ndarray,
        thetas: np.ndarray,
        all_combinations: bool,
    ) -> np.ndarray:
        """``∇_θ log[gᵀTg/σ] = 2 (T g)_{1:}/(gᵀTg) − ∇σ/σ`` with ``T = terms_of(points)``.

        One code path for the joint (latent ``z``) and the observed (``x``) score.
        """
        g = self._couplings(thetas)
        terms = terms_of(points)
        value = self._quadratic(g, terms, all_combinations)
        grad = self._quadratic_gradient(g, terms, all_combinations)
        rate = self.cross_section_gradient(g[:, 1:]) / self.cross_section(g[:, 1:])[:, None]
        if all_combinations:
            rate = rate[:, None, :]
        return grad / value[..., None] - rate

    # ------------------------------------------------------------------ cross sections

    def cross_section(self, thetas: np.ndarray) -> np.ndarray:
        """Total cross section ``σ(θ) = g(θ)ᵀ S g(θ)`` in pb: ``(n_theta,)``."""
        g = self._couplings(thetas)
        return np.einsum("ti,ij,tj->t", g, self.term_cross_sections, g)

    def cross_section_gradient(self, thetas: np.ndarray) -> np.ndarray:
        """``∇_θ σ(θ) = 2 (S g)_{1:}`` in pb: ``(n_theta, 2)``."""
        return 2.0 * self._couplings(thetas) @ self.term_cross_sections[:, 1:]

    # ------------------------------------------------------------------ joint (latent) level

    def joint_density(self, z: np.ndarray, thetas: np.ndarray) -> np.ndarray:
        """``dσ(z|θ)/(dpT dΔφ)`` in pb/GeV/rad for every θ and latent point: ``(n_theta, n)``."""
        value = self._quadratic(self._couplings(thetas), self._latent_terms(z), True)
        return value

    def joint_log_ratio(
        self,
        z: np.ndarray,
        theta0: np.ndarray,
        theta1: np.ndarray,
        test_all_combinations: bool = True,
    ) -> np.ndarray:
        """Joint ``log r(x,z|θ₀,θ₁) = log[D(z|θ₀)/σ(θ₀)] − log[D(z|θ₁)/σ(θ₁)]``.

        ``theta0``/``theta1`` are paired row by row (one row broadcasts). All combinations:
        ``(n_theta, n)``; otherwise row i pairs event i with ``θ₀[i], θ₁[i]``: ``(n,)``.
        """
        return self._log_ratio(self._latent_terms, z, theta0, theta1, test_all_combinations)

    def joint_score(
        self, z: np.ndarray, thetas: np.ndarray, test_all_combinations: bool = True
    ) -> np.ndarray:
        """Joint score ``t(x,z|θ) = ∇_θ log p(z|θ) = 2 (M(z) g)_{1:}/D − ∇σ/σ``.

        ``(n_theta, n, 2)``, or ``(n, 2)`` with ``θ`` paired to events row by row.
        """
        return self._score(self._latent_terms, z, thetas, test_all_combinations)

    # ------------------------------------------------------------------ observed level

    def log_likelihood(
        self, x: np.ndarray, thetas: np.ndarray, test_all_combinations: bool = True
    ) -> np.ndarray:
        """Exact ``log p(x|θ) = log[g(θ)ᵀ Q(x) g(θ)] − log σ(θ)`` (per GeV per rad).

        ``(n_theta, n_x)``, or ``(n_x,)`` with ``θ`` paired to events row by row.
        ``−inf`` outside the support (``Δφ ∉ [0, π]``).
        """
        g = self._couplings(thetas)
        value = self._quadratic(g, self._observed_terms(x), test_all_combinations)
        log_xs = np.log(self.cross_section(g[:, 1:]))
        with np.errstate(divide="ignore"):
            value = np.log(value, out=value)
        value -= log_xs[:, None] if test_all_combinations else log_xs
        return value

    def log_likelihood_ratio(
        self,
        x: np.ndarray,
        theta0: np.ndarray,
        theta1: np.ndarray,
        test_all_combinations: bool = True,
    ) -> np.ndarray:
        """Exact ``log r(x|θ₀,θ₁) = log p(x|θ₀) − log p(x|θ₁)``.

        ``theta0``/``theta1`` are paired row by row (one row broadcasts); all combinations
        with events give ``(n_theta, n_x)``, otherwise ``(n_x,)`` with row i ↔ event i.
        """
        return self._log_ratio(self._observed_terms, x, theta0, theta1, test_all_combinations)

    def score(
        self, x: np.ndarray, thetas: np.ndarray, test_all_combinations: bool = True
    ) -> np.ndarray:
        """Exact score ``t(x|θ) = ∇_θ log p(x|θ) = 2 (Q(x) g)_{1:}/(gᵀQg) − ∇σ/σ``.

        ``(n_theta, n_x, 2)``, or ``(n_x, 2)`` with ``θ`` paired to events row by row.
        """
        return self._score(self._observed_terms, x, thetas, test_all_combinations)

    # ------------------------------------------------------------------ expectations over x

    @cached_property
    def _observed_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tensor quadrature over observables: nodes (n, 2), weights (n,), ``Q`` at the nodes.

        ``x_pT`` from ``p_min·max(1 − 9r, 0.05)`` (the smeared threshold edge is then 9σ away)
        to ``p_min + 60 λ``, composite Gauss–Legendre in ``log x_pT``; ``x_Δφ`` Gauss–Legendre
        on ``[0, π]``.
        """
        lo = self.pt_min * max(1.0 - 9.0 * self.pt_resolution, 0.05)
        hi = self.pt_min + _OBSERVED_TAIL_DECAY_LENGTHS * self.pt_decay
        pt, w_pt = _gauss_legendre_log_panels(lo, hi, self.quadrature_step, self.quadrature_order)
        phi, w_phi = _gauss_legendre(0.0, np.pi, self.phi_quadrature_order)
        nodes = np.column_stack([np.repeat(pt, len(phi)), np.tile(phi, len(pt))])
        product = self._pt_factors(pt)[:, None, :] * self._phi_factors(phi)[None, :, :]
        terms = self.normalisation * product.reshape(-1, 3, 3) * self._incoherent
        return nodes, np.outer(w_pt, w_phi).ravel(), terms

    @cached_property
    def _latent_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Tensor quadrature over latent ``z``: nodes (n, 2) and weights (n,)."""
        p, w_p = self._pt_nodes
        phi, w_phi = _gauss_legendre(0.0, np.pi, self.phi_quadrature_order)
        nodes = np.column_stack([np.repeat(p, len(phi)), np.tile(phi, len(p))])
        return nodes, np.outer(w_p, w_phi).ravel()

    def integrate_observed(self, thetas: np.ndarray) -> np.ndarray:
        """``∫ p(x|θ) dx`` by the observable quadrature (1 up to its accuracy): (n_theta,)."""
        _, weights, terms = self._observed_grid
        g = self._couplings(thetas)
        value = self._quadratic(g, terms, True)
        return value @ weights / self.cross_section(g[:, 1:])

    def expected_log_likelihood_ratio(
        self,
        theta_grid: np.ndarray,
        theta_true: np.ndarray,
        luminosity: float,
        include_xsec: bool = True,
    ) -> np.ndarray:
        """Exact Asimov ``E[log L(θ) − log L(θ_true)]`` for every grid point: ``(n_grid,)``.

        ``n·∫ p(x|θ_true) log[p(x|θ)/p(x|θ_true)] dx`` with ``n = L σ(θ_true)`` expected events,
        plus (``include_xsec``) the Poisson rate term in its continuous form
        ``log Pois(n|Lσ(θ)) − log Pois(n|Lσ(θ_true)) = n log[σ(θ)/σ(θ_true)] − L[σ(θ) − σ(θ_true)]``
        (``log Pois(k|μ) = k log μ − μ − lnΓ(k+1)``: the ``lnΓ`` terms cancel, so ``n`` need
        not be an integer). Maximal (0) at ``θ_true``; ``−2×`` this is the asymptotic test
        statistic ``q(θ)`` (Wilks; Cowan et al., arXiv:1007.1727).
        """
        if not luminosity > 0:
            raise InputError(_SOURCE, "luminosity", f"a positive number (pb⁻¹), got {luminosity!r}")
        _, weights, terms = self._observed_grid
        g_true = self._couplings(theta_true, "theta_true")
        if len(g_true) != 1:
            raise InputError(_SOURCE, "theta_true", "a single parameter point")
        g = self._couplings(theta_grid, "theta_grid")
        xs_true = float(self.cross_section(g_true[:, 1:])[0])
        xs = self.cross_section(g[:, 1:])
        n_expected = luminosity * xs_true
        f_true = self._quadratic(g_true, terms, True)
        density_weights = f_true[0] * weights / xs_true
        log_f_true = np.log(f_true[0])
        kinematic = np.empty(len(g))
        for start in range(0, len(g), 64):
            f = self._quadratic(g[start : start + 64], terms, True)
            kinematic[start : start + 64] = (np.log(f) - log_f_true) @ density_weights
        kinematic = n_expected * (kinematic - np.log(xs / xs_true))
        if not include_xsec:
            return kinematic
        return kinematic + n_expected * np.log(xs / xs_true) - luminosity * (xs - xs_true)

    def expected_p_values(
        self,
        theta_grid: np.ndarray,
        theta_true: np.ndarray,
        luminosity: float,
        include_xsec: bool = True,
    ) -> np.ndarray:
        """Asymptotic p-values ``χ²_2.sf(q)``, ``q = −2 [E log L(θ) − max_grid E log L]``."""
        llr = self.expected_log_likelihood_ratio(theta_grid, theta_true, luminosity, include_xsec)
        return special.chdtrc(2, -2.0 * (llr - llr.max()))  # χ² survival function

    def fisher_information(
        self, theta: np.ndarray, luminosity: float, include_xsec: bool = True
    ) -> np.ndarray:
        """Exact Fisher information of the observables, ``n E_x[t tᵀ] + L ∇σ∇σᵀ/σ``: (2, 2).

        ``n = L σ(θ)``; the rate term is the information of the Poisson count. Equals minus the
        Hessian of :meth:`expected_log_likelihood_ratio` at ``θ_true = θ``.
        """
        _, weights, terms = self._observed_grid
        return self._information(theta, luminosity, include_xsec, weights, terms)

    def joint_fisher_information(
        self, theta: np.ndarray, luminosity: float, include_xsec: bool = True
    ) -> np.ndarray:
        """Parton-level Fisher information ``n E_z[t(x,z) t(x,z)ᵀ] + L ∇σ∇σᵀ/σ``: (2, 2).

        With the rate term this is ``L ∫ ∇dσ ∇dσᵀ / dσ dz``, what MadMiner's truth information
        estimates from weighted events; it bounds :meth:`fisher_information` from above.
        """
        nodes, weights = self._latent_grid
        return self._information(
            theta, luminosity, include_xsec, weights, self._latent_terms(nodes)
        )

    def _information(
        self,
        theta: np.ndarray,
        luminosity: float,
        include_xsec: bool,
        weights: np.ndarray,
        terms: np.ndarray,
    ) -> np.ndarray:
        g = self._couplings(theta, "theta")
        if len(g) != 1:
            raise InputError(_SOURCE, "theta", "a single parameter point")
        xs = float(self.cross_section(g[:, 1:])[0])
        xs_grad = self.cross_section_gradient(g[:, 1:])[0]
        value = self._quadratic(g, terms, True)[0]
        grad = self._quadratic_gradient(g, terms, True)[0]
        mask = value > 0
        t = grad[mask] / value[mask, None] - xs_grad / xs
        info = luminosity * np.einsum("n,ni,nj->ij", weights[mask] * value[mask], t, t)
        if include_xsec:
            info += luminosity * np.outer(xs_grad, xs_grad) / xs
        return info

    # ------------------------------------------------------------------ event generation

    def _envelope_peak(self, coefficients: np.ndarray, kappa: float) -> float:
        """``max_p B(p)² e^{−κ(p − p_min)}`` for ``B = c₀ + c₁√u + c₂u`` with ``c ≥ 0``.

        ``B`` is concave in ``p`` (non-negative combination of 1, √p, p), so ``log B`` is
        concave and ``h(p) = 2 log B − κ(p − p_min)`` has a single maximum: at ``p_min`` if
        ``h'(p_min) ≤ 0``, else at the root of the decreasing ``h'``. Since
        ``p B'/B ≤ 1``, ``h' < 0`` beyond ``2/κ``, which brackets the root.
        """
        c0, c1, c2 = coefficients

        def envelope(p: float) -> float:
            u = p / self.pt_scale
            return c0 + c1 * math.sqrt(u) + c2 * u

        def slope(p: float) -> float:
            u = p / self.pt_scale
            derivative = (0.5 * c1 / math.sqrt(u) + c2) / self.pt_scale
            return 2.0 * derivative / envelope(p) - kappa

        peak = self.pt_min
        if slope(peak) > 0:
            peak = optimize.brentq(slope, self.pt_min, self.pt_min + 2.0 / kappa, xtol=1e-12)
        return envelope(peak) ** 2 * math.exp(-kappa * (peak - self.pt_min))

    def _proposal(self, coupling: np.ndarray) -> tuple[float, float]:
        """Exponential proposal decay length and envelope ``M`` with best acceptance.

        Target ``∝ base(p) D(z|θ)``; proposal ``q(p) = e^{−(p−p_min)/λ'}/λ'``, Δφ uniform.
        Accepting with probability ``D(z) e^{−κ(p−p_min)}/M`` (``κ = 1/λ − 1/λ'``) samples
        the target exactly iff ``D(z) e^{−κ(p−p_min)} ≤ M`` everywhere. With
        ``|a_i(p)| ≤ Σ_m |α_im| u^{m/2}`` and ``|b_i| ≤ Σ_n |β_in|``,
        ``D ≤ B_coh(p)² + η B_0(p)²`` whose two pieces are bounded by :meth:`_envelope_peak`.
        Acceptance is ``(λ/λ') σ(θ) / (N M)``; the stretch ``λ'/λ`` maximising it is used.
        """
        alpha = np.abs(np.asarray(self.pt_coefficients))
        beta_sum = np.abs(np.asarray(self.phi_coefficients)).sum(axis=1)
        coherent = (np.abs(coupling)[:, None] * beta_sum[:, None] * alpha).sum(axis=0)
        sm_only = beta_sum[0] * alpha[0]
        best = (0.0, 0.0, 0.0)
        for stretch in _PROPOSAL_STRETCHES:
            kappa = (1.0 - 1.0 / stretch) / self.pt_decay
            bound = _ENVELOPE_SAFETY * (
                self._envelope_peak(coherent, kappa)
                + self.incoherent_fraction * self._envelope_peak(sm_only, kappa)
            )
            acceptance = 1.0 / (stretch * bound)
            if acceptance > best[0]:
                best = (acceptance, stretch * self.pt_decay, bound)
        return best[1], best[2]

    def sample_latent(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` unweighted latent events ``z ~ p(z|θ)`` by exact rejection sampling: (n, 2)."""
        coupling = self._couplings(theta, "theta")
        if len(coupling) != 1:
            raise InputError(_SOURCE, "theta", "a single parameter point")
        coupling = coupling[0]
        decay, bound = self._proposal(coupling)
        kappa = 1.0 / self.pt_decay - 1.0 / decay
        acceptance = (
            (self.pt_decay / decay)
            * self.cross_section(coupling[1:])[0]
            / (self.normalisation * bound)
        )
        accepted: list[np.ndarray] = []
        have = 0
        while have < n:
            n_try = math.ceil((n - have) / acceptance * 1.05) + 64
            z = np.column_stack(
                [self.pt_min + rng.exponential(decay, n_try), rng.uniform(0.0, np.pi, n_try)]
            )
            ratio = self.squared_amplitude(z, coupling[1:])[0] * np.exp(
                -kappa * (z[:, 0] - self.pt_min)
            )
            keep = z[rng.uniform(0.0, bound, n_try) < ratio]
            accepted.append(keep)
            have += len(keep)
        return np.concatenate(accepted)[:n]

    def smear(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Detector response ``x = (pT (1 + r ε₁), fold(Δφ + s ε₂))``: (n, 2)."""
        z = self._points(z, "z")
        noise = rng.standard_normal((len(z), 2))
        return np.column_stack(
            [
                z[:, 0] * (1.0 + self.pt_resolution * noise[:, 0]),
                _fold_angle(z[:, 1] + self.phi_resolution * noise[:, 1]),
            ]
        )

    def generate(self, n_events: int, seed: int) -> ToyEvents:
        """Events as from one MadGraph run per benchmark, reweighted to all, then shuffled.

        Run b draws ``N_b`` unweighted ``z ~ p(z|θ_b)`` (``n_events`` split evenly, the first
        runs take the remainder) and gives event i the weights
        ``w_ib' = σ(θ_b)/N_b · D(z_i|θ_b')/D(z_i|θ_b)`` at every benchmark b', so each run's
        weights sum to σ(θ_b) at its own benchmark and estimate σ(θ_b') at the others.
        Deterministic given ``seed``.
        """
        n_b = len(self.benchmark_names)
        if n_events < n_b:
            raise InputError(_SOURCE, "n_events", f"at least one event per benchmark ({n_b})")
        rng = np.random.default_rng(seed)
        counts = np.full(n_b, n_events // n_b, dtype=np.int64)
        counts[: n_events % n_b] += 1
        values = np.asarray(self.benchmark_values, dtype=np.float64)
        xs = self.cross_section(values)
        latent, weights = [], []
        for b, count in enumerate(counts):
            z = self.sample_latent(values[b], int(count), rng)
            squared = self.squared_amplitude(z, values)
            latent.append(z)
            weights.append((xs[b] / count * squared / squared[b]).T)
        z_all = np.concatenate(latent)
        order = rng.permutation(n_events)
        ids = np.repeat(np.arange(n_b, dtype=np.int64), counts)
        z_all = z_all[order]
        return ToyEvents(
            latent=z_all,
            observations=self.smear(z_all, rng),
            weights=np.concatenate(weights)[order],
            sampling_benchmarks=ids[order],
            signal_events=counts,
        )

    def header(self, signal_events: np.ndarray) -> madminer_file.EventFileHeader:
        """The MadMiner header of a toy file: parameters, benchmarks, morphing, observables."""
        components = find_components([2, 2])
        values = np.asarray(self.benchmark_values, dtype=np.float64)
        parameters = tuple(
            madminer_file.Parameter(
                name=name,
                lha_block="dim6",
                lha_id=k + 1,
                max_power=2,
                val_range=self.parameter_range,
                transform="theta",
            )
            for k, name in enumerate(self.parameter_names)
        )
        n_b = len(self.benchmark_names)
        return madminer_file.EventFileHeader(
            parameters=parameters,
            benchmark_names=self.benchmark_names,
            benchmark_values=values,
            benchmark_is_nuisance=np.zeros(n_b, dtype=bool),
            benchmark_is_reference=np.arange(n_b) == 0,
            morphing_components=components,
            morphing_matrix=morphing_matrix(components, values),
            observable_names=OBSERVABLE_NAMES,
            observable_definitions=_OBSERVABLE_DEFINITIONS,
            signal_events=np.asarray(signal_events, dtype=np.int64),
            background_events=0,
            n_events=int(np.sum(signal_events)),
            source=_SOURCE,
        )

    def write_event_file(
        self, path: str | os.PathLike[str], n_events: int = 100_000, seed: int = 0
    ) -> Path:
        """Generate ``n_events`` (:meth:`generate`) and write a MadMiner event file atomically."""
        events = self.generate(n_events, seed)
        return madminer_file.write_event_file(
            path,
            self.header(events.signal_events),
            events.observations,
            events.weights,
            events.sampling_benchmarks,
        )


DEFAULT_TOY = ToySimulator()
"""The toy every default workflow uses; module-level functions below are its methods."""

cross_section = DEFAULT_TOY.cross_section
log_likelihood = DEFAULT_TOY.log_likelihood
log_likelihood_ratio = DEFAULT_TOY.log_likelihood_ratio
score = DEFAULT_TOY.score
expected_log_likelihood_ratio = DEFAULT_TOY.expected_log_likelihood_ratio
expected_p_values = DEFAULT_TOY.expected_p_values
fisher_information = DEFAULT_TOY.fisher_information
write_event_file = DEFAULT_TOY.write_event_file
