"""Doubly parameterised likelihood-ratio estimator r̂(x|θ0, θ1).

One dense network f on the standardised ``[θ0, θ1, x]`` gives

    log r̂(x|θ0, θ1) = f(θ0, θ1, x) − f(θ1, θ0, x),

antisymmetric by construction, so ``log r̂(x|θ, θ) = 0`` and swapping the hypotheses flips
the sign exactly (Brehmer, Louppe, Pavez, Cranmer, arXiv:1805.00020, sec. IV). Both θ share
one standardisation (fitted on θ0 and θ1 together), which keeps the swap exact and is applied
at evaluation as well (MadMiner skipped it there).

Scores: ``t̂0 = ∇_θ0 log r̂`` estimates t(x|θ0) and ``t̂1 = −∇_θ1 log r̂`` estimates t(x|θ1).
The ``…2`` methods (``alices2``, ``rascal2``, ``cascal2``, …) regress t̂0 on ``t_xz0`` for
events drawn from θ0 (y = 0) and t̂1 on ``t_xz1`` for events drawn from θ1 (y = 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from minerflow.errors import InputError
from minerflow.ml.arrays import ArrayLike, as_column, as_matrix
from minerflow.ml.base import NeuralEstimator
from minerflow.ml.blocks import check_pairing, evaluation_blocks
from minerflow.ml.methods import Method, method_names
from minerflow.ml.nets import DenseNet
from minerflow.ml.scaling import Standardizer
from minerflow.ml.training import EpochCallback, Objective, TrainingHistory, TrainingSettings

__all__ = ["DoubleParameterizedRatioEstimator"]


class DoubleParameterizedRatioEstimator(NeuralEstimator):
    """log r̂(x|θ0, θ1) for any pair of hypotheses, antisymmetric in (θ0, θ1).

    ``reference`` (set by training: the mean of the training θ1) is the default denominator,
    so the estimator also answers ``evaluate_log_likelihood_ratio(x, thetas)`` like a
    :class:`~minerflow.ml.ratio.ParameterizedRatioEstimator`.

    >>> DoubleParameterizedRatioEstimator(n_hidden=(20,)).is_trained
    False
    """

    estimator_type = "double_parameterized_ratio"
    family = "double_ratio"

    def __init__(
        self,
        n_hidden: Sequence[int] = (100, 100, 100),
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(n_hidden=n_hidden, activation=activation, dropout=dropout)
        self.reference: np.ndarray | None = None

    def _build_net(self) -> DenseNet:
        assert self.n_observables is not None and self.n_parameters is not None
        n_in = 2 * self.n_parameters + self.n_observables
        return DenseNet(n_in, 1, self.n_hidden, self.activation, self.dropout)

    def architecture(self) -> dict[str, Any]:
        """The dense settings plus the default denominator θ1."""
        reference = None if self.reference is None else self.reference.tolist()
        return {**super().architecture(), "reference": reference}

    @classmethod
    def from_architecture(cls, architecture: Mapping[str, Any]) -> Self:
        """An estimator with the saved architecture and default denominator."""
        estimator = super().from_architecture(architecture)
        reference = architecture.get("reference")
        estimator.reference = None if reference is None else np.asarray(reference, np.float64)
        return estimator

    # -- training ---------------------------------------------------------------------------
    def _resolve(self, method: str) -> Method:
        """Accept a ratio method name (``alices``) or its double variant (``alices2``)."""
        names = method_names(self.family)
        if method in names:
            return self._method(method)
        if f"{method}2" in names:
            return self._method(f"{method}2")
        known = ", ".join(sorted({name.removesuffix("2") for name in names}))
        raise InputError("training", "method", f"one of {known} (or with suffix 2), got {method!r}")

    def train(
        self,
        method: str,
        x: ArrayLike,
        y: ArrayLike,
        theta0: ArrayLike,
        theta1: ArrayLike,
        r_xz: ArrayLike | None = None,
        t_xz0: ArrayLike | None = None,
        t_xz1: ArrayLike | None = None,
        alpha: float = 1.0,
        settings: TrainingSettings | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: EpochCallback | None = None,
    ) -> TrainingHistory:
        """Train on a sample of (x, θ0, θ1, y) with y = 0 for x ~ p(x|θ0), 1 for x ~ p(x|θ1).

        ``r_xz`` is r(x,z|θ0,θ1); ``t_xz0``/``t_xz1`` the joint scores at θ0 and θ1 (as drawn
        by ``sample_train_more_ratios``). Returns the per-epoch history of every loss term.
        """
        chosen = self._resolve(method)
        given = {"x": x, "y": y, "theta0": theta0, "theta1": theta1, "r_xz": r_xz}
        chosen.check_arrays({**given, "t_xz0": t_xz0, "t_xz1": t_xz1})
        source = f"method {chosen.name}"
        alpha = self._check_alpha(alpha)
        x = as_matrix(x, "x", source=source)
        n = x.shape[0]
        theta0 = as_matrix(theta0, "theta0", n_rows=n, source=source)
        theta1 = as_matrix(theta1, "theta1", n_rows=n, n_columns=theta0.shape[1], source=source)
        labels = as_column(y, "y", n_rows=n, source=source)
        if not np.isin(labels, (0.0, 1.0)).all():
            raise InputError(source, "y", "labels 0 (drawn from θ0) or 1 (drawn from θ1)")
        self.n_observables, self.n_parameters = x.shape[1], theta0.shape[1]
        theta_scaler = Standardizer.fit(np.vstack([theta0, theta1]))
        self.scalers = {"x": Standardizer.fit(x), "theta": theta_scaler}
        self.reference = theta1.mean(axis=0)

        def scaled(values: np.ndarray, key: str) -> np.ndarray:
            return (values - self.scalers[key].means) / self.scalers[key].stds

        arrays = {
            "inputs": np.hstack([scaled(theta0, "theta"), scaled(theta1, "theta"), scaled(x, "x")]),
            "y": labels,
        }
        if "r_xz" in chosen.requires:
            r = as_column(r_xz, "r_xz", n_rows=n, source=source)
            if (r < 0).any():
                raise InputError(source, "r_xz", "non-negative joint likelihood ratios")
            arrays["r_xz"] = r
        for key, values in (("t_xz0", t_xz0), ("t_xz1", t_xz1)):
            if key in chosen.requires:
                t = as_matrix(values, key, n_rows=n, n_columns=self.n_parameters, source=source)
                arrays[key] = t * theta_scaler.stds
        return self._fit(
            chosen,
            arrays,
            self._objective(chosen),
            alpha,
            settings or TrainingSettings(),
            checkpoint_dir,
            callback,
        )

    def _objective(self, method: Method) -> Objective:
        n_p = self.n_parameters
        terms, needs_score = method.terms, method.needs_score

        def log_ratio(inputs: torch.Tensor) -> torch.Tensor:
            swapped = torch.cat(
                [inputs[:, n_p : 2 * n_p], inputs[:, :n_p], inputs[:, 2 * n_p :]], 1
            )
            return self.net(inputs)[:, 0] - self.net(swapped)[:, 0]

        def objective(batch: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
            inputs = batch["inputs"]
            predictions: dict[str, torch.Tensor] = {}
            if needs_score:
                with torch.enable_grad():
                    inputs = inputs.detach().requires_grad_(True)
                    log_r = log_ratio(inputs)
                    (gradient,) = torch.autograd.grad(log_r.sum(), inputs, create_graph=training)
                predictions["score0"] = gradient[:, :n_p]
                predictions["score1"] = -gradient[:, n_p : 2 * n_p]
            else:
                log_r = log_ratio(inputs)
            predictions["log_r"] = log_r
            return torch.stack([term.compute(predictions, batch) for term in terms])

        return objective

    # -- evaluation -------------------------------------------------------------------------
    def _theta_pairs(
        self, theta0: ArrayLike, theta1: ArrayLike | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Standardised θ0 and θ1 (un-broadcast) and the number of pairs they make."""
        if theta1 is None:
            if self.reference is None:
                raise InputError("evaluation", "theta1", "a denominator θ1 (no default is stored)")
            theta1 = self.reference[None, :]
        scaler = self.scalers["theta"]
        tensors = []
        for name, values in (("theta0", theta0), ("theta1", theta1)):
            array = as_matrix(values, name, n_columns=self.n_parameters, source="evaluation")
            tensors.append(self._as_tensor((array - scaler.means) / scaler.stds))
        n0, n1 = len(tensors[0]), len(tensors[1])
        if n0 != n1 and 1 not in (n0, n1):
            raise InputError("evaluation", "theta1", f"1 or {n0} rows like theta0, got {n1}")
        return tensors[0], tensors[1], max(n0, n1)

    def evaluate_log_likelihood_ratio(
        self,
        x: ArrayLike,
        theta0: ArrayLike,
        theta1: ArrayLike | None = None,
        test_all_combinations: bool = True,
        evaluate_score: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """log r̂(x|θ0, θ1) and optionally t̂(x|θ0) = ∇_θ0 log r̂.

        ``theta0`` and ``theta1`` are paired row by row (a single row broadcasts; ``theta1``
        defaults to :attr:`reference`). All combinations with the events: ``(n_pairs, n_x)``
        and ``(n_pairs, n_x, n_parameters)``; otherwise paired with events: ``(n_x,)`` and
        ``(n_x, n_parameters)``. The estimate of t(x|θ1) is the score of the swapped call.
        """
        net = self._require_trained()
        x_scaler = self.scalers["x"]
        x_array = as_matrix(x, "x", n_columns=self.n_observables, source="evaluation")
        x_t = self._as_tensor((x_array - x_scaler.means) / x_scaler.stds)
        theta0_t, theta1_t, n_pairs = self._theta_pairs(theta0, theta1)
        paired = not test_all_combinations
        if paired:
            check_pairing(n_pairs, len(x_t), "theta0")
        n_p = self.n_parameters
        first = net.linears[0]
        w0, w1, wx = (
            first.weight[:, :n_p],
            first.weight[:, n_p : 2 * n_p],
            first.weight[:, 2 * n_p :],
        )
        with torch.no_grad():
            hidden_x = torch.addmm(first.bias, x_t, wx.T)
            # f(θ0, θ1, ·) and f(θ1, θ0, ·) first layers; the swapped call computes the same
            # products in the same order, so log r̂ flips sign bit for bit.
            forward = (theta0_t @ w0.T).expand(n_pairs, -1) + (theta1_t @ w1.T).expand(n_pairs, -1)
            backward = (theta1_t @ w0.T).expand(n_pairs, -1) + (theta0_t @ w1.T).expand(n_pairs, -1)
        shape = (len(x_t),) if paired else (n_pairs, len(x_t))
        log_r = np.empty(shape)
        score = np.empty((*shape, n_p)) if evaluate_score else None
        inverse_std = 1.0 / self.scalers["theta"].stds
        for block in evaluation_blocks(len(x_t), n_pairs, paired):
            with torch.no_grad():
                if paired:
                    pre = [hidden_x[block.x] + part[block.theta] for part in (forward, backward)]
                else:
                    pre = [
                        (part[block.theta, None, :] + hidden_x[None, block.x, :]).flatten(0, 1)
                        for part in (forward, backward)
                    ]
            with torch.enable_grad() if evaluate_score else torch.no_grad():
                if evaluate_score:
                    pre = [values.requires_grad_(True) for values in pre]
                outputs = [net.forward_from_hidden(values)[:, 0] for values in pre]
                difference = outputs[0] - outputs[1]
                if evaluate_score:
                    # ∂a/∂θ0' = W0 and ∂b/∂θ0' = W1; grad_b already carries the minus sign.
                    grad_f, grad_b = torch.autograd.grad(difference.sum(), pre)
                    block_score = grad_f @ w0 + grad_b @ w1
            log_r[block.out] = difference.detach().double().cpu().numpy().reshape(block.shape)
            if score is not None:
                values = block_score.detach().double().cpu().numpy() * inverse_std
                score[block.out] = values.reshape(*block.shape, n_p)
        return log_r, score

    def evaluate_score(
        self, x: ArrayLike, theta0: ArrayLike, theta1: ArrayLike | None = None
    ) -> np.ndarray:
        """t̂(x|θ0) for rows paired with events (or one row for all): ``(n_x, n_parameters)``."""
        return self.evaluate_log_likelihood_ratio(x, theta0, theta1, False, True)[1]
