"""Example MLModel: a torch classifier separating toy signal from background, k = 3 folds.

It follows the columnflow guide hook by hook; a columnflow model differs only in its imports.
``torch`` comes through ``maybe_import``, so this module imports (and the task graph builds)
where torch is missing; only ``train``/``evaluate`` need it.

Name this file in the analysis config's ``ml_modules`` (or ``--ml-modules``) and run
``minerflow ml train --ml-model toy_classifier --version v1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from minerflow.ml.columnar_ops import set_ak_column
from minerflow.ml.mlmodel import MLModel, maybe_import, read_training_events

torch = maybe_import("torch")

__all__ = ["ToyClassifier", "features", "toy_classifier"]

FEATURE_NAMES = ("n_jet", "ht", "jet1_pt", "jet2_pt", "jet1_abs_eta", "n_lepton", "lep1_pt", "met")


def _leading(values: ak.Array, index: int) -> np.ndarray:
    padded = ak.fill_none(ak.pad_none(values, index + 1, axis=1, clip=True), 0.0)
    return ak.to_numpy(padded[:, index]).astype(np.float32)


def features(events: ak.Array) -> np.ndarray:
    """The classifier inputs, ``(n_events, 8)`` float32: counts, leading pts, HT, MET."""
    jet_pt = events.Jet.pt
    columns = [
        ak.to_numpy(ak.num(jet_pt, axis=1)),
        ak.to_numpy(ak.sum(jet_pt, axis=1)),
        _leading(jet_pt, 0),
        _leading(jet_pt, 1),
        np.abs(_leading(events.Jet.eta, 0)),
        ak.to_numpy(ak.num(events.Lepton.pt, axis=1)),
        _leading(events.Lepton.pt, 0),
        ak.to_numpy(events.MET.pt),
    ]
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


class ToyClassifier(MLModel):
    """Binary classifier: signal datasets are class 1, the rest class 0."""

    epochs = 10
    batch_size = 1024
    learning_rate = 3e-3
    validation_fraction = 0.1
    hidden = (64, 64)
    dataset_names = ("signal", "background")
    signal_datasets = ("signal",)

    def sandbox(self, task: Any) -> str | None:
        # columnflow: "bash::$CF_BASE/sandboxes/venv_ml_torch.sh"; here the current
        # environment, or e.g. "venv::sandboxes/ml_torch.txt" (first line "# version 1")
        return None

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for name in self.dataset_names}

    def uses(self, config_inst: Any) -> set[str]:
        return {"Jet.pt", "Jet.eta", "Lepton.pt", "MET.pt", "weight"}

    def produces(self, config_inst: Any) -> set[str]:
        return {f"{self.cls_name}.score"}

    def setup(self) -> None:
        if not self.config_inst.has_variable(f"{self.cls_name}.score"):
            self.config_inst.add_variable(
                name=f"{self.cls_name}.score", binning=(20, 0.0, 1.0), x_title="Signal score"
            )

    def _network(self) -> Any:
        layers: list[Any] = []
        width = len(FEATURE_NAMES)
        for size in self.hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            width = size
        return torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))

    def train(self, task: Any, input: Any, output: Any) -> None:
        config = self.config_inst
        xs, ys, ws = [], [], []
        for name in self.dataset_names:
            events = read_training_events(input, config.name, name, sorted(self.uses(config)))
            weight = ak.to_numpy(events.weight).astype(np.float64)
            xs.append(features(events))
            ys.append(np.full(len(events), float(name in self.signal_datasets), np.float32))
            ws.append(weight / weight.sum())  # each class weighs the same in the loss
        x, y = np.concatenate(xs), np.concatenate(ys)
        w = np.concatenate(ws).astype(np.float32) * len(x) / len(self.dataset_names)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        torch.manual_seed(task.fold)
        generator = np.random.default_rng(task.fold)
        is_val = generator.random(len(x)) < self.validation_fraction
        tx = torch.from_numpy((x - mean) / std)
        ty, tw = torch.from_numpy(y), torch.from_numpy(w)
        train_idx = torch.from_numpy(np.flatnonzero(~is_val))
        val_idx = torch.from_numpy(np.flatnonzero(is_val))
        net = self._network()
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)

        def weighted_loss(idx: Any) -> Any:
            logits = net(tx[idx]).squeeze(1)
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits, ty[idx], weight=tw[idx]
            )

        history: dict[str, dict[str, list[float]]] = {"train": {"loss": []}}
        history["validation"] = {"loss": []}
        for _ in range(self.epochs):
            net.train()
            order = train_idx[torch.randperm(len(train_idx))]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                loss = weighted_loss(idx)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            history["train"]["loss"].append(total / max(len(order), 1))
            net.eval()
            with torch.no_grad():
                history["validation"]["loss"].append(float(weighted_loss(val_idx)))
        directory = Path(output.path)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"state": net.state_dict(), "mean": mean, "std": std}, directory / "model.pt")
        # the per-epoch curves the framework logs to MLflow and plots (docs/mlmodel.md)
        (directory / "history.json").write_text(json.dumps(history))

    def open_model(self, target: Any) -> Any:
        saved = torch.load(Path(target.path) / "model.pt", weights_only=False)
        net = self._network()
        net.load_state_dict(saved["state"])
        net.eval()
        return net, saved["mean"], saved["std"]

    def evaluate(
        self,
        task: Any,
        events: ak.Array,
        models: list[Any],
        fold_indices: ak.Array,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        score = np.zeros(len(events), dtype=np.float32)
        x = features(events)
        for f, (net, mean, std) in enumerate(models):
            mask = ak.to_numpy(fold_indices == f)
            if mask.any():
                with torch.no_grad():
                    logits = net(torch.from_numpy((x[mask] - mean) / std)).squeeze(1)
                score[mask] = torch.sigmoid(logits).numpy()
        return set_ak_column(events, f"{self.cls_name}.score", score)


toy_classifier = ToyClassifier.derive(
    "toy_classifier",
    cls_dict={"folds": 3, "epochs": 5, "dataset_names": ("signal", "background")},
)
