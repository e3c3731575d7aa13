"""Small numpy MLModels for the ML task tests: fast, deterministic, and they record what they saw.

``LinearModel`` is a softmax regression on three event features (jets, HT, MET) trained by
full-batch gradient descent. Each fold model saves the identities (run, event) of every event
it trained on, and its predictions carry ``model_fold``, the fold it was trained for, so a
test can check that no event was predicted by a model that saw it. Variants are derived at
the bottom, one per behaviour under test.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from minerflow.ml.columnar_ops import set_ak_column
from minerflow.ml.mlmodel import MLModel, read_training_events

__all__ = ["LinearModel", "features"]


def features(events: ak.Array) -> np.ndarray:
    """``(n, 3)``: number of jets, HT / 100, MET / 100."""
    jet_pt = events.Jet.pt
    return np.stack(
        [
            ak.to_numpy(ak.num(jet_pt, axis=1)).astype(np.float64),
            ak.to_numpy(ak.sum(jet_pt, axis=1)).astype(np.float64) / 100.0,
            ak.to_numpy(events.MET.pt).astype(np.float64) / 100.0,
        ],
        axis=1,
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class LinearModel(MLModel):
    """Softmax regression; one class per entry of ``dataset_names`` (first = signal)."""

    epochs = 25
    learning_rate = 0.5
    dataset_names = ("signal", "background")
    sandbox_spec = ""
    wrong_length = False
    extra_uses = ()
    train_delay = 0.0
    insignificant_settings = frozenset({"train_delay"})

    def sandbox(self, task: Any) -> str | None:
        return self.sandbox_spec or None

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for name in self.dataset_names}

    def uses(self, config_inst: Any) -> set[str]:
        return {"Jet.pt", "MET.pt", "weight", "run", "event", *self.extra_uses}

    def class_columns(self) -> list[str]:
        if len(self.dataset_names) == 2:
            return [f"{self.cls_name}.score"]
        return [f"{self.cls_name}.{name}" for name in self.dataset_names]

    def produces(self, config_inst: Any) -> set[str]:
        return {*self.class_columns(), f"{self.cls_name}.model_fold"}

    def train(self, task: Any, input: Any, output: Any) -> None:
        config = self.config_inst
        xs, ys, ids = [], [], []
        for label, name in enumerate(self.dataset_names):
            events = read_training_events(input, config.name, name)
            xs.append(features(events))
            ys.append(np.full(len(events), label))
            ids.append(np.stack([ak.to_numpy(events.run), ak.to_numpy(events.event)], axis=1))
        x, y = np.concatenate(xs), np.concatenate(ys)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = (x - mean) / std
        k = len(self.dataset_names)
        onehot = np.eye(k)[y]
        held_out = np.arange(len(z)) % 10 == 0
        w, b = np.zeros((3, k)), np.zeros(k)
        history: dict[str, dict[str, list[float]]] = {"train": {"loss": []}}
        history["validation"] = {"loss": []}
        for _ in range(self.epochs):
            p = _softmax(z[~held_out] @ w + b)
            grad = (p - onehot[~held_out]) / len(p)
            w -= self.learning_rate * z[~held_out].T @ grad
            b -= self.learning_rate * grad.sum(axis=0)
            for part, mask in (("train", ~held_out), ("validation", held_out)):
                q = _softmax(z[mask] @ w + b)
                loss = -np.mean(np.log(q[np.arange(len(q)), y[mask]] + 1e-12))
                history[part]["loss"].append(float(loss))
        time.sleep(self.train_delay)
        out = Path(output.path)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(
            out / "model.npz", w=w, b=b, mean=mean, std=std, fold=task.fold,
            trained_ids=np.concatenate(ids),
        )  # fmt: skip
        (out / "history.json").write_text(json.dumps(history))
        (out / "environment.json").write_text(json.dumps({"prefix": sys.prefix}))

    def open_model(self, target: Any) -> dict[str, Any]:
        with np.load(Path(target.path) / "model.npz") as saved:
            return {key: saved[key] for key in saved.files}

    def evaluate(
        self,
        task: Any,
        events: ak.Array,
        models: list[Any],
        fold_indices: ak.Array,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        [model] = models
        z = (features(events) - model["mean"]) / model["std"]
        p = _softmax(z @ model["w"] + model["b"])
        for j, column in enumerate(self.class_columns()):
            events = set_ak_column(events, column, p[:, j])
        fold = np.full(len(events), int(model["fold"]), dtype=np.int64)
        events = set_ak_column(events, f"{self.cls_name}.model_fold", fold)
        return events[:-1] if self.wrong_length else events


class HZZPrepModel(MLModel):
    """Muons of the real ``uproot-HZZ.root`` file; folds from the MET components."""

    fold_id_columns = ("MET_px", "MET_py")

    def sandbox(self, task: Any) -> str | None:
        return None

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset("hzz")}

    def uses(self, config_inst: Any) -> set[str]:
        return {"Muon.Px", "Muon.Py", "Muon.Pz", "Muon.E", "EventWeight"}

    def produces(self, config_inst: Any) -> set[str]:
        return {f"{self.cls_name}.n_muon"}

    def train(self, task: Any, input: Any, output: Any) -> None:
        Path(output.path).mkdir(parents=True, exist_ok=True)

    def open_model(self, target: Any) -> Any:
        return None

    def evaluate(self, task: Any, events: ak.Array, models: list[Any], fold_indices: ak.Array,
                 events_used_in_training: bool = False) -> ak.Array:  # fmt: skip
        return set_ak_column(events, f"{self.cls_name}.n_muon", ak.num(events.Muon.Px, axis=1))


lin_binary = LinearModel.derive("lin_binary", cls_dict={"train_delay": 0.0})
lin_three = LinearModel.derive(
    "lin_three", cls_dict={"dataset_names": ("signal", "background", "other")}
)
lin_missing_column = LinearModel.derive(
    "lin_missing_column", cls_dict={"extra_uses": ("Jet.btag",)}
)
lin_bad_length = LinearModel.derive("lin_bad_length", cls_dict={"wrong_length": True})
hzz_prep = HZZPrepModel.derive("hzz_prep", cls_dict={"folds": 3})
