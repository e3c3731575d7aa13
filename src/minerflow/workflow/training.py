"""Training step: one estimator per sample folder, saved as a self-describing model folder.

The input's ``estimator:`` key picks the ratio estimator (``parameterized``: r̂(x|θ) against the
fixed θ1 of the sample; ``double_parameterized``: r̂(x|θ0, θ1); ``quadratic``: the
morphing-aware r̂ of arXiv:2007.10356); score methods train a score estimator t̂(x) and density
methods a conditional flow p̂(x|θ). The model folder ``models/<method>_<run>/`` holds the
estimator (loadable by :func:`minerflow.ml.persistence.load_estimator`), its training history,
the training-curve figure and a step record. An interrupted training resumes from its last
completed epoch (a checkpoint keyed by the sample and the settings).
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from minerflow.config.workflow_input import WorkflowInput, stable_hash
from minerflow.errors import InputError
from minerflow.io.atomic import atomic_dir, save_json
from minerflow.io.samples import load_samples
from minerflow.workflow.common import (
    StepTimer,
    derived_rng,
    method_family,
    model_name,
    read_record,
    record,
    step_run,
)

__all__ = ["CHECKPOINTS", "build_estimator", "train", "training_key"]

STEP = "training"
CHECKPOINTS = ".checkpoints"

# (method family, estimator key) -> "module:Class"
_ESTIMATORS = {
    ("ratio", "parameterized"): "minerflow.ml.ratio:ParameterizedRatioEstimator",
    (
        "ratio",
        "double_parameterized",
    ): "minerflow.ml.double_ratio:DoubleParameterizedRatioEstimator",
    ("ratio", "quadratic"): "minerflow.ml.quadratic:QuadraticRatioEstimator",
    ("score", None): "minerflow.ml.score:ScoreEstimator",
    ("density", None): "minerflow.ml.density:LikelihoodEstimator",
}


def build_estimator(
    workflow_input: WorkflowInput, method: str, sampled: dict[str, Any] | None = None
) -> Any:
    """A fresh estimator for ``method`` with the input's network shape.

    The ``quadratic`` estimator also takes the event file's morphing components and the
    sample's reference point from the sampling record ``sampled``.
    """
    family = method_family(method)
    key = (family, workflow_input.estimator if family == "ratio" else None)
    module_name, _, class_name = _ESTIMATORS[key].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise InputError(
            workflow_input.source, "estimator", f"an available estimator, {key[1]!r} is not"
        ) from None
    settings = workflow_input.training
    extra: dict[str, Any] = {}
    if key[1] == "quadratic" and sampled is not None:
        extra = {
            "components": sampled.get("morphing_components"),
            "reference": sampled.get("theta_ref"),
        }
    return cls(n_hidden=settings.n_hidden, activation=settings.activation, **extra)


def training_key(workflow_input: WorkflowInput, method: str) -> dict[str, Any]:
    """The settings that determine a trained model (sampling, estimator, training)."""
    return workflow_input.step_config(STEP, method)


def _training_settings(workflow_input: WorkflowInput, seed: int, progress: bool | None) -> Any:
    from minerflow.ml.training import TrainingSettings

    options = workflow_input.training
    return TrainingSettings(
        n_epochs=options.num_epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        lr_final=min(options.lr, 1e-4),
        validation_split=options.valid_split,
        seed=seed,
        device=options.device,
        progress=progress,
    )


def _train_arguments(estimator: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The sample arrays the estimator's ``train`` accepts (θ0 is ``theta`` for r̂(x|θ))."""
    accepted = inspect.signature(estimator.train).parameters
    given = dict(arrays)
    if "theta" not in given and "theta0" in given and "theta0" not in accepted:
        given["theta"] = given["theta0"]
    return {k: v for k, v in given.items() if k in accepted}


def _existing(path: str | None) -> str | None:
    """``path`` if that file still exists (provenance tags need the file for its checksum)."""
    return path if path and Path(path).is_file() else None


def train(
    train_folder: str | os.PathLike[str],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
    checkpoint_root: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Train on ``train_folder`` (a ``Samples_<method>_<run>`` folder); write ``models/<name>``.

    Logs to MLflow (experiment ``minerflow-training``): the settings, every loss term per
    epoch (``train_<term>``, ``val_<term>``), the learning rate and the model (``mlflow.pytorch``
    and the model folder); the plot step draws the curves from ``history.json``. Returns the
    model folder.
    Checkpoints go to ``checkpoint_root`` (default ``<output_dir>/models/.checkpoints``), which
    must outlive an interrupted run for the training to resume.
    """

    source = Path(train_folder)
    sampled = read_record(source, "sampling")
    method, run = str(sampled["method"]), int(sampled["run"])
    workflow_input.theta_specs(method)  # the method must be listed in the input
    family = method_family(method)
    arrays = load_samples(source, str(sampled["sample_name"]))
    arrays.pop("n_effective", None)
    arrays.pop("event_index", None)
    name = model_name(method, run)
    key = training_key(workflow_input, method)
    seed = int(derived_rng(workflow_input.sampling.seed, method, run, STEP).integers(2**31))
    settings = _training_settings(workflow_input, seed, progress)
    estimator = build_estimator(workflow_input, method, sampled)
    target = Path(output_dir) / "models" / name
    identity = stable_hash({"key": key, "sample": sampled, "settings": settings.to_dict()})
    root = Path(checkpoint_root) if checkpoint_root else Path(output_dir) / "models" / CHECKPOINTS
    checkpoint = root / f"{name}-{identity}"
    timer = StepTimer()
    with step_run(
        STEP,
        tracking_dir or output_dir,
        run_name=f"training {name}",
        params={"method": method, "run": run, "model": name, **key, "fit": settings.to_dict()},
        input_file=workflow_input.source,
        event_file=_existing(sampled.get("event_file")),
    ) as tracked:
        with timer.part("training"):
            history = estimator.train(
                method,
                **_train_arguments(estimator, arrays),
                **({"alpha": workflow_input.training.alpha} if family != "score" else {}),
                settings=settings,
                checkpoint_dir=checkpoint,
            )
        with atomic_dir(target) as tmp:
            estimator.save(tmp)
            save_json(tmp / "history.json", history.to_dict())
            record(
                tmp,
                STEP,
                method=method,
                run=run,
                model=name,
                family=family,
                estimator=workflow_input.estimator if family == "ratio" else family,
                estimator_type=estimator.estimator_type,
                theta_ref=sampled.get("theta_ref"),
                test_split=sampled["test_split"],
                event_file=sampled.get("event_file"),
                event_file_sha256=sampled.get("event_file_sha256"),
                samples=str(source.resolve()),
                n_epochs=history.n_epochs,
                best_epoch=history.best_epoch,
                wall_time=history.wall_time,
                settings=key,
            )
        shutil.rmtree(checkpoint, ignore_errors=True)
        curves = {f"train_{k}": v for k, v in history.train.items()}
        curves |= {f"val_{k}": v for k, v in history.validation.items() if v}
        curves["learning_rate"] = history.learning_rate
        tracked.log_history(curves)
        final = {"n_epochs": history.n_epochs, **timer.metrics()}
        if history.best_epoch is not None:
            final["best_epoch"] = history.best_epoch + 1
            best_curve = history.validation["total"] or history.train["total"]
            final["best_loss"] = best_curve[history.best_epoch]
        tracked.log_metrics(final)
        tracked.log_artifact(target, "model_folder")
        tracked.log_torch_model(estimator.net, name="model")
        tracked.set_tags({"minerflow.model_dir": str(target)})
    return target
