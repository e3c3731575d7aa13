"""Slurm path against the local path: per-job overhead, and trainings in parallel jobs.

Starts a one-node Slurm cluster on 127.0.0.1 (as the test suite does; needs the Debian
packages slurmctld, slurmd, slurm-client and munge) and runs, in fresh work dirs:

* overhead: a workflow of ``--branches`` trivial branches (seeded draws, no work), locally
  with one worker and as Slurm jobs. From ``scontrol`` and the outputs' build records it
  splits the Slurm wall time into submission, queue wait, in-job overhead (law's job script,
  the interpreter and ``law run`` starting, twice: dependency print and run) and the delay
  until the polling submitter notices the last job finished;
* parallel trainings: ``--points`` trainings of the real training step (a sweep over
  ``alpha`` on one toy sample), one after another locally (1 worker) and as parallel Slurm
  jobs (one core each); the speed-up is their wall-time ratio, bounded by the node's cores.

    .venv/bin/python benchmarks/bench_slurm.py             # 8 branches, 4 trainings
    .venv/bin/python benchmarks/bench_slurm.py --smoke     # 2 and 2, tiny trainings
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.remote_tasks import Draws, SweepTraining, make_toy_samples, run_task  # noqa: E402
from support.slurm_cluster import LocalSlurmCluster, slurm_available  # noqa: E402

POLL = 1 / 60  # one second (law's unit is minutes)


def _job_times(job_id: str) -> dict[str, float]:
    """Submit, start and end time of a job (seconds since the epoch, 1 s resolution)."""
    text = subprocess.run(
        ["scontrol", "show", "job", job_id], check=True, capture_output=True, text=True
    ).stdout
    fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
    return {
        key: datetime.fromisoformat(fields[name]).timestamp()
        for key, name in (("submit", "SubmitTime"), ("start", "StartTime"), ("end", "EndTime"))
    }


def _build_seconds(out: Path) -> tuple[float, float, float]:
    meta = json.loads((out / "task.json").read_text())
    return meta["started"], meta["finished"], meta["finished"] - meta["started"]


def overhead(root: Path, branches: int) -> dict[str, Any]:
    """Local vs Slurm wall time of trivial branches, and where the Slurm time goes."""
    started = time.time()
    assert run_task(Draws(workdir=str(root / "local"), n_branches=branches))
    local = time.time() - started
    task = Draws(
        workdir=str(root / "slurm"), n_branches=branches, workflow="slurm", poll_interval=POLL
    )
    started = time.time()
    assert run_task(task)
    finished = time.time()
    jobs = []
    for branch in range(branches):
        out = task.as_branch(branch).output_dir()
        times = _job_times((out / "job.txt").read_text())
        times["build"] = _build_seconds(out)[2]
        jobs.append(times)
    return {
        "branches": branches,
        "local_wall_s": round(local, 2),
        "slurm_wall_s": round(finished - started, 2),
        "overhead_per_branch_s": round((finished - started - local) / branches, 2),
        "submission_s": round(max(0.0, max(j["submit"] for j in jobs) - started), 1),
        "queue_wait_mean_s": round(statistics.mean(j["start"] - j["submit"] for j in jobs), 1),
        "in_job_overhead_mean_s": round(
            statistics.mean(j["end"] - j["start"] - j["build"] for j in jobs), 1
        ),
        "poll_delay_s": round(finished - max(j["end"] for j in jobs), 1),
        "note": "scontrol times have 1 s resolution",
    }


def parallel_trainings(root: Path, points: int, epochs: int) -> dict[str, Any]:
    """The same ``points`` trainings one after another locally and as parallel Slurm jobs."""
    samples = make_toy_samples(root)
    alphas = ",".join(str(10.0**k) for k in range(points))
    sweep = (f"alpha={alphas}", f"num_epochs={epochs}")
    walls = {}
    for label, extra, workers in (
        ("local_serial", {}, 1),
        ("slurm_parallel", {"workflow": "slurm", "poll_interval": POLL, "slurm_cpus": 1}, 1),
    ):
        task = SweepTraining(workdir=str(root / label), samples=str(samples), sweep=sweep, **extra)
        started = time.time()
        assert run_task(task, workers=workers)
        walls[label] = time.time() - started
    return {
        "trainings": points,
        "epochs": epochs,
        "node_cpus": os.cpu_count(),
        "local_serial_wall_s": round(walls["local_serial"], 2),
        "slurm_parallel_wall_s": round(walls["slurm_parallel"], 2),
        "speedup": round(walls["local_serial"] / walls["slurm_parallel"], 2),
    }


def main() -> int:
    """Run both measurements against a fresh cluster; print (and optionally save) JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=8, help="trivial branches (8)")
    parser.add_argument("--points", type=int, default=4, help="parallel trainings (4)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per training (5)")
    parser.add_argument("--smoke", action="store_true", help="2 branches, 2 one-epoch trainings")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if not slurm_available():
        print("Slurm binaries missing: apt-get install slurmctld slurmd slurm-client munge")
        return 1
    if args.smoke:
        args.branches, args.points, args.epochs = 2, 2, 1
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        root = Path(tmp)
        cluster = LocalSlurmCluster(root / "cluster")
        cluster.start()
        os.environ.update(cluster.env)
        try:
            results = {
                "overhead": overhead(root / "overhead", args.branches),
                "parallel_trainings": parallel_trainings(
                    root / "trainings", args.points, args.epochs
                ),
            }
        finally:
            cluster.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
