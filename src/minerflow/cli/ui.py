"""``minerflow ui``: the MLflow UI on a work dir's store, reachable from this machine only."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from urllib.parse import urlparse

from minerflow.cli.options import add_workdir, positive_int
from minerflow.errors import InputError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ui`` subcommand."""
    parser = subparsers.add_parser(
        "ui",
        help="open the MLflow UI on the work dir's runs (127.0.0.1)",
        description="Serve the MLflow UI for the work dir's tracking store on 127.0.0.1 "
        "(use an SSH tunnel to view it from elsewhere).",
    )
    add_workdir(parser)
    parser.add_argument("--port", type=positive_int, default=5000, help="port (5000)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mlflow ui`` in the foreground until it stops or Ctrl-C."""
    from minerflow.tracking.store import tracking_uri

    uri = tracking_uri(args.workdir)
    if urlparse(uri).scheme in ("http", "https"):
        raise InputError("MLFLOW_TRACKING_URI", None, f"a local store; open {uri} in a browser")
    if uri.startswith("sqlite:///") and not (args.workdir / "mlflow.db").exists():
        raise InputError(args.workdir / "mlflow.db", None, "an MLflow store (has anything run?)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    cmd += ["--artifacts-destination", str((args.workdir / "mlartifacts").resolve())]
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        raise
