"""Workflow branches as real Slurm jobs on a one-node cluster on 127.0.0.1.

The cluster (munged, slurmctld, slurmd) is started once per session by the fixture and
stopped afterwards; every job runs the same ``law run`` a local branch runs. The workflow
tests go through the real commands (``minerflow run`` / ``minerflow ml train`` with
``--workflow slurm``) and compare with the local run of the same settings and seeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from minerflow.cli.main import main
from minerflow.physics.toy_events import write_toy_analysis
from minerflow.tasks.base import META_FILE, law_config_path
from minerflow.tasks.remote import LOG_SUFFIX, slurm_summary
from support.remote_tasks import Draws, run_task
from support.slurm_cluster import LocalSlurmCluster, slurm_available

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not slurm_available(),
        reason="Slurm binaries missing: apt-get install slurmctld slurmd slurm-client munge",
    ),
]

TESTS = Path(__file__).resolve().parent
POLL = 1 / 60  # one second, in law's unit (minutes)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurmCluster]:
    """A running one-node cluster; ``SLURM_CONF`` points sbatch/squeue at it meanwhile."""
    cluster = LocalSlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    previous = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()


def _all_jobs() -> dict[str, str]:
    """Every job the cluster knows (finished ones included): id -> state."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i %T"], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _job_info(job_id: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job_id], check=True, capture_output=True, text=True
    ).stdout


