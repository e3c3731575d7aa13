"""Argument types and options shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_workdir", "positive_int"]


def positive_int(text: str) -> int:
    """An integer ≥ 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_workdir(parser: argparse.ArgumentParser) -> None:
    """``--workdir W``: the folder holding every output and the MLflow store (default: work)."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("work"),
        help="work directory with the step outputs and the MLflow store (default: work)",
    )
