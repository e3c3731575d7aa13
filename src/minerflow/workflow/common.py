"""What every workflow step shares: names of folders, seeds, step records, the event file.

A *step record* (``step.json``) sits in every output folder and says what made it: the step,
the settings that determine it, the event file's checksum and the package version. Later
steps read the record of their input folder (e.g. evaluation reads the test split that the
sampling used), so a chain of folders is self-describing.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from minerflow import __version__
from minerflow.config.workflow_input import (
    DENSITY_METHODS,
    LOCAL_METHODS,
    RATIO_METHODS,
    WorkflowInput,
)
from minerflow.errors import InputError
from minerflow.io.atomic import save_json

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFile, EventFileHeader
    from minerflow.tracking.runs import RunLog

__all__ = [
    "STEP_RECORD",
    "Family",
    "StepTimer",
    "derived_rng",
    "ensemble_name",
    "is_toy",
    "method_family",
    "model_name",
    "open_event_file",
    "read_record",
    "record",
    "samples_folder_name",
    "step_run",
]

STEP_RECORD = "step.json"
Family = Literal["ratio", "score", "density"]


def method_family(method: str) -> Family:
    """Which kind of estimator a method trains: likelihood ratio, local score or density."""
    if method in RATIO_METHODS:
        return "ratio"
    if method in LOCAL_METHODS:
        return "score"
    if method in DENSITY_METHODS:
        return "density"
    raise InputError("workflow", "method", f"a known method, got {method!r}")


def samples_folder_name(method: str, run: int) -> str:
    """``Samples_<method>_<run>``, the seed workflow's name of a sampling folder."""
    return f"Samples_{method}_{run}"


def model_name(method: str, run: int) -> str:
    """``<method>_<run>``: the name of a trained model and of its results folder."""
    return f"{method}_{run}"


def ensemble_name(method: str) -> str:
    """``<method>_ensemble``: the results folder of one method's models taken together."""
    return f"{method}_ensemble"


def derived_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator seeded by ``seed`` and the keys (method, run, purpose), independent per key.

    >>> float(derived_rng(1, "alices", 0).random()) == float(derived_rng(1, "alices", 0).random())
    True
    """
    words = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def is_toy(header: EventFileHeader) -> bool:
    """Whether an event file was written by minerflow's default toy simulator.

    Then the exact likelihood is known and the evaluation adds the truth to every result.
    """
    from minerflow.physics import toy

    return (
        tuple(header.parameter_names) == tuple(toy.DEFAULT_TOY.parameter_names)
        and tuple(header.benchmark_names) == tuple(toy.DEFAULT_TOY.benchmark_names)
        and tuple(header.observable_names) == toy.OBSERVABLE_NAMES
        and np.allclose(header.benchmark_values, np.asarray(toy.DEFAULT_TOY.benchmark_values))
    )


def open_event_file(path: str | os.PathLike[str], workflow_input: WorkflowInput) -> EventFile:
    """Open an event file and check the input against it (parameters, benchmarks, observables).

    Also checks that ``asymptotic_limits.theta_true`` lies inside the limit region.
    """
    from minerflow.io.madminer_file import read_event_file

    source = Path(path)
    if not source.is_file():
        raise InputError(source, None, "an existing event file (--data-file)")
    event_file = read_event_file(source)
    workflow_input.validate_against(event_file.header)
    limits = workflow_input.asymptotic_limits
    for i, (value, region) in enumerate(
        zip(limits.theta_true, limits.region.values(), strict=True)
    ):
        if not region.min <= value <= region.max:
            raise InputError(
                workflow_input.source,
                f"asymptotic_limits.theta_true[{i}]",
                f"a value inside the region [{region.min}, {region.max}], got {value}",
            )
    return event_file


def record(folder: str | os.PathLike[str], step: str, **data: Any) -> dict[str, Any]:
    """Write the step record ``step.json`` into ``folder`` and return it."""
    content = {"step": step, "minerflow_version": __version__, **data}
    save_json(Path(folder) / STEP_RECORD, content)
    return content


def read_record(folder: str | os.PathLike[str], step: str) -> dict[str, Any]:
    """Read the step record of ``folder``, which must have been written by ``step``."""
    path = Path(folder) / STEP_RECORD
    if not path.is_file():
        raise InputError(folder, STEP_RECORD, f"the output folder of a {step} step")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(path, None, f"valid JSON ({error.msg})") from None
    if not isinstance(content, Mapping) or content.get("step") != step:
        found = content.get("step") if isinstance(content, Mapping) else None
        raise InputError(path, "step", f"a {step} folder, got {found!r}")
    return dict(content)


@dataclass
class StepTimer:
    """Wall time of the named parts of a step (logged as metrics ``time_<part>``)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the block and add it under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        """``{"time_<part>": seconds}``."""
        return {f"time_{name}": value for name, value in self.seconds.items()}


def step_run(
    step: str, tracking_dir: str | os.PathLike[str], **kwargs: Any
) -> AbstractContextManager[RunLog]:
    """An MLflow run of one step (:func:`minerflow.tracking.runs.tracked_run`).

    Safe to open from many processes on one new store: the store creates its schema under its
    own file lock and experiments are found or created race-free
    (:func:`minerflow.tracking.store.client`, :func:`~minerflow.tracking.store.experiment_id`).
    """
    from minerflow.tracking.runs import tracked_run

    return tracked_run(step, tracking_dir, **kwargs)
