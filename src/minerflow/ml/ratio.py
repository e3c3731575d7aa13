"""Parameterised likelihood-ratio estimator r̂(x|θ) = p(x|θ) / p(x|θ_ref).

A dense network on the standardised ``[θ, x]`` predicts log r̂; the score t̂(x|θ) = ∇_θ log r̂
comes from autograd. Methods: carl, rolr, alice, alices, rascal, cascal (arXiv:1805.00013,
1805.00020, 1805.12244, 1808.00973).

Evaluation on a grid uses that the first layer is linear: ``W [θ; x] + b = W_θ θ + (W_x x + b)``,
so both parts are computed once and combined by a broadcast add for every (θ, x) pair,
without building the concatenated inputs; the score is the gradient at that first
pre-activation times ``W_θ``. Work is chunked so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from minerflow.errors import InputError
from minerflow.ml.arrays import ArrayLike, as_column, as_matrix
from minerflow.ml.base import EVALUATION_ROWS, NeuralEstimator
from minerflow.ml.methods import Method
from minerflow.ml.nets import DenseNet
from minerflow.ml.scaling import Standardizer
from minerflow.ml.training import EpochCallback, Objective, TrainingHistory, TrainingSettings

__all__ = ["ParameterizedRatioEstimator"]


class ParameterizedRatioEstimator(NeuralEstimator):
    """log r̂(x|θ) against the fixed reference θ_ref that was the denominator in training.

    >>> estimator = ParameterizedRatioEstimator(n_hidden=(50, 50), activation="tanh")
    >>> estimator.is_trained
    False
    """

    estimator_type = "parameterized_ratio"
    family = "ratio"

    def _build_net(self) -> DenseNet:
        assert self.n_observables is not None and self.n_parameters is not None
        return DenseNet(
            self.n_parameters + self.n_observables, 1, self.n_hidden, self.activation, self.dropout
        )

    # -- training ---------------------------------------------------------------------------
    def train(
        self,
        method: str,
        x: ArrayLike,
        y: ArrayLike,
        theta: ArrayLike,
        r_xz: ArrayLike | None = None,
        t_xz: ArrayLike | None = None,
        alpha: float = 1.0,
        settings: TrainingSettings | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: EpochCallback | None = None,
    ) -> TrainingHistory:
        """Train with ``method`` on a ratio sample (y=0: x ~ p(x|θ), y=1: x ~ p(x|θ_ref)).

        ``r_xz`` is the joint ratio r(x,z|θ,θ_ref), ``t_xz`` the joint score t(x,z|θ); α weighs
        the score term. Returns the per-epoch history of every loss term.
        """
        chosen = self._method(method)
        chosen.check_arrays({"x": x, "y": y, "theta": theta, "r_xz": r_xz, "t_xz": t_xz})
        source = f"method {method}"
        alpha = self._check_alpha(alpha)
        x = as_matrix(x, "x", source=source)
        n = x.shape[0]
        theta = as_matrix(theta, "theta", n_rows=n, source=source)
        labels = as_column(y, "y", n_rows=n, source=source)
        if not np.isin(labels, (0.0, 1.0)).all():
            raise InputError(source, "y", "labels 0 (numerator θ) or 1 (reference θ)")
        self.n_observables, self.n_parameters = x.shape[1], theta.shape[1]
        self.scalers = {"x": Standardizer.fit(x), "theta": Standardizer.fit(theta)}
        x_scaled = (x - self.scalers["x"].means) / self.scalers["x"].stds
        theta_scaled = (theta - self.scalers["theta"].means) / self.scalers["theta"].stds
        arrays = {"inputs": np.hstack([theta_scaled, x_scaled]), "y": labels}
        if "r_xz" in chosen.requires:
            r = as_column(r_xz, "r_xz", n_rows=n, source=source)
            if (r < 0).any():
                raise InputError(source, "r_xz", "non-negative joint likelihood ratios")
            arrays["r_xz"] = r
        if "t_xz" in chosen.requires:
            t = as_matrix(t_xz, "t_xz", n_rows=n, n_columns=self.n_parameters, source=source)
            # The network sees θ' = (θ - mean) / std, so its score target is t · std.
            arrays["t_xz"] = t * self.scalers["theta"].stds
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
        n_parameters = self.n_parameters
        needs_score = method.needs_score
        terms = method.terms

        def objective(batch: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
            net = self.net
            inputs = batch["inputs"]
            predictions: dict[str, torch.Tensor] = {}
            if needs_score:
                with torch.enable_grad():
                    inputs = inputs.detach().requires_grad_(True)
                    log_r = net(inputs)[:, 0]
                    (gradient,) = torch.autograd.grad(log_r.sum(), inputs, create_graph=training)
                predictions["score"] = gradient[:, :n_parameters]
            else:
                log_r = net(inputs)[:, 0]
            predictions["log_r"] = log_r
            if len(terms) == 1:
                return terms[0].compute(predictions, batch).reshape(1)
            return torch.stack([term.compute(predictions, batch) for term in terms])

        return objective

    # -- evaluation -------------------------------------------------------------------------
    def evaluate_log_likelihood_ratio(
        self,
        x: ArrayLike,
        thetas: ArrayLike,
        test_all_combinations: bool = True,
        evaluate_score: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """log r̂(x|θ) and optionally the score t̂(x|θ) = ∇_θ log r̂(x|θ).

        With ``test_all_combinations`` every θ meets every event: ``log_r`` has shape
        ``(n_theta, n_x)`` and the score ``(n_theta, n_x, n_parameters)``. Otherwise rows are
        paired (a single θ row is used for all events): shapes ``(n,)`` and ``(n, n_parameters)``.
        """
        net = self._require_trained()
        x_t = self._scaled(x, "x", "x", self.n_observables)
        theta_t = self._scaled(thetas, "thetas", "theta", self.n_parameters)
        if test_all_combinations:
            log_r, score = self._grid(net, x_t, theta_t, evaluate_score)
        else:
            if len(theta_t) not in (1, len(x_t)):
                raise InputError(
                    "evaluation",
                    "thetas",
                    f"1 or {len(x_t)} rows (one per event), got {len(theta_t)}",
                )
            log_r, score = self._grid(net, x_t, theta_t, evaluate_score, paired=True)
        return log_r, score

    def evaluate_score(self, x: ArrayLike, thetas: ArrayLike) -> np.ndarray:
        """Score t̂(x|θ) for paired rows (or one θ for all events): shape ``(n, n_parameters)``."""
        return self.evaluate_log_likelihood_ratio(x, thetas, False, True)[1]

    def _grid(
        self,
        net: DenseNet,
        x_t: torch.Tensor,
        theta_t: torch.Tensor,
        with_score: bool,
        paired: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Evaluate on all (θ, x) pairs, or on matched rows when ``paired``."""
        n_p = self.n_parameters
        first = net.linears[0]
        w_theta, w_x = first.weight[:, :n_p], first.weight[:, n_p:]
        inverse_std = 1.0 / self._as_tensor(self.scalers["theta"].stds)
        with torch.no_grad():
            hidden_x = torch.addmm(first.bias, x_t, w_x.T)
            hidden_theta = theta_t @ w_theta.T
        n_x, n_theta = len(x_t), len(theta_t)
        shape = (n_x,) if paired else (n_theta, n_x)
        log_r = torch.empty(shape, device=self.device)
        score = torch.empty((*shape, n_p), device=self.device) if with_score else None
        if paired:
            blocks = [(slice(s, s + EVALUATION_ROWS), None) for s in range(0, n_x, EVALUATION_ROWS)]
        else:
            x_rows = min(n_x, EVALUATION_ROWS)
            t_rows = max(1, EVALUATION_ROWS // x_rows)
            blocks = [
                (slice(xs, xs + x_rows), slice(ts, ts + t_rows))
                for xs in range(0, n_x, x_rows)
                for ts in range(0, n_theta, t_rows)
            ]
        for x_block, t_block in blocks:
            with torch.no_grad():
                if paired:
                    h_theta = hidden_theta if n_theta == 1 else hidden_theta[x_block]
                    pre = hidden_x[x_block] + h_theta
                    index = (x_block,)
                else:
                    pre = hidden_theta[t_block, None, :] + hidden_x[None, x_block, :]
                    index = (t_block, x_block)
                    pre = pre.reshape(-1, pre.shape[-1])
            target_shape = log_r[index].shape
            if with_score:
                with torch.enable_grad():
                    pre.requires_grad_(True)
                    out = net.forward_from_hidden(pre)
                    (gradient,) = torch.autograd.grad(out.sum(), pre)
                with torch.no_grad():
                    block_score = (gradient @ w_theta) * inverse_std
                    score[index] = block_score.reshape(*target_shape, n_p)
            else:
                with torch.no_grad():
                    out = net.forward_from_hidden(pre)
            log_r[index] = out.detach().reshape(target_shape)
        return (
            log_r.double().cpu().numpy(),
            score.double().cpu().numpy() if score is not None else None,
        )
