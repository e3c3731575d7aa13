"""``minerflow run``: the whole workflow as law tasks (Sample → Train → Evaluate → Plot)."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.lfi_options import add_input_options
from minerflow.cli.options import add_workdir, positive_int

__all__ = ["add_run_options", "register", "report"]


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
    parser.set_defaults(handler=run)


def report(result: object, workdir: Path) -> None:
    """Print the run summary and how to open the MLflow UI."""
    print(result.summary())  # type: ignore[attr-defined]
    print(f"open the MLflow UI: minerflow ui --workdir {workdir}")


def run(args: argparse.Namespace) -> int:
    """Run the tasks and print the summary."""
    from minerflow.tasks.lfi import run_workflow

    result = run_workflow(
        args.workdir,
        data_file=args.data_file,
        input_file=args.input_file,
        overrides=args.overrides,
        workers=args.workers,
        version=args.version,
        toy_events=args.toy_events,
        toy_seed=args.toy_seed,
    )
    report(result, args.workdir)
    return 0
