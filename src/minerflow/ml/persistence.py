"""Saved estimators: a self-describing folder, and models saved by MadMiner.

Folder layout (format version 1)::

    settings.json      format_version, estimator_type, architecture, method, alpha,
                       training settings, a history summary, the minerflow version
    weights.pt         torch state dict of the network
    <name>_means.npy   input standardisation per scaled input (``x``, ``theta``)
    <name>_stds.npy

Loading needs nothing else: :func:`load_estimator` reads ``estimator_type`` and hands the
folder to the class registered for it. A MadMiner model (``<prefix>_settings.json``,
``<prefix>_state_dict.pt``, ``<prefix>_x_means.npy``, …) is recognised by its prefix and mapped
onto the same dense network (MadMiner applies the activation before every layer except the
first, which is the usual Linear–activation–Linear layout).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minerflow import __version__
from minerflow.errors import InputError
from minerflow.io.atomic import atomic_dir, atomic_path, save_json, save_npy
from minerflow.ml.base import NeuralEstimator
from minerflow.ml.device import select_device
from minerflow.ml.scaling import Standardizer
from minerflow.ml.training import TrainingHistory, TrainingSettings

__all__ = [
    "ESTIMATOR_TYPES",
    "FORMAT_VERSION",
    "load_dense",
    "load_estimator",
    "load_madminer_estimator",
    "read_settings",
    "register_estimator_type",
    "save_estimator",
]

FORMAT_VERSION = 1
SETTINGS_FILE = "settings.json"
WEIGHTS_FILE = "weights.pt"

# estimator_type -> "module:Class"; the class provides ``from_folder(folder, settings, device)``
# (the dense estimators inherit it from here via :func:`load_dense`).
ESTIMATOR_TYPES: dict[str, str] = {
    "parameterized_ratio": "minerflow.ml.ratio:ParameterizedRatioEstimator",
    "score": "minerflow.ml.score:ScoreEstimator",
    "double_parameterized_ratio": "minerflow.ml.double_ratio:DoubleParameterizedRatioEstimator",
    "quadratic_ratio": "minerflow.ml.quadratic:QuadraticRatioEstimator",
    "likelihood": "minerflow.ml.density:LikelihoodEstimator",
    "ensemble": "minerflow.ml.ensemble:Ensemble",
}

# MadMiner activation names -> ours; MadMiner's "sigmoid" was in fact a ReLU.
_MADMINER_ACTIVATIONS = {
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "relu",
    "lrelu": "lrelu",
    "elu": "elu",
    "selu": "selu",
    "softplus": "softplus",
    "log_sigmoid": "log_sigmoid",
}
_MADMINER_TYPES = {"parameterized_ratio": "parameterized_ratio", "score": "score"}


def register_estimator_type(name: str, target: str) -> None:
    """Register ``"module:Class"`` as the loader of folders with ``estimator_type == name``."""
    ESTIMATOR_TYPES[name] = target


def _resolve(name: str, source: Path) -> type:
    target = ESTIMATOR_TYPES.get(name)
    if target is None:
        known = ", ".join(sorted(ESTIMATOR_TYPES))
        raise InputError(source, "estimator_type", f"one of {known}, got {name!r}")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def save_estimator(estimator: NeuralEstimator, folder: str | Path) -> Path:
    """Write a dense estimator's folder atomically (an existing folder is replaced whole)."""
    net = estimator._require_trained()
    history = estimator.history
    settings = {
        "format_version": FORMAT_VERSION,
        "estimator_type": estimator.estimator_type,
        "minerflow_version": __version__,
        "architecture": estimator.architecture(),
        "method": estimator.method,
        "alpha": estimator.alpha,
        "training": estimator.settings.to_dict() if estimator.settings else None,
        "history": history.to_dict() if history else None,
        "scaled_inputs": sorted(estimator.scalers),
    }
    target = Path(folder)
    with atomic_dir(target) as tmp:
        save_json(tmp / SETTINGS_FILE, settings)
        with atomic_path(tmp / WEIGHTS_FILE) as weights:
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, weights)
        for name, scaler in estimator.scalers.items():
            save_npy(tmp / f"{name}_means.npy", scaler.means)
            save_npy(tmp / f"{name}_stds.npy", scaler.stds)
    return target


