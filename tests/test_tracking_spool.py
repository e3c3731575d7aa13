"""Spooled runs and the tracker process, against a real SQLite MLflow store.

A coordinated run's tasks record their runs in a spool folder; the tracker logs them into
MLflow under the run's parent. Checked here: a record logs exactly what the task logged, the
tracker nests and closes runs with the coordinator's status, and nothing is lost or logged
twice when the coordinator, the tracker or both are killed.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tests.support.mlflow_store import fresh_workdir

from minerflow.tracking.runs import (
    PARENT_ENV,
    SPOOL_ENV,
    find_runs,
    metric_history,
    read_run,
    tracked_run,
)
from minerflow.tracking.spool import RECORD_SUFFIX, RECORD_TAG, log_record, pending_records
from minerflow.tracking.store import client
from minerflow.tracking.tracker import (
    INVALID_FOLDER,
    SPOOL_FOLDER,
    Tracker,
    TrackingFailedError,
    log_leftovers,
)


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spool folder in the environment, as a coordinated run's tasks see it."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setenv(SPOOL_ENV, str(folder))
    return folder


@pytest.fixture
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A work dir with an empty SQLite store; no tracking URI, parent or spool inherited."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", PARENT_ENV, SPOOL_ENV):
            patch.delenv(name, raising=False)
        yield fresh_workdir(request.config, tmp_path_factory, "spool")


def _opener(workdir: Path) -> functools.partial:
    return functools.partial(tracked_run, "workflow", workdir, export_as_parent=True)


def _record_training(workdir: Path, input_file: Path, fail: bool = False) -> torch.nn.Module:
    """What a training task logs, with the spool in the environment."""
    torch.manual_seed(3)
    model = torch.nn.Linear(2, 1)
    with tracked_run(
        "training", workdir, run_name="t", params={"fit": {"lr": 0.1}}, input_file=input_file
    ) as run:
        run.log_history({"train_loss": [3.0, 2.0, 1.5]})
        run.log_metrics({"best_loss": 1.5})
        run.log_artifact(input_file, "copy")
        run.log_torch_model(model)
        if fail:
            raise RuntimeError("boom")
    return model


def test_a_record_logs_what_the_task_logged(
    store: Path, spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch

    settings = tmp_path / "input.yml"
    settings.write_text("a: 1\n")
    model = _record_training(store, settings)
    with pytest.raises(RuntimeError, match="boom"):
        _record_training(store, settings, fail=True)
    records = pending_records(spool)
    assert len(records) == 2 and len(list(spool.glob("*.pt"))) == 2
    assert find_runs(store, "training") == []  # nothing reached MLflow yet

    monkeypatch.delenv(SPOOL_ENV)
    mlflow_client = client(store)
    with tracked_run("workflow", store) as parent:
        pass
    ids = [log_record(mlflow_client, path, parent.run_id) for path in records]
    assert pending_records(spool) == [] and list(spool.glob("*.pt")) == []

    run = read_run(store, ids[0])
    assert (run.status, run.parent_run_id) == ("FINISHED", parent.run_id)
    assert run.params["fit.lr"] == "0.1"
    assert run.metrics["best_loss"] == 1.5
    assert metric_history(store, ids[0], "train_loss") == [3.0, 2.0, 1.5]
    assert {"input/input.yml", "copy/input.yml"} <= set(run.artifacts)
    assert run.tags["minerflow.step"] == "training" and run.tags[RECORD_TAG]
    x = torch.tensor([[0.5, -1.0]])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    try:
        loaded = mlflow.pytorch.load_model(run.tags["minerflow.model_uri"])
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert torch.equal(loaded(x), model(x))
    assert read_run(store, ids[1]).status == "FAILED"


def test_a_half_logged_record_is_logged_once_when_resumed(
    store: Path, spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracked_run("sampling", store, params={"n": 5}) as run:
        run.log_metrics({"rows": 5})
    monkeypatch.delenv(SPOOL_ENV)
    (record,) = pending_records(spool)
    kept = record.read_text()
    mlflow_client = client(store)
    log_record(mlflow_client, record, None)
    record.write_text(kept)  # as if the tracker died before deleting it
    again = log_record(mlflow_client, record, None, resumed=True)
    assert find_runs(store, "sampling") == [again]


def _child_records(workdir: Path, steps: list[str]) -> None:
    """Record runs from another process, as luigi's forked task processes do."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for step in steps:
                with tracked_run(step, workdir, params={"step": step}):
                    pass
        except BaseException:
            code = 1
        os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_tracker_nests_the_runs_and_closes_the_parent_with_the_status(
    store: Path, status: str
) -> None:
    tracker = Tracker(store, "tok", _opener(store))
    assert os.environ[SPOOL_ENV] == str(tracker.spool)
    _child_records(store, ["sampling", "training"])
    tracker.start()
    _child_records(store, ["evaluation"])
    parent = tracker.finish(status)
    assert SPOOL_ENV not in os.environ
    assert read_run(store, parent).status == status
    for step in ("sampling", "training", "evaluation"):
        (run_id,) = find_runs(store, step, parent)
        assert read_run(store, run_id).status == "FINISHED"
    assert list((store / SPOOL_FOLDER).iterdir()) == []  # folder and lock file removed


