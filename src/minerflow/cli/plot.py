"""``minerflow plot``: the figures of everything evaluated in a work directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.lfi_options import add_input_options, load_input

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plot`` subcommand."""
    parser = subparsers.add_parser(
        "plot",
        help="draw the figures of the evaluated models (plots/)",
        description="Draw the figures the input's 'plotting' section asks for from "
        "OUTPUT_DIR/results/, OUTPUT_DIR/rates/ and OUTPUT_DIR/models/ into OUTPUT_DIR/plots/.",
    )
    add_input_options(parser)
    parser.add_argument("--output-dir", type=Path, required=True, help="work directory")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, draw, say where the figures are."""
    from minerflow.workflow.plotting import plot

    written = plot(load_input(args), args.output_dir)
    folder = written[0].parent if written else Path(args.output_dir) / "plots"
    print(f"wrote {len(written)} files to {folder}")
    return 0
