"""Where runs are stored: the work dir's SQLite file, or ``MLFLOW_TRACKING_URI`` when set.

MLflow is imported lazily (it takes about 2 s) and made quiet: its database-migration and
pickle notices are for MLflow developers, not for someone running a workflow.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "EXPERIMENT_PREFIX",
    "artifact_root",
    "client",
    "experiment_id",
    "experiment_name",
    "import_mlflow",
    "tracking_uri",
]

EXPERIMENT_PREFIX = "minerflow-"


def tracking_uri(workdir: str | os.PathLike[str]) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<workdir>/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Artifact folder for new experiments: ``mlartifacts/`` beside a local SQLite file.

    Without it MLflow would put artifacts under the *current directory*. For a server
    (``http(s)://``) the server decides, so ``None``.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/:memory:"):
        return (Path(parsed.path).parent / "mlartifacts").resolve().as_uri()
    return None


def experiment_name(step: str) -> str:
    """One experiment per workflow step: ``minerflow-sampling``, ``minerflow-training``, ..."""
    return f"{EXPERIMENT_PREFIX}{step}"


@cache
def import_mlflow() -> ModuleType:
    """Import MLflow once, with its informational logging and warnings turned off."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    for name, level in (("mlflow", logging.WARNING), ("mlflow.pytorch", logging.ERROR)):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    return mlflow


def client(workdir: str | os.PathLike[str]) -> MlflowClient:
    """An MLflow client for the work dir's store (explicit, so worker processes never share
    the fluent API's global state)."""
    mlflow = import_mlflow()
    return mlflow.MlflowClient(tracking_uri(workdir))


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created if missing (safe when two processes race)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = artifact_root(mlflow_client.tracking_uri)
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=location))
    except import_mlflow().exceptions.MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)
