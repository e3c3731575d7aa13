"""Conditional density estimator p̂(x|θ): a normalising flow from ``zuko`` (NDE, SCANDAL).

The flow maps the standardised observables ``x' = (x - μ_x)/σ_x`` to a standard normal
through autoregressive transforms whose parameters are networks of the standardised
``θ' = (θ - μ_θ)/σ_θ`` (Papamakarios, Pavlakou, Murray, arXiv:1705.07057 for the masked
autoregressive flow; Durkan et al., arXiv:1906.04032 for the rational-quadratic splines of
``flow="nsf"``). Consecutive transforms use reversed variable orders.

Both standardisations are part of the model and applied at evaluation (MadMiner forgot the θ
one), and the density is reported for the *original* x:
``log p̂(x|θ) = log q(x'|θ') − Σ_j log σ_x,j``, with score
``t̂(x|θ) = ∇_θ log p̂ = ∇_θ' log q / σ_θ``.

Methods (Brehmer, Louppe, Pavez, Cranmer, arXiv:1805.00020, 1805.12244):

* ``nde``: ``L = −mean log q(x'|θ')`` (maximum likelihood);
* ``scandal``: ``L = −mean log q(x'|θ') + α · mean |t̂'(x|θ) − t'(x,z|θ)|²``: the joint score
  t(x,z|θ) is an unbiased target for the true score, so the flow's θ-gradient is pulled
  towards it. Targets are expressed for θ' (``t' = t · σ_θ``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import zuko
from torch import nn

from minerflow.errors import InputError
from minerflow.ml import losses
from minerflow.ml.arrays import ArrayLike, as_matrix
from minerflow.ml.base import NeuralEstimator
from minerflow.ml.blocks import block_rows, check_pairing, evaluation_blocks
from minerflow.ml.methods import LossTerm, Method, register_method
from minerflow.ml.nets import activation_function
from minerflow.ml.scaling import Standardizer
from minerflow.ml.training import EpochCallback, Objective, TrainingHistory, TrainingSettings

__all__ = ["FLOWS", "LikelihoodEstimator", "negative_log_likelihood"]

FLOWS = ("nsf", "maf")


def negative_log_likelihood(log_p: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood loss ``L = −(1/n) Σ_i log p̂(x_i|θ_i)``.

    Its minimiser over a flexible family is the true conditional density, because
    ``E[−log p̂] = KL(p‖p̂) + H(p)`` (arXiv:1705.07057, eq. 2).
    """
    return -log_p.mean()


NLL = LossTerm("nll", lambda p, b: negative_log_likelihood(p["log_p"]))
FLOW_SCORE = LossTerm(
    "mse_score",
    lambda p, b: losses.local_score_mse(p["score"], b["t_xz"]),
    weighted_by_alpha=True,
    needs_score=True,
)
register_method(Method("nde", "density", (NLL,), ("x", "theta")))
register_method(Method("scandal", "density", (NLL, FLOW_SCORE), ("x", "theta", "t_xz")))


