"""Conditional flow p̂(x|θ) (NDE, SCANDAL) against the exact Gaussian and toy densities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.ml.blocks import evaluation_blocks
from minerflow.ml.density import LikelihoodEstimator
from minerflow.ml.persistence import load_estimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics import toy
from minerflow.physics.sampling import SampleAugmenter
from ml_gaussian_toy import SMEAR, VARIANCE

FAST = TrainingSettings(
    n_epochs=8, batch_size=128, lr=1e-2, lr_final=1e-3, progress=False, device="cpu"
)
X_EVAL = np.linspace(-2.5, 2.5, 81)[:, None]
THETA_EVAL = np.linspace(-1.0, 1.0, 9)[:, None]


def density_sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """θ ~ U(-1, 1), z ~ N(θ, 1), x ~ N(z, SMEAR²): p(x|θ) = N(θ, VARIANCE), t(x,z) = z − θ."""
    theta = rng.uniform(-1.0, 1.0, n)
    z = rng.normal(theta, 1.0)
    return {
        "x": rng.normal(z, SMEAR)[:, None],
        "theta": theta[:, None],
        "t_xz": (z - theta)[:, None],
    }


def exact_log_p(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return -0.5 * (x - theta) ** 2 / VARIANCE - 0.5 * np.log(2 * np.pi * VARIANCE)


EXACT_LOG_P = exact_log_p(X_EVAL[:, 0][None, :], THETA_EVAL)
EXACT_SCORE = (X_EVAL[:, 0][None, :] - THETA_EVAL) / VARIANCE


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    return density_sample(5000, np.random.default_rng(11))


def _train(method: str, sample: dict[str, np.ndarray]) -> LikelihoodEstimator:
    estimator = LikelihoodEstimator(flow="maf", n_transforms=1, n_hidden=(16,))
    estimator.train(method, **sample, alpha=1.0, settings=FAST)
    return estimator


@pytest.fixture(scope="module")
def nde(sample: dict[str, np.ndarray]) -> LikelihoodEstimator:
    return _train("nde", sample)


@pytest.fixture(scope="module")
def scandal(sample: dict[str, np.ndarray]) -> LikelihoodEstimator:
    return _train("scandal", sample)


def test_nde_matches_the_exact_log_density(nde: LikelihoodEstimator) -> None:
    log_p, score = nde.evaluate_log_likelihood(X_EVAL, THETA_EVAL)
    assert score is None
    assert log_p.shape == (9, 81)
    assert np.mean((log_p - EXACT_LOG_P) ** 2) < 0.03


def test_scandal_score_term_pulls_the_score_to_the_truth(
    nde: LikelihoodEstimator, scandal: LikelihoodEstimator
) -> None:
    mse = {}
    for name, estimator in (("nde", nde), ("scandal", scandal)):
        log_p, score = estimator.evaluate_log_likelihood(X_EVAL, THETA_EVAL, evaluate_score=True)
        assert score.shape == (9, 81, 1)
        mse[name] = np.mean((score[..., 0] - EXACT_SCORE) ** 2), np.mean((log_p - EXACT_LOG_P) ** 2)
    assert mse["scandal"][0] < 0.06  # score
    assert mse["scandal"][1] < 0.01  # log p: the score term also regularises the density
    assert mse["scandal"][0] < mse["nde"][0] / 2
    history = scandal.history
    assert history.term_names == ("nll", "mse_score")
    total = np.add(history.train["nll"], history.train["mse_score"])  # α = 1
    np.testing.assert_allclose(history.train["total"], total, rtol=1e-6)


def test_density_is_normalised_in_the_original_units(scandal: LikelihoodEstimator) -> None:
    """∫ p̂(x|θ) dx = 1 checks the Jacobian of the x standardisation."""
    grid = np.linspace(-12.0, 12.0, 4001)[:, None]
    log_p, _ = scandal.evaluate_log_likelihood(grid, np.array([[-0.7], [0.0], [0.9]]))
    integrals = np.trapezoid(np.exp(log_p), grid[:, 0], axis=1)
    np.testing.assert_allclose(integrals, 1.0, atol=2e-3)


def test_score_is_the_theta_gradient_of_log_p(scandal: LikelihoodEstimator) -> None:
    """The θ scaling is applied at evaluation, and undone in the score (chain rule)."""
    theta = np.array([[0.3]])
    _, score = scandal.evaluate_log_likelihood(X_EVAL, theta, evaluate_score=True)
    eps = 1e-2
    up, _ = scandal.evaluate_log_likelihood(X_EVAL, theta + eps)
    down, _ = scandal.evaluate_log_likelihood(X_EVAL, theta - eps)
    np.testing.assert_allclose(score[0, :, 0], (up - down)[0] / (2 * eps), atol=2e-3)


def test_paired_rows_match_the_grid(scandal: LikelihoodEstimator) -> None:
    thetas = np.linspace(-1, 1, len(X_EVAL))[:, None]
    grid, grid_score = scandal.evaluate_log_likelihood(X_EVAL, thetas, evaluate_score=True)
    paired, paired_score = scandal.evaluate_log_likelihood(
        X_EVAL, thetas, test_all_combinations=False, evaluate_score=True
    )
    assert paired.shape == (81,) and paired_score.shape == (81, 1)
    np.testing.assert_allclose(paired, np.diag(grid), atol=1e-5)
    np.testing.assert_allclose(paired_score[:, 0], np.diag(grid_score[..., 0]), atol=1e-4)
    one, _ = scandal.evaluate_log_likelihood(X_EVAL, thetas[:1], test_all_combinations=False)
    np.testing.assert_allclose(one, grid[0], atol=1e-5)


def test_log_likelihood_ratio_is_the_difference(scandal: LikelihoodEstimator) -> None:
    theta0, theta1 = np.array([[0.5], [-0.5]]), np.array([[0.0]])
    log_r, score = scandal.evaluate_log_likelihood_ratio(
        X_EVAL, theta0, theta1, evaluate_score=True
    )
    log_p0, score0 = scandal.evaluate_log_likelihood(X_EVAL, theta0, evaluate_score=True)
    log_p1, _ = scandal.evaluate_log_likelihood(X_EVAL, theta1)
    np.testing.assert_array_equal(log_r, log_p0 - log_p1)
    np.testing.assert_array_equal(score, score0)
    exact = exact_log_p(X_EVAL[:, 0], theta0) - exact_log_p(X_EVAL[:, 0], 0.0)
    assert np.mean((log_r - exact) ** 2) < 0.02
    with pytest.raises(InputError, match="theta1: expected 1 or 2 rows"):
        scandal.evaluate_log_likelihood_ratio(X_EVAL, theta0, np.zeros((3, 1)))


def test_save_load_round_trip(scandal: LikelihoodEstimator, tmp_path) -> None:
    folder = scandal.save(tmp_path / "flow")
    loaded = load_estimator(folder, device="cpu")
    assert isinstance(loaded, LikelihoodEstimator)
    assert (loaded.flow, loaded.n_transforms, loaded.n_hidden) == ("maf", 1, (16,))
    assert loaded.method == "scandal"
    for a, b in zip(
        scandal.evaluate_log_likelihood(X_EVAL, THETA_EVAL, evaluate_score=True),
        loaded.evaluate_log_likelihood(X_EVAL, THETA_EVAL, evaluate_score=True),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["estimator_type"] == "likelihood"
    assert LikelihoodEstimator.load(folder, device="cpu").bins == 8


def test_spline_flow_on_two_observables_with_a_seed_is_deterministic(rng) -> None:
    x = rng.normal(size=(300, 2))
    theta = rng.uniform(-1, 1, size=(300, 2))
    quick = FAST.replace(n_epochs=1)
    outputs = []
    for _ in range(2):
        estimator = LikelihoodEstimator(flow="nsf", n_transforms=2, n_hidden=(8,), bins=4)
        estimator.train("nde", x, theta, settings=quick)
        outputs.append(estimator.evaluate_log_likelihood(x[:5], theta[:3])[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert outputs[0].shape == (3, 5) and np.isfinite(outputs[0]).all()


@settings(max_examples=40, deadline=None)
@given(
    n_x=st.integers(1, 40),
    n_theta=st.integers(1, 40),
    rows=st.integers(1, 64),
    paired=st.booleans(),
)
def test_evaluation_blocks_cover_every_pair_once(
    n_x: int, n_theta: int, rows: int, paired: bool
) -> None:
    if paired:
        n_theta = n_x
        counts = np.zeros(n_x, dtype=int)
    else:
        counts = np.zeros((n_theta, n_x), dtype=int)
    for block in evaluation_blocks(n_x, n_theta, paired, rows=rows):
        assert np.prod(block.shape) <= max(rows, n_x if paired else 1)
        counts[block.out] += 1
    assert (counts == 1).all()


@pytest.mark.filterwarnings("ignore::minerflow.physics.sampling.SamplingWarning")
def test_reference_file_density_sample_trains_and_evaluates(reference_file, tmp_path) -> None:
    augmenter = SampleAugmenter(reference_file, test_split=0.5)
    prior = np.random.default_rng(3).normal(size=(10, 2))
    sample = augmenter.sample_train_density(prior, 600, np.random.default_rng(4))
    estimator = LikelihoodEstimator(flow="nsf", n_transforms=2, n_hidden=(16,))
    estimator.train(
        "scandal",
        sample["x"],
        sample["theta"],
        t_xz=sample["t_xz"],
        settings=FAST.replace(n_epochs=2),
    )
    grid = np.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]])
    log_p, score = estimator.evaluate_log_likelihood(sample["x"][:50], grid, evaluate_score=True)
    assert log_p.shape == (3, 50) and score.shape == (3, 50, 2)
    assert np.isfinite(log_p).all() and np.isfinite(score).all()


# -- bad input ---------------------------------------------------------------------------


def test_methods_say_what_is_missing(sample: dict[str, np.ndarray]) -> None:
    estimator = LikelihoodEstimator(flow="maf", n_hidden=(4,))
    with pytest.raises(InputError, match="method nde: theta: expected a theta array"):
        estimator.train("nde", sample["x"], None)
    with pytest.raises(InputError, match="method scandal: t_xz: expected a t_xz array"):
        estimator.train("scandal", sample["x"], sample["theta"])
    with pytest.raises(InputError, match="method: expected one of nde, scandal, got 'alices'"):
        estimator.train("alices", sample["x"], sample["theta"])
    with pytest.raises(InputError, match="theta: expected 5000 rows like x, got 10"):
        estimator.train("nde", sample["x"], sample["theta"][:10])
    bad = sample["x"].copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match="x: expected finite values, found 1 NaN/inf"):
        estimator.train("nde", bad, sample["theta"])
    with pytest.raises(InputError, match="t_xz: expected 1 columns, got 2"):
        estimator.train("scandal", sample["x"], sample["theta"], t_xz=np.zeros((5000, 2)))


def test_bad_settings_and_evaluation_inputs(nde: LikelihoodEstimator) -> None:
    with pytest.raises(InputError, match="flow: expected one of nsf, maf, got 'glow'"):
        LikelihoodEstimator(flow="glow")
    with pytest.raises(InputError, match="n_transforms: expected an integer ≥ 1, got 0"):
        LikelihoodEstimator(n_transforms=0)
    with pytest.raises(InputError, match="activation: expected one of"):
        LikelihoodEstimator(activation="wiggle")
    with pytest.raises(InputError, match="net: expected a trained or loaded estimator"):
        LikelihoodEstimator().evaluate_log_likelihood(X_EVAL, THETA_EVAL)
    with pytest.raises(InputError, match="x: expected 1 columns, got 2"):
        nde.evaluate_log_likelihood(np.zeros((3, 2)), THETA_EVAL)
    with pytest.raises(InputError, match="thetas: expected 1 or 81 rows"):
        nde.evaluate_log_likelihood(X_EVAL, THETA_EVAL, test_all_combinations=False)


# -- the toy simulator ---------------------------------------------------------------------


def toy_density_sample(n_points: int, per_point: int, seed: int) -> dict[str, np.ndarray]:
    """Events of the toy at random θ ~ U(-1, 1)², with the exact joint score t(x,z|θ)."""
    rng = np.random.default_rng(seed)
    simulator = toy.DEFAULT_TOY
    thetas = rng.uniform(-1.0, 1.0, size=(n_points, 2))
    parts: dict[str, list[np.ndarray]] = {"x": [], "theta": [], "t_xz": []}
    for theta in thetas:
        z = simulator.sample_latent(theta, per_point, rng)
        parts["x"].append(simulator.smear(z, rng))
        parts["theta"].append(np.repeat(theta[None], per_point, axis=0))
        parts["t_xz"].append(simulator.joint_score(z, theta[None], test_all_combinations=False))
    return {key: np.concatenate(values) for key, values in parts.items()}


@pytest.mark.slow
def test_toy_nde_and_scandal_against_the_exact_log_likelihood() -> None:
    """Figures for the report: MSE and correlation of log p̂ with the toy's exact log p."""
    train = toy_density_sample(100, 200, seed=1)
    test = toy_density_sample(1, 2000, seed=2)
    grid = np.array([[0.0, 0.0], [0.5, -0.5], [-0.8, 0.3], [1.0, 1.0]])
    exact = toy.log_likelihood(test["x"], grid)
    settings_ = TrainingSettings(n_epochs=20, batch_size=256, lr=2e-3, progress=False)
    figures = {}
    for method in ("nde", "scandal"):
        estimator = LikelihoodEstimator(flow="nsf", n_transforms=3, n_hidden=(64, 64))
        estimator.train(method, **train, alpha=1.0, settings=settings_)
        log_p, score = estimator.evaluate_log_likelihood(test["x"], grid, evaluate_score=True)
        exact_score = toy.score(test["x"], grid)
        ratio = log_p - log_p[0]
        exact_ratio = exact - exact[0]
        figures[method] = {
            "mse_log_p": float(np.mean((log_p - exact) ** 2)),
            "corr_log_p": float(np.corrcoef(log_p.ravel(), exact.ravel())[0, 1]),
            "mse_log_r": float(np.mean((ratio[1:] - exact_ratio[1:]) ** 2)),
            "corr_score": float(np.corrcoef(score.ravel(), exact_score.ravel())[0, 1]),
        }
        print(method, {k: round(v, 4) for k, v in figures[method].items()})
    for values in figures.values():
        assert values["corr_log_p"] > 0.9
        assert values["mse_log_r"] < 0.2
    assert figures["scandal"]["corr_score"] > figures["nde"]["corr_score"]
