"""Doubly parameterised ratio r̂(x|θ0,θ1): exact antisymmetry, accuracy, both scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.ml.double_ratio import DoubleParameterizedRatioEstimator
from minerflow.ml.persistence import load_estimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics.limits import DensityEstimator, RatioEstimator
from minerflow.physics.sampling import SampleAugmenter
from ml_gaussian_toy import SMEAR, VARIANCE

FAST = TrainingSettings(
    n_epochs=8, batch_size=128, lr=1e-2, lr_final=1e-3, progress=False, device="cpu"
)
X_EVAL = np.linspace(-2.5, 2.5, 61)[:, None]
GRID = np.linspace(-1.0, 1.0, 7)[:, None]


def exact_log_r(x: np.ndarray, theta0: np.ndarray, theta1: np.ndarray) -> np.ndarray:
    """log N(x; θ0, V) − log N(x; θ1, V)."""
    return ((theta0 - theta1) * x - 0.5 * (theta0**2 - theta1**2)) / VARIANCE


def pair_sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """θ0, θ1 ~ U(-1, 1) per row; x from θ0 (y=0) or θ1 (y=1) with the latent z ~ N(θ, 1)."""
    theta0, theta1 = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    y = (np.arange(n) % 2).astype(float)
    z = rng.normal(np.where(y == 0, theta0, theta1), 1.0)
    return {
        "x": rng.normal(z, SMEAR)[:, None],
        "y": y,
        "theta0": theta0[:, None],
        "theta1": theta1[:, None],
        "r_xz": np.exp((theta0 - theta1) * z - 0.5 * (theta0**2 - theta1**2)),
        "t_xz0": (z - theta0)[:, None],
        "t_xz1": (z - theta1)[:, None],
    }


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    return pair_sample(6000, np.random.default_rng(5))


@pytest.fixture(scope="module")
def alices(sample: dict[str, np.ndarray]) -> DoubleParameterizedRatioEstimator:
    estimator = DoubleParameterizedRatioEstimator(n_hidden=(32, 32))
    estimator.train("alices", **sample, alpha=1.0, settings=FAST)
    return estimator


def test_alices_reaches_the_exact_ratio_and_both_scores(
    alices: DoubleParameterizedRatioEstimator,
) -> None:
    assert alices.method == "alices2"
    x = X_EVAL[:, 0][None, :]
    theta1 = np.array([[0.4]])
    log_r, score0 = alices.evaluate_log_likelihood_ratio(X_EVAL, GRID, theta1, evaluate_score=True)
    assert log_r.shape == (7, 61) and score0.shape == (7, 61, 1)
    assert np.mean((log_r - exact_log_r(x, GRID, 0.4)) ** 2) < 0.01
    assert np.mean((score0[..., 0] - (x - GRID) / VARIANCE) ** 2) < 0.05
    # t̂(x|θ1) is the θ0-score of the swapped call.
    _, score1 = alices.evaluate_log_likelihood_ratio(X_EVAL, theta1, GRID, evaluate_score=True)
    assert np.mean((score1[..., 0] - (x - 0.4) / VARIANCE) ** 2) < 0.05


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-2, 2), min_size=1, max_size=5),
    st.lists(st.floats(-2, 2), min_size=1, max_size=5),
)
def test_swapping_hypotheses_flips_the_sign_exactly(
    alices: DoubleParameterizedRatioEstimator, a: list[float], b: list[float]
) -> None:
    n = max(len(a), len(b))
    theta0 = np.resize(np.asarray(a), n)[:, None]
    theta1 = np.resize(np.asarray(b), n)[:, None]
    forward, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, theta0, theta1)
    backward, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, theta1, theta0)
    np.testing.assert_array_equal(forward, -backward)
    same, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, theta0, theta0)
    np.testing.assert_array_equal(same, 0.0)


def test_score_is_the_theta0_gradient(alices: DoubleParameterizedRatioEstimator) -> None:
    theta0, theta1 = np.array([[0.2]]), np.array([[-0.3]])
    _, score = alices.evaluate_log_likelihood_ratio(X_EVAL, theta0, theta1, evaluate_score=True)
    eps = 1e-2
    up, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, theta0 + eps, theta1)
    down, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, theta0 - eps, theta1)
    np.testing.assert_allclose(score[0, :, 0], (up - down)[0] / (2 * eps), atol=2e-3)


def test_paired_rows_and_the_default_denominator(
    alices: DoubleParameterizedRatioEstimator,
) -> None:
    theta0 = np.linspace(-1, 1, len(X_EVAL))[:, None]
    grid, grid_score = alices.evaluate_log_likelihood_ratio(
        X_EVAL, theta0, np.array([[0.1]]), evaluate_score=True
    )
    paired, paired_score = alices.evaluate_log_likelihood_ratio(
        X_EVAL, theta0, np.array([[0.1]]), test_all_combinations=False, evaluate_score=True
    )
    assert paired.shape == (61,) and paired_score.shape == (61, 1)
    np.testing.assert_allclose(paired, np.diag(grid), atol=1e-5)
    np.testing.assert_allclose(paired_score[:, 0], np.diag(grid_score[..., 0]), atol=1e-5)
    np.testing.assert_allclose(alices.evaluate_score(X_EVAL, theta0, [[0.1]]), paired_score)
    # Without θ1 the training denominators' mean is used, as a parameterised estimator would.
    assert abs(alices.reference[0]) < 0.05
    default, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, GRID)
    explicit, _ = alices.evaluate_log_likelihood_ratio(X_EVAL, GRID, alices.reference[None])
    np.testing.assert_array_equal(default, explicit)
    assert isinstance(alices, RatioEstimator) and not isinstance(alices, DensityEstimator)


@pytest.mark.parametrize("method", ["carl", "rolr2", "cascal"])
def test_other_methods_train(sample: dict[str, np.ndarray], method: str) -> None:
    estimator = DoubleParameterizedRatioEstimator(n_hidden=(16,))
    history = estimator.train(method, **sample, settings=FAST.replace(n_epochs=2))
    assert history.n_epochs == 2
    log_r, _ = estimator.evaluate_log_likelihood_ratio(X_EVAL, GRID, [[0.0]])
    assert np.isfinite(log_r).all()


def test_save_load_round_trip(alices: DoubleParameterizedRatioEstimator, tmp_path) -> None:
    folder = alices.save(tmp_path / "double")
    loaded = load_estimator(folder, device="cpu")
    assert isinstance(loaded, DoubleParameterizedRatioEstimator)
    np.testing.assert_array_equal(loaded.reference, alices.reference.astype(np.float64))
    for a, b in zip(
        alices.evaluate_log_likelihood_ratio(X_EVAL, GRID, [[0.3]], evaluate_score=True),
        loaded.evaluate_log_likelihood_ratio(X_EVAL, GRID, [[0.3]], evaluate_score=True),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::minerflow.physics.sampling.SamplingWarning")
def test_reference_file_more_ratios_sample_trains(reference_file) -> None:
    augmenter = SampleAugmenter(reference_file, test_split=0.5)
    rng = np.random.default_rng(8)
    sample = augmenter.sample_train_more_ratios(
        rng.normal(size=(10, 2)), np.zeros((1, 2)), 600, rng
    )
    estimator = DoubleParameterizedRatioEstimator(n_hidden=(16,))
    arrays = {k: sample[k] for k in ("x", "y", "theta0", "theta1", "r_xz", "t_xz0", "t_xz1")}
    estimator.train("alices", **arrays, settings=FAST.replace(n_epochs=2))
    grid = np.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]])
    x = sample["x"][:40]
    log_r, score = estimator.evaluate_log_likelihood_ratio(x, grid, evaluate_score=True)
    assert log_r.shape == (3, 40) and score.shape == (3, 40, 2)
    assert np.isfinite(log_r).all() and np.isfinite(score).all()
    same, _ = estimator.evaluate_log_likelihood_ratio(x, grid, grid)
    np.testing.assert_array_equal(same, 0.0)


# -- bad input ---------------------------------------------------------------------------


def test_bad_training_inputs(sample: dict[str, np.ndarray]) -> None:
    estimator = DoubleParameterizedRatioEstimator(n_hidden=(4,))
    without = {k: v for k, v in sample.items() if k != "t_xz1"}
    with pytest.raises(InputError, match="method alices2: t_xz1: expected a t_xz1 array"):
        estimator.train("alices", **without)
    with pytest.raises(InputError, match=r"method: expected one of alice, alices, carl, cascal"):
        estimator.train("sally", **sample)
    with pytest.raises(InputError, match="theta1: expected 1 columns, got 2"):
        estimator.train("carl", **{**sample, "theta1": np.zeros((6000, 2))})
    with pytest.raises(InputError, match="y: expected labels 0"):
        estimator.train("carl", **{**sample, "y": np.full(6000, 2.0)})
    with pytest.raises(InputError, match="r_xz: expected non-negative"):
        estimator.train("alice", **{**sample, "r_xz": -sample["r_xz"]})
    with pytest.raises(InputError, match="theta0: expected 6000 rows like x, got 3"):
        estimator.train("carl", **{**sample, "theta0": np.zeros((3, 1))})


def test_bad_evaluation_inputs(alices: DoubleParameterizedRatioEstimator) -> None:
    with pytest.raises(InputError, match="theta1: expected 1 or 7 rows like theta0, got 2"):
        alices.evaluate_log_likelihood_ratio(X_EVAL, GRID, np.zeros((2, 1)))
    with pytest.raises(InputError, match="theta0: expected 1 or 61 rows"):
        alices.evaluate_log_likelihood_ratio(X_EVAL, GRID, test_all_combinations=False)
    with pytest.raises(InputError, match="theta0: expected 1 columns, got 2"):
        alices.evaluate_log_likelihood_ratio(X_EVAL, np.zeros((3, 2)))
    with pytest.raises(InputError, match="net: expected a trained or loaded estimator"):
        DoubleParameterizedRatioEstimator().evaluate_log_likelihood_ratio(X_EVAL, GRID, GRID)
