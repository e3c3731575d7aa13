"""Small law workflows with the Slurm mix-in, for tests and the Slurm benchmark.

Slurm jobs import this module by name (``support.remote_tasks``), so it must stay importable
from the ``tests`` folder without pytest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import luigi
import numpy as np

from minerflow.tasks.base import MinerflowWorkflow
from minerflow.tasks.remote import SlurmWorkflowMixin

__all__ = ["SMALL_INPUT", "Draws", "SweepTraining", "make_toy_samples", "run_task"]


class Draws(MinerflowWorkflow, SlurmWorkflowMixin):
    """One branch per seed: seeded normal draws, the job id that made them, optional delays.

    ``fail_once`` makes the first attempt of branch 0 fail (a marker file remembers it), which
    is how the tests see a job being retried.
    """

    step = "draws"
    readable_keys = ("seed",)

    n_branches = luigi.IntParameter(default=2)
    size = luigi.IntParameter(default=5)
    sleep = luigi.FloatParameter(default=0.0, significant=False)
    fail_once = luigi.BoolParameter(default=False, significant=False)

    def create_branch_map(self) -> list[dict[str, Any]]:
        """Branch ``b`` draws with seed ``b + 1``."""
        return [{"seed": b + 1} for b in range(int(self.n_branches))]

    def build(self, out: Path) -> None:
        """Write ``draws.npy`` and ``job.txt`` (the Slurm job id, or ``local``)."""
        if self.fail_once and self.branch == 0:
            marker = Path(str(self.workdir)).resolve() / "failed-once"
            if not marker.exists():
                marker.touch()
                raise RuntimeError("first attempt fails on purpose")
        time.sleep(float(self.sleep))
        draws = np.random.default_rng(int(self.branch_data["seed"])).normal(size=int(self.size))
        np.save(out / "draws.npy", draws)
        (out / "job.txt").write_text(os.environ.get("SLURM_JOB_ID", "local"))


def run_task(task: luigi.Task, workers: int = 1) -> bool:
    """Run a task with luigi's local scheduler in this process; True when it succeeded."""
    return bool(luigi.build([task], local_scheduler=True, workers=workers, log_level="WARNING"))


SMALL_INPUT = (
    "sampling.n_samples_train=2000",
    "training.n_hidden=[20, 20]",
    "training.batch_size=200",
    "training.num_epochs=2",
)
"""Overrides of the built-in input that make a training take about a second."""


def make_toy_samples(folder: Path, method: str = "alices") -> Path:
    """A toy event file and one method's training sample in ``folder``; returns the sample."""
    from minerflow.config.workflow_input import load_workflow_input
    from minerflow.physics import toy
    from minerflow.workflow.common import open_event_file
    from minerflow.workflow.sampling import sample_method

    source = load_workflow_input(None, SMALL_INPUT)
    events = toy.write_event_file(folder / "toy.h5", n_events=20_000, seed=11)
    return sample_method(
        open_event_file(events, source), source, method, 0, folder, tracking_dir=folder
    )


class SweepTraining(MinerflowWorkflow, SlurmWorkflowMixin):
    """One training per sweep point on a fixed sample folder (the real training step)."""

    step = "train"
    readable_keys = ("point",)

    samples = luigi.Parameter(description="a Samples_<method>_<run> folder")
    sweep = luigi.TupleParameter(default=(), description="name=v1,v2 strings")

    def create_branch_map(self) -> list[dict[str, Any]]:
        """One branch per sweep point (``point`` is its readable label)."""
        from minerflow.workflow.sweeps import parse_sweeps, point_label, sweep_branches

        branches = sweep_branches([{}], parse_sweeps(list(self.sweep)))
        return [{"point": point_label(b.get("sweep", {})), **b} for b in branches]

    def build(self, out: Path) -> None:
        """Train with the branch's point applied to the small built-in input."""
        from minerflow.config.workflow_input import load_workflow_input
        from minerflow.workflow.sweeps import SWEEP_KEY, apply_point
        from minerflow.workflow.training import train

        workdir = Path(str(self.workdir)).resolve()
        source = apply_point(load_workflow_input(None, SMALL_INPUT), self.branch_data[SWEEP_KEY])
        train(
            str(self.samples),
            source,
            out,
            tracking_dir=workdir,
            checkpoint_root=workdir / "checkpoints",
            progress=False,
        )
