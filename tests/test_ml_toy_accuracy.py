"""Every ratio method and SALLY on the toy simulator, against its exact log r and score.

Slow (a minute or two on two cores): 10⁵ training rows per method. Run with
``pytest -m slow tests/test_ml_toy_accuracy.py -s`` to see the table.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.score import ScoreEstimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics import toy
from minerflow.physics.sampling import SampleAugmenter

pytestmark = pytest.mark.slow

METHODS = ("carl", "rolr", "alice", "alices", "rascal", "cascal")
SETTINGS = TrainingSettings(n_epochs=10, progress=False, seed=4)
SM = np.zeros((1, 2))


@pytest.fixture(scope="module")
def augmenter(tmp_path_factory: pytest.TempPathFactory) -> SampleAugmenter:
    path = toy.write_event_file(tmp_path_factory.mktemp("toy") / "toy.h5", 200_000, seed=11)
    return SampleAugmenter(path, test_split=0.2, validation_split=0.0)


@pytest.fixture(scope="module")
def held_out(augmenter: SampleAugmenter) -> tuple[np.ndarray, np.ndarray]:
    """Test-partition events at the SM and a 5x5 θ grid over the toy's range."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = augmenter.sample_test(SM, 2000, np.random.default_rng(12))["x"].astype(np.float64)
    axis = np.linspace(-1.0, 1.0, 5)
    return x, np.array([[a, b] for a in axis for b in axis])


def test_ratio_methods_against_exact_log_r(augmenter, held_out) -> None:
    rng = np.random.default_rng(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = augmenter.sample_train_ratio(rng.uniform(-1, 1, (1000, 2)), SM, 100_000, rng)
    x, grid = held_out
    truth = toy.log_likelihood_ratio(x, grid, SM)
    mse = {}
    for method in METHODS:
        estimator = ParameterizedRatioEstimator()
        history = estimator.train(
            method, sample["x"], sample["y"], sample["theta0"], sample["r_xz"], sample["t_xz"],
            alpha=1.0, settings=SETTINGS,
        )  # fmt: skip
        log_r, _ = estimator.evaluate_log_likelihood_ratio(x, grid)
        mse[method] = (float(np.mean((log_r - truth) ** 2)), history.wall_time)
    print(f"\nMSE of log r̂ vs exact log r ({len(x)} events x {len(grid)} θ; var {truth.var():.3f})")
    for method, (value, seconds) in mse.items():
        print(f"  {method:7s} {value:.4f}   ({seconds:.1f} s)")
    for method in ("alices", "rascal", "cascal"):
        assert mse[method][0] < mse["carl"][0], method
    assert min(value for value, _ in mse.values()) <= 0.05


def test_sally_against_exact_score(augmenter, held_out) -> None:
    rng = np.random.default_rng(14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = augmenter.sample_train_local(SM, 100_000, rng)
    estimator = ScoreEstimator()
    estimator.train("sally", sample["x"], sample["t_xz"], settings=SETTINGS)
    x, _ = held_out
    estimate = estimator.evaluate_score(x)
    truth = toy.score(x, SM)[0]
    correlations = [np.corrcoef(estimate[:, k], truth[:, k])[0, 1] for k in range(2)]
    print(f"\nSALLY: correlation of t̂ with the exact score per component {correlations}")
    assert min(correlations) >= 0.98
