"""Morphing: event weights at any parameter point θ from weights at a few benchmarks.

A squared matrix element whose couplings enter polynomially is a polynomial in θ,
``|M(θ)|² = Σ_k a_k c_k(θ)`` with monomials ``c_k(θ) = Π_p θ_p^{K[k,p]}`` (the *components*).
Knowing the weight of an event at ``n_b ≥ n_c`` benchmark points θ_b fixes the coefficients,
so the weight at any θ is a linear combination of the benchmark weights,
``w(θ) = Σ_b w_b(θ) w_b`` with ``w_b(θ) = Σ_k M[k,b] c_k(θ)`` and ``M = A⁺``,
``A[b,k] = c_k(θ_b)`` (arXiv:1805.00020, sec. "Morphing"; MadMiner stores ``M`` as
``morphing/morphing_matrix``). Every function here is vectorised over many θ at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from minerflow.errors import InputError

__all__ = [
    "Morpher",
    "component_gradients",
    "component_values",
    "find_components",
    "morphing_matrix",
]

_SOURCE = "morphing"


def find_components(
    max_powers: Sequence[int] | np.ndarray, max_overall_power: int | None = None
) -> np.ndarray:
    """Power vectors ``K[k]`` of every monomial the squared matrix element can contain.

    All ``K`` with ``0 ≤ K[p] ≤ max_powers[p]`` and ``Σ_p K[p] ≤ max_overall_power``, in
    lexicographic order (last parameter fastest). The default overall power is
    ``max(max_powers)``: couplings that enter the amplitude linearly give a squared amplitude
    of total degree 2 (the EFT case), so ``max_powers=(2, 2)`` yields the 6 quadratic
    components rather than all 9 products (MadMiner's default of 4 would need 9 benchmarks).

    Returns an ``(n_c, n_p)`` int64 array.
    """
    powers = np.asarray(max_powers)
    if powers.ndim != 1 or powers.size == 0 or not np.issubdtype(powers.dtype, np.integer):
        raise InputError(_SOURCE, "max_powers", f"a non-empty list of integers, got {powers!r}")
    if (powers < 0).any():
        raise InputError(_SOURCE, "max_powers", f"non-negative powers, got {powers.tolist()}")
    overall = int(powers.max()) if max_overall_power is None else int(max_overall_power)
    if overall < 0:
        raise InputError(_SOURCE, "max_overall_power", f"a non-negative power, got {overall}")
    combos = [
        k for k in itertools.product(*(range(int(p) + 1) for p in powers)) if sum(k) <= overall
    ]
    return np.asarray(combos, dtype=np.int64).reshape(-1, powers.size)


def _as_thetas(thetas: np.ndarray, n_parameters: int) -> np.ndarray:
    """``thetas`` as a float64 ``(n_theta, n_p)`` array (a single 1-D point is promoted)."""
    arr = np.asarray(thetas, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[1] != n_parameters:
        raise InputError(
            _SOURCE, "thetas", f"shape (n_theta, {n_parameters}), got {np.shape(thetas)}"
        )
    return arr


def component_values(components: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """Monomials ``c_k(θ) = Π_p θ_p^{K[k,p]}`` for every θ: ``(n_theta, n_c)``."""
    comps = np.asarray(components, dtype=np.int64)
    arr = _as_thetas(thetas, comps.shape[1])
    return np.prod(arr[:, np.newaxis, :] ** comps[np.newaxis, :, :], axis=2)


def component_gradients(components: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """Gradients ``∂c_k/∂θ_i = K[k,i] θ_i^{K[k,i]-1} Π_{p≠i} θ_p^{K[k,p]}``: (n_theta, n_p, n_c).

    The reduced power is clipped at 0 so that ``θ_i = 0`` with ``K[k,i] = 0`` gives an exact 0
    (the factor ``K[k,i]`` vanishes) instead of ``0 · ∞``.
    """
    comps = np.asarray(components, dtype=np.int64)
    n_p = comps.shape[1]
    arr = _as_thetas(thetas, n_p)
    # reduced[i, k, p] = K[k, p] - δ_ip, clipped at 0
    reduced = np.clip(
        comps[np.newaxis, :, :] - np.eye(n_p, dtype=np.int64)[:, np.newaxis, :], 0, None
    )
    factors = np.prod(arr[:, np.newaxis, np.newaxis, :] ** reduced[np.newaxis], axis=3)
    return comps.T[np.newaxis, :, :] * factors


def morphing_matrix(components: np.ndarray, basis_thetas: np.ndarray) -> np.ndarray:
    """Morphing matrix ``M`` (``(n_c, n_b)``) with ``w_b(θ) = Σ_k M[k,b] c_k(θ)``.

    ``A[b,k] = c_k(θ_b)``. A square basis gives ``M = A⁻¹`` (the weights reproduce every
    benchmark exactly: ``w(θ_b) = e_b``). An over-determined basis (``n_b > n_c``) gives the
    least-squares solution ``M = A⁺`` (Moore–Penrose pseudo-inverse), which still morphs any
    polynomial of the components exactly. Fewer points than components, or points that do not
    determine every component (rank-deficient ``A``), raise :class:`InputError`.
    """
    comps = np.asarray(components, dtype=np.int64)
    basis = _as_thetas(basis_thetas, comps.shape[1])
    n_c, n_b = comps.shape[0], basis.shape[0]
    if n_b < n_c:
        raise InputError(
            _SOURCE, "basis_thetas", f"at least {n_c} basis points for {n_c} components, got {n_b}"
        )
    design = component_values(comps, basis)
    rank = np.linalg.matrix_rank(design)
    if rank < n_c:
        raise InputError(
            _SOURCE,
            "basis_thetas",
            f"basis points that determine all {n_c} components (rank {rank} < {n_c})",
        )
    if n_b == n_c:
        return np.linalg.inv(design)
    return np.linalg.pinv(design)


class Morpher:
    """Morphing weights ``w_b(θ)`` and their gradients for a fixed components/matrix pair.

    ``dσ_i(θ) = weights(θ) @ w_i`` with ``w_i`` the event's (physics) benchmark weights, and
    ``∇_θ dσ_i(θ) = weight_gradients(θ) @ w_i`` (needed for the joint score t(x,z|θ)).
    """

    def __init__(self, components: np.ndarray, matrix: np.ndarray) -> None:
        comps = np.asarray(components, dtype=np.int64)
        mat = np.asarray(matrix, dtype=np.float64)
        if comps.ndim != 2 or comps.shape[0] == 0:
            raise InputError(_SOURCE, "components", f"shape (n_c, n_p), got {comps.shape}")
        if mat.ndim != 2 or mat.shape[0] != comps.shape[0]:
            raise InputError(
                _SOURCE, "morphing_matrix", f"shape ({comps.shape[0]}, n_b), got {mat.shape}"
            )
        self.components = comps
        self.matrix = mat
        self.components.setflags(write=False)
        self.matrix.setflags(write=False)

    @classmethod
    def from_basis(cls, components: np.ndarray, basis_thetas: np.ndarray) -> Morpher:
        """Morpher whose matrix is computed from the benchmark points (see morphing_matrix)."""
        return cls(components, morphing_matrix(components, basis_thetas))

    @property
    def n_parameters(self) -> int:
        """Number of theory parameters θ."""
        return int(self.components.shape[1])

    @property
    def n_components(self) -> int:
        """Number of monomials c_k."""
        return int(self.components.shape[0])

    @property
    def n_benchmarks(self) -> int:
        """Number of benchmark weight columns that are combined."""
        return int(self.matrix.shape[1])

    def weights(self, thetas: np.ndarray) -> np.ndarray:
        """Morphing weights ``w_b(θ) = Σ_k c_k(θ) M[k,b]`` for every θ: ``(n_theta, n_b)``."""
        return component_values(self.components, thetas) @ self.matrix

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray:
        """``∂w_b/∂θ_i = Σ_k ∂c_k/∂θ_i M[k,b]`` for every θ: ``(n_theta, n_p, n_b)``."""
        return component_gradients(self.components, thetas) @ self.matrix
