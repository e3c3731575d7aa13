"""``minerflow status``: what a work dir holds, step by step, and where the MLflow store is."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from minerflow.cli.options import add_workdir
from minerflow.errors import InputError

__all__ = ["register"]

_NOT_STEPS = {"mlartifacts"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser(
        "status",
        help="list the outputs of a work dir and the MLflow store",
        description="List every step folder of a work dir: complete outputs with their build "
        "time, and temporary folders left by an interrupted or still-running task.",
    )
    add_workdir(parser)
    parser.set_defaults(handler=run)


def _describe(folder: Path) -> str:
    meta_path = folder / "task.json"
    if not meta_path.exists():
        return "complete"
    meta = json.loads(meta_path.read_text())
    seconds = float(meta.get("finished", 0.0)) - float(meta.get("started", 0.0))
    return f"complete ({seconds:.1f} s)"


def _lines(workdir: Path) -> list[str]:
    lines = []
    for step in sorted(p for p in workdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if step.name in _NOT_STEPS:
            continue
        for version in sorted(p for p in step.iterdir() if p.is_dir()):
            for folder in sorted(version.iterdir()):
                name = folder.name
                if name.endswith(".lock") or not folder.is_dir():
                    continue
                where = f"{step.name}/{version.name}/"
                if name.startswith("."):
                    target = name[1:].rsplit(".", 2)[0]
                    lines.append(f"{where}{target}  incomplete (interrupted or running)")
                else:
                    lines.append(f"{where}{name}  {_describe(folder)}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print one line per output folder, then the MLflow store."""
    from minerflow.tracking.store import tracking_uri

    workdir: Path = args.workdir
    if not workdir.is_dir():
        raise InputError(workdir, None, "an existing work directory (has anything run yet?)")
    print(f"work dir {workdir.resolve()}")
    lines = _lines(workdir)
    print("\n".join(f"  {line}" for line in lines) if lines else "  no step outputs yet")
    uri = tracking_uri(workdir)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        print(f"MLflow store {uri} (from MLFLOW_TRACKING_URI)")
    else:
        exists = (workdir / "mlflow.db").exists()
        state = f"view it with: minerflow ui --workdir {workdir}" if exists else "no runs yet"
        print(f"MLflow store {uri} ({state})")
    return 0