def _jobs_json(task: Draws) -> dict:
    files = sorted(Path(task.slurm_output_directory().abspath).glob("slurm_jobs_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_branches_run_as_slurm_jobs_with_local_results(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    local = Draws(workdir=str(tmp_path / "local"))
    remote = Draws(
        workdir=str(tmp_path / "slurm"),
        workflow="slurm",
        poll_interval=POLL,
        slurm_memory="300M",
        slurm_walltime="10",
        slurm_sbatch_options=("--comment=minerflow-test",),
    )
    assert run_task(local, workers=2)
    assert run_task(remote)
    jobs = _all_jobs()
    for branch in range(2):
        here, there = local.as_branch(branch).output_dir(), remote.as_branch(branch).output_dir()
        assert here.name == there.name  # the workflow type is not part of the output key
        np.testing.assert_array_equal(np.load(here / "draws.npy"), np.load(there / "draws.npy"))
        assert (here / "job.txt").read_text() == "local"
        job_id = (there / "job.txt").read_text()
        assert jobs[job_id] == "COMPLETED"
        info = _job_info(job_id)
        assert "TimeLimit=00:10:00" in info
        assert "MinMemoryNode=300M" in info
        assert "NumCPUs=1" in info
        assert "Comment=minerflow-test" in info
        log = there.parent / f"{there.name}{LOG_SUFFIX}"
        assert "task exit code: 0" in log.read_text()
        assert f"StdOut={log}" in info
    assert f"{remote.slurm_log_directory().abspath}/*{LOG_SUFFIX} (2 jobs)" in slurm_summary(
        [remote]
    )
    assert {job["status"] for job in _jobs_json(remote)["jobs"].values()} == {"finished"}
    # a second run finds every output and submits nothing
    count = len(_all_jobs())
    assert run_task(
        Draws(workdir=str(tmp_path / "slurm"), workflow="slurm", poll_interval=POLL, retries=0)
    )
    assert len(_all_jobs()) == count


@pytest.mark.slow
def test_failed_job_is_retried(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    settings = {"n_branches": 1, "fail_once": True, "workflow": "slurm", "poll_interval": POLL}
    no_retry = Draws(workdir=str(tmp_path / "no-retry"), retries=0, **settings)
    assert not run_task(no_retry)
    assert not no_retry.as_branch(0).output_dir().exists()

    retried = Draws(workdir=str(tmp_path / "retry"), retries=1, **settings)
    assert run_task(retried)
    out = retried.as_branch(0).output_dir()
    assert np.load(out / "draws.npy").shape == (5,)
    log = (out.parent / f"{out.name}{LOG_SUFFIX}").read_text()
    assert log.count("execute attempt 1") == 2  # two jobs appended to one log
    assert "execution of task branch 0 failed" in log
    assert "task exit code: 0" in log
    assert _jobs_json(retried)["attempts"] == {"1": 1}


@pytest.mark.slow
def test_killed_submitter_reattaches_without_resubmitting(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    args = ["--workdir", str(workdir), "--workflow", "slurm", "--sleep", "6"]
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "LAW_CONFIG_FILE": str(law_config_path()),
    }
    before = set(_all_jobs())
    law = Path(sys.executable).parent / "law"
    submitter = subprocess.Popen(
        [str(law), "run", "support.remote_tasks.Draws", *args, "--poll-interval", "1s"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    task = Draws(workdir=str(workdir), workflow="slurm", sleep=6.0, poll_interval=POLL)
    control = Path(task.slurm_output_directory().abspath)
    submitted: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(submitted) < 2:
        time.sleep(0.2)
        for path in control.glob("slurm_jobs_*.json"):
            try:
                jobs = json.loads(path.read_text())["jobs"].values()
            except (json.JSONDecodeError, OSError):
                continue
            submitted = [str(j["job_id"]) for j in jobs if str(j["job_id"]).isdigit()]
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait()
    assert len(submitted) == 2, "the submitter did not submit both jobs within 60 s"
    assert not task.as_branch(0).output_dir().exists()  # still running when re-attaching

    assert run_task(task)
    new_jobs = set(_all_jobs()) - before
    assert new_jobs == set(submitted)  # waited for the same jobs, submitted none
    made_by = {(task.as_branch(b).output_dir() / "job.txt").read_text() for b in range(2)}
    assert made_by == set(submitted)


RUN_SMALL = (
    "--toy-events", "5000",
    "--set", "methods=[alices]",
    "--set", "plotting.correlations_methods=[alices]",
    "--set", "sampling.n_samples_train=500",
    "--set", "training.alpha=1",
    "--set", "training.num_epochs=1",
    "--set", "training.n_hidden=[10]",
    "--set", "evaluation.n_samples_test=100",
    "--set", "asymptotic_limits.resolutions=[5, 5]",
)  # fmt: skip
"""A workflow that runs in about a minute: one method, one epoch, a 5 × 5 limit grid."""


def _outputs(workdir: Path) -> list[Path]:
    """Every task output folder below ``workdir``, relative (names include the keys)."""
    return sorted(p.parent.relative_to(workdir) for p in workdir.rglob(META_FILE))


def _same_arrays(here: Path, there: Path) -> int:
    """Assert every ``.npy`` below ``here`` equals its twin below ``there``; returns the count."""
    files = sorted(here.rglob("*.npy"))
    for path in files:
        np.testing.assert_array_equal(np.load(path), np.load(there / path.relative_to(here)))
    return len(files)


def _same_weights(here: Path, there: Path) -> None:
    ours = torch.load(here / "weights.pt", weights_only=True)
    for name, value in torch.load(there / "weights.pt", weights_only=True).items():
        assert torch.equal(value, ours[name]), name


def _new_jobs(before: set[str]) -> dict[str, str]:
    """Jobs submitted since ``before``: id -> the task family in the job name (``Train``)."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i %j"], check=True, capture_output=True, text=True
    ).stdout
    jobs = dict(line.split() for line in out.splitlines() if line.strip())
    return {i: n.split(".", 1)[1].split("_", 1)[0] for i, n in jobs.items() if i not in before}


@pytest.mark.slow
def test_minerflow_run_through_slurm_equals_local_then_sweeps_there(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, remote = tmp_path / "local", tmp_path / "slurm"
    assert main(["run", "--workdir", str(local), *RUN_SMALL]) == 0
    capsys.readouterr()
    before = set(_all_jobs())
    resources = ["--set", "resources.default.walltime=20", "--set", "resources.train.walltime=15"]
    options = ["--cpus", "1", "--memory", "400M", "--sbatch-option=--comment=minerflow-test"]
    command = ["run", "--workdir", str(remote), *RUN_SMALL, "--workflow", "slurm"]
    assert main([*command, *resources, *options]) == 0
    summary = capsys.readouterr().out

    # one job per step; resources from the input file and the options over the step defaults
    jobs = _new_jobs(before)
    assert sorted(jobs.values()) == ["Evaluate", "Sample", "Train"]
    for job_id, family in jobs.items():
        info = _job_info(job_id)
        assert "JobState=COMPLETED" in info
        assert f"TimeLimit=00:{15 if family == 'Train' else 20}:00" in info
        assert "NumCPUs=1" in info  # the option, over the train default of 2
        assert "MinMemoryNode=400M" in info
        assert "Comment=minerflow-test" in info
    for step in ("sample", "train", "evaluate"):
        assert f"Slurm job logs: {remote / step / 'v1'}/*{LOG_SUFFIX} (1 job)" in summary
    assert summary.index("/sample/v1/") < summary.index("/train/v1/") < summary.index("/evaluate")
    assert f"plots:  {remote / 'plot'}" in summary

    # same folders (resources and the workflow type are no part of a key), same results
    assert _outputs(local) == _outputs(remote)
    for folder in _outputs(local):
        if folder.parts[0] in ("sample", "evaluate", "reference"):
            assert _same_arrays(local / folder, remote / folder) > 0
        if folder.parts[0] == "train":
            model = next((local / folder / "models").iterdir()).name
            _same_weights(local / folder / "models" / model, remote / folder / "models" / model)
        if folder.parts[0] in ("sample", "train", "evaluate"):  # the rest ran here
            log = (remote / folder).with_name(folder.name + LOG_SUFFIX)
            assert "task exit code: 0" in log.read_text()
    assert {p.name for p in (local / "plots").iterdir()} == {
        p.name for p in (remote / "plots").iterdir()
    }

    # a sweep on Slurm: the sample is reused, its alpha=1 point equals the trained alices
    before = set(_all_jobs())
    assert main([*command, "--cpus", "1", "--sweep", "alpha=1,100"]) == 0
    summary = capsys.readouterr().out
    assert sorted(_new_jobs(before).values()) == ["Evaluate"] * 2 + ["Train"] * 2
    swept = (remote / "train" / "v1").glob("method=alices__run=0__alpha=*")
    trained = {p.name.split("__")[2]: p for p in swept if p.is_dir()}
    assert sorted(trained) == ["alpha=1", "alpha=100"]
    plain = next((local / "train" / "v1").glob("method=alices__run=0__??????????"))
    _same_weights(plain / "models" / "alices_0", trained["alpha=1"] / "models" / "alices_0")
    table = next((remote / "sweep" / "v1").glob("alpha=1,100__*")) / "sweep.csv"
    assert f"sweep:  {table.with_suffix('.md')} (table)" in summary
    rows = [line.split(",") for line in table.read_text().splitlines()[1:]]
    assert [row[:3] for row in rows] == [["alices", "0", "1"], ["alices", "0", "100"]]
    assert all(len(row[-1]) == 32 for row in rows)  # each training's MLflow run
    assert table.with_suffix(".png").is_file()


@pytest.mark.slow
def test_minerflow_ml_train_through_slurm_equals_local(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analysis = write_toy_analysis(
        tmp_path / "toy", 600, seed=5, n_files=1, ml_modules=[str(TESTS / "ml_task_models.py")]
    )
    command = ["ml", "train", "--ml-model", "lin_binary", "--analysis", str(analysis)]
    command += ["--chunk-size", "500"]
    local, remote = tmp_path / "local", tmp_path / "slurm"
    assert main([*command, "--workdir", str(local), "--workers", "2"]) == 0
    capsys.readouterr()
    before = set(_all_jobs())
    assert main([*command, "--workdir", str(remote), "--workflow", "slurm", "--cpus", "1"]) == 0
    printed = capsys.readouterr().out
    jobs = _new_jobs(before)
    assert sorted(jobs.values()) == ["MLTraining"] * 3 + ["PrepareMLEvents"] * 2
    assert all("NumCPUs=1" in _job_info(job_id) for job_id in jobs)
    folds = [Path(line) for line in printed.splitlines() if line.startswith(str(remote))]
    assert [f.name.split("__")[0] for f in folds] == [f"fold={k}of3" for k in range(3)]
    assert f"Slurm job logs: {folds[0].parent}/*{LOG_SUFFIX} (3 jobs)" in printed
    assert _outputs(local) == _outputs(remote)
    for fold, there in enumerate(folds):
        here = local / there.relative_to(remote)
        ours = np.load(here / f"mlmodel_f{fold}of3" / "model.npz")
        theirs = np.load(there / f"mlmodel_f{fold}of3" / "model.npz")
        assert sorted(ours.files) == sorted(theirs.files)
        for key in ours.files:
            np.testing.assert_array_equal(ours[key], theirs[key])
        assert "task exit code: 0" in there.with_name(there.name + LOG_SUFFIX).read_text()
