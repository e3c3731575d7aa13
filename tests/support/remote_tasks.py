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

__all__ = ["Draws", "run_task"]


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
