"""``minerflow demo``: the whole workflow on the toy simulator with the built-in input.

What ``make demo`` runs: toy events, every method of the seed input (alice, alices, sally),
limits against the exact truth, plots; a second call reuses everything.
"""

from __future__ import annotations

import argparse

from minerflow.cli.options import add_workdir, positive_int

__all__ = ["register"]

DEMO_TOY_EVENTS = 60_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole workflow on the toy simulator (a few minutes)",
        description="Generate toy events and run sampling, training, evaluation and plots "
        "with the built-in input (the seed workflow's methods), tracked in MLflow.",
    )
    add_workdir(parser)
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="parallel local workers (default: 2)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the workflow (task logs to the work dir's log file) and print where the plots and the
    MLflow store are."""
    from minerflow.cli.run import report
    from minerflow.cli.task_log import task_log
    from minerflow.tasks.lfi import run_workflow

    with task_log(args.workdir):
        result = run_workflow(args.workdir, workers=args.workers, toy_events=DEMO_TOY_EVENTS)
    report(result, args.workdir)
    return 0
