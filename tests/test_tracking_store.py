"""The tracking store: SQLite paths and parallel first use of a new store from many processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
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


def _schema(database: Path) -> list[tuple[str, list[str]]]:
    """Every table, index and the schema version (MLflow's migrations order a table's
    constraints differently from one run to the next, so lines are compared as a set)."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    tables = [
        (name, sorted(line.strip(" ,") for line in (sql or "").splitlines())) for name, sql in rows
    ]
    return [*tables, ("alembic", [str(version)])]


def test_a_new_store_is_a_copy_of_mlflows_own_empty_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow = import_mlflow()
    direct = tmp_path / "direct.db"
    mlflow.MlflowClient(f"sqlite:///{direct}").search_experiments()  # MLflow's migrations
    for name in ("first", "second"):  # the first builds the cached template, the second copies
        workdir = tmp_path / name
        mlflow_client = client(workdir)
        assert _schema(workdir / "mlflow.db") == _schema(direct)
        default = mlflow_client.get_experiment("0")
        assert default.name == "Default"
        assert default.artifact_location == str(workdir / "mlartifacts" / "0")
        run = mlflow_client.create_run(experiment_id(mlflow_client, experiment_name("copy")))
        mlflow_client.log_metric(run.info.run_id, "x", 1.5)
        assert mlflow_client.get_run(run.info.run_id).data.metrics == {"x": 1.5}
    assert [p.name for p in (tmp_path / "cache" / "minerflow").iterdir()] == [
        f"mlflow-{mlflow.__version__}-empty.db"
    ]


def test_without_a_writable_cache_mlflow_builds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    mlflow_client = client(tmp_path / "work")
    assert mlflow_client.get_experiment("0").name == "Default"
    assert [p.name for p in (tmp_path / "work").iterdir() if p.suffix == ".tmp"] == []
