"""MLflow tracking against a real SQLite store and a real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import minerflow
from minerflow.tracking.provenance import git_commit, provenance_tags, sha256_file
from minerflow.tracking.runs import (
    PARENT_ENV,
    find_runs,
    flatten_params,
    metric_history,
    read_run,
    tracked_run,
)
from minerflow.tracking.store import artifact_root, experiment_name, tracking_uri


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A work dir whose default SQLite store is used (no tracking URI in the environment).

    Shared by the tests of this file: creating the MLflow tables takes seconds.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv(PARENT_ENV, raising=False)
        yield tmp_path_factory.mktemp("store") / "work"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (own process group, stopped as a group at the end)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed after the server stops)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}"]
    cmd += ["--artifacts-destination", str(root / "artifacts")]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_flatten_params_dotted_keys_and_json_lists() -> None:
    flat = flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x", "f[0]": True})
    assert flat == {"a.b.c": "1", "a.d": "[1, 2]", "e": "x", "f_0_": "True"}


def test_tracking_uri_default_and_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_uri(tmp_path / "w")
    assert uri == f"sqlite:///{(tmp_path / 'w').resolve()}/mlflow.db"
    assert artifact_root(uri) == (tmp_path / "w" / "mlartifacts").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(tmp_path / "w") == "http://127.0.0.1:5999"
    assert artifact_root("http://127.0.0.1:5999") is None
    assert experiment_name("training") == "minerflow-training"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"changed")  # a new size invalidates the cache
    assert sha256_file(path) == hashlib.sha256(b"changed").hexdigest()


def test_provenance_tags_name_version_commit_and_checksums(reference_input_file: Path) -> None:
    tags = provenance_tags(input_file=reference_input_file)
    assert tags["minerflow.version"] == minerflow.__version__
    expected = hashlib.sha256(reference_input_file.read_bytes()).hexdigest()
    assert tags["minerflow.input_file_sha256"] == expected
    commit = git_commit()
    if commit is not None:  # this test runs from the git checkout in the repository
        assert len(commit) == 40
        assert tags["minerflow.git_commit"] == commit


def test_run_logs_params_history_artifacts_to_sqlite(
    local_store: Path, reference_input_file: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "plot.txt"
    plot.write_text("figure")
    with tracked_run(
        "training",
        local_store,
        run_name="alices-0",
        params={"training": {"alpha": 10.0, "n_hidden": [100, 100]}},
        input_file=reference_input_file,
        tags={"method": "alices"},
    ) as run:
        run.log_history({"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0]})
        run.log_metrics({"best_val_loss": 2.0})
        run.log_artifact(plot, "plots")
    assert (local_store / "mlflow.db").exists()
    record = read_run(local_store, run.run_id)
    assert record.experiment == "minerflow-training"
    assert record.status == "FINISHED"
    assert record.params == {"training.alpha": "10.0", "training.n_hidden": "[100, 100]"}
    assert record.metrics == {"loss": 1.5, "val_loss": 2.0, "best_val_loss": 2.0}
    assert record.tags["method"] == "alices"
    assert record.tags["minerflow.step"] == "training"
    assert set(record.artifacts) == {"plots/plot.txt", "input/input.yml"}
    assert metric_history(local_store, run.run_id, "loss") == [3.0, 2.0, 1.5]
    # artifacts live in the work dir, not in the current directory
    assert list((local_store / "mlartifacts").rglob("plot.txt"))


def test_failed_run_is_marked_failed_and_parent_links_children(local_store: Path) -> None:
    with tracked_run("workflow", local_store, export_as_parent=True) as parent:
        assert os.environ[PARENT_ENV] == parent.run_id
        with tracked_run("sampling", local_store) as child:
            pass
        with pytest.raises(RuntimeError), tracked_run("sampling", local_store) as failed:
            raise RuntimeError("boom")
    assert PARENT_ENV not in os.environ
    assert read_run(local_store, child.run_id).parent_run_id == parent.run_id
    assert read_run(local_store, failed.run_id).status == "FAILED"
    assert set(find_runs(local_store, "sampling", parent.run_id)) == {child.run_id, failed.run_id}
    assert find_runs(local_store, "plot") == []


def test_child_run_in_another_process_gets_the_parent(local_store: Path) -> None:
    with tracked_run("workflow", local_store, export_as_parent=True) as parent:
        code = (
            "from minerflow.tracking.runs import tracked_run\n"
            f"with tracked_run('evaluation', {str(local_store)!r}) as run: print(run.run_id)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
    child_id = out.stdout.strip().splitlines()[-1]
    assert read_run(local_store, child_id).parent_run_id == parent.run_id
    assert out.stderr == ""  # MLflow stays quiet


def test_torch_model_logged_and_loadable(
    local_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # a global URI someone else set must neither receive the run nor leak into the environment
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        with tracked_run("training", local_store) as run:
            uri = run.log_torch_model(model)
        assert "MLFLOW_TRACKING_URI" not in os.environ
        mlflow.set_tracking_uri(tracking_uri(local_store))
        loaded = mlflow.pytorch.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    x = torch.tensor([[1.0, -2.0]])
    assert torch.equal(loaded(x), model(x))


@pytest.mark.slow  # the server alone takes 10-30 s to start on a busy 2-core machine
def test_run_logs_to_a_real_mlflow_server(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with tracked_run("evaluation", tmp_path, params={"luminosity": 1e4}) as run:
        run.log_history({"loss": [1.0, 0.5]})
        run.log_artifact(note)
    assert not (tmp_path / "mlflow.db").exists()  # the server's store was used
    record = read_run(tmp_path, run.run_id)
    assert record.params == {"luminosity": "10000.0"}
    assert record.metrics == {"loss": 0.5}
    assert record.artifacts == ("note.txt",)
    assert find_runs(tmp_path, "evaluation") == [run.run_id]