def read_settings(folder: str | Path) -> dict[str, Any]:
    """Read and check ``settings.json`` of a model folder (format version, estimator type)."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        raise InputError(folder, SETTINGS_FILE, "a model folder with settings.json")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(path, "json", f"valid JSON ({error.msg} at line {error.lineno})") from None
    version = settings.get("format_version")
    if not isinstance(version, int):
        raise InputError(path, "format_version", f"an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(
            path,
            "format_version",
            f"at most {FORMAT_VERSION} (minerflow {__version__} reads format {FORMAT_VERSION}; "
            f"this model was saved with format {version}, upgrade minerflow)",
        )
    if "estimator_type" not in settings:
        raise InputError(path, "estimator_type", "the kind of estimator saved")
    return settings


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(path.parent, path.name, "the saved network weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt files
        raise InputError(path, "weights", f"a readable torch state dict ({error})") from None


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(path.parent, path.name, "the saved input scaling")
    return np.load(path).astype(np.float64)


def _assemble(
    cls: type[NeuralEstimator],
    architecture: dict[str, Any],
    state: dict[str, torch.Tensor],
    scalers: dict[str, Standardizer],
    source: Path,
    device: str | torch.device | None,
) -> NeuralEstimator:
    estimator = cls.from_architecture(architecture)
    try:
        estimator.net.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(
            source, "weights", f"weights matching the architecture ({first})"
        ) from None
    estimator.scalers = scalers
    return estimator.to(select_device(device))


def load_dense(
    cls: type[NeuralEstimator], folder: Path, settings: dict[str, Any], device: Any
) -> Any:
    """Load a dense estimator saved by :func:`save_estimator`."""
    scalers = {
        name: Standardizer(
            _load_array(folder / f"{name}_means.npy"), _load_array(folder / f"{name}_stds.npy")
        )
        for name in settings.get("scaled_inputs", [])
    }
    estimator = _assemble(
        cls,
        settings["architecture"],
        _load_state_dict(folder / WEIGHTS_FILE),
        scalers,
        folder,
        device,
    )
    estimator.method, estimator.alpha = settings.get("method"), settings.get("alpha")
    if settings.get("training"):
        estimator.settings = TrainingSettings.from_mapping(settings["training"])
    if settings.get("history"):
        estimator.history = TrainingHistory.from_dict(settings["history"])
    return estimator


def load_estimator(path: str | Path, device: str | torch.device | None = "auto") -> Any:
    """Load any saved estimator: a minerflow folder, or a MadMiner ``<prefix>`` of files."""
    folder = Path(path)
    if not (folder / SETTINGS_FILE).is_file() and Path(f"{folder}_settings.json").is_file():
        return load_madminer_estimator(folder, device)
    settings = read_settings(folder)
    cls = _resolve(settings["estimator_type"], folder / SETTINGS_FILE)
    loader = getattr(cls, "from_folder", None)
    if loader is not None:
        return loader(folder, settings, device)
    return load_dense(cls, folder, settings, device)


def load_madminer_estimator(prefix: str | Path, device: str | torch.device | None = "auto") -> Any:
    """Load a ParameterizedRatioEstimator or ScoreEstimator saved by MadMiner's ``save(prefix)``."""
    prefix = Path(prefix)
    path = Path(f"{prefix}_settings.json")
    if not path.is_file():
        raise InputError(path, "settings", "a MadMiner <prefix>_settings.json file")
    settings = json.loads(path.read_text())
    kind = _MADMINER_TYPES.get(settings.get("estimator_type"))
    if kind is None:
        known = ", ".join(_MADMINER_TYPES)
        raise InputError(
            path, "estimator_type", f"one of {known}, got {settings.get('estimator_type')!r}"
        )
    if settings.get("features") is not None:
        raise InputError(path, "features", "null (feature subsets are not supported)")
    if float(settings.get("dropout_prob", 0.0)) > 1e-9:
        raise InputError(
            path, "dropout_prob", "0 (MadMiner's dropout layer layout is not supported)"
        )
    activation = _MADMINER_ACTIVATIONS.get(settings.get("activation", "tanh"))
    if activation is None:
        known = ", ".join(_MADMINER_ACTIVATIONS)
        raise InputError(path, "activation", f"one of {known}, got {settings.get('activation')!r}")
    state = _load_state_dict(Path(f"{prefix}_state_dict.pt"))
    # Only ``layers.{i}``; MadMiner's ratio model also registers the same list as ``append``.
    state = {
        key.replace("layers.", "linears.", 1): value
        for key, value in state.items()
        if key.startswith("layers.")
    }
    n_x, n_p = int(settings["n_observables"]), int(settings["n_parameters"])
    if kind == "score":
        # MadMiner stores the number of score components as n_parameters.
        n_p = int(state[max(k for k in state if k.endswith(".bias"))].shape[0]) if state else n_p
    architecture = {
        "n_observables": n_x,
        "n_parameters": n_p,
        "n_hidden": list(settings["n_hidden"]),
        "activation": activation,
        "dropout": 0.0,
    }
    scalers = {"x": _madminer_scaler(prefix, "x", n_x)}
    if kind == "parameterized_ratio":
        scalers["theta"] = _madminer_scaler(prefix, "theta", n_p)
    cls = _resolve(kind, path)
    estimator = _assemble(cls, architecture, state, scalers, path, device)
    estimator.method = "madminer"
    return estimator


def _madminer_scaler(prefix: Path, name: str, n_columns: int) -> Standardizer:
    """MadMiner's ``<prefix>_<name>_means/stds.npy``; models trained without scaling have none."""
    means, stds = Path(f"{prefix}_{name}_means.npy"), Path(f"{prefix}_{name}_stds.npy")
    if not (means.is_file() and stds.is_file()):
        return Standardizer.identity(n_columns)
    return Standardizer(_load_array(means), _load_array(stds))