def test_tracker_failure_is_one_line_and_keeps_the_records(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = Tracker(store, "tok", _opener(store))
    _child_records(store, ["sampling"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus-scheme://nowhere")
    with pytest.raises(
        TrackingFailedError, match=r"^tracking failed: .*bogus-scheme.*logged by the next"
    ) as error:
        tracker.finish("FINISHED")
    assert "\n" not in str(error.value)
    assert len(pending_records(tracker.spool)) == 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert log_leftovers(store, None) == 1  # the next run logs it
    assert len(find_runs(store, "sampling")) == 1
    assert list((store / SPOOL_FOLDER).iterdir()) == []


def test_a_live_spool_is_not_taken_over(store: Path) -> None:
    tracker = Tracker(store, "live", _opener(store))
    _child_records(store, ["sampling"])
    assert log_leftovers(store, None) == 0
    assert len(pending_records(tracker.spool)) == 1
    parent = tracker.finish("FINISHED")
    assert len(find_runs(store, "sampling", parent)) == 1


_COORDINATOR = """
import functools, os, signal, sys, time
from pathlib import Path
from minerflow.tracking.runs import tracked_run
from minerflow.tracking.tracker import Tracker
workdir, mode = Path(sys.argv[1]), sys.argv[2]
opener = functools.partial(tracked_run, "workflow", workdir, export_as_parent=True)
tracker = Tracker(workdir, "killed", opener)
with tracked_run("sampling", workdir, params={"n": 1}):
    pass
if mode == "both-before-start":
    os.kill(os.getpid(), signal.SIGKILL)
tracker.start()
while not (tracker.spool / "parent.json").exists():
    time.sleep(0.02)
if mode == "both":
    os.kill(tracker._process.pid, signal.SIGKILL)
    while not os.waitpid(tracker._process.pid, os.WNOHANG)[0]:
        time.sleep(0.02)
with tracked_run("training", workdir, params={"n": 2}):
    pass
print(tracker._process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_coordinator(workdir: Path, mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in (SPOOL_ENV, PARENT_ENV)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_COORDINATOR), str(workdir), mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def test_the_tracker_finishes_alone_when_the_coordinator_is_killed(store: Path) -> None:
    tracker_pid = int(_kill_coordinator(store, "coordinator"))
    deadline = time.monotonic() + 60
    while _alive(tracker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tracker_pid)
    (parent,) = find_runs(store, "workflow")
    assert read_run(store, parent).status == "KILLED"
    assert (
        len(find_runs(store, "sampling", parent)) == len(find_runs(store, "training", parent)) == 1
    )
    assert log_leftovers(store, None) == 0  # nothing left to log; the folder is cleaned up
    assert list((store / SPOOL_FOLDER).iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return status != "Z"


@pytest.mark.parametrize("mode", ["both", "both-before-start"])
def test_records_of_a_run_killed_with_its_tracker_are_logged_by_the_next(
    store: Path, mode: str
) -> None:
    _kill_coordinator(store, mode)
    spool = store / SPOOL_FOLDER / "killed"
    left = len(pending_records(spool))
    assert left >= 1  # the training's record at least: its tracker was dead by then
    with tracked_run("workflow", store) as current:
        assert log_leftovers(store, current.run_id) == left
    runs = find_runs(store, "workflow")
    if mode == "both":  # the killed tracker had opened its parent: the records go there
        (parent,) = [r for r in runs if r != current.run_id]
        assert read_run(store, parent).status == "KILLED"
    else:
        assert runs == [current.run_id]
        parent = current.run_id
    steps = ("sampling", "training") if mode == "both" else ("sampling",)
    for step in steps:  # each logged exactly once, under its parent
        assert len(find_runs(store, step)) == len(find_runs(store, step, parent)) == 1
    assert list((store / SPOOL_FOLDER).iterdir()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "a minerflow tracking record (JSON"),
        ('{"format": 99}', "format: expected 1 (a minerflow tracking record), got 99"),
        ('{"format": 1, "experiment": "minerflow-sampling"}', "run_name: expected present"),
    ],
)
def test_an_invalid_record_is_set_aside_with_a_warning(
    store: Path, content: str, expected: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A record that is not one must not stop the tracking of every later run."""
    tracker = Tracker(store, "tok", _opener(store))
    _child_records(store, ["sampling"])
    bad = tracker.spool / f"0-0-bad{RECORD_SUFFIX}"
    bad.write_text(content)
    parent = tracker.finish("FINISHED")
    assert len(find_runs(store, "sampling", parent)) == 1  # the good record still logged
    kept = store / INVALID_FOLDER / bad.name
    assert kept.read_text() == content
    (line,) = [x for x in capfd.readouterr().err.splitlines() if "set aside" in x]
    assert expected in line and str(kept) in line
