"""Local score estimator t̂(x) ≈ t(x|θ_ref) = ∇_θ log p(x|θ) at θ_ref (SALLY, SALLINO).

Regressing the joint score t(x,z|θ_ref) on x gives the true score, the locally sufficient
statistic near θ_ref (Brehmer, Cranmer, Louppe, Pavez, arXiv:1805.00013, 1805.12244).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from minerflow.ml.arrays import ArrayLike, as_matrix
from minerflow.ml.base import EVALUATION_ROWS, NeuralEstimator
from minerflow.ml.methods import Method
from minerflow.ml.nets import DenseNet
from minerflow.ml.scaling import Standardizer
from minerflow.ml.training import EpochCallback, Objective, TrainingHistory, TrainingSettings

__all__ = ["ScoreEstimator"]


class ScoreEstimator(NeuralEstimator):
    """A dense net x -> t̂(x) with one output per score component (``t_xz`` columns)."""

    estimator_type = "score"
    family = "score"

    def _build_net(self) -> DenseNet:
        assert self.n_observables is not None and self.n_parameters is not None
        return DenseNet(
            self.n_observables, self.n_parameters, self.n_hidden, self.activation, self.dropout
        )

    def train(
        self,
        method: str,
        x: ArrayLike,
        t_xz: ArrayLike,
        settings: TrainingSettings | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: EpochCallback | None = None,
    ) -> TrainingHistory:
        """Train on a local sample: events x ~ p(x|θ_ref) and their joint scores t(x,z|θ_ref)."""
        chosen = self._method(method)
        chosen.check_arrays({"x": x, "t_xz": t_xz})
        source = f"method {method}"
        x = as_matrix(x, "x", source=source)
        t = as_matrix(t_xz, "t_xz", n_rows=x.shape[0], source=source)
        self.n_observables, self.n_parameters = x.shape[1], t.shape[1]
        self.scalers = {"x": Standardizer.fit(x)}
        arrays = {"x": (x - self.scalers["x"].means) / self.scalers["x"].stds, "t_xz": t}
        return self._fit(
            chosen,
            arrays,
            self._objective(chosen),
            1.0,
            settings or TrainingSettings(),
            checkpoint_dir,
            callback,
        )

    def _objective(self, method: Method) -> Objective:
        terms = method.terms

        def objective(batch: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
            predictions = {"score": self.net(batch["x"])}
            return torch.stack([term.compute(predictions, batch) for term in terms])

        return objective

    def evaluate_score(self, x: ArrayLike) -> np.ndarray:
        """Estimated score t̂(x) for every event: shape ``(n_x, n_parameters)``."""
        net = self._require_trained()
        values = as_matrix(x, "x", n_columns=self.n_observables, source="evaluation")
        scaler = self.scalers["x"]
        inputs = self._as_tensor((values - scaler.means) / scaler.stds)
        with torch.no_grad():
            chunks = [
                net(inputs[s : s + EVALUATION_ROWS]) for s in range(0, len(inputs), EVALUATION_ROWS)
            ]
        return torch.cat(chunks).double().cpu().numpy()
