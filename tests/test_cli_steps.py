"""The step commands: ``minerflow sample | train | evaluate | plot`` on the reference file.

Run as a user would (subprocesses) with the seed input unchanged; bad input gives exit code 2,
one line on stderr, and leaves existing outputs as they were.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minerflow.cli.main import build_parser, main


def _minerflow(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "minerflow.cli.main", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "mlflow" not in p.name and "mlartifacts" not in p.parts
    }


def test_nuisance_is_a_real_boolean_flag() -> None:
    base = ["sample", "--data-file", "d.h5", "--output-dir", "w"]
    parser = build_parser()
    assert parser.parse_args([*base, "--nuisance"]).nuisance is True
    assert parser.parse_args([*base, "--no-nuisance"]).nuisance is False
    assert parser.parse_args(base).nuisance is None  # not given: the input file decides
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--nuisance", "0"])


@pytest.fixture(scope="module")
def small_samples(
    tmp_path_factory: pytest.TempPathFactory, reference_file: Path, reference_input_file: Path
) -> Path:
    """A work dir with samples drawn in-process through the CLI entry point."""
    work = tmp_path_factory.mktemp("cli")
    code = main(
        ["sample", "--data-file", str(reference_file), "--input-file", str(reference_input_file),
         "--output-dir", str(work), "--n-samples-train", "200", "--seed", "9"]
    )  # fmt: skip
    assert code == 0
    return work


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "methods=[alices, frobnicate]"], "methods[1]: expected"),
        (["--test-split", "1.5"], "sampling.test_split: expected"),
        (["--set", "alice.theta_1.sampling_arg=nonexistent"], "alice.theta_1.sampling_arg"),
    ],
)
def test_bad_settings_fail_in_one_line_and_keep_outputs(
    small_samples: Path,
    reference_file: Path,
    reference_input_file: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    before = _digest(small_samples)
    code = main(
        ["sample", "--data-file", str(reference_file), "--input-file", str(reference_input_file),
         "--output-dir", str(small_samples), *extra]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert _digest(small_samples) == before


def test_malformed_yaml_and_missing_files(
    small_samples: Path, reference_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(small_samples)
    broken = tmp_path / "broken.yml"
    broken.write_text("methods: [alices\nestimator: x\n")
    out = ["--output-dir", str(small_samples)]
    cases = [
        (["sample", "--data-file", str(reference_file), "--input-file", str(broken), *out],
         "broken.yml: line"),
        (["sample", "--data-file", str(tmp_path / "missing.h5"), *out],
         "missing.h5: expected an existing event file"),
        (["train", "--train-folder", str(tmp_path), *out],
         "expected the output folder of a sampling step"),
        (["plot", *out], "results: expected at least one evaluated model"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert _digest(small_samples) == before


def test_missing_data_file_exits_non_zero_as_a_process(tmp_path: Path) -> None:
    done = _minerflow("sample", "--data-file", "nope.h5", "--output-dir", "w", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.h5: expected an existing event file" in lines[0]
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_step_by_step_on_the_reference_file(
    tmp_path: Path, reference_file: Path, reference_input_file: Path
) -> None:
    """sample → train (each folder) → evaluate (each model) → plot, as separate processes."""
    work = tmp_path / "work"
    common = ["--input-file", reference_input_file, "--output-dir", work]
    done = _minerflow(
        "sample", "--data-file", reference_file, *common, "--n-samples-train", "500",
        "--n-sampling-runs", "1", "--no-nuisance", "--test-split", "0.4", "--seed", "11",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folders = sorted(work.glob("Samples_*"))
    assert [f.name for f in folders] == ["Samples_alice_0", "Samples_alices_0", "Samples_sally_0"]
    for folder in folders:
        done = _minerflow(
            "train", "--train-folder", folder, *common, "--num-epochs", "2", "--alpha", "5",
            "--batch-size", "64", "--valid-split", "0.25", "--device", "cpu", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    settings = json.loads((work / "models" / "alices_0" / "settings.json").read_text())
    assert settings["alpha"] == 5.0 and settings["training"]["batch_size"] == 64
    assert settings["training"]["n_epochs"] == 2
    said = []
    for model in sorted((work / "models").glob("*_0")):
        done = _minerflow(
            "evaluate", "--data-file", reference_file, "--model-dir", model, *common,
            "--n-samples-test", "25", "--luminosity", "20000", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.splitlines())
    # the first evaluation makes rates/, the others find it current and say so
    assert said[0] == [f"wrote {work / 'results' / 'alice_0'}", f"wrote {work / 'rates'}"]
    assert [lines[1] for lines in said[1:]] == [f"reused {work / 'rates'}"] * 2
    assert np.load(work / "results" / "alice_0" / "llr.npy").shape == (625, 25)
    record = json.loads((work / "results" / "alice_0" / "step.json").read_text())
    assert record["key"]["luminosity"] == 20000.0 and record["key"]["test_split"] == 0.4
    done = _minerflow("plot", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (work / "plots" / "all_methods.pdf").is_file()
    assert (work / "plots" / "pvalue_sally_0.png").is_file()
