"""``minerflow evaluate``: limits, predictions and Fisher information of one trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.lfi_options import add_input_options, load_input
from minerflow.cli.options import positive_int

__all__ = ["register"]

_FLAGS = {"luminosity": "evaluation.luminosity", "n_samples_test": "evaluation.n_samples_test"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate one model: expected limits, log r / scores, Fisher information",
        description="Evaluate MODEL_DIR on the test events of DATA_FILE into "
        "OUTPUT_DIR/results/<model>/ and the model-independent limits into OUTPUT_DIR/rates/; "
        "with several sampling runs, once every run's model of the method is there, their "
        "ensemble into OUTPUT_DIR/results/<method>_ensemble/.",
    )
    parser.add_argument("--data-file", type=Path, required=True, help="MadMiner event file")
    parser.add_argument("--model-dir", type=Path, required=True, help="models/<m>_<i> folder")
    add_input_options(parser)
    parser.add_argument("--output-dir", type=Path, required=True, help="work directory")
    parser.add_argument("--luminosity", type=float, help="integrated luminosity in pb^-1")
    parser.add_argument("--n-samples-test", type=positive_int, help="test events to evaluate")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, evaluate, print the result folders (``reused`` for a current ``rates/``)."""
    from minerflow.workflow.evaluation import evaluate

    workflow_input = load_input(args, _FLAGS)
    if args.luminosity is not None and workflow_input.asymptotic_limits.luminosity is not None:
        workflow_input = load_input(args, {**_FLAGS, "luminosity": "asymptotic_limits.luminosity"})
    done = evaluate(args.data_file, args.model_dir, workflow_input, args.output_dir)
    print(f"wrote {done.result}")
    print(f"{'reused' if done.reference_reused else 'wrote'} {done.reference}")
    if done.ensemble is not None:
        print(f"wrote {done.ensemble}")
    return 0
