"""Runs recorded to a file while a task runs, and logged to MLflow afterwards.

Why: logging straight to MLflow costs every process that logs the import of MLflow and
SQLAlchemy (about 1.5 s) and a database transaction per call. In a coordinated run the task
processes therefore write what they log into one JSON record per run in a *spool folder*, and
one tracker process (:mod:`minerflow.tracking.tracker`) logs the records into the store while
the tasks go on. A record is written atomically when its run ends, so an interrupted run
loses nothing: a record still in the spool is logged by the next coordinated run, under the
parent run it was made for.

A record holds the run's experiment, name, tags, parameters, metrics (with the times they
were taken), the files to attach (read when the record is logged: outputs are never changed
once written) and pickled torch models to log with ``mlflow.pytorch``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minerflow.errors import InputError
from minerflow.io.atomic import save_json
from minerflow.tracking.runs import PARENT_TAG, RunLog, TrackedRun, flatten_params

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "RECORD_SUFFIX",
    "RECORD_TAG",
    "SpooledRun",
    "log_record",
    "pending_records",
    "read_record",
]

RECORD_SUFFIX = ".run.json"
RECORD_TAG = "minerflow.record"
_FORMAT = 1
_KEYS = (
    "experiment",
    "run_name",
    "tags",
    "params",
    "metrics",
    "artifacts",
    "models",
    "start_time",
    "status",
    "end_time",
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SpooledRun(RunLog):
    """What one run logs, collected for a spool record (written by :meth:`close`)."""

    def __init__(self, spool: Path, experiment: str, run_name: str | None, tags: Mapping[str, str]):
        self.spool = spool
        self.name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.record: dict[str, Any] = {
            "format": _FORMAT,
            "experiment": experiment,
            "run_name": run_name,
            "tags": dict(tags),
            "params": {},
            "metrics": [],
            "artifacts": [],
            "models": [],
            "start_time": _now_ms(),
        }

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.record["params"].update(flatten_params(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.record["tags"].update({k: str(v) for k, v in tags.items()})

    def log_metric_points(
        self, points: Sequence[tuple[str, float, int]], timestamp: int | None = None
    ) -> None:
        self.record["metrics"].append([timestamp or _now_ms(), [list(p) for p in points]])

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        # the file is read when the record is logged: outputs never change once written
        self.record["artifacts"].append([str(Path(path).resolve()), artifact_path])

    def log_torch_model(self, model: Any, name: str = "model") -> None:
        # pickled beside the record, logged with mlflow.pytorch by the tracker
        import torch

        path = self.spool / f"{self.name}.{name}.pt"
        torch.save(model, path)
        self.record["models"].append([path.name, name])

    def close(self, status: str) -> None:
        """End the run with ``status``: the record appears in the spool, complete, at once."""
        self.record |= {"status": status, "end_time": _now_ms()}
        save_json(self.spool / f"{self.name}{RECORD_SUFFIX}", self.record)


def pending_records(spool: Path) -> list[Path]:
    """The records waiting in ``spool``, oldest first."""
    return sorted(spool.glob(f"*{RECORD_SUFFIX}"))


def read_record(path: Path) -> dict[str, Any]:
    """A spool record, checked: a record that is not one raises :class:`InputError`."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, None, f"a minerflow tracking record (JSON: {error})") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise InputError(path, "format", f"{_FORMAT} (a minerflow tracking record), got {found!r}")
    for key in _KEYS:
        if key not in record:
            raise InputError(path, key, "present in a tracking record")
    return record


def log_record(
    mlflow_client: MlflowClient, path: Path, parent_run_id: str | None, *, resumed: bool = False
) -> str:
    """Log one spool record as a run (nested under ``parent_run_id``), then delete it.

    ``resumed``: the record may have been half logged by a tracker that was killed; a run
    already made from it is deleted first, so it is logged exactly once. Returns the run id.
    """
    from minerflow.tracking.store import experiment_id

    record = read_record(path)
    name = path.name.removesuffix(RECORD_SUFFIX)
    experiment = experiment_id(mlflow_client, record["experiment"])
    if resumed:
        query = f"tags.`{RECORD_TAG}` = '{name}'"
        for run in mlflow_client.search_runs([experiment], query):
            mlflow_client.delete_run(run.info.run_id)
    tags = {RECORD_TAG: name, **record["tags"]}
    if parent_run_id:
        tags.setdefault(PARENT_TAG, parent_run_id)
    run = mlflow_client.create_run(
        experiment, start_time=record["start_time"], tags=tags, run_name=record["run_name"]
    )
    handle = TrackedRun(mlflow_client, run.info.run_id)
    handle.log_params(record["params"])
    for timestamp, points in record["metrics"]:
        handle.log_metric_points([tuple(p) for p in points], timestamp)
    missing = [p for p, _ in record["artifacts"] if not Path(p).exists()]
    for artifact, artifact_path in record["artifacts"]:
        if artifact not in missing:
            handle.log_artifact(artifact, artifact_path)
    if missing:
        handle.set_tags({"minerflow.missing_artifacts": json.dumps(missing)})
    models = [path.parent / file for file, _ in record["models"]]
    for model_path, (_, model_name) in zip(models, record["models"], strict=True):
        import torch

        handle.log_torch_model(torch.load(model_path, weights_only=False), model_name)
    mlflow_client.set_terminated(handle.run_id, record["status"], end_time=record["end_time"])
    path.unlink()
    for model_path in models:
        model_path.unlink(missing_ok=True)
    return handle.run_id
