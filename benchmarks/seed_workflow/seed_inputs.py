"""What the seed-like step scripts share: the input file, θ specs, folders, MLflow tracking.

These scripts stand in for the seed workflow's own scripts (madminer-workflow-ml, which is not
available offline) so that ``bench_workflow.py`` can time the seed's way of running the
workflow: one Python process per step and per method, MadMiner 0.9.6 doing the work, files in a
work dir passed between the steps, and the sampling, training and evaluation steps tracked in
MLflow. They follow the description of the seed in
``/work/shared/reference/madminer-algorithms.md`` §7b and run only in
``benchmarks/.venv-madminer-seed`` (``setup_madminer_seed_env.sh``).

Tracking follows the seed: its shell layer runs those three steps through ``mlflow run`` (one
experiment per step, created up front), so every run holds the entry point's parameters, and
the scripts add tags, metrics, artifacts and the model. Its plotting step runs outside MLflow.
Here each script opens its run itself (the fluent API, in the step's own process) instead of
being launched by ``mlflow run``, which would add one more process start and MLflow import per
step to the seed's time.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

__all__ = [
    "DENSITY_METHODS",
    "EXPERIMENTS",
    "RATIO_METHODS",
    "SCORE_METHODS",
    "configure_logging",
    "limit_grid",
    "method_of_folder",
    "read_input",
    "theta_values",
    "tracked",
]

RATIO_METHODS = frozenset({"alice", "alices", "cascal", "carl", "rolr", "rascal"})
SCORE_METHODS = frozenset({"sally", "sallino"})
DENSITY_METHODS = frozenset({"scandal"})
# The seed's experiment per tracked step (its scripts/*.sh pass these to ``mlflow run``).
EXPERIMENTS = {
    "sampling": "madminer-ml-sample",
    "training": "madminer-ml-train",
    "evaluation": "madminer-ml-eval",
}


def configure_logging() -> None:
    """INFO logs on stderr, as the seed's scripts print MadMiner's progress."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def read_input(path: str | Path) -> dict[str, Any]:
    """The workflow input file (``input.yml``) as plain data."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def theta_values(spec: dict[str, Any]) -> tuple[str, Any]:
    """A ``theta_0`` / ``theta_1`` entry of the input as MadMiner's θ helper tuple.

    The seed maps ``morphing_points`` to MadMiner's ``morphing_point``; so does this.
    """
    from madminer.sampling import benchmark, benchmarks, morphing_point, random_morphing_points

    method = spec["sampling_method"]
    if method == "benchmark":
        return benchmark(spec["sampling_arg"])
    if method == "benchmarks":
        return benchmarks(list(spec["sampling_arg"]))
    if method in ("morphing_point", "morphing_points"):
        return morphing_point(spec["sampling_arg"])
    if method == "random_morphing_points":
        priors = []
        for entry in spec["prior"]:
            (prior,) = entry.values()
            priors.append((prior["prior_shape"], prior["prior_param_0"], prior["prior_param_1"]))
        return random_morphing_points(spec["sampling_number"], priors)
    raise ValueError(f"unknown sampling_method {method!r}")


def limit_grid(inputs: dict[str, Any]) -> tuple[list[tuple[float, float]], list[int], list[float]]:
    """Grid ranges, resolutions and θ_true of the ``asymptotic_limits`` section."""
    limits = inputs["asymptotic_limits"]
    ranges = [(float(axis["min"]), float(axis["max"])) for axis in limits["region"].values()]
    return ranges, [int(n) for n in limits["resolutions"]], [float(t) for t in limits["theta_true"]]


def method_of_folder(folder: str | Path) -> str:
    """The method a ``Samples_<method>_<i>`` or ``models/<method>`` folder belongs to."""
    name = Path(folder).resolve().name
    return name.split("_")[1] if name.startswith("Samples_") else name


@contextlib.contextmanager
def tracked(
    step: str, args: argparse.Namespace, tags: dict[str, str] | None = None
) -> Iterator[ModuleType | None]:
    """An MLflow run of ``step`` in its seed experiment, yielding ``mlflow`` (None: untracked).

    The run gets the command line's options as parameters (what the seed's ``MLproject`` entry
    point passes) and the seed's ``context: workflow`` tag plus ``tags``. The store is
    ``$MLFLOW_TRACKING_URI``; with it unset nothing is tracked and MLflow is not even imported,
    which is how ``bench_workflow.py --no-seed-mlflow`` times the steps without tracking.
    """
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        yield None
        return
    import mlflow

    mlflow.set_experiment(EXPERIMENTS[step])
    with mlflow.start_run():
        mlflow.log_params({key: str(value) for key, value in vars(args).items()})
        mlflow.set_tags({"context": "workflow", **(tags or {})})
        yield mlflow
