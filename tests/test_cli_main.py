"""The ``minerflow`` command: registry, toy, status, ui; exit codes and one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import luigi
import numpy as np
import pytest

import minerflow
from minerflow.cli.main import COMMANDS, build_parser, main
from minerflow.io.madminer_file import read_event_file
from minerflow.physics import toy
from minerflow.tasks.base import MinerflowTask

MINERFLOW = str(Path(sys.executable).parent / "minerflow")


class CliTestOutput(MinerflowTask):
    """A one-file task, to give ``status`` a real output folder to list."""

    step = "sampling"
    readable_keys = ("method",)
    method = luigi.Parameter()

    def build(self, out: Path) -> None:
        (out / "x.npy").write_bytes(b"")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [MINERFLOW, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_every_registered_command_has_a_handler() -> None:
    def leaves(parser: argparse.ArgumentParser, path: str) -> dict[str, argparse.ArgumentParser]:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            return {path: parser}
        return {
            key: leaf
            for name, sub in groups[0].choices.items()
            for key, leaf in leaves(sub, f"{path} {name}".strip()).items()
        }

    commands = leaves(build_parser(), "")
    assert {name.split()[0] for name in commands} == set(COMMANDS)
    assert {"toy", "status", "ui", "sample", "train", "evaluate", "plot", "run"} <= set(COMMANDS)
    for name, parser in commands.items():
        assert callable(parser.get_default("handler")), name


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    done = _cli("--version")
    assert (done.returncode, done.stdout) == (0, f"minerflow {minerflow.__version__}\n")
    with pytest.raises(SystemExit) as info:
        main(["toy", "--output", "f.h5", "--n-events", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_toy_writes_a_reproducible_event_file(tmp_path: Path, capsys) -> None:
    done = _cli("toy", "--output", str(tmp_path / "a.h5"), "--n-events", "300", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {tmp_path / 'a.h5'} (300 toy events, seed 3)\n"
    args = ["toy", "--output", str(tmp_path / "b.h5"), "--n-events", "300", "--seed", "3"]
    assert main(args) == 0
    first, second = read_event_file(tmp_path / "a.h5"), read_event_file(tmp_path / "b.h5")
    assert first.header.n_events == 300
    assert first.header.parameter_names == toy.PARAMETER_NAMES
    assert first.header.observable_names == toy.OBSERVABLE_NAMES
    np.testing.assert_array_equal(first.observations(), second.observations())
    np.testing.assert_array_equal(first.weights(), second.weights())


def test_file_system_errors_are_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["toy", "--output", str(blocker / "t.h5"), "--n-events", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minerflow toy: ") and err.count("\n") == 1
    assert str(blocker) in err


def test_status_lists_outputs_and_store(tmp_path: Path, capsys) -> None:
    done = _cli("status", "--workdir", str(tmp_path / "none"))
    assert done.returncode == 2
    assert done.stderr == (
        f"minerflow status: {tmp_path / 'none'}: expected an existing work directory "
        "(has anything run yet?)\n"
    )
    workdir = tmp_path / "w"
    task = CliTestOutput(workdir=str(workdir), method="alices")
    assert luigi.build([task], local_scheduler=True, log_level="ERROR")
    key = task.output_dir().name
    (task.output_dir().parent / ".method=sally__0123456789.x1y2.tmp").mkdir()
    assert main(["status", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"work dir {workdir.resolve()}"
    assert out[1] == "  sampling/v1/method=sally__0123456789  incomplete (interrupted or running)"
    assert out[2].startswith(f"  sampling/v1/{key}  complete (")
    assert out[3] == f"MLflow store sqlite:///{workdir.resolve()}/mlflow.db (no runs yet)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ui_needs_a_store(tmp_path: Path, capsys) -> None:
    assert main(["ui", "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"minerflow ui: {tmp_path / 'mlflow.db'}: expected an MLflow store (has anything run?)\n"
    )


@pytest.mark.slow  # the MLflow server takes 10-30 s to start on a busy 2-core machine
def test_ui_serves_the_workdir_store_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    code = (
        "from minerflow.tracking.runs import tracked_run\n"
        f"with tracked_run('sampling', {str(tmp_path)!r}, run_name='r1'): pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    port = _free_port()
    proc = subprocess.Popen(
        [MINERFLOW, "ui", "--workdir", str(tmp_path), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                time.sleep(0.5)
        query = "api/2.0/mlflow/experiments/get-by-name?experiment_name=minerflow-sampling"
        with urllib.request.urlopen(f"{url}/{query}", timeout=10) as response:
            assert b'"name": "minerflow-sampling"' in response.read().replace(b'":"', b'": "')
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert out.startswith(f"MLflow UI for sqlite:///{tmp_path.resolve()}/mlflow.db at {url}")
        assert err.splitlines()[-1] == (
            "minerflow ui: interrupted; finished outputs are kept, "
            "run the same command again to do the rest"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
