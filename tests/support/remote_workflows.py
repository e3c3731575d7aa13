"""The real LFI and MLModel workflow tasks with the Slurm mix-in added, for the Slurm tests.

Each class is its task plus :class:`~minerflow.tasks.remote.SlurmWorkflowMixin` (the
one-line change the task modules take to gain ``--workflow slurm``), with requirements
pointing at the Slurm-capable upstream task. Jobs import this module by name
(``support.remote_workflows``).
"""

from __future__ import annotations

from typing import Any

from minerflow.tasks import lfi, ml
from minerflow.tasks.remote import SlurmWorkflowMixin

__all__ = ["SlurmEvaluate", "SlurmMLTraining", "SlurmSample", "SlurmTrain"]


class SlurmSample(lfi.Sample, SlurmWorkflowMixin):
    """:class:`minerflow.tasks.lfi.Sample`, Slurm-capable."""


class SlurmTrain(lfi.Train, SlurmWorkflowMixin):
    """:class:`minerflow.tasks.lfi.Train`, Slurm-capable, on :class:`SlurmSample`."""

    def workflow_requires(self) -> dict[str, Any]:
        """Every sample."""
        return {"samples": SlurmSample.req(self)}

    def requires(self) -> SlurmSample:
        """This branch's sample."""
        return SlurmSample.req(self)


class SlurmEvaluate(lfi.Evaluate, SlurmWorkflowMixin):
    """:class:`minerflow.tasks.lfi.Evaluate`, Slurm-capable, on :class:`SlurmTrain`."""

    def workflow_requires(self) -> dict[str, Any]:
        """Every model."""
        return {"models": SlurmTrain.req(self)}

    def requires(self) -> SlurmTrain:
        """This branch's model."""
        return SlurmTrain.req(self)


class SlurmMLTraining(ml.MLTraining, SlurmWorkflowMixin):
    """:class:`minerflow.tasks.ml.MLTraining` (one branch per fold), Slurm-capable."""
