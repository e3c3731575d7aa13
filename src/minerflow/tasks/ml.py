"""law tasks of the MLModel workflow: prepare → train (one branch per fold) → evaluate → plot.

The branching steps run locally or, with ``--workflow slurm``, as Slurm jobs
(:mod:`minerflow.tasks.remote`); the plots are drawn where the command runs.

``law run minerflow.MLTraining --version v1 --ml-model toy_classifier --analysis-file
analysis.yml --workers 3`` (after ``law index``) or ``minerflow ml train ...`` run them. The
tasks only decide folders, branches and sandboxes; the steps are in
:mod:`minerflow.workflow.ml_steps`.

Folders (``<workdir>/<step>/<version>/...``), each built atomically:

* ``ml_preparation/v1/<store_name or model>/dataset=<ds>[__sel=...]__<hash>/``:
  ``fold{f}of{k}.parquet`` + ``stats.json``. The hash covers the dataset's files (path,
  size, mtime), the columns read, the folds and the training ops, not the training settings,
  so a model with new hyperparameters reuses its prepared events.
* ``ml_training/v1/<model>/<settings_repr>/fold=<f>of<k>__<hash>/``: the model's
  ``output`` (``mlmodel_f{f}of{k}/`` by default), ``history.json``, ``learning_curves.png``,
  ``training.json`` (MLflow run id, training events).
* ``ml_evaluation/v1/<model>/<settings_repr>/dataset=<ds>__<hash>/``: one
  ``mlcolumns_<i>.parquet`` per input file, row-aligned with it, and ``files.json``.
* ``ml_plots/v1/<model>/<settings_repr>/plots__<hash>/``: ROC, output distributions,
  confusion matrix (multi-class), learning curves, ``metrics.json``.

A model whose ``sandbox()`` names a venv has its ``train``/``evaluate`` branch re-run inside
that venv (the same task, built from its parameters); everything else runs on the host.
A failure is recorded as one line in ``<workdir>/.minerflow/errors/<run token>`` so the CLI
can report it after luigi's workers have finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

# first: it points law at minerflow's law.cfg (squeue -t all, ...) before law is imported
from minerflow.tasks.base import MinerflowTask, MinerflowWorkflow, folder_key, run_token

# isort: split
import law
import luigi

from minerflow.config.analysis import dataset_files, load_analysis, ml_modules, single_config
from minerflow.errors import InputError, MinerflowError
from minerflow.ml.folds import training_folds
from minerflow.ml.mlmodel import MLModel, build_model
from minerflow.ml.sandbox import active_sandbox, resolve_sandbox, run_in_sandbox
from minerflow.tasks.remote import SlurmWorkflowMixin, workflow_params
from minerflow.workflow import ml_steps
from minerflow.workflow.ml_steps import OpChain

__all__ = [
    "WORKER_MODULES",
    "MLEvaluation",
    "MLTraining",
    "PlotMLResults",
    "PrepareMLEvents",
    "failure_file",
    "read_failures",
    "run_task_here",
]

# what the ML tasks load, in the order they need it, before luigi forks them (build_locally)
WORKER_MODULES = (
    "torch",
    "minerflow.tracking.runs",
    "mlflow.pytorch",
    "matplotlib.figure",
    "mplhep",
    "minerflow.plotting.style",
    "matplotlib.backends.backend_agg",
    "matplotlib.backends.backend_pdf",
    "minerflow.plotting.classifier",
    "minerflow.plotting.training",
)

_ANALYSES: dict[tuple[str, int], Any] = {}


def failure_file(workdir: str | os.PathLike[str], token: str | None = None) -> Path:
    """Where the one-line errors of one invocation (run token) are collected."""
    return Path(workdir).resolve() / ".minerflow" / "errors" / (token or run_token())


def read_failures(workdir: str | os.PathLike[str], token: str | None = None) -> list[str]:
    """The one-line errors recorded in this invocation, first first."""
    path = failure_file(workdir, token)
    return path.read_text().splitlines() if path.is_file() else []


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MinerflowError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}{where}: {text}"


def _record_failure(workdir: str, task: str, exc: BaseException) -> None:
    path = failure_file(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # appends of one short line are atomic on POSIX
        handle.write(f"{task}: {_one_line(exc)}\n")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def _analysis(path: str) -> Any:
    """The analysis of ``path``, loaded once per process and file version."""
    source = Path(path).resolve()
    if not source.is_file():
        raise InputError(source, None, "an analysis config file (--analysis-file)")
    key = (str(source), source.stat().st_mtime_ns)
    if key not in _ANALYSES:
        _ANALYSES[key] = load_analysis(source)
    return _ANALYSES[key]


def _module_names(analysis: Any, source: Path) -> list[str]:
    """``ml_modules`` with relative ``.py`` paths taken relative to the analysis file."""
    names = []
    for name in ml_modules(analysis):
        if name.endswith(".py") and not Path(name).is_absolute():
            beside = source.parent / name
            name = str(beside) if beside.is_file() else name
        names.append(name)
    return names


_SHARED_PARAMS = (
    "workdir", "version", "ml_model", "analysis_file", "ml_model_settings", "config",
    "calibrators", "selector", "producers", "weight_column", "chunk_size",
)  # fmt: skip


class _MLTask(MinerflowTask):
    """Parameters and helpers every ML task shares (model, analysis, ops, folders)."""

    exclude_index = True
    step: ClassVar[str] = ""
    runs_in_model_sandbox: ClassVar[bool] = False  # True where the model's own code runs

    ml_model = luigi.Parameter(description="name of the MLModel (defined in ml_modules)")
    analysis_file = luigi.Parameter(
        default="analysis.yml",
        config_path={"section": "minerflow", "name": "analysis_file"},
        description="analysis config (.yml or .py) with datasets and ml_modules",
    )
    ml_model_settings = luigi.Parameter(
        default="", description="runtime settings 'key=value,list=1;2,flag' overriding derive"
    )
    config = luigi.Parameter(default="", description="config name; default: the only one")
    calibrators = luigi.Parameter(default="", description="comma-separated calibrators")
    selector = luigi.Parameter(default="", description="selector name")
    producers = luigi.Parameter(default="", description="comma-separated producers")
    weight_column = luigi.Parameter(
        default="weight", description="per-event weight column for stats and plots ('' = 1)"
    )
    chunk_size = luigi.IntParameter(
        default=100_000, significant=False, description="events read per chunk"
    )

    _build_dir: Path | None = None

    # ------------------------------------------------------------------ instances
    @cached_property
    def analysis_inst(self) -> Any:
        """The ``order.Analysis`` of ``--analysis-file``."""
        return _analysis(str(self.analysis_file))

    @cached_property
    def config_inst(self) -> Any:
        """The config named by ``--config`` (or the only one)."""
        return single_config(self.analysis_inst, str(self.config) or None)

    @cached_property
    def model_inst(self) -> MLModel:
        """The model, with ``--ml-model-settings`` applied, bound to the config."""
        source = Path(str(self.analysis_file)).resolve()
        return build_model(
            str(self.ml_model),
            self.analysis_inst,
            configs=[self.config_inst.name],
            parameters=str(self.ml_model_settings),
            ml_modules=_module_names(self.analysis_inst, source),
        )

    def requested_ops(self) -> OpChain:
        """The ops asked for on the command line."""
        return OpChain(_csv(self.calibrators), str(self.selector) or None, _csv(self.producers))

    def training_ops(self) -> OpChain:
        """The ops training uses (the model's ``training_*`` hooks)."""
        return OpChain.for_training(self.model_inst, self.config_inst, self.requested_ops())

    def ml_params(self) -> dict[str, Any]:
        """Parameter values to pass on to the tasks this one requires (Slurm ones included)."""
        shared = {name: getattr(self, name) for name in _SHARED_PARAMS}
        if isinstance(self, SlurmWorkflowMixin):
            return {**shared, **workflow_params(self)}
        return {**shared, **getattr(self, "job_params", {})}

    # ------------------------------------------------------------------ keys and folders
    def base_key(self) -> dict[str, Any]:
        """What every ML result depends on: the model, its settings, the analysis, config."""
        return {
            "task": self.get_task_family(),
            "ml_model": self.model_inst.cls_name,
            "settings": self.model_inst.significant_settings,
            "analysis": str(Path(str(self.analysis_file)).resolve()),
            "config": self.config_inst.name,
        }

    def model_dir(self) -> Path:
        """``<workdir>/<step>/<version>/<model>/<settings_repr>``."""
        cls_name, settings = self.model_inst.path_parts
        return (
            Path(str(self.workdir)).resolve() / self.step / str(self.version) / cls_name / settings
        )

    def output_dir(self) -> Path:
        """The task's folder below :meth:`model_dir` (readable parts, hash of the key)."""
        return self.model_dir() / folder_key(self.readable_data(), self._cached_key_data())

    def target(self, path: str, dir: bool = False) -> Any:
        """A target inside this task's folder (its temporary build folder while building)."""
        base = self._build_dir if self._build_dir is not None else self.output_dir()
        full = str(base / path)
        return law.LocalDirectoryTarget(full) if dir else law.LocalFileTarget(full)

    @contextlib.contextmanager
    def building(self, out: Path) -> Iterator[None]:
        """Make :meth:`target` point into the temporary folder ``out`` while it is built."""
        self._build_dir = out
        try:
            yield
        finally:
            self._build_dir = None

    def run(self) -> None:
        """Build the folder (in the model's sandbox for tasks that run model code there).

        A failure is recorded as one line for the CLI, then re-raised.
        """
        try:
            if self.runs_in_model_sandbox and self.run_in_model_sandbox():
                return
            super().run()
        except BaseException as exc:
            if not isinstance(exc, KeyboardInterrupt):
                _record_failure(str(self.workdir), self.get_task_family(), exc)
            raise

    # ------------------------------------------------------------------ sandbox
    def run_in_model_sandbox(self) -> bool:
        """Re-run this branch inside the model's sandbox if it is not the current one.

        Returns True when the sandboxed process built the output. A relative requirements
        path is taken relative to the file that defines the model.
        """
        model = self.model_inst
        module = sys.modules.get(type(model).__module__)
        base = (
            Path(module.__file__).parent if module and getattr(module, "__file__", None) else None
        )
        sandbox = resolve_sandbox(model.sandbox(self), base_dir=base)
        if sandbox.is_current or active_sandbox() == sandbox.key:
            return False
        if self.output_dir().exists():
            return True
        cache = Path(str(self.workdir)).resolve() / ".minerflow" / "sandboxes"
        params = json.dumps(self.to_str_params(only_significant=False))
        code = (
            "import sys; from minerflow.tasks.ml import run_task_here; "
            "sys.exit(run_task_here(sys.argv[1], sys.argv[2]))"
        )
        done = run_in_sandbox(
            sandbox,
            ["python", "-c", code, f"{type(self).__module__}:{type(self).__name__}", params],
            cache,
            cwd=os.getcwd(),
            check=False,
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            last = lines[-1].strip() if lines else f"exit code {done.returncode}"
            raise MinerflowError(f"sandbox {sandbox.key}: {last}")
        if not self.output_dir().exists():
            raise MinerflowError(f"sandbox {sandbox.key}: {self.output_dir()} was not written")
        return True


def run_task_here(cls_path: str, params_json: str) -> int:
    """Run one task's ``run()`` in this process (the sandbox side); errors as one line."""
    import importlib

    module_name, _, cls_name = cls_path.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    task = cls.from_str_params(json.loads(params_json))
    try:
        task.run()
    except MinerflowError as exc:
        print(_one_line(exc), file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- preparation
class PrepareMLEvents(_MLTask, MinerflowWorkflow, SlurmWorkflowMixin):
    """Per training dataset: events per fold (training ops applied) and statistics."""

    step = "ml_preparation"

    def create_branch_map(self) -> list[dict[str, str]]:
        """One branch per training dataset (sorted by name)."""
        names = sorted(d.name for d in self.model_inst.datasets(self.config_inst))
        return [{"dataset": name} for name in names]

    def model_dir(self) -> Path:
        """Shared by models with the same ``store_name`` (else per model, not per setting)."""
        model = self.model_inst
        name = model.store_name or model.cls_name
        return Path(str(self.workdir)).resolve() / self.step / str(self.version) / name

    def key_data(self) -> dict[str, Any]:
        """The dataset's files, the columns read, the folds and the training ops."""
        model, config = self.model_inst, self.config_inst
        dataset = config.get_dataset(self.branch_data["dataset"])
        try:
            files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in dataset_files(dataset)]  # fmt: skip
        except InputError:  # reported when the task runs
            files = []
        ops = self.training_ops()
        return {
            "task": self.get_task_family(),
            "analysis": str(Path(str(self.analysis_file)).resolve()),
            "config": config.name,
            "dataset": dataset.name,
            "files": files,
            "uses": sorted(str(r) for r in model.uses(config)),
            "folds": model.folds,
            "fold_id_columns": list(model.fold_id_columns),
            "fold_seed": model.fold_seed,
            "ops": ops.to_dict(),
            "weight_column": str(self.weight_column),
        }

    def readable_data(self) -> dict[str, Any]:
        """``dataset=<name>`` plus the training ops in use."""
        return {"dataset": self.branch_data["dataset"], **self.training_ops().readable()}

    def build(self, out: Path) -> None:
        """Write this dataset's fold files and ``stats.json``."""
        dataset = self.config_inst.get_dataset(self.branch_data["dataset"])
        ml_steps.prepare_dataset(
            self.model_inst, self.config_inst, dataset, self.training_ops(), out,
            chunk_size=int(self.chunk_size), weight_column=str(self.weight_column) or None,
        )  # fmt: skip


# --------------------------------------------------------------------------- training
class MLTraining(_MLTask, MinerflowWorkflow, SlurmWorkflowMixin):
    """One branch per fold; fold f's model trains on the prepared events of every other fold."""

    step = "ml_training"
    runs_in_model_sandbox = True

    @property
    def fold(self) -> int:
        """The fold this branch trains the model for (its held-out fold)."""
        return int(self.branch_data["fold"])

    def create_branch_map(self) -> list[dict[str, int]]:
        """``[{"fold": 0}, ..., {"fold": k-1}]``."""
        return [{"fold": f} for f in range(self.model_inst.folds)]

    def preparation(self) -> PrepareMLEvents:
        """The preparation workflow of every training dataset."""
        return PrepareMLEvents(**self.ml_params())

    def model_requirements(self) -> Any:
        """The model's own ``requires(task)``."""
        return self.model_inst.requires(self)

    def workflow_requires(self) -> dict[str, Any]:
        """Preparation (and the model's requirements) before any fold trains."""
        reqs = super().workflow_requires()
        reqs["events"] = self.preparation()
        if self.model_requirements():
            reqs["model"] = self.model_requirements()
        return reqs

    def requires(self) -> dict[str, Any]:
        """Preparation of all datasets and the model's own requirements."""
        reqs: dict[str, Any] = {"events": self.preparation()}
        if self.model_requirements():
            reqs["model"] = self.model_requirements()
        return reqs

    def prepared_dirs(self) -> dict[str, Path]:
        """Dataset name -> its preparation folder."""
        branches = self.preparation().get_branch_tasks().values()
        return {t.branch_data["dataset"]: t.output_dir() for t in branches}

    def key_data(self) -> dict[str, Any]:
        """The model key, the preparation folders it trains on, and the fold."""
        prepared = {name: path.name for name, path in sorted(self.prepared_dirs().items())}
        return {**self.base_key(), "prepared": prepared, "branch_data": self.branch_data}

    def readable_data(self) -> dict[str, Any]:
        """``fold=<f>of<k>``."""
        return {"fold": f"{self.fold}of{self.model_inst.folds}"}

    def train_input(self) -> dict[str, Any]:
        """``train``'s input: fold files of the other folds, stats, model requirements."""
        k = self.model_inst.folds
        events: dict[str, list[Any]] = {}
        stats: dict[str, Any] = {}
        for name, folder in self.prepared_dirs().items():
            events[name] = [
                law.LocalFileTarget(str(folder / ml_steps.fold_file_name(g, k)))
                for g in training_folds(self.fold, k)
            ]
            stats[name] = json.loads((folder / ml_steps.STATS_FILE).read_text())
        config = self.config_inst.name
        inputs: dict[str, Any] = {"events": {config: events}, "stats": {config: stats}}
        inputs["model"] = self.input().get("model", {}) if self.model_requirements() else {}
        return inputs

    def mlflow_params(self) -> dict[str, Any]:
        """The model's parameters plus config and training ops."""
        return {
            **self.model_inst.mlflow_params(),
            "config": self.config_inst.name,
            "ops": self.training_ops().to_dict(),
        }

    def build(self, out: Path) -> None:
        """Call ``model.train`` for this fold, tracked in MLflow under the model's parent run."""
        workdir = Path(str(self.workdir)).resolve()
        parent = os.environ.get("MINERFLOW_PARENT_RUN_ID") or ml_steps.ml_parent_run(
            workdir, self.model_dir(), f"{self.model_inst.cls_name} training",
            self.mlflow_params(),
        )  # fmt: skip
        with self.building(out):
            target = self.model_inst.output(self)
            ml_steps.train_fold(
                self.model_inst, self, self.train_input(), target, out,
                tracking_dir=workdir, params=self.mlflow_params(), parent_run_id=parent,
            )  # fmt: skip

    def open_models(self) -> list[Any]:
        """Every fold's trained model, in fold order (``open_model`` on ``output``)."""
        return [self.model_inst.open_model(self.model_inst.output(t)) for t in self.fold_tasks()]

    def fold_tasks(self) -> list[MLTraining]:
        """The branch task of every fold."""
        workflow = self if self.is_workflow() else self.as_workflow()
        return [workflow.get_branch_tasks()[f] for f in range(self.model_inst.folds)]


# --------------------------------------------------------------------------- evaluation
class MLEvaluation(_MLTask, MinerflowWorkflow, SlurmWorkflowMixin):
    """One branch per dataset: every event predicted by a model that never saw it."""

    step = "ml_evaluation"
    runs_in_model_sandbox = True
    datasets = luigi.Parameter(
        default="", description="comma-separated datasets to evaluate; default: all of the config"
    )

    def create_branch_map(self) -> list[dict[str, str]]:
        """One branch per requested dataset (default: every dataset of the config)."""
        names = _csv(self.datasets) or tuple(sorted(self.config_inst.datasets.names()))
        for name in names:
            if not self.config_inst.has_dataset(name):
                known = ", ".join(sorted(self.config_inst.datasets.names()))
                raise InputError("--datasets", name, f"a dataset of the config ({known})")
        return [{"dataset": name} for name in names]

    def training(self) -> MLTraining:
        """The training workflow (all folds)."""
        return MLTraining(**self.ml_params())

    def workflow_requires(self) -> dict[str, Any]:
        """All fold models before any dataset is evaluated."""
        reqs = super().workflow_requires()
        reqs["models"] = self.training()
        return reqs

    def requires(self) -> dict[str, Any]:
        """All fold models."""
        return {"models": self.training()}

    def evaluation_ops(self) -> OpChain:
        """The requested ops, producers through the model's ``evaluation_producers``."""
        return OpChain.for_evaluation(self.model_inst, self.config_inst, self.requested_ops())

    def key_data(self) -> dict[str, Any]:
        """Model key, the trained fold folders, the dataset's files and the evaluation ops."""
        dataset = self.config_inst.get_dataset(self.branch_data["dataset"])
        try:
            files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in dataset_files(dataset)]  # fmt: skip
        except InputError:
            files = []
        trained = [t.output_dir().name for t in self.training().fold_tasks()]
        return {
            **self.base_key(),
            "trained": trained,
            "dataset": dataset.name,
            "files": files,
            "ops": self.evaluation_ops().to_dict(),
        }

    def readable_data(self) -> dict[str, Any]:
        """``dataset=<name>`` plus the evaluation ops."""
        return {"dataset": self.branch_data["dataset"], **self.evaluation_ops().readable()}

    def build(self, out: Path) -> None:
        """Write ``mlcolumns_<i>.parquet`` per input file and ``files.json``."""
        dataset = self.config_inst.get_dataset(self.branch_data["dataset"])
        with self.building(out):
            models = self.training().open_models()
            ml_steps.evaluate_dataset(
                self.model_inst, self, self.config_inst, dataset, models, self.evaluation_ops(),
                out, chunk_size=int(self.chunk_size),
            )  # fmt: skip


# --------------------------------------------------------------------------- plots
class PlotMLResults(_MLTask):
    """ROC curves, train-vs-test output distributions, confusion matrix, learning curves."""

    step = "ml_plots"
    signal = luigi.Parameter(default="", description="positive class for a one-score ROC")
    score_columns = luigi.Parameter(
        default="", description="score columns, one or one per class in class order"
    )
    formats = luigi.Parameter(default="png,pdf", description="figure formats")
    job_params = luigi.DictParameter(
        default={},
        significant=False,
        description="workflow parameters of the steps before (workflow=slurm, slurm_cpus, ...)",
    )

    def training(self) -> MLTraining:
        """The training workflow (all folds)."""
        return MLTraining(**self.ml_params())

    def evaluation(self) -> MLEvaluation:
        """The evaluation of the training datasets."""
        names = sorted(d.name for d in self.model_inst.datasets(self.config_inst))
        return MLEvaluation(**self.ml_params(), datasets=",".join(names))

    def requires(self) -> dict[str, Any]:
        """The fold models and the out-of-fold evaluation of the training datasets."""
        return {"models": self.training(), "evaluation": self.evaluation()}

    def key_data(self) -> dict[str, Any]:
        """Model key, the evaluation folders and the plot options."""
        evaluated = [t.output_dir().name for t in self.evaluation().get_branch_tasks().values()]
        names = ("signal", "score_columns", "formats", "weight_column")
        options = {name: str(getattr(self, name)) for name in names}
        return {**self.base_key(), "evaluated": evaluated, "options": options}

    def readable_data(self) -> dict[str, Any]:
        """``formats=png,pdf`` (the rest is in the hash)."""
        return {"formats": str(self.formats)}

    def build(self, out: Path) -> None:
        """Draw every figure and log them with the metrics to the model's parent MLflow run."""
        from minerflow.tracking.runs import tracked_run

        training = self.training()
        folds = training.fold_tasks()
        evaluations = {
            t.branch_data["dataset"]: t.output_dir()
            for t in self.evaluation().get_branch_tasks().values()
        }
        histories = [ml_steps.read_history(t.output_dir()) for t in folds]
        with self.building(out):
            metrics = ml_steps.plot_results(
                self.model_inst, self, self.config_inst,
                evaluations=evaluations, prepared=training.prepared_dirs(),
                models=training.open_models(), histories=histories, out_dir=out,
                weight_column=str(self.weight_column) or None, signal=str(self.signal) or None,
                score_columns=_csv(self.score_columns), formats=_csv(self.formats),
                chunk_size=int(self.chunk_size),
            )  # fmt: skip
        workdir = Path(str(self.workdir)).resolve()
        parent = os.environ.get("MINERFLOW_PARENT_RUN_ID") or ml_steps.ml_parent_run(
            workdir, training.model_dir(), f"{self.model_inst.cls_name} training",
            training.mlflow_params(),
        )  # fmt: skip
        flat = {f"auc_{c}_{n.replace(' ', '')}": v
                for c, per in metrics["auc"].items() for n, v in per.items()}  # fmt: skip
        with tracked_run(
            ml_steps.TRACKING_STEP, workdir, run_name=f"{self.model_inst.cls_name} plots",
            params=training.mlflow_params(), parent_run_id=parent,
        ) as tracked:  # fmt: skip
            tracked.log_metrics(flat)
            for name in metrics["figures"]:
                tracked.log_artifact(out / name, "plots")
            (out / "mlflow_run.txt").write_text(tracked.run_id + "\n")
