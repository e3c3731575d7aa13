"""``minerflow ml``: train, evaluate and plot an MLModel (k-fold, out-of-fold) with law tasks.

``minerflow ml train --ml-model toy_classifier --version v1 --analysis analysis.yml
--workers 3`` runs preparation and one training per fold in parallel; ``evaluate`` adds the
row-aligned predictions of every dataset, ``plot`` the figures; ``demo`` writes toy datasets
and runs the example model through all of it. The same tasks run with
``law run minerflow.MLTraining --ml-model ... --analysis-file ...``. With ``--workflow slurm``
the folds (and the preparation and evaluation branches) run as Slurm jobs.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from minerflow.cli.options import add_workdir, positive_int
from minerflow.cli.run import add_workflow_options, job_params

__all__ = ["DEMO_EXAMPLE", "register"]

DEMO_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "toy_classifier.py"
_STEPS = {
    "train": ("MLTraining", "prepare the events and train one model per fold"),
    "evaluate": ("MLEvaluation", "predict every event with a model that never saw it"),
    "plot": ("PlotMLResults", "ROC, train-vs-test outputs, confusion matrix, learning curves"),
}


def _common(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    parser.add_argument(
        "--ml-model", required=model_required, help="model name (derived in an ml_modules file)"
    )
    parser.add_argument("--version", default="v1", help="output version (v1)")
    parser.add_argument(
        "--analysis", type=Path, default=Path("analysis.yml"),
        help="analysis config with datasets and ml_modules (analysis.yml)",
    )  # fmt: skip
    add_workdir(parser)
    parser.add_argument("--workers", type=positive_int, default=1, help="tasks run in parallel (1)")
    parser.add_argument(
        "--settings", default="", metavar="K=V,...",
        help="model settings overriding derive: 'epochs=5,layers=64;64,flag'",
    )  # fmt: skip
    parser.add_argument("--config", default="", help="config name (default: the only one)")
    parser.add_argument("--calibrators", default="", help="comma-separated calibrators")
    parser.add_argument("--selector", default="", help="selector name")
    parser.add_argument("--producers", default="", help="comma-separated producers")
    parser.add_argument(
        "--weight-column", default="weight", help="event weight column ('' for unit weights)"
    )
    parser.add_argument(
        "--chunk-size", type=positive_int, default=100_000, help="events per chunk (100000)"
    )
    add_workflow_options(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--print-output", action="store_true",
        help="print the output folders of this step and the steps it needs; run nothing",
    )  # fmt: skip
    what.add_argument(
        "--remove-output", action="store_true",
        help="delete this step's outputs (not those of earlier steps); run nothing",
    )  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ml`` with its subcommands ``train``, ``evaluate``, ``plot`` and ``demo``."""
    parser = subparsers.add_parser(
        "ml",
        help="train/evaluate/plot a columnflow-style MLModel (k-fold, out-of-fold)",
        description="Run an MLModel through preparation, k-fold training, out-of-fold "
        "evaluation and plots, as law tasks with N local workers, tracked in MLflow.",
    )
    steps = parser.add_subparsers(dest="ml_command", metavar="STEP", required=True)
    for name, (_, help_text) in _STEPS.items():
        step = steps.add_parser(name, help=help_text, description=help_text)
        _common(step)
        if name == "evaluate":
            step.add_argument("--datasets", default="", help="datasets to evaluate (default: all)")
        if name == "plot":
            step.add_argument("--signal", default="", help="positive class of a one-score ROC")
            step.add_argument("--score-columns", default="", help="score columns in class order")
            step.add_argument("--formats", default="png,pdf", help="figure formats (png,pdf)")
        step.set_defaults(handler=run, step=name)
    demo = steps.add_parser(
        "demo",
        help="toy datasets + the example classifier through every step",
        description="Write toy signal/background datasets into <workdir>/ml_demo and run the "
        "example model (examples/toy_classifier.py, k = 3) through train, evaluate and plot.",
    )
    _common(demo, model_required=False)
    demo.add_argument(
        "--n-events", type=positive_int, default=20_000, help="events per dataset (20000)"
    )
    demo.add_argument(
        "--example", type=Path, default=DEMO_EXAMPLE, help="model file (examples/toy_classifier.py)"
    )
    demo.set_defaults(handler=run_demo, step="demo", ml_model="toy_classifier", workers=3)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workdir": str(args.workdir),
        "version": args.version,
        "ml_model": args.ml_model,
        "analysis_file": str(args.analysis),
        "ml_model_settings": args.settings,
        "config": args.config,
        "calibrators": args.calibrators,
        "selector": args.selector,
        "producers": args.producers,
        "weight_column": args.weight_column,
        "chunk_size": args.chunk_size,
    }


