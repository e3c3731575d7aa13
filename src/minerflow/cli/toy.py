"""``minerflow toy``: write an event file of the toy simulator (exact likelihood known)."""

from __future__ import annotations

import argparse
from pathlib import Path

from minerflow.cli.options import positive_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``toy`` subcommand."""
    parser = subparsers.add_parser(
        "toy",
        help="write a toy event file in the MadMiner layout",
        description="Generate events of the toy simulator (two parameters, exact likelihood) "
        "and write them as a MadMiner event file.",
    )
    parser.add_argument("--output", required=True, type=Path, help="event file to write (.h5)")
    parser.add_argument(
        "--n-events", type=positive_int, default=100_000, help="number of events (100000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate and write the file atomically; print where it went."""
    from minerflow.physics import toy

    path = toy.write_event_file(args.output, n_events=args.n_events, seed=args.seed)
    print(f"wrote {path} ({args.n_events} toy events, seed {args.seed})")
    return 0
