"""Sampling step: augmented training samples per method and sampling run, in MadMiner's layout.

Per method (seed workflow, ``code/sampling.py``): ratio methods (carl, rolr, alice, alices,
rascal, cascal) get ``sample_train_ratio`` at their ``theta_0``/``theta_1`` specs
(``sample_train_more_ratios`` for the ``double_parameterized`` estimator, which also needs
the score at θ1); sally/sallino get ``sample_train_local`` at ``theta_0``; nde/scandal get
``sample_train_density``. Each sampling run ``i`` writes ``Samples_<method>_<i>/`` with
``x_<method>_train.npy``, ``theta0_…``, ``y_…``, ``r_xz_…``, ``t_xz_…`` and a step record.
Test samples for evaluation come from the test partition (:func:`draw_test_sample`), so no
training event is ever used to evaluate.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minerflow.config.workflow_input import WorkflowInput
from minerflow.errors import InputError
from minerflow.io.atomic import atomic_dir
from minerflow.io.samples import save_samples
from minerflow.workflow.common import (
    StepTimer,
    derived_rng,
    method_family,
    open_event_file,
    record,
    samples_folder_name,
    step_run,
)

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFile
    from minerflow.physics.sampling import SampleAugmenter

__all__ = [
    "augmenter",
    "draw_test_sample",
    "sample",
    "sample_kind",
    "sample_method",
    "sampling_key",
]

STEP = "sampling"


def sample_kind(workflow_input: WorkflowInput, method: str) -> str:
    """Which sampler a method needs: ``ratio``, ``more_ratios``, ``local`` or ``density``."""
    family = method_family(method)
    if family == "ratio":
        return "more_ratios" if workflow_input.estimator == "double_parameterized" else "ratio"
    return "local" if family == "score" else "density"


def sampling_key(workflow_input: WorkflowInput, method: str) -> dict[str, Any]:
    """The settings that determine a method's samples (the input's sampling config + sampler)."""
    return {**workflow_input.step_config(STEP, method), "kind": sample_kind(workflow_input, method)}


def augmenter(event_file: EventFile, test_split: float) -> SampleAugmenter:
    """The sample augmenter with the workflow's partition: train | test (no held-out validation).

    The validation rows of a training come from its own sample (``valid_split``), as in the
    seed workflow; sampling and evaluation use the same ``test_split``, so they see disjoint
    events.
    """
    from minerflow.physics.sampling import SampleAugmenter

    return SampleAugmenter(event_file, test_split=test_split, validation_split=0.0)


def _check_nuisance(event_file: EventFile, workflow_input: WorkflowInput) -> None:
    if workflow_input.sampling.nuisance and event_file.header.nuisance_parameters:
        raise InputError(
            workflow_input.source,
            "sampling.nuisance",
            "false: samples with nuisance parameters are not supported yet",
        )


def _draw(
    aug: SampleAugmenter, workflow_input: WorkflowInput, method: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    specs = [spec.to_spec() for spec in workflow_input.theta_specs(method)]
    n = workflow_input.sampling.n_samples_train
    kind = sample_kind(workflow_input, method)
    if kind == "ratio":
        return aug.sample_train_ratio(specs[0], specs[1], n, rng)
    if kind == "more_ratios":
        return aug.sample_train_more_ratios(specs[0], specs[1], n, rng)
    if kind == "local":
        return aug.sample_train_local(specs[0], n, rng)
    return aug.sample_train_density(specs[0], n, rng)


def _reference_point(arrays: dict[str, np.ndarray], kind: str) -> list[float] | None:
    """The fixed point a model is trained against (θ1 of ratios, θ of local samples)."""
    key = {"ratio": "theta1", "more_ratios": "theta1", "local": "theta"}.get(kind)
    if key is None:
        return None
    unique = np.unique(np.asarray(arrays[key], dtype=np.float64), axis=0)
    return unique[0].tolist() if len(unique) == 1 else None


def sample_method(
    event_file: EventFile,
    workflow_input: WorkflowInput,
    method: str,
    run: int,
    output_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
    aug: SampleAugmenter | None = None,
) -> Path:
    """Draw the training sample of one method and sampling run into ``Samples_<method>_<run>``.

    The folder is written whole or not at all; its ``step.json`` records the method, the
    sampler, the reference point, the effective number of events and the settings. The draw
    is tracked as an MLflow run in experiment ``minerflow-sampling``.
    """
    from minerflow.tracking.provenance import sha256_file

    workflow_input.theta_specs(method)  # an unlisted method is an error
    settings = workflow_input.sampling
    aug = aug or augmenter(event_file, settings.test_split)
    _check_nuisance(event_file, workflow_input)
    kind = sample_kind(workflow_input, method)
    target = Path(output_dir) / samples_folder_name(method, run)
    timer = StepTimer()
    key = sampling_key(workflow_input, method)
    with step_run(
        STEP,
        tracking_dir or output_dir,
        run_name=f"sampling {method}_{run}",
        params={"method": method, "run": run, **key},
        input_file=workflow_input.source,
        event_file=event_file.path,
    ) as tracked:
        with timer.part("sampling"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arrays = _draw(aug, workflow_input, method, derived_rng(settings.seed, method, run))
        for warning in caught:
            print(f"warning: {method} sample {run}: {warning.message}")
        n_effective = float(arrays["n_effective"])
        with atomic_dir(target) as tmp:
            save_samples(
                tmp,
                f"{method}_train",
                arrays,
                specs=key["methods"][method],
                seed=settings.seed,
            )
            record(
                tmp,
                STEP,
                method=method,
                run=run,
                kind=kind,
                sample_name=f"{method}_train",
                n_samples=len(arrays["x"]),
                n_effective=n_effective,
                theta_ref=_reference_point(arrays, kind),
                morphing_components=(
                    None
                    if event_file.header.morphing_components is None
                    else event_file.header.morphing_components.tolist()
                ),
                test_split=settings.test_split,
                seed=settings.seed,
                event_file=str(Path(event_file.path).resolve()),
                event_file_sha256=sha256_file(event_file.path),
                settings=key,
                warnings=[str(w.message) for w in caught],
            )
        tracked.log_metrics(
            {"n_samples": len(arrays["x"]), "n_effective": n_effective, **timer.metrics()}
        )
        tracked.log_artifact(target / "step.json", "sampling")
    return target


def sample(
    data_file: str | os.PathLike[str],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    methods: Sequence[str] | None = None,
    runs: Sequence[int] | None = None,
    tracking_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Draw every (method, sampling run) sample of the input; returns the sample folders."""
    event_file = open_event_file(data_file, workflow_input)
    aug = augmenter(event_file, workflow_input.sampling.test_split)
    chosen = list(methods) if methods is not None else list(workflow_input.methods)
    indices = list(runs) if runs is not None else range(workflow_input.sampling.n_sampling_runs)
    return [
        sample_method(
            event_file, workflow_input, m, i, output_dir, tracking_dir=tracking_dir, aug=aug
        )
        for m in chosen
        for i in indices
    ]


def draw_test_sample(
    aug: SampleAugmenter, theta: np.ndarray, n_samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Unweighted test events at ``theta`` from the test partition (never used in training)."""
    return aug.sample_test(
        np.asarray(theta, dtype=np.float64), n_samples, derived_rng(seed, "test")
    )
