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

FEATURE_NAMES = (
    "n_jet", "ht", "jet1_pt", "jet2_pt", "jet1_abs_eta", "jet2_abs_eta",
    "n_lepton", "lep1_pt", "lep1_abs_eta", "met",
)  # fmt: skip


def _flat(jagged: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, values)`` of a jagged column as numpy: event i owns ``values[o[i]:o[i+1]]``."""
    counts = ak.to_numpy(ak.num(jagged, axis=1))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, ak.to_numpy(ak.flatten(jagged, axis=1))


def _nth(offsets: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The n-th value of every event (0-based; objects are sorted by pt), 0 where it has none."""
    out = np.zeros(len(offsets) - 1, dtype=np.float32)
    has = np.diff(offsets) > n
    out[has] = values[offsets[:-1][has] + n]
    return out


def features(events: ak.Array) -> np.ndarray:
    """The classifier inputs, ``(n_events, 10)`` float32 (:data:`FEATURE_NAMES`).

    Each jagged column is flattened to numpy once and the features are computed on the
    flat arrays: no per-event Python, no padded copies (this runs on every chunk).
    """
    jet_o, jet_pt = _flat(events.Jet.pt)
    _, jet_eta = _flat(events.Jet.eta)
    lep_o, lep_pt = _flat(events.Lepton.pt)
    _, lep_eta = _flat(events.Lepton.eta)
    pt_sums = np.concatenate([[0.0], np.cumsum(jet_pt, dtype=np.float64)])
    x = np.empty((len(events), len(FEATURE_NAMES)), dtype=np.float32)
    x[:, 0] = np.diff(jet_o)
    x[:, 1] = pt_sums[jet_o[1:]] - pt_sums[jet_o[:-1]]  # HT
    x[:, 2] = _nth(jet_o, jet_pt, 0)
    x[:, 3] = _nth(jet_o, jet_pt, 1)
    x[:, 4] = np.abs(_nth(jet_o, jet_eta, 0))
    x[:, 5] = np.abs(_nth(jet_o, jet_eta, 1))
    x[:, 6] = np.diff(lep_o)
    x[:, 7] = _nth(lep_o, lep_pt, 0)
    x[:, 8] = np.abs(_nth(lep_o, lep_eta, 0))
    x[:, 9] = ak.to_numpy(events.MET.pt)
    return x


class ToyClassifier(MLModel):
    """Binary classifier: signal datasets are class 1, the rest class 0."""

    epochs = 10
    batch_size = 1024
    learning_rate = 3e-3
    validation_fraction = 0.1
    hidden = (64, 64)
    dataset_names = ("signal", "background")
    signal_datasets = ("signal",)
    eval_batch_size = 8192
    insignificant_settings = frozenset({"eval_batch_size"})  # speed only, same scores

    def sandbox(self, task: Any) -> str | None:
        # columnflow: "bash::$CF_BASE/sandboxes/venv_ml_torch.sh"; here the current
        # environment, or e.g. "venv::sandboxes/ml_torch.txt" (first line "# version 1")
        return None

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for name in self.dataset_names}

    def uses(self, config_inst: Any) -> set[str]:
        return {"Jet.pt", "Jet.eta", "Lepton.pt", "Lepton.eta", "MET.pt", "weight"}

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
        # the framework passes only the events of one fold and the one model that never saw
        # them: one pass over the chunk, no per-fold masks
        [(net, mean, std)] = models
        x = torch.from_numpy((features(events) - mean) / std)
        score = torch.empty(len(x))
        with torch.inference_mode():
            # slices of a few thousand rows keep the hidden activations in the CPU cache:
            # about 3x less CPU than one matrix product over 10^5 rows
            for start in range(0, len(x), self.eval_batch_size):
                rows = slice(start, start + self.eval_batch_size)
                score[rows] = torch.sigmoid(net(x[rows]).squeeze(1))
        return set_ak_column(events, f"{self.cls_name}.score", score.numpy())


toy_classifier = ToyClassifier.derive(
    "toy_classifier",
    cls_dict={"folds": 3, "epochs": 5, "dataset_names": ("signal", "background")},
)
