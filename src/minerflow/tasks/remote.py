"""Run a minerflow workflow's branches as Slurm jobs: law's Slurm workflow, set up for us.

Add :class:`SlurmWorkflowMixin` *after* :class:`~minerflow.tasks.base.MinerflowWorkflow`
among a task's bases (``class Train(MinerflowWorkflow, SlurmWorkflowMixin)``): local
execution stays the default and ``--workflow slurm`` submits every missing branch as a job.
There is no second code path: each job runs the very ``law run <module>.<Task> ... --branch=N``
the local workflow would run, with the same interpreter, environment and working directory
(the cluster shares the file system with the submitting machine), so the branch writes the
same output folder, atomically, as it would locally.

- Resources per job come from :mod:`minerflow.config.resources`: the step's defaults, the
  task's configured settings (:meth:`SlurmWorkflowMixin.configured_resources`) and the
  ``--slurm-*`` parameters, in that order.
- A failed job is resubmitted up to ``--retries`` times (law's resubmission).
- Job ids are kept in ``<workdir>/.slurm/<step>/<version>/<Task>__<hash>/slurm_jobs_*.json``
  (``.slurm`` mirrors the output folders; ``minerflow status`` skips it); a
  re-run after the submitting process died reads it and waits for the same jobs instead of
  submitting new ones (``--ignore-submission`` forces a fresh submission).
- Each job's log (stdout and stderr, appended across retries) is the file
  ``<branch output folder>.slurm.log`` next to that branch's output folder.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

# first: it points law at minerflow's law.cfg (squeue -t all, ...) before law is imported
import minerflow.tasks.base  # noqa: F401

# isort: split
import law
import luigi
from law.contrib.slurm import SlurmWorkflow
from law.job.base import JobInputFile
from law.parameter import NO_STR

from minerflow.config.resources import Resources, ResourceSettings, resolve_resources
from minerflow.config.workflow_input import stable_hash
from minerflow.io.atomic import atomic_path

__all__ = [
    "CONTROL_DIR",
    "LOG_SUFFIX",
    "SlurmWorkflowMixin",
    "bootstrap_script",
    "slurm_log_files",
    "slurm_summary",
    "slurm_task_params",
    "workflow_params",
]

CONTROL_DIR = ".slurm"
LOG_SUFFIX = ".slurm.log"
# environment a job needs to behave like the submitting process (besides PATH and PYTHONPATH)
_FORWARDED_PREFIXES = ("MINERFLOW_", "MLFLOW_")
_FORWARDED_NAMES = ("LAW_CONFIG_FILE",)
_RESOURCE_PARAMS = {
    "slurm_cpus": "cpus",
    "slurm_memory": "memory",
    "slurm_gpus": "gpus",
    "slurm_gpu_type": "gpu_type",
    "slurm_walltime": "walltime",
    "slurm_sbatch_options": "sbatch_options",
}


def _module_root(cls: type) -> Path | None:
    """The ``sys.path`` entry a class's module was imported from (None for ``__main__``)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path or cls.__module__ == "__main__":
        return None
    root = Path(path).resolve().parent
    for _ in range(cls.__module__.count(".") - (Path(path).name == "__init__.py")):
        root = root.parent
    return root


