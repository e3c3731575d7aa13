"""The ``minerflow`` command: one subcommand per module of this package.

Adding a command is one module under ``minerflow/cli/`` with a ``register(subparsers)``
function (which sets ``handler``) and one line in :data:`COMMANDS`. Modules import their heavy
libraries inside the handler, so ``minerflow --help`` stays fast. Errors meant for a user
(:class:`~minerflow.errors.MinerflowError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import minerflow
from minerflow.errors import MinerflowError

__all__ = ["COMMANDS", "build_parser", "console", "main"]

COMMANDS: tuple[str, ...] = (
    "sample",
    "train",
    "evaluate",
    "plot",
    "run",
    "demo",
    "ml",
    "export",
    "toy",
    "status",
    "ui",
)
"""Modules of ``minerflow.cli`` that each add one subcommand, in ``--help`` order."""

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="minerflow",
        description="Sampling, training, evaluation and plots for likelihood-free inference, "
        "step by step or as one law workflow, tracked in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"minerflow {minerflow.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"minerflow.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 file system error, 2 bad input,
    130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MinerflowError as exc:
        print(f"minerflow {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file system problem: say which file, no traceback
        print(f"minerflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"minerflow {args.command}: interrupted; finished outputs are kept, "
            "run the same command again to do the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def console() -> None:
    """The ``minerflow`` executable: :func:`main`, then a quick exit.

    Once the command is done and every ``atexit`` handler has run (log files flushed, child
    processes joined), tearing the interpreter down module by module only frees memory the
    operating system frees anyway; with torch, matplotlib and MLflow loaded that takes
    about 2 s, longer than a ``minerflow run`` with nothing to do.
    """
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