class _Activation(nn.Module):
    """One of :data:`minerflow.ml.nets.ACTIVATIONS` as a module (zuko builds its own MLPs)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.function = activation_function(name)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.function(values)


class LikelihoodEstimator(NeuralEstimator):
    """Conditional normalising flow p̂(x|θ), trained with ``nde`` or ``scandal``.

    ``flow`` is ``"nsf"`` (monotonic rational-quadratic splines with ``bins`` knots; flexible,
    the default) or ``"maf"`` (affine transforms, as MadMiner); ``n_transforms``
    autoregressive transforms, each conditioned by a masked network with hidden widths
    ``n_hidden``.

    >>> LikelihoodEstimator(flow="maf", n_transforms=3, n_hidden=(32, 32)).is_trained
    False
    """

    estimator_type = "likelihood"
    family = "density"

    def __init__(
        self,
        flow: str = "nsf",
        n_transforms: int = 3,
        n_hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        bins: int = 8,
    ) -> None:
        super().__init__(n_hidden=n_hidden, activation=activation, dropout=0.0)
        if flow not in FLOWS:
            raise InputError("estimator", "flow", f"one of {', '.join(FLOWS)}, got {flow!r}")
        for key, value, least in (("n_transforms", n_transforms, 1), ("bins", bins, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError("estimator", key, f"an integer ≥ {least}, got {value!r}")
        self.flow = flow
        self.n_transforms = n_transforms
        self.bins = bins

    # -- structure --------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """The dense settings plus the flow type, number of transforms and spline bins."""
        return {
            **super().architecture(),
            "flow": self.flow,
            "n_transforms": self.n_transforms,
            "bins": self.bins,
        }

    @classmethod
    def from_architecture(cls, architecture: Mapping[str, Any]) -> Self:
        """An untrained flow with the saved architecture (weights are loaded afterwards)."""
        estimator = cls(
            flow=architecture["flow"],
            n_transforms=int(architecture["n_transforms"]),
            n_hidden=architecture["n_hidden"],
            activation=architecture["activation"],
            bins=int(architecture["bins"]),
        )
        estimator.n_observables = int(architecture["n_observables"])
        estimator.n_parameters = int(architecture["n_parameters"])
        estimator.net = estimator._build_net()
        estimator.net.eval()
        return estimator

    def _build_net(self) -> zuko.flows.Flow:  # type: ignore[override]
        assert self.n_observables is not None and self.n_parameters is not None
        options: dict[str, Any] = {
            "features": self.n_observables,
            "context": self.n_parameters,
            "transforms": self.n_transforms,
            "hidden_features": self.n_hidden,
            "activation": functools.partial(_Activation, self.activation),
        }
        if self.flow == "nsf":
            return zuko.flows.NSF(bins=self.bins, **options)
        return zuko.flows.MAF(**options)

    # -- training ---------------------------------------------------------------------------
    def train(
        self,
        method: str,
        x: ArrayLike,
        theta: ArrayLike | None,
        t_xz: ArrayLike | None = None,
        alpha: float = 1.0,
        settings: TrainingSettings | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: EpochCallback | None = None,
    ) -> TrainingHistory:
        """Fit p̂(x|θ) to events ``x`` drawn at parameter points ``theta`` (one row each).

        ``scandal`` also needs the joint score ``t_xz = t(x,z|θ)`` of every event; α weighs
        its term. Returns the per-epoch history (``nll`` is in standardised-x units).
        """
        chosen = self._method(method)
        chosen.check_arrays({"x": x, "theta": theta, "t_xz": t_xz})
        source = f"method {method}"
        alpha = self._check_alpha(alpha)
        x = as_matrix(x, "x", source=source)
        theta = as_matrix(theta, "theta", n_rows=x.shape[0], source=source)
        self.n_observables, self.n_parameters = x.shape[1], theta.shape[1]
        self.scalers = {"x": Standardizer.fit(x), "theta": Standardizer.fit(theta)}
        arrays = {
            "x": (x - self.scalers["x"].means) / self.scalers["x"].stds,
            "theta": (theta - self.scalers["theta"].means) / self.scalers["theta"].stds,
        }
        if "t_xz" in chosen.requires:
            t = as_matrix(t_xz, "t_xz", n_rows=x.shape[0], n_columns=theta.shape[1], source=source)
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

    def _log_prob(
        self, x: torch.Tensor, theta: torch.Tensor, with_score: bool, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log q(x'|θ') per row and, optionally, its gradient with respect to θ'."""
        flow = self.net
        if not with_score:
            return flow(theta).log_prob(x), None
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            log_p = flow(theta).log_prob(x)
            (gradient,) = torch.autograd.grad(log_p.sum(), theta, create_graph=create_graph)
        return log_p, gradient

    def _objective(self, method: Method) -> Objective:
        terms, needs_score = method.terms, method.needs_score

        def objective(batch: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
            log_p, score = self._log_prob(batch["x"], batch["theta"], needs_score, training)
            predictions = {"log_p": log_p, "score": score}
            return torch.stack([term.compute(predictions, batch) for term in terms])

        return objective

    # -- evaluation -------------------------------------------------------------------------
    def evaluate_log_likelihood(
        self,
        x: ArrayLike,
        thetas: ArrayLike,
        test_all_combinations: bool = True,
        evaluate_score: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """log p̂(x|θ) per unit of the original observables, and optionally t̂(x|θ).

        All combinations: ``log_p`` ``(n_theta, n_x)``, score ``(n_theta, n_x, n_parameters)``.
        Paired (one θ row per event, or one row for all): ``(n_x,)`` and ``(n_x, n_parameters)``.
        Work is done in blocks of bounded size.
        """
        self._require_trained()
        x_t = self._scaled(x, "x", "x", self.n_observables)
        theta_t = self._scaled(thetas, "thetas", "theta", self.n_parameters)
        paired = not test_all_combinations
        if paired:
            check_pairing(len(theta_t), len(x_t), "thetas")
        shape = (len(x_t),) if paired else (len(theta_t), len(x_t))
        log_p = np.empty(shape)
        score = np.empty((*shape, self.n_parameters)) if evaluate_score else None
        log_jacobian = float(np.log(self.scalers["x"].stds).sum())
        inverse_std = 1.0 / self.scalers["theta"].stds
        for block in evaluation_blocks(len(x_t), len(theta_t), paired):
            rows_x, rows_theta = block_rows(block, x_t, theta_t)
            with torch.no_grad():
                values, gradient = self._log_prob(rows_x, rows_theta, evaluate_score)
            log_p[block.out] = (
                values.detach().double().cpu().numpy().reshape(block.shape) - log_jacobian
            )
            if score is not None and gradient is not None:
                block_score = gradient.detach().double().cpu().numpy() * inverse_std
                score[block.out] = block_score.reshape(*block.shape, self.n_parameters)
        return log_p, score

    def evaluate_log_likelihood_ratio(
        self,
        x: ArrayLike,
        theta0: ArrayLike,
        theta1: ArrayLike,
        test_all_combinations: bool = True,
        evaluate_score: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``log r̂(x|θ0,θ1) = log p̂(x|θ0) − log p̂(x|θ1)`` and optionally t̂(x|θ0).

        ``theta0`` and ``theta1`` are paired row by row (a single row broadcasts). All
        combinations with the events give ``(n_pairs, n_x)``; otherwise ``(n_x,)``.
        """
        theta0 = as_matrix(theta0, "theta0", n_columns=self.n_parameters, source="evaluation")
        theta1 = as_matrix(theta1, "theta1", n_columns=self.n_parameters, source="evaluation")
        if len(theta0) != len(theta1) and 1 not in (len(theta0), len(theta1)):
            raise InputError(
                "evaluation", "theta1", f"1 or {len(theta0)} rows like theta0, got {len(theta1)}"
            )
        log_p0, score = self.evaluate_log_likelihood(
            x, theta0, test_all_combinations, evaluate_score
        )
        log_p1, _ = self.evaluate_log_likelihood(x, theta1, test_all_combinations, False)
        log_r = log_p0 - log_p1
        if score is not None and score.shape[: log_r.ndim] != log_r.shape:
            score = np.broadcast_to(score, (*log_r.shape, self.n_parameters)).copy()
        return log_r, score

    def evaluate_score(self, x: ArrayLike, thetas: ArrayLike) -> np.ndarray:
        """Score t̂(x|θ) for paired rows (or one θ for all events): ``(n_x, n_parameters)``."""
        return self.evaluate_log_likelihood(x, thetas, False, True)[1]
