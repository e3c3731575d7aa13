"""``minerflow sample``: draw the training samples of every method (the seed's sampling step)."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.lfi_options import add_input_options, load_input
from minerflow.cli.options import positive_int

__all__ = ["register"]

_FLAGS = {
    "n_samples_train": "sampling.n_samples_train",
    "n_sampling_runs": "sampling.n_sampling_runs",
    "nuisance": "sampling.nuisance",
    "test_split": "sampling.test_split",
    "seed": "sampling.seed",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample`` subcommand."""
    parser = subparsers.add_parser(
        "sample",
        help="draw augmented training samples (Samples_<method>_<run>/)",
        description="Draw the training samples of every method and sampling run of the input "
        "into OUTPUT_DIR/Samples_<method>_<run>/ (MadMiner file names).",
    )
    parser.add_argument("--data-file", type=Path, required=True, help="MadMiner event file")
    add_input_options(parser)
    parser.add_argument("--output-dir", type=Path, required=True, help="work directory")
    parser.add_argument("--n-samples-train", type=positive_int, help="samples per method")
    parser.add_argument(
        "--n-sampling-runs", type=positive_int, help="independent samples (and models) per method"
    )
    parser.add_argument(
        "--nuisance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample nuisance parameters too (default: no)",
    )
    parser.add_argument("--test-split", type=float, help="fraction of events kept for testing")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, draw, print the folders."""
    from minerflow.workflow.sampling import sample

    workflow_input = load_input(args, _FLAGS)
    for folder in sample(args.data_file, workflow_input, args.output_dir):
        print(f"wrote {folder}")
    return 0
