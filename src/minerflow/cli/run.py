"""``minerflow run``: the whole workflow as law tasks (Sample → Train → Evaluate → Plot).

``--workflow slurm`` runs the branches as Slurm jobs (resources from the input file's
``resources:`` section and the ``--cpus``/``--memory``/... options), ``--sweep
alpha=1,10,100`` trains and evaluates every point of a hyper-parameter sweep.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from minerflow.cli.lfi_options import add_input_options
from minerflow.cli.options import add_workdir, count, positive_int

__all__ = ["add_run_options", "add_workflow_options", "job_params", "register", "report"]


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--workdir``, ``--workers``, ``--version`` and the toy settings."""
    add_workdir(parser)
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="parallel local workers (default: 2)"
    )
    parser.add_argument("--version", default="v1", help="output version (default: v1)")
    parser.add_argument(
        "--toy-events", type=positive_int, default=100_000, help="toy events without --data-file"
    )
    parser.add_argument("--toy-seed", type=int, default=0, help="toy seed (default: 0)")


def add_workflow_options(parser: argparse.ArgumentParser) -> None:
    """``--workflow {local,slurm}``, ``--retries`` and the batch resource options."""
    from minerflow.config.resources import add_resource_arguments

    parser.add_argument(
        "--workflow",
        choices=("local", "slurm"),
        default="local",
        help="run the branches here (local, default) or as Slurm jobs (slurm)",
    )
    parser.add_argument(
        "--retries",
        type=count,
        default=None,
        help="resubmissions of a failed Slurm job (default: 2)",
    )
    add_resource_arguments(parser)


def job_params(args: argparse.Namespace) -> dict[str, Any]:
    """Task parameters of ``--workflow``, ``--retries`` and the resource options."""
    from minerflow.config.resources import resource_overrides
    from minerflow.tasks.remote import slurm_task_params

    return slurm_task_params(args.workflow, resource_overrides(args), args.retries)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run the whole workflow (reuses every finished output)",
        description="Run sampling, training (one task per method and sampling run, in "
        "parallel), evaluation and plots as law tasks. Without --data-file the toy simulator's "
        "events are generated; without --input-file the built-in input is used.",
    )
    parser.add_argument("--data-file", type=Path, default=None, help="MadMiner event file")
    add_input_options(parser)
    add_run_options(parser)
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="train and evaluate every value of a training setting, e.g. --sweep alpha=1,10,100 "
        "(repeatable: the product of the values); writes a table and plot instead of the plots",
    )
    add_workflow_options(parser)
    parser.set_defaults(handler=run)


def report(result: object, workdir: Path) -> None:
    """Print the run summary and how to open the MLflow UI."""
    print(result.summary())  # type: ignore[attr-defined]
    print(f"open the MLflow UI: minerflow ui --workdir {workdir}")


def run(args: argparse.Namespace) -> int:
    """Run the tasks and print the summary."""
    from minerflow.cli.task_log import task_log
    from minerflow.config.resources import resource_overrides
    from minerflow.tasks.lfi import run_workflow

    with task_log(args.workdir):  # tracebacks go to the work dir's log, one line to stderr
        result = run_workflow(
            args.workdir,
            data_file=args.data_file,
            input_file=args.input_file,
            overrides=args.overrides,
            workers=args.workers,
            version=args.version,
            toy_events=args.toy_events,
            toy_seed=args.toy_seed,
            workflow=args.workflow,
            resources=resource_overrides(args),
            retries=args.retries,
            sweep=args.sweep,
        )
    report(result, args.workdir)
    return 0
