"""The coordinated run (law tasks): end to end, no-op re-runs, keyed outputs, kill -9, races."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minerflow.tasks.lfi import run_workflow
from minerflow.tracking.runs import find_runs, metric_history, read_run
from minerflow.tracking.tracker import SPOOL_FOLDER

SMALL = [
    "sampling.n_samples_train=500",
    "training.num_epochs=1",
    "evaluation.n_samples_test=20",
    "asymptotic_limits.resolutions=[9, 9]",
]
TOY = [  # the built-in input on a small toy file
    "--toy-events", "3000", "--set", "sampling.n_samples_train=600",
    "--set", "evaluation.n_samples_test=20", "--set", "asymptotic_limits.resolutions=[7, 7]",
]  # fmt: skip


def _command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "minerflow.cli.main", *map(str, args)]


def _sets(overrides: list[str]) -> list[str]:
    return [item for o in overrides for item in ("--set", o)]


def _folders(work: Path, step: str) -> list[Path]:
    return sorted(p for p in (work / step / "v1").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def coordinated(
    tmp_path_factory: pytest.TempPathFactory, reference_file: Path, reference_input_file: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``minerflow run`` on the reference file with the seed input (small sizes), 2 workers."""
    work = tmp_path_factory.mktemp("run") / "work"
    done = subprocess.run(
        _command("run", "--data-file", reference_file, "--input-file", reference_input_file,
                 "--workdir", work, "--workers", "2", *_sets(SMALL)),
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    return work, done


@pytest.mark.slow
def test_run_makes_every_output_and_says_where(coordinated: tuple[Path, object]) -> None:
    work, done = coordinated
    assert done.returncode == 0, done.stderr
    assert "11 outputs made, 0 reused" in done.stdout
    assert f"MLflow: sqlite:///{work.resolve()}/mlflow.db" in done.stdout
    assert "minerflow ui --workdir" in done.stdout
    for step, names in (
        ("sample", ["method=alice__run=0", "method=alices__run=0", "method=sally__run=0"]),
        ("train", ["method=alice__run=0", "method=alices__run=0", "method=sally__run=0"]),
        ("evaluate", ["method=alice__run=0", "method=alices__run=0", "method=sally__run=0"]),
    ):
        folders = _folders(work, step)
        assert [f.name.rsplit("__", 1)[0] for f in folders] == names
        assert all((f / "task.json").is_file() for f in folders)
    assert (work / "plots" / "all_methods.png").is_file()  # link to the latest plots
    assert not list(work.rglob("*.tmp"))
    result = next(p for p in _folders(work, "evaluate") if "alices" in p.name)
    assert np.load(result / "results" / "alices_0" / "limits" / "ml.npy").shape == (81,)


@pytest.mark.slow
def test_every_step_run_is_logged_under_the_run(
    coordinated: tuple[Path, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks only recorded their runs; the tracker logged all of them, nested, and left
    no spool behind."""
    work, _ = coordinated
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (parent,) = find_runs(work, "workflow")
    assert read_run(work, parent).status == "FINISHED"
    # the reference results (truth, histograms) are an evaluation run too
    counts = {"sampling": 3, "training": 3, "evaluation": 4, "plotting": 1}
    for step, count in counts.items():
        runs = find_runs(work, step, parent)
        assert len(runs) == count, step
        assert {read_run(work, r).status for r in runs} == {"FINISHED"}
    trainings = [read_run(work, r) for r in find_runs(work, "training", parent)]
    assert all(r.tags["minerflow.model_uri"].startswith("models:/") for r in trainings)
    assert all(len(metric_history(work, r.run_id, "train_total")) == 1 for r in trainings)
    assert list((work / SPOOL_FOLDER).iterdir()) == []


@pytest.mark.slow
def test_rerun_is_a_fast_no_op(
    coordinated: tuple[Path, object], reference_file: Path, reference_input_file: Path
) -> None:
    work, _ = coordinated
    before = {p: p.stat().st_mtime_ns for p in work.rglob("task.json")}
    start = time.perf_counter()
    result = run_workflow(
        work, data_file=reference_file, input_file=reference_input_file, overrides=SMALL
    )
    elapsed = time.perf_counter() - start
    assert result.nothing_to_do and elapsed < 2.0, elapsed
    assert "nothing to do: all 11 outputs are up to date (reused)" in result.summary()
    assert {p: p.stat().st_mtime_ns for p in work.rglob("task.json")} == before


@pytest.mark.slow
def test_law_run_reuses_the_same_outputs(
    coordinated: tuple[Path, object], reference_file: Path, reference_input_file: Path
) -> None:
    """``law run minerflow.Plot`` with the same settings finds the outputs of ``minerflow run``."""
    work, _ = coordinated
    overrides = "[" + ", ".join(f'"{o}"' for o in SMALL) + "]"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "law"), "run", "minerflow.Plot", "--version", "v1",
         "--workdir", str(work), "--data-file", str(reference_file),
         "--input-file", str(reference_input_file), "--overrides", overrides],
        capture_output=True, text=True, timeout=600, cwd=work.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(_folders(work, "plot")) == 1


@pytest.mark.slow
def test_changed_training_setting_retrains_and_reuses_samples(
    coordinated: tuple[Path, object], reference_file: Path, reference_input_file: Path
) -> None:
    work, _ = coordinated
    samples, models = _folders(work, "sample"), _folders(work, "train")
    result = run_workflow(
        work,
        data_file=reference_file,
        input_file=reference_input_file,
        overrides=[*SMALL, "training.alpha=3"],
    )
    status = {(r.step, r.status) for r in result.records}
    assert ("sample", "reused") in status and ("sample", "ran") not in status
    assert ("train", "ran") in status and ("train", "reused") not in status
    assert _folders(work, "sample") == samples
    assert len(_folders(work, "train")) == 2 * len(models)


@pytest.mark.slow
def test_killed_run_finishes_on_the_next_run(tmp_path: Path) -> None:
    """kill -9 the whole run while a model trains; the next run completes it and all loads."""
    from minerflow.ml.persistence import load_estimator
    from minerflow.workflow.evaluation import load_limits

    work = tmp_path / "work"
    slow = [*TOY, "--set", "training.num_epochs=100", "--set", "sampling.n_samples_train=3000",
            "--set", "methods=[alices, sally]",
            "--set", "plotting.correlations_methods=[alices]"]  # fmt: skip
    process = subprocess.Popen(
        _command("run", "--workdir", work, "--workers", "1", *slow),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and not list((work / "checkpoints").glob("*/checkpoint.pt")):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (work / "plot").exists()
    done = subprocess.run(
        _command("run", "--workdir", work, "--workers", "2", *slow),
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reused" in done.stdout
    for folder in _folders(work, "train"):
        model = next((folder / "models").iterdir())
        assert load_estimator(model, device="cpu").is_trained
    for folder in _folders(work, "evaluate"):
        limits = load_limits(next((folder / "results").iterdir()))
        assert all(np.isfinite(p).all() and p.shape == (49,) for p, _ in limits.values())
    assert not list(work.rglob("*.tmp"))


@pytest.mark.slow
def test_two_runs_on_one_workdir_do_not_corrupt_it(tmp_path: Path) -> None:
    work = tmp_path / "work"
    args = _command("run", "--workdir", work, *TOY, "--set", "training.num_epochs=1",
                    "--set", "methods=[alices, sally]", "--set",
                    "plotting.correlations_methods=[alices]")  # fmt: skip
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.5)
    runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=1200) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    for step, count in (("toy", 1), ("sample", 2), ("train", 2), ("evaluate", 2), ("plot", 1)):
        folders = _folders(work, step)
        assert len(folders) == count and all((f / "task.json").is_file() for f in folders)
    assert not list(work.rglob("*.tmp"))