def bootstrap_script(task_cls: type, cwd: Path, environ: Mapping[str, str] | None = None) -> str:
    """The bash lines a job sources before ``law run``: same interpreter, env and directory.

    Puts this interpreter's ``bin`` first on ``PATH`` (its ``law`` and ``python``), makes the
    task's module importable (``PYTHONPATH``), forwards law's config file, the run token, the
    MLflow parent run and tracking URI, and changes into the submitting directory so relative
    paths (``--workdir work``) mean the same as locally.
    """
    environ = os.environ if environ is None else environ
    exports: dict[str, str] = {"PATH": f"{Path(sys.executable).parent}:$PATH"}
    if sys.prefix != sys.base_prefix:
        exports["VIRTUAL_ENV"] = sys.prefix
    config_file = law.config.Config.instance().config_file
    if config_file:
        exports["LAW_CONFIG_FILE"] = str((cwd / config_file).resolve())
    python_path = [str(p) for p in [_module_root(task_cls)] if p is not None]
    python_path += [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for name, value in sorted(environ.items()):
        if name.startswith(_FORWARDED_PREFIXES) or name in _FORWARDED_NAMES:
            exports.setdefault(name, value)
    lines = ["# written by minerflow: run the job like the process that submitted it"]
    for name, value in exports.items():
        quoted = shlex.quote(value) if name != "PATH" else f'"{value}"'
        lines.append(f"export {name}={quoted}")
    if python_path:
        joined = shlex.quote(os.pathsep.join(dict.fromkeys(python_path)))
        lines.append(f"export PYTHONPATH={joined}")
    lines.append(f"cd {shlex.quote(str(cwd))}")
    return "\n".join(lines) + "\n"


class SlurmWorkflowMixin(SlurmWorkflow):
    """Slurm execution for a :class:`~minerflow.tasks.base.MinerflowWorkflow` (list it after).

    Override :meth:`configured_resources` to return the ``resources:`` settings of the
    task's input/config file for its step.
    """

    exclude_index = True

    slurm_cpus = luigi.OptionalIntParameter(
        default=None, significant=False, description="CPU cores per Slurm job (--cpus-per-task)"
    )
    slurm_memory = luigi.OptionalParameter(
        default=None, significant=False, description="memory per Slurm job, e.g. 8G (--mem)"
    )
    slurm_gpus = luigi.OptionalIntParameter(
        default=None, significant=False, description="GPUs per Slurm job (--gres=gpu:N)"
    )
    slurm_gpu_type = luigi.OptionalParameter(
        default=None, significant=False, description="GPU type for --gres, e.g. a100"
    )
    slurm_walltime = luigi.OptionalParameter(
        default=None, significant=False, description="wall time per Slurm job, e.g. 02:00:00"
    )
    slurm_sbatch_options = law.CSVParameter(
        default=(),
        significant=False,
        description="extra sbatch options, comma-separated, e.g. --qos=short,--account=cms",
    )
    # law's defaults poll every minute and retry five times; a shorter poll suits short
    # trainings, and a job that failed three times has a real problem
    retries = luigi.IntParameter(
        default=2,
        significant=False,
        description="resubmissions of a failed job; default: 2",
    )
    poll_interval = law.DurationParameter(
        default=5 / 60,
        unit="m",
        significant=False,
        description="time between job status polls (default unit minutes); default: 5s",
    )
    # law marks these significant; they must not change the output folders' keys
    cancel_jobs = luigi.BoolParameter(
        default=False, significant=False, description="cancel the submitted jobs, submit none"
    )
    cleanup_jobs = luigi.BoolParameter(
        default=False, significant=False, description="clean up the submitted jobs, submit none"
    )

    exclude_params_branch: ClassVar[set[str]] = set(_RESOURCE_PARAMS)
    exclude_params_slurm_workflow: ClassVar[set[str]] = set(_RESOURCE_PARAMS)

    def configured_resources(self) -> ResourceSettings | None:
        """Resource settings from the task's input/config file (default: none, step defaults)."""
        return None

    def job_resources(self) -> Resources:
        """Resources of every job of this workflow: defaults < configured < ``--slurm-*``."""
        given: dict[str, Any] = {
            field: getattr(self, param)
            for param, field in _RESOURCE_PARAMS.items()
            if getattr(self, param) not in (None, ())
        }
        if self.slurm_partition not in (None, NO_STR, ""):
            given["partition"] = self.slurm_partition
        overrides = ResourceSettings.model_validate(given) if given else None
        step = str(getattr(self, "step", ""))
        return resolve_resources(step, None, self.configured_resources()).merged(overrides)

    def _workflow(self) -> Any:
        return self.as_workflow() if self.is_branch() else self

    def _outputs_folder(self) -> Path:
        """The folder holding the branches' output folders (that of the first branch)."""
        workflow = self._workflow()
        if not workflow.branch_map:
            return Path(str(self.workdir)).resolve()
        return workflow.as_branch(min(workflow.branch_map)).output_dir().parent

    def slurm_output_directory(self) -> law.LocalDirectoryTarget:
        """``<workdir>/.slurm/<outputs folder below the workdir>/<task>__<hash of its id>``.

        Holds the job ids (``slurm_jobs_*.json``), the job files and the bootstrap; the name
        depends only on the workflow's significant parameters, so a re-run finds it.
        """
        workdir = Path(str(self.workdir)).resolve()
        folder = self._outputs_folder()
        try:
            base = workdir / CONTROL_DIR / folder.relative_to(workdir)
        except ValueError:
            base = folder / CONTROL_DIR
        workflow = self._workflow()
        name = f"{workflow.get_task_family()}__{stable_hash(workflow.task_id)}"
        return law.LocalDirectoryTarget(str(base / name))

    def slurm_log_directory(self) -> law.LocalDirectoryTarget:
        """The folder holding the branches' output folders (``<workdir>/<step>/<version>``)."""
        return law.LocalDirectoryTarget(str(self._outputs_folder()))

    def slurm_log_path(self, branches: Iterable[int]) -> Path:
        """``<branch output folder>.slurm.log`` (one branch per job) or a per-job name."""
        branches = list(branches)
        workflow = self._workflow()
        if len(branches) == 1:
            out = workflow.as_branch(branches[0]).output_dir()
            return out.with_name(out.name + LOG_SUFFIX)
        name = f"{workflow.get_task_family()}_{branches[0]}To{branches[-1] + 1}{LOG_SUFFIX}"
        return self._outputs_folder() / name

    def slurm_bootstrap_file(self) -> JobInputFile:
        """Write the bootstrap (see :func:`bootstrap_script`) into the control folder."""
        folder = Path(self.slurm_output_directory().abspath)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bootstrap.sh"
        with atomic_path(path) as tmp:
            Path(tmp).write_text(bootstrap_script(type(self), Path.cwd()))
        return JobInputFile(str(path), share=True, render_local=False)

    def slurm_create_job_file_factory(self, **kwargs: Any) -> Any:
        """Job files on the shared file system (law's default is this machine's /tmp)."""
        kwargs.setdefault("dir", str(Path(self.slurm_output_directory().abspath) / "jobs"))
        Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
        return super().slurm_create_job_file_factory(**kwargs)

    def slurm_job_config(self, config: Any, job_num: int, branches: list[int]) -> Any:
        """Resources as ``#SBATCH`` lines, logs next to the outputs, this venv's law."""
        resources = self.job_resources()
        if resources.partition:
            config.partition = resources.partition
        config.custom_content.extend(resources.sbatch_directives())
        config.custom_content.append(("open-mode", "append"))
        log = str(self.slurm_log_path(branches))
        config.stdout = log
        config.stderr = log
        config.postfix_output_files = False
        config.render_variables["law_exe"] = str(Path(sys.executable).parent / "law")
        config.render_variables["python_exe"] = sys.executable
        return config

    @contextlib.contextmanager
    def slurm_workflow_run_context(self) -> Iterator[None]:
        """Let law build job commands when the run started from ``luigi.build``, not a CLI.

        law copies the invocation's global options (from luigi's command-line parser) into
        every job command; an in-process run has no parser, so an empty one stands in.
        """
        parser = luigi.cmdline_parser.CmdlineParser
        if parser.get_instance() is not None:
            yield
            return
        with parser.global_instance([self.get_task_family()]):
            yield

    def slurm_post_submit_delay(self) -> float:
        """Start polling soon: sbatch returns once the controller has registered the job."""
        return min(float(self.poll_interval) * 60, 1.0)


def slurm_task_params(
    workflow: str = "local",
    resources: ResourceSettings | None = None,
    retries: int | None = None,
) -> dict[str, Any]:
    """Task keyword arguments for a CLI's ``--workflow`` choice and resource options.

    >>> slurm_task_params("slurm", ResourceSettings(cpus=4))
    {'workflow': 'slurm', 'slurm_cpus': 4}
    """
    params: dict[str, Any] = {"workflow": workflow}
    if workflow != "slurm":
        return params
    for param, field in _RESOURCE_PARAMS.items():
        value = getattr(resources, field, None) if resources is not None else None
        if value is not None:
            params[param] = tuple(value) if field == "sbatch_options" else value
    if resources is not None and resources.partition:
        params["slurm_partition"] = resources.partition
    if retries is not None:
        params["retries"] = retries
    return params


def workflow_params(task: SlurmWorkflowMixin) -> dict[str, Any]:
    """The workflow type, resource, retry and poll parameters of ``task``, to pass upstream.

    A task that builds its requirements itself (not through ``req``) hands these on, so the
    steps before it run where it runs.
    """
    names = ("workflow", *_RESOURCE_PARAMS, "slurm_partition", "retries", "poll_interval")
    return {name: getattr(task, name) for name in names}


def slurm_log_files(tasks: Iterable[Any]) -> list[Path]:
    """The Slurm job logs that exist for the branches of the given workflows."""
    logs: list[Path] = []
    for task in tasks:
        if isinstance(task, SlurmWorkflowMixin):
            workflow = task._workflow()
            paths = (workflow.slurm_log_path([b]) for b in sorted(workflow.branch_map))
            logs.extend(path for path in paths if path.exists())
    return logs


def slurm_summary(tasks: Iterable[Any]) -> str:
    """One line per folder with Slurm job logs, for the end-of-run summary (empty if none).

    Folders come in the order their first log was written (the order the steps ran).
    """
    logs = sorted(set(slurm_log_files(tasks)), key=lambda path: path.stat().st_mtime)
    folders: dict[Path, int] = {}
    for path in logs:
        folders[path.parent] = folders.get(path.parent, 0) + 1
    return "\n".join(
        f"Slurm job logs: {folder}/*{LOG_SUFFIX} ({n} job{'s' * (n != 1)})"
        for folder, n in folders.items()
    )
