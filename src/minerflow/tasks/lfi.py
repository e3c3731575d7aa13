"""law tasks of the likelihood-free-inference workflow: Sample → Train → Evaluate → Plot.

Each task calls the matching function of :mod:`minerflow.workflow` (the code the step
commands run too) and writes into its own folder ``<workdir>/<step>/<version>/<key>``, keyed
by the settings that determine it (:mod:`minerflow.tasks.base`). Sample, Train and Evaluate are
workflows with one branch per method × sampling run, so ``--workers N`` runs them in
parallel, or ``--workflow slurm`` as Slurm jobs (:mod:`minerflow.tasks.remote`). With
``--sweep alpha=1,10`` Train and Evaluate have one branch per method × run × sweep point, all
points training on the same sample. Run locally, each branch waits only for its own input (an
evaluation starts when its model is trained). With several sampling runs,
:class:`EvaluateEnsemble` evaluates each method's models together. Without a data file the toy
simulator's event file is generated first (:class:`Toy`).

``law run minerflow.Plot --version v1 --input-file input.yml --data-file data.h5`` runs all of
it; ``minerflow run`` (:func:`run_workflow`) does the same, tracked under one parent MLflow
run, and prints a summary; with a sweep it stops after Evaluate and writes the sweep's table
and plot instead of the method-comparison figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import luigi

from minerflow.config.resources import ResourceSettings
from minerflow.errors import MinerflowError
from minerflow.tasks.base import (
    MinerflowTask,
    MinerflowWorkflow,
    TaskRecord,
    build_locally,
    collect_records,
    folder_key,
    format_summary,
    new_run_token,
)
from minerflow.tasks.remote import SlurmWorkflowMixin, slurm_summary, slurm_task_params
from minerflow.tracking.provenance import git_commit
from minerflow.tracking.tracker import SPOOL_FOLDER, Tracker, TrackingFailedError, log_leftovers

__all__ = [
    "TOY_FILE",
    "Evaluate",
    "EvaluateEnsemble",
    "LFITask",
    "Plot",
    "Reference",
    "RunResult",
    "Sample",
    "Toy",
    "Train",
    "WorkflowFailedError",
    "run_workflow",
]

TOY_FILE = "events.h5"


@cache
def _load_input(path: str, overrides: tuple[str, ...]) -> Any:
    from minerflow.config.workflow_input import load_workflow_input

    return load_workflow_input(path or None, overrides)


class Toy(MinerflowTask):
    """The toy simulator's event file (``events.h5``), keyed by its size and seed."""

    step = "toy"
    readable_keys = ("toy_events", "toy_seed")

    toy_events = luigi.IntParameter(default=100_000, description="toy events (100000)")
    toy_seed = luigi.IntParameter(default=0, description="toy random seed (0)")

    def build(self, out: Path) -> None:
        """Generate the events and write the MadMiner file."""
        from minerflow.physics import toy

        toy.write_event_file(out / TOY_FILE, n_events=int(self.toy_events), seed=int(self.toy_seed))