def _task(args: argparse.Namespace) -> Any:
    """A fresh task: luigi caches instances, and a law workflow yields its branches once."""
    from luigi.task_register import Register

    from minerflow.tasks import ml

    Register.clear_instance_cache()
    params = _params(args)
    jobs = job_params(args)
    if args.step == "evaluate":
        return ml.MLEvaluation(**params, **jobs, datasets=args.datasets)
    if args.step == "plot":
        names = ("signal", "score_columns", "formats")
        options = {n: getattr(args, n) for n in names}
        return ml.PlotMLResults(**params, **options, job_params=jobs)
    return ml.MLTraining(**params, **jobs)


def _folders(task: Any) -> list[Path]:
    """The output folders of a task (every branch of a workflow)."""
    import law

    if isinstance(task, law.BaseWorkflow) and task.is_workflow():
        return [t.output_dir() for t in task.get_branch_tasks().values()]
    return [task.output_dir()]


def _print_output(task: Any) -> None:
    from minerflow.tasks.base import walk_tasks
    from minerflow.tasks.ml import _MLTask

    for current in walk_tasks([task]):
        is_workflow = getattr(current, "is_workflow", lambda: False)()
        if isinstance(current, _MLTask) and not is_workflow:
            folder = current.output_dir()
            print(f"{'done   ' if folder.exists() else 'missing'} {folder}")


def _remove_output(task: Any) -> None:
    removed = 0
    for folder in _folders(task):
        if folder.exists():
            shutil.rmtree(folder)
            print(f"removed {folder}")
            removed += 1
    print(f"removed {removed} output folder(s) of {task.get_task_family()}")


def execute(task: Any, workdir: Path, workers: int) -> list[Path]:
    """Build ``task`` with ``workers`` local workers; print the summary; return its folders.

    A failed task raises ``MinerflowError`` with the first recorded one-line error.
    """
    import logging
    import time

    from minerflow.errors import MinerflowError
    from minerflow.tasks.base import (
        build_locally,
        collect_records,
        format_summary,
        new_run_token,
        walk_tasks,
    )
    from minerflow.tasks.ml import WORKER_MODULES, read_failures
    from minerflow.tasks.remote import slurm_summary

    token = new_run_token()
    started = time.time()
    # luigi logs each failure with its traceback; the CLI reports the one-line error instead
    interface = logging.getLogger("luigi-interface")
    previous = interface.level
    interface.setLevel(logging.CRITICAL)
    try:
        ok = build_locally(
            [task],
            workers,
            WORKER_MODULES,
            log_level="CRITICAL",
        )
    finally:
        interface.setLevel(previous)
    print(format_summary(collect_records([task], token), time.time() - started))
    workflows = [t for t in walk_tasks([task]) if getattr(t, "is_workflow", lambda: False)()]
    if any(t.workflow == "slurm" for t in workflows):
        print(slurm_summary(workflows))
    if not ok:
        failures = read_failures(workdir, token)
        raise MinerflowError(failures[0] if failures else "a task failed (see the law logs)")
    return _folders(task)


def run(args: argparse.Namespace) -> int:
    """Run (or print, or remove) the outputs of one step."""
    task = _task(args)
    task.model_inst  # noqa: B018  (bad model names, settings, analysis files fail here)
    if args.print_output:
        _print_output(task)
        return 0
    if args.remove_output:
        _remove_output(task)
        return 0
    for folder in execute(task, args.workdir, args.workers):
        print(folder)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Write the toy analysis (once) and run the example model through every step."""
    from minerflow.errors import InputError
    from minerflow.physics.toy_events import write_toy_analysis

    example = Path(args.example).resolve()
    if not example.is_file():
        raise InputError(example, "--example", "the example model file")
    base = Path(args.workdir) / "ml_demo" / f"toy_{args.n_events}"
    config = base / "analysis.yml"
    if not config.is_file():
        write_toy_analysis(base, args.n_events, seed=1, n_files=2, ml_modules=[str(example)])
    args.analysis = config
    for step in ("evaluate", "plot"):
        args.step = step
        args.datasets, args.signal, args.score_columns = "", "", ""
        args.formats = "png,pdf"
        task = _task(args)
        if args.print_output:
            _print_output(task)
            continue
        if args.remove_output:
            _remove_output(task)
            continue
        folders = execute(task, args.workdir, args.workers)
    if not (args.print_output or args.remove_output):
        print(f"plots: {folders[0]}")
    return 0
