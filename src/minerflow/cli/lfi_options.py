"""Options shared by the workflow step commands: the input file, ``--set`` and flag overrides.

Every step flag is an override of one input-file key (``--num-epochs 5`` is
``--set training.num_epochs=5``), so the flags, ``--set`` and the file are validated together
by the input model, and the settings recorded with each output are the ones that were used.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["add_input_options", "load_input", "step_overrides"]


def add_input_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--input-file I`` (default: the built-in input) and repeatable ``--set key=value``."""
    parser.add_argument(
        "--input-file",
        type=Path,
        required=required,
        default=None,
        help="workflow input (input.yml); default: the built-in input for the toy simulator",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an input setting, e.g. --set training.num_epochs=5 (repeatable)",
    )


def step_overrides(args: argparse.Namespace, keys: Mapping[str, str]) -> list[str]:
    """``key=value`` overrides for the flags that were given (``keys``: flag dest -> key)."""
    out = []
    for dest, key in keys.items():
        value: Any = getattr(args, dest, None)
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(f"{key}={text}")
    return out


def load_input(args: argparse.Namespace, keys: Mapping[str, str] | None = None) -> Any:
    """The validated input with ``--set`` and the step flags applied (flags win)."""
    from minerflow.config.workflow_input import load_workflow_input

    flags = step_overrides(args, keys or {})
    return load_workflow_input(args.input_file, [*args.overrides, *flags])
