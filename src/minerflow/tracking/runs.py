"""One MLflow run per sampling, training or evaluation: parameters, metrics, models, files.

Runs are created through an explicit :class:`mlflow.MlflowClient` rather than MLflow's global
"active run", so parallel worker processes never step on each other. The coordinated run is
the parent: its id travels to task processes in ``MINERFLOW_PARENT_RUN_ID`` and becomes the
``mlflow.parentRunId`` tag of every step run, which is how the MLflow UI nests them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minerflow.tracking.provenance import provenance_tags
from minerflow.tracking.store import client, experiment_id, experiment_name, import_mlflow

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "PARENT_ENV",
    "PARENT_TAG",
    "SPOOL_ENV",
    "RunLog",
    "RunRecord",
    "TrackedRun",
    "find_runs",
    "flatten_params",
    "metric_history",
    "read_run",
    "torch_requirements",
    "tracked_run",
    "warm_up_model_logging",
]

PARENT_ENV = "MINERFLOW_PARENT_RUN_ID"
SPOOL_ENV = "MINERFLOW_TRACKING_SPOOL"
PARENT_TAG = "mlflow.parentRunId"
_KEY_CHARS = re.compile(r"[^\w\-./ ]")
_MAX_PARAM_VALUE = 6000
_BATCH = 100


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow parameters: dotted keys, lists as JSON text.

    >>> flatten_params({"training": {"alpha": 10, "n_hidden": [100, 100]}, "seed": 1})
    {'training.alpha': '10', 'training.n_hidden': '[100, 100]', 'seed': '1'}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = _KEY_CHARS.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat |= flatten_params(value, f"{name}.")
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, Sequence | tuple):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        flat[name] = text[:_MAX_PARAM_VALUE]
    return flat


def torch_requirements() -> list[str]:
    """The pip requirements of a logged torch model: this torch, without its build label."""
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}"]


def warm_up_model_logging() -> None:
    """Load and compute what ``mlflow.pytorch.log_model`` does before it writes anything
    (1 s: MLflow's model code, GitPython, a map of every installed package to its modules),
    so that a process that logs models later does it at a moment of its choosing."""
    import_mlflow()
    for name in ("mlflow.pytorch", "mlflow.pyfunc", "git"):
        with contextlib.suppress(ImportError):  # GitPython is optional for MLflow
            importlib.import_module(name)
    try:  # an MLflow internal: without it the first model logging does this
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches
    except ImportError:
        return
    warn_dependency_requirement_mismatches(torch_requirements())


class RunLog:
    """What a step logs to: an open MLflow run (:class:`TrackedRun`) or a spool record
    (:class:`minerflow.tracking.spool.SpooledRun`). Subclasses store the points."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters, flattened to dotted keys."""
        raise NotImplementedError

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as text)."""
        raise NotImplementedError

    def log_metric_points(
        self, points: Sequence[tuple[str, float, int]], timestamp: int | None = None
    ) -> None:
        """Log ``(key, value, step)`` points taken at ``timestamp`` (ms since 1970; default now)."""
        raise NotImplementedError

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Attach a file, or every file of a folder, to the run."""
        raise NotImplementedError

    def log_torch_model(self, model: Any, name: str = "model") -> Any:
        """Log a torch module with ``mlflow.pytorch``; its URI becomes ``minerflow.model_uri``."""
        raise NotImplementedError

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log scalar metrics at one step (evaluation results, timings)."""
        self.log_metric_points([(k, float(v), step) for k, v in metrics.items()])

    def log_history(self, history: Mapping[str, Sequence[float]]) -> None:
        """Log per-epoch curves: ``{"train_loss": [...], "val_loss": [...]}``, step = epoch."""
        self.log_metric_points(
            [(k, float(v), step) for k, vals in history.items() for step, v in enumerate(vals)]
        )


class TrackedRun(RunLog):
    """Handle to an open run; logs through the client it was created with."""

    def __init__(self, mlflow_client: MlflowClient, run_id: str) -> None:
        self.client = mlflow_client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + _BATCH])

    def log_metric_points(
        self, points: Sequence[tuple[str, float, int]], timestamp: int | None = None
    ) -> None:
        from mlflow.entities import Metric

        now = timestamp or int(time.time() * 1000)
        items = [Metric(_KEY_CHARS.sub("_", k), v, now, s) for k, v, s in points]
        for start in range(0, len(items), 10 * _BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + 10 * _BATCH])

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        source = Path(path)
        if source.is_dir():
            self.client.log_artifacts(self.run_id, str(source), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(source), artifact_path)

    def log_torch_model(self, model: Any, name: str = "model") -> str:
        """Log ``model`` pickled (its class must be importable); returns its URI.

        Requirements are given explicitly: MLflow would otherwise spend about 11 s inferring
        them.
        """

        mlflow = import_mlflow()
        mlflow_pytorch = importlib.import_module("mlflow.pytorch")

        # the fluent API needs the global URI, and setting it also sets $MLFLOW_TRACKING_URI:
        # restore both afterwards, so later runs still go to the work dir's store
        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.client.tracking_uri)
        try:
            with mlflow.start_run(run_id=self.run_id, nested=True):
                info = mlflow_pytorch.log_model(
                    model,
                    name=name,
                    pip_requirements=torch_requirements(),
                    serialization_format="pickle",
                )
        finally:
            mlflow.set_tracking_uri(previous)
            if previous_env is None:  # set_tracking_uri exported it: later runs would follow
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env
        self.set_tags({"minerflow.model_uri": info.model_uri})
        return str(info.model_uri)


@contextlib.contextmanager
def tracked_run(
    step: str,
    workdir: str | os.PathLike[str],
    *,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    input_file: str | os.PathLike[str] | None = None,
    event_file: str | os.PathLike[str] | None = None,
    parent_run_id: str | None = None,
    export_as_parent: bool = False,
) -> Iterator[RunLog]:
    """Open a run in experiment ``minerflow-<step>``; close it FINISHED, FAILED or KILLED.

    Tags: ``minerflow.step``, the provenance of :func:`provenance_tags` and the parent run
    (``parent_run_id``, else ``$MINERFLOW_PARENT_RUN_ID``). With ``export_as_parent`` the run's
    id is put in that variable while the block runs, so runs started by worker processes
    (forked or spawned) become its children. The input file is attached as an artifact.

    Inside a coordinated run (``$MINERFLOW_TRACKING_SPOOL`` set, no explicit parent) the run
    is recorded in the spool instead and logged by the tracker process
    (:mod:`minerflow.tracking.spool`): the handle is then a ``SpooledRun``, with the same
    logging methods but no run id yet.
    """
    all_tags = {"minerflow.step": step, **provenance_tags(input_file, event_file)}
    parent = parent_run_id or os.environ.get(PARENT_ENV)
    if parent:
        all_tags[PARENT_TAG] = parent
    all_tags |= {k: str(v) for k, v in (tags or {}).items()}
    spool = os.environ.get(SPOOL_ENV)
    handle: RunLog
    if spool and parent_run_id is None and not export_as_parent:
        from minerflow.tracking.spool import SpooledRun

        handle = SpooledRun(Path(spool), experiment_name(step), run_name, all_tags)
        close = handle.close
    else:
        mlflow_client = client(workdir)
        exp = experiment_id(mlflow_client, experiment_name(step))
        run = mlflow_client.create_run(exp, run_name=run_name, tags=all_tags)
        handle = TrackedRun(mlflow_client, run.info.run_id)
        close = functools.partial(mlflow_client.set_terminated, handle.run_id)
    previous_parent = os.environ.get(PARENT_ENV)
    if export_as_parent:
        os.environ[PARENT_ENV] = handle.run_id
    status = "FAILED"
    try:
        if params:
            handle.log_params(params)
        if input_file is not None:
            handle.log_artifact(input_file, "input")
        yield handle
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if export_as_parent:
            if previous_parent is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = previous_parent
        close(status)


@dataclass(frozen=True)
class RunRecord:
    """What a finished run holds, read back from the store."""

    run_id: str
    experiment: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: tuple[str, ...]

    @property
    def parent_run_id(self) -> str | None:
        """Id of the run this one is nested under, if any."""
        return self.tags.get(PARENT_TAG)


def read_run(workdir: str | os.PathLike[str], run_id: str) -> RunRecord:
    """Read a run's parameters, latest metrics, tags and artifact paths (recursively)."""
    mlflow_client = client(workdir)
    run = mlflow_client.get_run(run_id)
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    return RunRecord(
        run_id=run_id,
        experiment=experiment.name,
        status=run.info.status,
        params=dict(run.data.params),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        tags=dict(run.data.tags),
        artifacts=tuple(_artifact_paths(mlflow_client, run_id, None)),
    )


def _artifact_paths(mlflow_client: MlflowClient, run_id: str, path: str | None) -> Iterator[str]:
    for info in mlflow_client.list_artifacts(run_id, path):
        if info.is_dir:
            yield from _artifact_paths(mlflow_client, run_id, info.path)
        else:
            yield info.path


def metric_history(workdir: str | os.PathLike[str], run_id: str, key: str) -> list[float]:
    """All values of one metric, ordered by step (epoch)."""
    points = client(workdir).get_metric_history(run_id, key)
    return [p.value for p in sorted(points, key=lambda p: p.step)]


def find_runs(
    workdir: str | os.PathLike[str], step: str, parent_run_id: str | None = None
) -> list[str]:
    """Ids of the runs of one step (optionally only children of one parent), newest first."""
    mlflow_client = client(workdir)
    found = mlflow_client.get_experiment_by_name(experiment_name(step))
    if found is None:
        return []
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'" if parent_run_id else ""
    runs = mlflow_client.search_runs([found.experiment_id], query, order_by=["start_time DESC"])
    return [r.info.run_id for r in runs]
