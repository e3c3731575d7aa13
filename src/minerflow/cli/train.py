"""``minerflow train``: train the estimator of one sample folder (the seed's training step)."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.lfi_options import add_input_options, load_input
from minerflow.cli.options import positive_int

__all__ = ["register"]

_FLAGS = {
    "alpha": "training.alpha",
    "batch_size": "training.batch_size",
    "num_epochs": "training.num_epochs",
    "valid_split": "training.valid_split",
    "device": "training.device",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train one estimator on a sample folder (models/<method>_<run>/)",
        description="Train the estimator the input's 'estimator' key selects on TRAIN_FOLDER "
        "(a Samples_<method>_<run> folder) and save it to OUTPUT_DIR/models/<method>_<run>/.",
    )
    add_input_options(parser)
    parser.add_argument("--train-folder", type=Path, required=True, help="Samples_<m>_<i> folder")
    parser.add_argument("--output-dir", type=Path, required=True, help="work directory")
    parser.add_argument("--alpha", type=float, help="weight of the score term")
    parser.add_argument("--batch-size", type=positive_int, help="rows per batch")
    parser.add_argument("--num-epochs", type=positive_int, help="training epochs")
    parser.add_argument("--valid-split", type=float, help="fraction of rows for validation")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), help="torch device")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, train, print the model folder."""
    from minerflow.workflow.training import train

    workflow_input = load_input(args, _FLAGS)
    print(f"wrote {train(args.train_folder, workflow_input, args.output_dir)}")
    return 0