class LFITask(MinerflowTask):
    """Parameters every workflow step shares: the event file, the input file and overrides.

    The folder key holds the *settings* (the validated input, with overrides) and the event
    file's checksum, not the paths: an identical input under another name is reused.
    """

    exclude_index = True

    data_file = luigi.Parameter(default="", description="MadMiner event file; empty: the toy")
    input_file = luigi.Parameter(default="", description="workflow input.yml; empty: built-in")
    overrides = luigi.TupleParameter(default=(), description="input overrides, key.path=value")
    toy_events = Toy.toy_events
    toy_seed = Toy.toy_seed

    # in the key as what they mean (the settings, the events), not as given
    _unkeyed_params = ("data_file", "input_file", "overrides", "toy_events", "toy_seed")

    @property
    def workflow_input(self) -> Any:
        """The validated input (cached per process)."""
        return _load_input(str(self.input_file), tuple(self.overrides))

    def toy_task(self) -> Toy | None:
        """The task that makes the toy event file, when no data file is given."""
        return None if self.data_file else Toy.req(self)

    def event_file_path(self) -> Path:
        """The event file this workflow runs on."""
        toy = self.toy_task()
        if toy is None:
            return Path(str(self.data_file)).resolve()
        return toy.output_dir() / TOY_FILE

    def event_key(self) -> dict[str, Any]:
        """Identity of the events: the toy settings, or the data file's sha256."""
        toy = self.toy_task()
        if toy is not None:
            return {"toy": {"events": int(self.toy_events), "seed": int(self.toy_seed)}}
        from minerflow.errors import InputError
        from minerflow.tracking.provenance import sha256_file

        path = self.event_file_path()
        if not path.is_file():
            raise InputError(path, None, "an existing event file (--data-file)")
        return {"event_file_sha256": sha256_file(path)}

    def step_key(self) -> dict[str, Any]:
        """The input settings that determine this task's output."""
        raise NotImplementedError

    def key_data(self) -> dict[str, Any]:
        """Task parameters without the file paths, plus settings and event identity."""
        data = {k: v for k, v in super().key_data().items() if k not in self._unkeyed_params}
        return {**data, "settings": self.step_key(), "events": self.event_key()}

    def tracking_dir(self) -> Path:
        """The work dir, whose ``mlflow.db`` every task logs to."""
        return Path(str(self.workdir)).resolve()

    def event_file(self) -> Any:
        """The opened and input-checked event file."""
        from minerflow.workflow.common import open_event_file

        return open_event_file(self.event_file_path(), self.workflow_input)


