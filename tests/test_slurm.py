"""Workflow branches as real Slurm jobs on a one-node cluster on 127.0.0.1.

The cluster (munged, slurmctld, slurmd) is started once per session by the fixture and
stopped afterwards; every job runs the same ``law run`` a local branch runs.
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

from minerflow.physics.toy_events import write_toy_analysis
from minerflow.tasks import lfi, ml
from minerflow.tasks.base import law_config_path
from minerflow.tasks.remote import LOG_SUFFIX, slurm_summary
from minerflow.workflow.sweeps import collect_sweep_results, parse_sweeps, sweep_parent_run
from support.remote_tasks import Draws, SweepTraining, make_toy_samples, run_task
from support.remote_workflows import SlurmEvaluate, SlurmMLTraining
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


@pytest.mark.slow
def test_sweep_trainings_as_slurm_jobs_equal_local_ones(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    samples = make_toy_samples(tmp_path)
    texts = ("alpha=1,100",)
    sweep = parse_sweeps(texts)
    runs = {}
    for workflow in ("local", "slurm"):
        workdir = tmp_path / workflow
        task = SweepTraining(
            workdir=str(workdir),
            samples=str(samples),
            sweep=texts,
            workflow=workflow,
            poll_interval=POLL,
        )
        with sweep_parent_run(workdir, sweep) as parent:
            assert run_task(task, workers=2)
        runs[workflow] = (task, collect_sweep_results(workdir, parent.run_id, sweep))
    (local, local_results), (remote, remote_results) = runs["local"], runs["slurm"]
    assert [r.point for r in remote_results] == sweep.points()  # children of the parent
    assert [r.value for r in remote_results] == [r.value for r in local_results]
    for branch in range(len(sweep)):
        here = local.as_branch(branch).output_dir() / "models" / "alices_0"
        there = remote.as_branch(branch).output_dir() / "models" / "alices_0"
        history = json.loads((here / "history.json").read_text())
        assert (
            json.loads((there / "history.json").read_text())["validation"] == history["validation"]
        )
        weights = torch.load(here / "weights.pt", weights_only=True)
        for name, value in torch.load(there / "weights.pt", weights_only=True).items():
            assert torch.equal(value, weights[name]), name
        log = (
            remote.as_branch(branch)
            .output_dir()
            .with_name(remote.as_branch(branch).output_dir().name + LOG_SUFFIX)
        )
        assert "task exit code: 0" in log.read_text()


LFI_SMALL = (
    "methods=[alices, sally]",
    "plotting.correlations_methods=[alices]",
    "sampling.n_samples_train=500",
    "training.num_epochs=1",
    "training.n_hidden=[10]",
    "evaluation.n_samples_test=100",
    "asymptotic_limits.resolutions=[5, 5]",
)


def _same_arrays(here: Path, there: Path) -> int:
    """Assert every ``.npy`` below ``here`` equals its twin below ``there``; returns the count."""
    files = sorted(here.rglob("*.npy"))
    for path in files:
        np.testing.assert_array_equal(np.load(path), np.load(there / path.relative_to(here)))
    return len(files)


@pytest.mark.slow
def test_lfi_workflow_through_slurm_equals_local(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    params = {"workdir": str(tmp_path), "overrides": LFI_SMALL, "toy_events": 5000}
    local = lfi.Evaluate(**params)
    remote = SlurmEvaluate(**params, workflow="slurm", poll_interval=POLL)
    assert run_task(local, workers=2)
    before = set(_all_jobs())
    assert run_task(remote)
    assert len(set(_all_jobs()) - before) == 6  # sampling, training, evaluation x two methods
    for branch, data in local.branch_map.items():
        assert remote.branch_map[branch] == data
        here, there = local.as_branch(branch), remote.as_branch(branch)
        assert _same_arrays(here.results_dir(), there.results_dir()) > 0
        weights = torch.load(here.requires().model_dir() / "weights.pt", weights_only=True)
        for name, value in torch.load(
            there.requires().model_dir() / "weights.pt", weights_only=True
        ).items():
            assert torch.equal(value, weights[name]), name
        for task in (there, there.requires(), there.requires().requires()):
            log = task.output_dir().with_name(task.output_dir().name + LOG_SUFFIX)
            assert "task exit code: 0" in log.read_text()


@pytest.mark.slow
def test_kfold_mlmodel_training_through_slurm_equals_local(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    analysis = write_toy_analysis(
        tmp_path / "toy", 600, seed=5, n_files=1, ml_modules=[str(TESTS / "ml_task_models.py")]
    )
    params = {"ml_model": "lin_binary", "analysis_file": str(analysis), "chunk_size": 500}
    local = ml.MLTraining(workdir=str(tmp_path / "local"), **params)
    remote = SlurmMLTraining(
        workdir=str(tmp_path / "slurm"), **params, workflow="slurm", poll_interval=POLL
    )
    assert run_task(local, workers=2)
    assert run_task(remote)
    folds = local.model_inst.folds
    assert folds == 3
    for fold, (here, there) in enumerate(zip(local.fold_tasks(), remote.fold_tasks(), strict=True)):
        assert _same_arrays(here.output_dir(), there.output_dir()) == 0  # models are .npz
        ours = np.load(here.output_dir() / f"mlmodel_f{fold}of3" / "model.npz")
        theirs = np.load(there.output_dir() / f"mlmodel_f{fold}of3" / "model.npz")
        assert sorted(ours.files) == sorted(theirs.files)
        for key in ours.files:
            np.testing.assert_array_equal(ours[key], theirs[key])
        log = there.output_dir().with_name(there.output_dir().name + LOG_SUFFIX)
        assert "task exit code: 0" in log.read_text()
