"""Argument types and options shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_workdir", "count", "positive_int"]


def _int_at_least(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1 (argparse reports anything else as a usage error)."""
    return _int_at_least(text, 1, "a positive integer")


def count(text: str) -> int:
    """An integer ≥ 0, such as a number of retries (anything else is a usage error)."""
    return _int_at_least(text, 0, "a count ≥ 0")


def add_workdir(parser: argparse.ArgumentParser) -> None:
    """``--workdir W``: the folder holding every output and the MLflow store (default: work)."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("work"),
        help="work directory with the step outputs and the MLflow store (default: work)",
    )