class _MethodRuns(LFITask, MinerflowWorkflow, SlurmWorkflowMixin):
    """A workflow with one branch per listed method and sampling run (local or Slurm jobs)."""

    exclude_index = True

    readable_keys = ("method", "run")

    # Run here, the workflow requires its branches and each branch only its own input, so a
    # branch starts as soon as that input exists (an evaluation does not wait for every
    # training). A Slurm submission needs every input first: ``inputs_of_all_branches``.
    local_workflow_require_branches = True

    def workflow_requires(self) -> dict[str, Any]:
        """Every branch's input for a Slurm submission; nothing of its own when run here."""
        return self.inputs_of_all_branches() if self.effective_workflow == "slurm" else {}

    def inputs_of_all_branches(self) -> dict[str, Any]:
        """What the branches together need (the upstream workflows)."""
        raise NotImplementedError(f"{type(self).__name__}.inputs_of_all_branches")

    def per_method_key(self, key_of: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
        """``key_of(input, method)`` of this branch's method; of every method for the workflow
        (the input is the branch's, with its sweep point applied)."""
        source = self.branch_input
        if self.is_workflow():
            return {m: key_of(source, m) for m in source.methods}
        return key_of(source, self.method)

    def configured_resources(self) -> ResourceSettings | None:
        """The input file's ``resources:`` settings for this step (``default`` underneath)."""
        return self.workflow_input.resources.for_step(self.step)

    @property
    def branch_input(self) -> Any:
        """The input this branch runs with: the workflow input, with its sweep point applied."""
        return self.workflow_input

    def create_branch_map(self) -> list[dict[str, Any]]:
        """``[{"method": m, "run": i}, ...]`` in input order."""
        source = self.workflow_input
        runs = range(source.sampling.n_sampling_runs)
        return [{"method": m, "run": i} for m in source.methods for i in runs]

    @property
    def method(self) -> str:
        """The branch's method."""
        return str(self.branch_data["method"])

    @property
    def sampling_run(self) -> int:
        """The branch's sampling run."""
        return int(self.branch_data["run"])


def _evaluation_key(source: Any, method: str) -> dict[str, Any]:
    return source.step_config("evaluation", method)


class Sample(_MethodRuns):
    """Training samples of one method and sampling run (``Samples_<method>_<run>/``)."""

    step = "sample"
    # before any training when both could start: samples are quick, need no torch, and every
    # sample done lets one more training start
    priority = 10

    def step_key(self) -> dict[str, Any]:
        """The sampling settings of this branch's method (all methods for the workflow)."""
        from minerflow.workflow.sampling import sampling_key

        return self.per_method_key(sampling_key)

    def inputs_of_all_branches(self) -> dict[str, Any]:
        """The toy event file, when there is no data file."""
        toy = self.toy_task()
        return {"events": toy} if toy is not None else {}

    def requires(self) -> dict[str, Any]:
        """The toy event file, when there is no data file."""
        return self.inputs_of_all_branches()

    def samples_dir(self) -> Path:
        """The finished sample folder of this branch."""
        from minerflow.workflow.common import samples_folder_name

        return self.output_dir() / samples_folder_name(self.method, self.sampling_run)

    def build(self, out: Path) -> None:
        """Draw the sample."""
        from minerflow.workflow.sampling import sample_method

        sample_method(
            self.event_file(),
            self.workflow_input,
            self.method,
            self.sampling_run,
            out,
            tracking_dir=self.tracking_dir(),
        )


class _SweptRuns(_MethodRuns):
    """Method × run branches, each once per point of ``--sweep`` (training settings).

    The point is part of the branch data, so it keys the folder (shown readable:
    ``method=alices__run=0__alpha=10__<hash>``); ``sweep`` itself is not part of the key,
    so a point keeps its folder when the sweep around it grows, and no sweep changes nothing.
    """

    exclude_index = True

    sweep = luigi.TupleParameter(
        default=(), description="swept training settings, e.g. alpha=1,10,100 (repeatable)"
    )

    # in the key as each branch's point
    _unkeyed_params = (*LFITask._unkeyed_params, "sweep")

    @property
    def sweep_axes(self) -> Any:
        """The parsed sweep (:class:`~minerflow.workflow.sweeps.Sweep`; no axes: no sweep)."""
        from minerflow.workflow.sweeps import parse_sweeps

        return parse_sweeps(list(self.sweep))

    def create_branch_map(self) -> list[dict[str, Any]]:
        """Method × run branches, times the sweep points (the point varies fastest)."""
        from minerflow.workflow.sweeps import sweep_branches

        return sweep_branches(super().create_branch_map(), self.sweep_axes)

    @property
    def branch_input(self) -> Any:
        """The workflow input with this branch's training settings from its sweep point."""
        from minerflow.workflow.sweeps import SWEEP_KEY, apply_point

        point = self.branch_data.get(SWEEP_KEY) if self.is_branch() else None
        return apply_point(self.workflow_input, point) if point else self.workflow_input

    def readable_data(self) -> dict[str, Any]:
        """``method``, ``run`` and the swept settings' values."""
        from minerflow.workflow.sweeps import SWEEP_KEY

        data = super().readable_data()
        if self.is_branch():
            data |= dict(self.branch_data.get(SWEEP_KEY) or {})
        return data

    def sample_branch(self) -> int:
        """The Sample branch this branch trains on (shared by every sweep point)."""
        return int(self.branch) // len(self.sweep_axes)


class Train(_SweptRuns):
    """One trained estimator per method, sampling run and sweep point (``models/<m>_<run>/``)."""

    step = "train"

    def step_key(self) -> dict[str, Any]:
        """Sampling, estimator and training settings of this branch's method."""
        from minerflow.workflow.training import training_key

        return self.per_method_key(training_key)

    def inputs_of_all_branches(self) -> dict[str, Any]:
        """Every sample."""
        return {"samples": Sample.req(self)}

    def requires(self) -> Sample:
        """This branch's sample."""
        return Sample.req(self, branch=self.sample_branch())

    def model_dir(self) -> Path:
        """The finished model folder of this branch."""
        from minerflow.workflow.common import model_name

        return self.output_dir() / "models" / model_name(self.method, self.sampling_run)

    def build(self, out: Path) -> None:
        """Train (resuming from a checkpoint left by an interrupted run)."""
        from minerflow.workflow.training import train

        train(
            self.requires().samples_dir(),
            self.branch_input,
            out,
            tracking_dir=self.tracking_dir(),
            checkpoint_root=self.tracking_dir() / "checkpoints",
        )


class Evaluate(_SweptRuns):
    """Predictions, limits and Fisher information of one model (``results/<model>/``)."""

    step = "evaluate"

    def step_key(self) -> dict[str, Any]:
        """Everything up to the evaluation settings of this branch's method."""
        return self.per_method_key(_evaluation_key)

    def inputs_of_all_branches(self) -> dict[str, Any]:
        """Every model."""
        return {"models": Train.req(self)}

    def requires(self) -> Train:
        """This branch's model."""
        return Train.req(self)

    def results_dir(self) -> Path:
        """The finished results folder of this branch."""
        from minerflow.workflow.common import model_name
        from minerflow.workflow.evaluation import RESULTS_FOLDER

        return self.output_dir() / RESULTS_FOLDER / model_name(self.method, self.sampling_run)

    def build(self, out: Path) -> None:
        """Evaluate the model."""
        from minerflow.workflow.evaluation import evaluate_model

        evaluate_model(
            self.event_file(),
            self.requires().model_dir(),
            self.branch_input,
            out,
            tracking_dir=self.tracking_dir(),
        )


class EvaluateEnsemble(_MethodRuns):
    """Each method's models over all sampling runs as one ensemble (``results/<m>_ensemble/``).

    The mean prediction's limits, with every member's limits and the spread of −2Δlog L beside
    them: what the ``evaluate`` step command adds once every run's model is there. Only asked
    for (by :class:`Plot`) with more than one sampling run.
    """

    step = "ensemble"
    readable_keys = ("method",)

    def create_branch_map(self) -> list[dict[str, Any]]:
        """``[{"method": m}, ...]`` in input order."""
        return [{"method": m} for m in self.workflow_input.methods]

    def step_key(self) -> dict[str, Any]:
        """Everything up to the evaluation settings of this branch's method."""
        return self.per_method_key(_evaluation_key)

    def inputs_of_all_branches(self) -> dict[str, Any]:
        """Every model."""
        return {"models": Train.req(self)}

    def requires(self) -> list[Train]:
        """The models of this branch's method, one per sampling run."""
        trainings = Train.req(self)
        return [
            Train.req(self, branch=branch)
            for branch, data in trainings.branch_map.items()
            if data["method"] == self.method
        ]

    def results_dir(self) -> Path:
        """The finished results folder of this branch."""
        from minerflow.workflow.common import ensemble_name
        from minerflow.workflow.evaluation import RESULTS_FOLDER

        return self.output_dir() / RESULTS_FOLDER / ensemble_name(self.method)

    def build(self, out: Path) -> None:
        """Evaluate the ensemble of the method's models."""
        from minerflow.workflow.evaluation import evaluate_ensemble

        evaluate_ensemble(
            self.event_file(),
            [train.model_dir() for train in self.requires()],
            self.workflow_input,
            out,
            tracking_dir=self.tracking_dir(),
        )


class Reference(LFITask):
    """Model-independent results: σ(θ), rate / histogram / truth limits, Fisher information."""

    step = "reference"
    priority = Sample.priority  # needs no torch: runs while the trainings' modules load

    def step_key(self) -> dict[str, Any]:
        """Limit, histogram and Fisher settings and the test split."""
        from minerflow.workflow.evaluation import reference_key

        source = self.workflow_input
        return reference_key(source, source.sampling.test_split)

    def requires(self) -> dict[str, Any]:
        """The toy event file, when there is no data file."""
        toy = self.toy_task()
        return {"events": toy} if toy is not None else {}

    def reference_dir(self) -> Path:
        """The finished ``rates/`` folder."""
        from minerflow.workflow.evaluation import REFERENCE_FOLDER

        return self.output_dir() / REFERENCE_FOLDER

    def build(self, out: Path) -> None:
        """Compute the model-independent results."""
        from minerflow.workflow.evaluation import evaluate_reference

        evaluate_reference(
            self.event_file(),
            self.workflow_input,
            out,
            tracking_dir=self.tracking_dir(),
            reuse=False,
        )


class Plot(LFITask):
    """Every figure of the input's ``plotting`` section (``plots/``)."""

    step = "plot"

    job_params = luigi.DictParameter(
        default={},
        significant=False,
        description="workflow parameters of the steps before (workflow=slurm, slurm_cpus, ...)",
    )

    def step_key(self) -> dict[str, Any]:
        """All settings (plots compare every method)."""
        return self.workflow_input.step_config("plotting")

    def requires(self) -> dict[str, Any]:
        """Every evaluation, every model, the reference results and, with several sampling
        runs, each method's ensemble."""
        reqs = {
            "results": Evaluate.req(self, **self.job_params),
            "models": Train.req(self, **self.job_params),
            "reference": Reference.req(self),
        }
        if self.workflow_input.sampling.n_sampling_runs > 1:
            reqs["ensembles"] = EvaluateEnsemble.req(self, **self.job_params)
        return reqs

    def plots_dir(self) -> Path:
        """The finished plot folder."""
        from minerflow.workflow.plotting import PLOTS_FOLDER

        return self.output_dir() / PLOTS_FOLDER

    def build(self, out: Path) -> None:
        """Draw the figures from the finished evaluation and model folders."""
        from minerflow.workflow.plotting import PLOTS_FOLDER, make_plots

        inputs = self.requires()
        results = [Evaluate.req(self, branch=b).results_dir() for b in inputs["results"].branch_map]
        if "ensembles" in inputs:
            ensembles = inputs["ensembles"]
            results += [
                EvaluateEnsemble.req(self, branch=b).results_dir() for b in ensembles.branch_map
            ]
        models = inputs["models"]
        make_plots(
            self.workflow_input,
            results,
            Reference.req(self).reference_dir(),
            [Train.req(self, branch=b).model_dir() for b in models.branch_map],
            out / PLOTS_FOLDER,
            tracking_dir=self.tracking_dir(),
        )


class WorkflowFailedError(MinerflowError):
    """A task of the coordinated run failed; the message names it and says why."""


@dataclass(frozen=True)
class RunResult:
    """What ``minerflow run`` did: per-output records, where the results are, how long."""

    records: tuple[TaskRecord, ...]
    plots_dir: Path | None
    tracking_uri: str
    wall_seconds: float
    notes: tuple[str, ...] = ()
    """Further summary lines: the sweep table, the Slurm job logs."""

    @property
    def nothing_to_do(self) -> bool:
        """Whether every output already existed (a no-op re-run)."""
        return all(r.status == "reused" for r in self.records)

    def summary(self) -> str:
        """The table of steps (ran / reused / missing, wall time) and where to look."""
        ran = sum(r.status == "ran" for r in self.records)
        reused = sum(r.status == "reused" for r in self.records)
        head = (
            f"nothing to do: all {reused} outputs are up to date (reused)"
            if self.nothing_to_do
            else f"{ran} outputs made, {reused} reused"
        )
        lines = [head, format_summary(self.records, self.wall_seconds)]
        if self.plots_dir is not None:
            lines.append(f"plots:  {self.plots_dir}")
        return "\n".join([*lines, *self.notes, f"MLflow: {self.tracking_uri}"])


def _link_plots(workdir: Path, plots: Path) -> None:
    """Point ``<workdir>/plots`` at the latest plot folder (replaced atomically)."""
    link = workdir / "plots"
    if link.exists() and not link.is_symlink():
        return
    tmp = workdir / f".plots.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(plots, workdir))
    os.replace(tmp, link)


def _sweep_summary(evaluate: Evaluate, parent_run_id: str | None) -> Path:
    """Write (or reuse) the sweep's table and plot; returns the folder.

    ``<workdir>/sweep/<version>/<axes>__<hash of the trained folders>``: a re-run of the same
    sweep finds it; a grown sweep gets a new one, with the reused trainings in it too.
    """
    from minerflow.io.atomic import atomic_dir
    from minerflow.workflow.sweeps import (
        collect_sweep_results,
        result_key,
        results_from_models,
        write_sweep_summary,
    )

    sweep = evaluate.sweep_axes
    trainings = Train.req(evaluate).get_branch_tasks()
    models = [(t.branch_data, t.model_dir()) for t in trainings.values()]
    readable = {name: values for name, values in sweep.axes}
    key = {"sweep": readable, "models": [str(folder) for _, folder in models]}
    folder = (
        Path(str(evaluate.workdir)).resolve()
        / "sweep"
        / str(evaluate.version)
        / folder_key(readable, key)
    )
    if folder.is_dir():
        return folder
    workdir = Path(str(evaluate.workdir)).resolve()
    found = collect_sweep_results(workdir, parent_run_id, sweep) if parent_run_id else []
    run_ids = {result_key(r.method, r.run, r.point): r.run_id for r in found}
    with atomic_dir(folder) as tmp:
        write_sweep_summary(results_from_models(models, run_ids), sweep, tmp)
    return folder


def run_workflow(
    workdir: str | os.PathLike[str] = "work",
    *,
    data_file: str | os.PathLike[str] | None = None,
    input_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    workers: int = 1,
    version: str = "v1",
    toy_events: int = 100_000,
    toy_seed: int = 0,
    workflow: str = "local",
    resources: ResourceSettings | None = None,
    retries: int | None = None,
    sweep: Sequence[str] = (),
) -> RunResult:
    """Run Sample → Train → Evaluate → Plot with ``workers`` local processes or Slurm jobs.

    The input (and the data file and sweep, if given) is validated before anything runs. Work
    that is already done is reused; when everything is, no MLflow run is opened and this returns
    in about a second. Otherwise one parent run (experiment ``minerflow-workflow``) holds every
    step's run; the tasks record their runs and a tracker process logs them while the tasks go
    on (:mod:`minerflow.tracking.tracker`). ``workflow="slurm"`` submits the branches of Sample,
    Train and Evaluate as Slurm jobs (``resources`` on top of the input file's, failed jobs
    resubmitted ``retries`` times) and waits for them. With ``sweep`` (``["alpha=1,10", ...]``)
    every point trains and is evaluated, under one sweep parent run, and the sweep's table and
    plot replace the method-comparison figures. A failed task raises
    :class:`WorkflowFailedError` (finished outputs are kept).
    """
    from minerflow.config.workflow_input import load_workflow_input
    from minerflow.tracking.store import tracking_uri
    from minerflow.workflow.sweeps import apply_point, parse_sweeps

    started = time.perf_counter()
    root = Path(workdir).resolve()
    workflow_input = load_workflow_input(input_file, overrides)
    swept = parse_sweeps(list(sweep))
    for point in swept.points():
        apply_point(workflow_input, point)
    params = {
        "workdir": str(root),
        "version": version,
        "data_file": str(Path(data_file).resolve()) if data_file else "",
        "input_file": str(Path(input_file).resolve()) if input_file else "",
        "overrides": tuple(overrides),
        "toy_events": int(toy_events),
        "toy_seed": int(toy_seed),
    }
    job_params = slurm_task_params(workflow, resources, retries)
    target: LFITask = (
        Evaluate(**params, sweep=tuple(sweep), **job_params)
        if swept.axes
        else Plot(**params, job_params=job_params)
    )
    if data_file:
        target.event_file()  # check the event file against the input before any work
    token = new_run_token()
    parent_run_id = None
    if not target.complete():
        root.mkdir(parents=True, exist_ok=True)
        run_params = {**params, "workers": workers, "workflow": workflow, "sweep": list(sweep)}
        opener = functools.partial(
            _workflow_run, root, run_params, workflow_input, data_file, swept
        )
        parent_run_id = _build_tracked(target, workers, root, token, Tracker(root, token, opener))
    elif (root / SPOOL_FOLDER).is_dir():  # runs an interrupted run recorded but never logged
        log_leftovers(root, None)
    records = tuple(collect_records([target], token))
    notes = []
    plots_dir = None
    if isinstance(target, Evaluate):
        summary = _sweep_summary(target, parent_run_id)
        notes.append(f"sweep:  {summary / 'sweep.md'} (table), {summary / 'sweep.png'} (plot)")
    else:
        plots_dir = target.plots_dir()
        _link_plots(root, plots_dir)
    if workflow == "slurm":
        notes.extend(slurm_summary(_walk_workflows(target)).splitlines())
    wall = time.perf_counter() - started
    return RunResult(records, plots_dir, tracking_uri(root), wall, tuple(notes))


@contextlib.contextmanager
def _workflow_run(
    root: Path,
    params: Mapping[str, Any],
    workflow_input: Any,
    data_file: str | os.PathLike[str] | None,
    sweep: Any,
) -> Iterator[None]:
    """The run's parent MLflow run, with the sweep's parent inside (opened by the tracker,
    which nests the step runs under the innermost: ``$MINERFLOW_PARENT_RUN_ID``)."""
    from minerflow.workflow.common import step_run
    from minerflow.workflow.sweeps import sweep_parent_run

    with (
        step_run(
            "workflow",
            root,
            run_name="minerflow run",
            params={**params, "settings": workflow_input.canonical_dict()},
            input_file=workflow_input.source,
            event_file=data_file or None,
            export_as_parent=True,
        ),
        sweep_parent_run(root, sweep, input_file=workflow_input.source)
        if sweep.axes
        else contextlib.nullcontext(),
    ):
        yield


# what Train, Evaluate and Plot load, in the order they need it: loaded before luigi forks them
# (not MLflow: the tasks record their runs for the tracker process, tracking/tracker.py)
_WORKER_MODULES = (
    "torch",
    "minerflow.workflow.training",
    "minerflow.tracking.spool",
    "minerflow.workflow.evaluation",
    "minerflow.ml.persistence",
    "minerflow.physics.limits",
    "minerflow.physics.fisher",
    "matplotlib.figure",
    "mplhep",
    "minerflow.plotting.style",
    "matplotlib.backends.backend_agg",
    "matplotlib.backends.backend_pdf",
    "minerflow.workflow.plotting",
    "minerflow.plotting.correlations",
    "minerflow.plotting.fisher",
    "minerflow.plotting.limits",
    "minerflow.plotting.rates",
    "minerflow.plotting.training",
)


def _build_tracked(
    target: luigi.Task, workers: int, root: Path, token: str, tracker: Tracker
) -> str | None:
    """:func:`_build` while ``tracker`` logs the runs; the id of the run they nest under."""
    status = "FAILED"
    try:
        _build(target, workers, root, token, tracker.start)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # a tracking failure is reported unless the build's own failure is on its way
        with contextlib.suppress(*(() if status == "FINISHED" else (TrackingFailedError,))):
            parent = tracker.finish(status)
    return parent


def _build(
    target: luigi.Task, workers: int, root: Path, token: str, start_tracker: Callable[[], None]
) -> None:
    """Run ``target`` with luigi's local scheduler; a failure raises WorkflowFailedError.

    The tracker starts once torch is loaded (the models it logs need it, and the fork shares
    it); every task records its run for it instead of opening MLflow itself.
    """
    # tasks may run in forked workers: failures are reported through a file
    failures = root / f".failures-{token}.txt"

    def _failed(task: luigi.Task, error: BaseException) -> None:
        with open(failures, "a") as handle:
            handle.write(f"{task.get_task_family()}{_branch_text(task)}: {error}\n")

    git_commit()  # once here: forked tasks inherit the answer for their provenance tags
    preload = (_WORKER_MODULES[0], start_tracker, *_WORKER_MODULES[1:])
    LFITask.event_handler(luigi.Event.FAILURE)(_failed)
    try:
        result = build_locally([target], workers, preload, detailed_summary=True)
    finally:
        LFITask.remove_event_handler(luigi.Event.FAILURE, _failed)
    if result.status not in (
        luigi.LuigiStatusCode.SUCCESS,
        luigi.LuigiStatusCode.SUCCESS_WITH_RETRY,
    ):
        lines = failures.read_text().splitlines() if failures.is_file() else []
        failures.unlink(missing_ok=True)
        raise WorkflowFailedError(
            f"{lines[0] if lines else result.status.name} (finished outputs are kept; "
            "run again to retry the rest)"
        )


def _walk_workflows(target: luigi.Task) -> Iterator[luigi.Task]:
    """Every workflow reachable from ``target`` (for the Slurm job-log summary)."""
    seen: set[str] = set()
    stack = [target]
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        if isinstance(task, _MethodRuns) and task.is_workflow():
            yield task
            stack.extend(luigi.task.flatten(task.workflow_requires()))
        else:
            stack.extend(luigi.task.flatten(task.requires()))


def _branch_text(task: luigi.Task) -> str:
    data = getattr(task, "branch_data", None) if getattr(task, "branch", -1) >= 0 else None
    if not isinstance(data, dict):
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in data.items()) + ")"
