"""Test work dirs that start with an empty, already migrated MLflow SQLite store.

A new store runs MLflow's schema migrations (about a hundred, 8-10 s on a busy machine), the
largest part of a module's setup. The store is migrated once, kept in pytest's cache keyed by
the MLflow version (which fixes the schema), and copied into each new work dir; with the
cache off (``-p no:cacheprovider``) once per session. MLflow checks the schema of every store
it opens, so a stale copy would fail loudly, not silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minerflow.io.locks import file_lock
from minerflow.tracking.store import import_mlflow

__all__ = ["fresh_workdir"]


def _template(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    mlflow = import_mlflow()
    key = f"mlflow-store-{mlflow.__version__}"
    cache = getattr(config, "cache", None)
    folder = cache.mkdir(key) if cache is not None else tmp_path_factory.getbasetemp() / key
    database = folder / "mlflow.db"
    with file_lock(folder / "template.lock"):  # parallel sessions build it once
        if not database.is_file():
            building = folder / "building.db"
            building.unlink(missing_ok=True)
            mlflow.MlflowClient(f"sqlite:///{building}")  # creates and migrates the schema
            building.replace(database)
    return database


def fresh_workdir(
    config: pytest.Config, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Path:
    """A new empty work dir ``name`` whose ``mlflow.db`` is a copy of the migrated template."""
    workdir = tmp_path_factory.mktemp(name)
    shutil.copyfile(_template(config, tmp_path_factory), workdir / "mlflow.db")
    return workdir
