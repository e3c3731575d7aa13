"""Where runs are stored: the work dir's SQLite file, or ``MLFLOW_TRACKING_URI`` when set.

MLflow is imported lazily (it takes about 2 s) and made quiet: its database-migration and
pickle notices are for MLflow developers, not for someone running a workflow.

A new SQLite store is created (and an old one migrated) by the first client that opens it.
Several processes doing that at once collide in MLflow's schema migrations ("duplicate
column name"), so :func:`client` opens the store under an ``fcntl`` lock on
``<store>.lock`` beside the database file: every user of the tracking layer is safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from minerflow.io.locks import file_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "EXPERIMENT_PREFIX",
    "artifact_root",
    "client",
    "experiment_id",
    "experiment_name",
    "import_mlflow",
    "sqlite_path",
    "tracking_uri",
]

EXPERIMENT_PREFIX = "minerflow-"


def tracking_uri(workdir: str | os.PathLike[str]) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<workdir>/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), ``None`` for other stores.

    SQLAlchemy's form: ``sqlite:////abs/mlflow.db`` is absolute, ``sqlite:///rel.db`` relative
    to the current directory; an in-memory database has no file.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not uri.startswith("sqlite:///"):
        return None
    name = parsed.path[1:]  # the third slash separates the (empty) host from the path
    if name in ("", ":memory:"):
        return None
    return Path(name).resolve()


def artifact_root(uri: str) -> str | None:
    """Artifact folder for new experiments: ``mlartifacts/`` beside a local SQLite file.

    Without it MLflow would put artifacts under the *current directory*. For a server
    (``http(s)://``) the server decides, so ``None``.
    """
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts").as_uri() if path is not None else None


def experiment_name(step: str) -> str:
    """One experiment per workflow step: ``minerflow-sampling``, ``minerflow-training``, ..."""
    return f"{EXPERIMENT_PREFIX}{step}"


@cache
def import_mlflow() -> ModuleType:
    """Import MLflow once, with its informational logging and warnings turned off."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # a database connection must not cross a fork: luigi's worker processes inherit this
    # process's store, so every operation opens its own (cheap for SQLite)
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    import mlflow

    for name, level in (("mlflow", logging.WARNING), ("mlflow.pytorch", logging.ERROR)):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    return mlflow


def client(workdir: str | os.PathLike[str]) -> MlflowClient:
    """An MLflow client for the work dir's store (explicit, so worker processes never share
    the fluent API's global state).

    Opening the client creates or migrates a SQLite store; that happens under the lock
    ``<store>.lock`` (see the module docstring), so parallel first uses do not collide.
    """
    mlflow = import_mlflow()
    uri = tracking_uri(workdir)
    database = sqlite_path(uri)
    if database is None:
        return mlflow.MlflowClient(uri)
    with file_lock(database.with_name(f"{database.name}.lock")):
        if not database.exists():
            _copy_empty_store(database)
        return mlflow.MlflowClient(uri)


def _copy_empty_store(database: Path) -> None:
    """Create ``database`` as a copy of an empty store kept in the user's cache.

    MLflow builds a new SQLite store by running its ~70 schema migrations one by one (about
    1.5 s); for one MLflow version they always give the same empty database (up to the order
    of a table's constraints), so it is built once per version, kept in
    ``$XDG_CACHE_HOME/minerflow`` (else ``~/.cache/minerflow``) and copied. The copy's default
    experiment gets an artifact folder beside it (MLflow's would lie under
    the current directory). Without a writable cache MLflow creates the store as usual.
    """
    import shutil
    import sqlite3

    mlflow = import_mlflow()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minerflow"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            building = template.with_name(f".{template.name}.{os.getpid()}.tmp")
            mlflow.MlflowClient(f"sqlite:///{building}").search_experiments()
            os.replace(building, template)
        database.parent.mkdir(parents=True, exist_ok=True)
        copy = database.with_name(f".{database.name}.{os.getpid()}.tmp")
        shutil.copyfile(template, copy)
    except OSError:
        return
    with contextlib.closing(sqlite3.connect(copy)) as connection, connection:
        location = database.parent / "mlartifacts" / "0"
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(location),)
        )
    os.replace(copy, database)


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
