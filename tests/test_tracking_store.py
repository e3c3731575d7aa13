"""The tracking store: SQLite paths and parallel first use of a new store from many processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from minerflow.tracking.store import (
    artifact_root,
    client,
    experiment_id,
    experiment_name,
    import_mlflow,
    sqlite_path,
)


def test_sqlite_path_and_artifact_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path(f"sqlite:///{tmp_path}/work/mlflow.db") == tmp_path / "work" / "mlflow.db"
    # three slashes and a relative name: relative to the current directory, as in SQLAlchemy
    assert sqlite_path("sqlite:///runs/m.db") == tmp_path / "runs" / "m.db"
    assert artifact_root("sqlite:///runs/m.db") == (tmp_path / "runs" / "mlartifacts").as_uri()
    for uri in ("sqlite:///:memory:", "sqlite://", "http://127.0.0.1:5000", "file:///tmp/x"):
        assert sqlite_path(uri) is None and artifact_root(uri) is None


def _first_use(workdir: str, barrier: Any, results: Any) -> None:
    """Open the new store and its experiment the moment every sibling is ready too."""
    barrier.wait()
    try:
        mlflow_client = client(workdir)
        results.put(experiment_id(mlflow_client, experiment_name("race")))
    except Exception as err:  # reported to the test, which fails on it
        results.put(f"{type(err).__name__}: {err}")


def test_many_processes_create_one_new_store_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lock this fails nearly every time ("duplicate column name" and friends)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import_mlflow()  # imported once here: forked processes start at the race at once
    context = multiprocessing.get_context("fork")
    n = 5
    barrier, results = context.Barrier(n), context.Queue()
    workdir = tmp_path / "work"
    processes = [
        context.Process(target=_first_use, args=(str(workdir), barrier, results)) for _ in range(n)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(n)]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * n
    assert len(set(outcomes)) == 1 and outcomes[0].isdigit(), outcomes  # one id, no error
    assert (workdir / "mlflow.db.lock").is_file()
    names = [e.name for e in client(workdir).search_experiments()]
    assert names.count(experiment_name("race")) == 1
