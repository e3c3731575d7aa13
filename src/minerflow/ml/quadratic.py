"""Morphing-aware ratio estimator: the θ dependence is exact, only the x dependence is learned.

When the amplitude is a polynomial in θ, ``A(x|θ) = Σ_h a_h(x) θ^h`` over the *amplitude
powers* h, every differential cross section is a positive semi-definite quadratic form in the
monomials ``m(θ) = (θ^h)_h``, and so is the total cross section:

    dσ(x|θ) / dσ(x|θ_ref) = ‖L(x)ᵀ m(θ − θ_ref)‖²,     σ(θ) / σ(θ_ref) = ‖Bᵀ m(θ − θ_ref)‖²,

    r̂(x|θ) = p̂(x|θ) / p̂(x|θ_ref) = ‖L(x)ᵀ m(θ − θ_ref)‖² / ‖Bᵀ m(θ − θ_ref)‖².

``L(x)`` is a lower-triangular matrix whose entries a dense network predicts from the
standardised x and ``B`` a lower-triangular matrix of free parameters; both have the corner
entry fixed to 1, so ``r̂(x|θ_ref) = 1`` exactly. Any positive semi-definite form can be
written this way (Cholesky), so the family contains the truth, and r̂ is by construction a
ratio of two quadratic forms in m(θ): the estimator interpolates and extrapolates in θ the way
morphing does. With one parameter and ``m = (1, θ)`` this is the quadratic classifier of Chen,
Glioti, Panico, Wulzer, arXiv:2007.10356, ``r̂ = [(1 + θα(x))² + (θβ(x))²] / [(1 + θa)² + (θb)²]``;
here it works for any number of parameters.

The amplitude powers come from the event file's morphing components (``components``, the
powers of θ in the squared matrix element): each component must be the sum of two amplitude
powers, ``{h + h'} = components``, with ``h = component / 2`` for the even components (the
default, ``find_components([2] * n_p)``, is the EFT case of an amplitude linear in θ). The
benchmark basis and morphing matrix do not enter: the form is basis independent.

Training uses the ratio methods of :class:`~minerflow.ml.ratio.ParameterizedRatioEstimator`
unchanged (y = 1 events must be drawn at ``reference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from minerflow.errors import InputError
from minerflow.ml.arrays import ArrayLike, as_matrix
from minerflow.ml.blocks import check_pairing, evaluation_blocks
from minerflow.ml.nets import DenseNet
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.scaling import Standardizer
from minerflow.physics.morphing import find_components

__all__ = ["QuadraticMorphingNet", "QuadraticRatioEstimator", "amplitude_powers"]

_SOURCE = "quadratic estimator"
_LOG_FLOOR = 1e-30  # keeps log h finite when a learned form touches zero


def amplitude_powers(components: ArrayLike) -> np.ndarray:
    """Amplitude powers H with ``{h + h' : h, h' ∈ H} = components``, zero vector first.

    >>> amplitude_powers([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0]]).tolist()
    [[0, 0], [0, 1], [1, 0]]

    The set must be closed under lowering any power (as every basis from ``find_components``
    is), so that shifting θ by the reference point keeps the same polynomial span.
    """
    try:
        values = np.asarray(components, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.ndim != 2 or values.size == 0 or (np.mod(values, 1) != 0).any() or (values < 0).any():
        raise InputError(_SOURCE, "components", "a non-empty 2-D array of non-negative integers")
    values = values.astype(np.int64)
    wanted = {tuple(row) for row in values.tolist()}
    powers = sorted(
        {tuple(v // 2 for v in row) for row in values.tolist() if all(v % 2 == 0 for v in row)},
        key=lambda h: (sum(h), h),
    )
    sums = {tuple(a + b for a, b in zip(h, g, strict=True)) for h in powers for g in powers}
    if sums != wanted or not powers or any(powers[0]):
        raise InputError(
            _SOURCE,
            "components",
            "the powers of a squared polynomial amplitude (each component the sum of two "
            "amplitude powers, e.g. find_components with max power 2 per parameter)",
        )
    present = set(powers)
    for h in powers:
        for p, power in enumerate(h):
            if power and (*h[:p], power - 1, *h[p + 1 :]) not in present:
                raise InputError(_SOURCE, "components", "amplitude powers closed under lowering")
    return np.asarray(powers, dtype=np.int64).reshape(-1, values.shape[1])


class QuadraticMorphingNet(nn.Module):
    """``log r̂ = log ‖L(x)ᵀ m(θ−θ_ref)‖² − log ‖Bᵀ m(θ−θ_ref)‖²`` (see the module docstring).

    ``forward`` takes the ratio estimator's rows ``[θ', x']`` (θ standardised, undone here so
    that the polynomial structure holds in the physical θ).
    """

    def __init__(
        self,
        n_observables: int,
        powers: np.ndarray,
        reference: np.ndarray,
        theta_scaler: Standardizer,
        n_hidden: Sequence[int],
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.n_parameters = int(powers.shape[1])
        # θ^h as a product of single factors, so autograd never meets 0^0.
        self.factors = [[p for p, k in enumerate(h) for _ in range(k)] for h in powers.tolist()]
        n_h = len(self.factors)
        rows, cols = np.tril_indices(n_h)
        # One-hot map from the packed entries to the flattened matrix (a matmul, fast backward).
        scatter = torch.zeros(len(rows), n_h * n_h)
        scatter[torch.arange(len(rows)), torch.as_tensor(rows * n_h + cols)] = 1.0
        self.register_buffer("scatter", scatter, False)
        # Diagonal entries are exp(output): no sign-flip symmetry, no saddle at zero.
        self.register_buffer("diagonal", torch.as_tensor(rows[1:] == cols[1:]), False)
        self.n_h = n_h
        self.body = DenseNet(n_observables, len(rows) - 1, n_hidden, activation, dropout)
        self.denominator = nn.Parameter(torch.zeros(len(rows) - 1))
        self.register_buffer("reference", torch.as_tensor(reference, dtype=torch.float32), False)
        self.register_buffer(
            "theta_means", torch.as_tensor(theta_scaler.means, dtype=torch.float32)
        )
        self.register_buffer("theta_stds", torch.as_tensor(theta_scaler.stds, dtype=torch.float32))

    def monomials(self, theta: torch.Tensor) -> torch.Tensor:
        """``m(θ − θ_ref)``: ``(..., n_h)`` for θ of shape ``(..., n_p)``."""
        delta = theta - self.reference
        ones = torch.ones_like(delta[..., 0])
        columns = []
        for factors in self.factors:
            column = ones
            for p in factors:
                column = column * delta[..., p]
            columns.append(column)
        return torch.stack(columns, dim=-1)

    def triangular(self, entries: torch.Tensor) -> torch.Tensor:
        """Lower-triangular ``(..., n_h, n_h)``: corner 1, diagonal ``exp(entry)``, rest as is."""
        entries = torch.where(self.diagonal, torch.exp(entries), entries)
        full = torch.cat([torch.ones_like(entries[..., :1]), entries], dim=-1)
        return (full @ self.scatter).unflatten(-1, (self.n_h, self.n_h))

    def factor(self, x_scaled: torch.Tensor) -> torch.Tensor:
        """``L(x)`` for standardised events: ``(n_x, n_h, n_h)``."""
        return self.triangular(self.body(x_scaled))

    def log_ratio(self, factor: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """log r̂ from ``L(x)`` ``(n, n_h, n_h)`` and θ rows broadcasting against it.

        θ of shape ``(n, n_p)`` or ``(1, n_p)`` pairs with the events, ``(n_theta, 1, n_p)``
        gives every combination ``(n_theta, n)``.
        """
        m = self.monomials(theta)
        numerator = (m.unsqueeze(-2) @ factor).squeeze(-2).square().sum(-1)
        denominator = (m @ self.triangular(self.denominator)).square().sum(-1)
        return torch.log(numerator.clamp_min(_LOG_FLOOR)) - torch.log(
            denominator.clamp_min(_LOG_FLOOR)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """log r̂ for rows ``[θ', x']``: ``(n, 1)``."""
        theta = inputs[:, : self.n_parameters] * self.theta_stds + self.theta_means
        factor = self.factor(inputs[:, self.n_parameters :])
        return self.log_ratio(factor, theta)[:, None]


class QuadraticRatioEstimator(ParameterizedRatioEstimator):
    """Ratio estimator with the exact morphing θ dependence (``estimator: quadratic``).

    ``components``: the event file's morphing components ``(n_c, n_p)`` (default: quadratic
    in every parameter); ``reference``: the denominator θ_ref of the training sample
    (default: the origin, the SM). Both are stored with the model.

    >>> QuadraticRatioEstimator(components=[[0], [1], [2]]).powers.tolist()
    [[0], [1]]
    """

    estimator_type = "quadratic_ratio"
    family = "ratio"

    def __init__(
        self,
        components: ArrayLike | None = None,
        reference: Sequence[float] | np.ndarray | None = None,
        n_hidden: Sequence[int] = (100, 100, 100),
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(n_hidden=n_hidden, activation=activation, dropout=dropout)
        self.powers = None if components is None else amplitude_powers(components)
        self.components = None if components is None else np.asarray(components, dtype=np.int64)
        self.reference = None if reference is None else np.asarray(reference, dtype=np.float64)
        if self.reference is not None and self.reference.ndim != 1:
            raise InputError(_SOURCE, "reference", "one parameter point (a 1-D array)")

    def _structure(self) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude powers and reference for ``n_parameters``, filling in the defaults."""
        n_p = self.n_parameters
        assert n_p is not None
        if self.components is None:
            self.components = find_components([2] * n_p)
            self.powers = amplitude_powers(self.components)
        if self.reference is None:
            self.reference = np.zeros(n_p)
        if self.components.shape[1] != n_p:
            raise InputError(_SOURCE, "components", f"{n_p} columns (one per parameter of theta)")
        if self.reference.shape != (n_p,):
            raise InputError(_SOURCE, "reference", f"{n_p} values (one per parameter of theta)")
        return self.powers, self.reference

    def _build_net(self) -> QuadraticMorphingNet:  # type: ignore[override]
        assert self.n_observables is not None and self.n_parameters is not None
        powers, reference = self._structure()
        scaler = self.scalers.get("theta", Standardizer.identity(self.n_parameters))
        return QuadraticMorphingNet(
            self.n_observables,
            powers,
            reference,
            scaler,
            self.n_hidden,
            self.activation,
            self.dropout,
        )

    def architecture(self) -> dict[str, Any]:
        """The dense settings plus the morphing components and the reference point."""
        return {
            **super().architecture(),
            "components": None if self.components is None else self.components.tolist(),
            "reference": None if self.reference is None else self.reference.tolist(),
        }

    @classmethod
    def from_architecture(cls, architecture: Mapping[str, Any]) -> Self:
        """An untrained estimator with the saved architecture and morphing structure."""
        estimator = cls(
            components=architecture["components"],
            reference=architecture["reference"],
            n_hidden=architecture["n_hidden"],
            activation=architecture["activation"],
            dropout=architecture.get("dropout", 0.0),
        )
        estimator.n_observables = int(architecture["n_observables"])
        estimator.n_parameters = int(architecture["n_parameters"])
        estimator.net = estimator._build_net()
        estimator.net.eval()
        return estimator

    def evaluate_log_likelihood_ratio(
        self,
        x: ArrayLike,
        thetas: ArrayLike,
        test_all_combinations: bool = True,
        evaluate_score: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """log r̂(x|θ) against θ_ref and optionally t̂(x|θ) = ∇_θ log r̂ (same shapes as
        :meth:`ParameterizedRatioEstimator.evaluate_log_likelihood_ratio`).

        ``L(x)`` is computed once per block of events and combined with every θ.
        """
        net = self._require_trained()
        x_scaler = self.scalers["x"]
        x_array = as_matrix(x, "x", n_columns=self.n_observables, source="evaluation")
        x_t = self._as_tensor((x_array - x_scaler.means) / x_scaler.stds)
        theta_t = self._as_tensor(
            as_matrix(thetas, "thetas", n_columns=self.n_parameters, source="evaluation")
        )
        paired = not test_all_combinations
        if paired:
            check_pairing(len(theta_t), len(x_t), "thetas")
        shape = (len(x_t),) if paired else (len(theta_t), len(x_t))
        log_r = np.empty(shape)
        score = np.empty((*shape, self.n_parameters)) if evaluate_score else None
        for block in evaluation_blocks(len(x_t), len(theta_t), paired):
            with torch.no_grad():
                factor = net.factor(x_t[block.x])
            theta = theta_t[block.theta] if paired else theta_t[block.theta, None, :]
            if evaluate_score:
                theta = theta.expand(*block.shape, self.n_parameters).clone().requires_grad_(True)
                with torch.enable_grad():
                    values = net.log_ratio(factor, theta)
                    (gradient,) = torch.autograd.grad(values.sum(), theta)
                score[block.out] = gradient.double().cpu().numpy()
            else:
                with torch.no_grad():
                    values = net.log_ratio(factor, theta)
            log_r[block.out] = values.detach().double().cpu().numpy().reshape(block.shape)
        return log_r, score
