"""The tracker: one process that logs a coordinated run's spooled runs while the tasks run.

``minerflow run`` starts it (:class:`Tracker`); the task processes write their runs as spool
records (:mod:`minerflow.tracking.spool`) and never import MLflow. The tracker opens the
coordinated run's own MLflow run (the parent, and a sweep's parent inside it), logs each
record nested under it as soon as the record appears, and when the coordinator says how the
run ended, logs what is left, closes the parent with that status and exits.

Nothing is lost when a run is interrupted: the tracker ignores Ctrl-C (the coordinator tells
it to finish), notices when the coordinator was killed and finishes on its own, and records
that no tracker logged (both killed) stay in the spool. The next coordinated run's tracker
logs those under the parent they were made for, and marks that parent as killed.

Each run's spool folder ``<workdir>/.tracking-spool/<token>`` belongs to the process that
holds the lock ``<token>.lock`` beside it: the coordinator takes it before the folder exists,
and its tracker and task processes inherit it. A folder whose lock is free is a leftover.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from minerflow.errors import InputError, MinerflowError
from minerflow.forking import frozen_for_fork
from minerflow.io.atomic import atomic_path, save_json
from minerflow.io.locks import file_lock
from minerflow.tracking.runs import SPOOL_ENV, warm_up_model_logging
from minerflow.tracking.spool import log_record, pending_records

__all__ = ["INVALID_FOLDER", "SPOOL_FOLDER", "Tracker", "TrackingFailedError", "log_leftovers"]

SPOOL_FOLDER = ".tracking-spool"
INVALID_FOLDER = "tracking-invalid"
_PARENT_FILE = "parent.json"
_STOP_FILE = "stop.json"
_ERROR_FILE = "error.txt"
_POLL_SECONDS = 0.05
_POOL_ENV = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"
_ENDINGS = frozenset({"FINISHED", "FAILED", "KILLED"})

# opens the coordinated run's MLflow run(s) in the tracker; while open, the id to nest the
# step runs under is in $MINERFLOW_PARENT_RUN_ID (tracking.runs.tracked_run(export_as_parent))
ParentOpener = Callable[[], AbstractContextManager[Any]]


class TrackingFailedError(MinerflowError):
    """The tracker could not log to MLflow; the records stay in the spool for the next run."""


class _RunFailedError(Exception):
    """Raised inside the parent run to close it FAILED."""


class Tracker:
    """Owns one run's spool folder and the process that logs it.

    :meth:`start` forks the process (best once the coordinator has loaded torch, which the
    logged models need: the fork shares it); :meth:`finish` tells it how the run ended and
    waits for it. The spool folder is in ``$MINERFLOW_TRACKING_SPOOL`` from construction to
    :meth:`finish`, so every task started in between records its run there.
    """

    def __init__(self, workdir: Path, token: str, open_parent: ParentOpener) -> None:
        self.workdir = workdir
        self.open_parent = open_parent
        root = workdir / SPOOL_FOLDER
        self.spool = root / token
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(file_lock(root / f"{token}.lock"))
        self.spool.mkdir()
        self._previous_env = os.environ.get(SPOOL_ENV)
        os.environ[SPOOL_ENV] = str(self.spool)
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        """Fork the tracker process (once)."""
        if self._process is None:
            context = multiprocessing.get_context("fork")
            self._process = context.Process(target=self._serve, args=(os.getpid(),))
            with frozen_for_fork():
                self._process.start()

    def finish(self, status: str) -> str | None:
        """End the run with ``status`` (FINISHED, FAILED or KILLED) once every record is logged.

        Returns the id of the run the step runs were nested under (the sweep's parent when
        sweeping). Raises :class:`TrackingFailedError` if the tracker failed.
        """
        if status not in _ENDINGS:
            raise ValueError(f"status must be one of {sorted(_ENDINGS)}, got {status!r}")
        try:
            self.start()
            save_json(self.spool / _STOP_FILE, {"status": status})
            assert self._process is not None
            self._process.join()
            error = self.spool / _ERROR_FILE
            if self._process.exitcode != 0 or error.is_file():
                reason = error.read_text().strip() if error.is_file() else "it crashed"
                raise TrackingFailedError(
                    f"tracking failed: {reason} (the runs are kept in {self.spool} and "
                    "logged by the next `minerflow run`)"
                )
            parent = _parent_of(self.spool)
            shutil.rmtree(self.spool)
            return parent
        finally:
            if self._previous_env is None:
                os.environ.pop(SPOOL_ENV, None)
            else:
                os.environ[SPOOL_ENV] = self._previous_env
            self._lock.close()
            if not self.spool.exists():
                self.spool.with_name(f"{self.spool.name}.lock").unlink(missing_ok=True)

    # -- the tracker process --------------------------------------------------------------
    def _serve(self, coordinator: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the coordinator says when to end
        os.environ.pop(SPOOL_ENV, None)  # the parent runs themselves are logged directly
        # one process that never forks: keep the database connection open between operations
        os.environ[_POOL_ENV] = "QueuePool"
        code = 0
        try:
            self._log_until_stopped(coordinator)
        except BaseException as error:  # reported to the coordinator in one line
            with atomic_path(self.spool / _ERROR_FILE) as tmp:
                tmp.write_text(" ".join(f"{type(error).__name__}: {error}".split()))
            code = 1
        sys.stdout.flush()
        os._exit(code)  # not the coordinator's atexit handlers

    def _log_until_stopped(self, coordinator: int) -> None:
        from minerflow.tracking.runs import PARENT_ENV
        from minerflow.tracking.store import client

        try:
            with self.open_parent():
                parent = os.environ.get(PARENT_ENV)
                save_json(self.spool / _PARENT_FILE, {"run_id": parent})
                mlflow_client = client(self.workdir)
                log_leftovers(self.workdir, parent, mlflow_client)
                status = self._drain(mlflow_client, parent, coordinator)
                if status == "KILLED":
                    raise KeyboardInterrupt
                if status == "FAILED":
                    raise _RunFailedError
        except (KeyboardInterrupt, _RunFailedError):
            pass

    def _drain(self, mlflow_client: Any, parent: str | None, coordinator: int) -> str:
        """Log records as they appear until the coordinator stops (or died); its status.

        The first time nothing is waiting, it loads what logging a model needs (MLflow's model
        code, a map of the installed packages), so the first training's record waits less.
        """
        stop = self.spool / _STOP_FILE
        warmed = False
        while True:
            status = json.loads(stop.read_text())["status"] if stop.is_file() else None
            if status is None and os.getppid() != coordinator:
                status = "KILLED"
            records = pending_records(self.spool)
            for record in records:
                _log_or_set_aside(self.workdir, mlflow_client, record, parent)
            if status is not None and not pending_records(self.spool):
                return str(status)
            if not records and not warmed:
                warm_up_model_logging()
                warmed = True
            elif not records:
                time.sleep(_POLL_SECONDS)


def log_leftovers(workdir: Path, parent: str | None, mlflow_client: Any = None) -> int:
    """Log the records that interrupted runs left in ``workdir``'s spool; how many there were.

    Each goes under the parent run it was made for (else ``parent``); a parent left open is
    closed as KILLED. Spool folders of runs still going are left alone.
    """
    root = workdir / SPOOL_FOLDER
    count = 0
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        with file_lock(root / f"{folder.name}.lock", wait=False) as free:
            if not free or not folder.is_dir():  # a run still going, or adopted meanwhile
                continue
            if mlflow_client is None:
                from minerflow.tracking.store import client

                mlflow_client = client(workdir)
            parent_file = folder / _PARENT_FILE
            original = (
                json.loads(parent_file.read_text())["run_id"] if parent_file.is_file() else None
            )
            for record in pending_records(folder):
                count += _log_or_set_aside(
                    workdir, mlflow_client, record, original or parent, resumed=True
                )
            if original and mlflow_client.get_run(original).info.status == "RUNNING":
                mlflow_client.set_terminated(original, "KILLED")
            shutil.rmtree(folder)
        (root / f"{folder.name}.lock").unlink(missing_ok=True)
    return count


def _log_or_set_aside(
    workdir: Path, mlflow_client: Any, record: Path, parent: str | None, resumed: bool = False
) -> bool:
    """Log ``record``; one that is not a valid record is moved to ``<workdir>/tracking-invalid``
    with a warning instead, so that it cannot stop every later run's tracking."""
    try:
        log_record(mlflow_client, record, parent, resumed=resumed)
    except InputError as error:
        target = workdir / INVALID_FOLDER / record.name
        target.parent.mkdir(exist_ok=True)
        os.replace(record, target)
        print(f"minerflow: warning: {error}; set aside as {target}", file=sys.stderr)
        return False
    return True


def _parent_of(folder: Path) -> str | None:
    """The parent run a spool folder's tracker opened (``None`` if it never got that far)."""
    path = folder / _PARENT_FILE
    return json.loads(path.read_text())["run_id"] if path.is_file() else None
