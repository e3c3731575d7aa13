"""The toy's observable space as weighted "events" on quadrature nodes (exact-answer helper).

Each node x_k of a tensor Gauss–Legendre rule (log pT panels × Δφ) becomes an event with
benchmark weights ``q_k · dσ(x_k|θ_b) = q_k σ(θ_b) p(x_k|θ_b)``. Since ``dσ(x|θ)`` is exactly
quadratic in θ, morphing these weights reproduces ``q_k dσ(x_k|θ)`` at every θ, so any weighted
sum over the nodes is the quadrature of the exact integral: Asimov expectations and Fisher
information of the observables, with no Monte-Carlo noise.
"""

from __future__ import annotations

import numpy as np

from minerflow.physics import toy
from minerflow.physics.morphing import Morpher, find_components
from minerflow.physics.weighted_events import MorphedEvents

__all__ = ["quadrature_events"]


def _legendre(lo: np.ndarray, hi: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(order)
    half = (hi - lo)[:, None] / 2
    return ((lo + hi)[:, None] / 2 + half * nodes).ravel(), (half * weights).ravel()


def quadrature_events(panel: float = 0.05, order: int = 8, phi_order: int = 32) -> MorphedEvents:
    """Nodes over x_pT ∈ [3, 3030] GeV (log panels) × Δφ ∈ [0, π] as morphed events."""
    sim = toy.DEFAULT_TOY
    lo = sim.pt_min * max(1.0 - 9.0 * sim.pt_resolution, 0.05)
    hi = sim.pt_min + 60.0 * sim.pt_decay
    bounds = np.linspace(np.log(lo), np.log(hi), int(np.ceil(np.log(hi / lo) / panel)) + 1)
    u, w_u = _legendre(bounds[:-1], bounds[1:], order)
    pt, w_pt = np.exp(u), np.exp(u) * w_u
    phi, w_phi = _legendre(np.array([0.0]), np.array([np.pi]), phi_order)
    x = np.column_stack([np.repeat(pt, len(phi)), np.tile(phi, len(pt))])
    q = np.outer(w_pt, w_phi).ravel()
    benchmarks = np.asarray(toy.BENCHMARK_VALUES)
    density = np.exp(toy.log_likelihood(x, benchmarks)).T  # (n, n_b)
    weights = q[:, None] * density * toy.cross_section(benchmarks)[None, :]
    morpher = Morpher.from_basis(find_components([2, 2]), benchmarks)
    return MorphedEvents(x, weights, morpher, toy.OBSERVABLE_NAMES)
