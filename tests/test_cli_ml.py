"""``minerflow ml``: train/evaluate/plot through the CLI, print/remove outputs, one-line errors,
and the same tasks through ``law run`` with the shipped law.cfg."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minerflow.cli.main import main
from minerflow.tasks.base import law_config_path
from support.mlflow_store import fresh_workdir
from test_tasks_ml import _analysis

LAW = Path(sys.executable).parent / "law"


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One toy analysis and one work dir (its MLflow store copied, already migrated)."""
    base = tmp_path_factory.mktemp("cli")
    workdir = fresh_workdir(request.config, tmp_path_factory, "work")
    return {"analysis": _analysis(base / "toy", n_events=600), "workdir": workdir}


def _args(setup: dict, step: str, model: str = "lin_binary", *extra: str) -> list[str]:
    return ["ml", step, "--ml-model", model, "--analysis", str(setup["analysis"]),
            "--workdir", str(setup["workdir"]), "--chunk-size", "400", *extra]  # fmt: skip


def test_unknown_model_and_missing_analysis_are_one_line(
    setup: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(setup, "train", "lin_binarry")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minerflow ml: --ml-model: lin_binarry: expected")
    assert "did you mean 'lin_binary'" in err[0]
    assert main([*_args(setup, "train"), "--analysis", "nowhere.yml"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("nowhere.yml: expected an analysis config file (--analysis-file)")


def test_failed_task_is_one_line_and_exit_2(setup: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(_args(setup, "train", "lin_missing_column")) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("minerflow ml: minerflow.PrepareMLEvents: ")
    assert "Jet.btag: expected column 'Jet.btag'" in line
    assert "missing" in captured.out  # the summary still shows what was not made


def test_evaluate_print_remove_and_rerun(setup: dict, capsys: pytest.CaptureFixture) -> None:
    assert main([*_args(setup, "evaluate"), "--workers", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = {line.split()[0]: line.split()[1:4] for line in out[1:5]}
    assert summary["ml_evaluation"] == ["3", "0", "0"]
    assert summary["ml_training"] == ["3", "0", "0"]
    folders = [Path(line) for line in out if line.startswith("/")]
    assert sorted(f.name.split("__")[0] for f in folders) == [
        "dataset=background", "dataset=other", "dataset=signal"]  # fmt: skip
    assert all((f / "mlcolumns_0.parquet").is_file() for f in folders)
    # --print-output: this step and those before it, nothing run
    assert main([*_args(setup, "plot"), "--print-output"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("missing ") and "/ml_plots/v1/lin_binary/" in listed[0]
    done = [line for line in listed if line.startswith("done ")]
    assert len(done) == 2 + 3 + 2  # preparation, training, evaluation of training datasets
    # --remove-output: only this step's folders
    assert main([*_args(setup, "evaluate"), "--remove-output"]) == 0
    assert "removed 3 output folder(s) of minerflow.MLEvaluation" in capsys.readouterr().out
    assert not any(f.exists() for f in folders)
    # a new process, as from a shell (luigi and law keep per-process task state)
    command = [sys.executable, "-m", "minerflow.cli.main", *_args(setup, "evaluate")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    summary = {line.split()[0]: line.split()[1:4] for line in out[1:5]}
    assert summary["ml_evaluation"] == ["3", "0", "0"]
    assert summary["ml_training"] == ["0", "3", "0"]
    assert summary["ml_preparation"] == ["0", "2", "0"]


@pytest.mark.slow
def test_law_run_with_the_shipped_config(setup: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LAW_CONFIG_FILE"}
    env |= {"LAW_CONFIG_FILE": str(law_config_path()), "LAW_INDEX_FILE": str(tmp_path / "idx")}
    index = subprocess.run([str(LAW), "index", "-q"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert index.returncode == 0, index.stderr
    assert "minerflow.tasks.ml:minerflow.MLTraining:" in (tmp_path / "idx").read_text()
    command = [
        str(LAW), "run", "minerflow.MLTraining", "--version", "v1", "--ml-model", "lin_binary",
        "--analysis-file", str(setup["analysis"]), "--workdir", str(setup["workdir"]),
        "--ml-model-settings", "epochs=5", "--chunk-size", "400", "--workers", "2",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = setup["workdir"] / "ml_training" / "v1" / "lin_binary"
    [folder] = [p for p in trained.iterdir() if "epochs=5" in p.name]
    assert sorted(p.name.split("__")[0] for p in folder.iterdir() if p.is_dir()) == [
        "fold=0of3", "fold=1of3", "fold=2of3"]  # fmt: skip


@pytest.mark.slow
def test_demo_runs_the_example_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["ml", "demo", "--workdir", str(tmp_path), "--n-events", "600",
            "--settings", "epochs=1", "--workers", "2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    plots = Path(out.strip().splitlines()[-1].removeprefix("plots: "))
    for name in ("roc.png", "output_distributions.png", "learning_curves.png", "metrics.json"):
        assert (plots / name).is_file()
    assert "/ml_plots/v1/toy_classifier/" in str(plots)
