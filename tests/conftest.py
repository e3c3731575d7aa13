"""Shared fixtures: the reference MadMiner file (read in place, never copied) and seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def reference_file() -> Path:
    """The real MadMiner event file ``../shared/data/dummy_data.h5`` (read-only)."""
    path = SHARED / "data" / "dummy_data.h5"
    if not path.exists():
        pytest.fail(f"reference file missing: {path}")
    return path


@pytest.fixture(scope="session")
def reference_input_file() -> Path:
    """The seed workflow's ``../shared/data/input.yml`` (read-only)."""
    return SHARED / "data" / "input.yml"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test is reproducible."""
    return np.random.default_rng(20261122)


@pytest.fixture(autouse=True)
def _isolated_mlflow_uri():
    """Each test starts and ends with MLflow's global tracking URI and its variable as found.

    ``mlflow.set_tracking_uri`` is process-global and also exports ``MLFLOW_TRACKING_URI``;
    one test's store (or server) must not receive the runs of the tests after it.
    """
    import os
    import sys

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
