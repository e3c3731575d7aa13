"""Morphing-aware quadratic ratio estimator: exact θ structure, learning and extrapolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.io.madminer_file import read_event_file
from minerflow.ml.persistence import load_estimator
from minerflow.ml.quadratic import QuadraticRatioEstimator, amplitude_powers
from minerflow.ml.training import TrainingSettings
from minerflow.physics import toy
from minerflow.physics.morphing import find_components
from minerflow.physics.sampling import SampleAugmenter

FAST = TrainingSettings(
    n_epochs=8, batch_size=128, lr=1e-2, lr_final=1e-3, progress=False, device="cpu"
)
INCOHERENT = 0.5  # weight of the θ² term that does not interfere
X_EVAL = np.linspace(-2.0, 2.0, 41)[:, None]


# A one-parameter process with the EFT structure:
#   dσ(x|θ) = N(x; 0, 1) · [(1 + θx)² + c θ²],   σ(θ) = 1 + (1 + c) θ².
def exact_log_r(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """log p(x|θ)/p(x|0)."""
    c = INCOHERENT
    return np.log((1 + theta * x) ** 2 + c * theta**2) - np.log1p((1 + c) * theta**2)


def exact_score(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    c = INCOHERENT
    numerator = 2 * x * (1 + theta * x) + 2 * c * theta
    return numerator / ((1 + theta * x) ** 2 + c * theta**2) - 2 * (1 + c) * theta / (
        1 + (1 + c) * theta**2
    )


def draw(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x ~ p(x|θ) for each θ by rejection from N(x)·(1 + θ²(x² + c)) (envelope factor 2)."""
    c = INCOHERENT
    out = np.empty(len(theta))
    todo = np.arange(len(theta))
    while len(todo):
        th, k = theta[todo], len(todo)
        u = rng.random(k) * (1 + th**2 * (1 + c))
        squared = (u > 1) & (u < 1 + th**2)  # the x² N(x) part of the proposal
        chi = rng.choice([-1.0, 1.0], k) * np.sqrt(rng.chisquare(3, k))
        x = np.where(squared, chi, rng.normal(size=k))
        accept = rng.random(k) < ((1 + th * x) ** 2 + c * th**2) / (2 * (1 + th**2 * (x**2 + c)))
        out[todo[accept]] = x[accept]
        todo = todo[~accept]
    return out


def ratio_sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """θ ~ U(-1, 1); y = 0 rows drawn at θ, y = 1 rows at θ_ref = 0 (no latent: r, t exact)."""
    theta = rng.uniform(-1, 1, n)
    y = (np.arange(n) % 2).astype(float)
    x = draw(np.where(y == 0, theta, 0.0), rng)
    return {
        "x": x[:, None],
        "y": y,
        "theta": theta[:, None],
        "r_xz": np.exp(exact_log_r(x, theta)),
        "t_xz": exact_score(x, theta)[:, None],
    }


def test_the_rejection_sampler_draws_the_toy_density() -> None:
    rng = np.random.default_rng(0)
    x = draw(np.full(200_000, 0.8), rng)
    counts, edges = np.histogram(x, bins=30, range=(-3, 3))
    centres = 0.5 * (edges[1:] + edges[:-1])
    density = np.exp(-0.5 * centres**2 + exact_log_r(centres, 0.8)) / np.sqrt(2 * np.pi)
    expected = 200_000 * density * (edges[1] - edges[0])
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 60  # 30 bins


@pytest.fixture(scope="module")
def trained() -> QuadraticRatioEstimator:
    estimator = QuadraticRatioEstimator(n_hidden=(32, 32))
    estimator.train("alices", **ratio_sample(6000, np.random.default_rng(4)), settings=FAST)
    return estimator


def test_learns_the_ratio_and_extrapolates_in_theta(trained: QuadraticRatioEstimator) -> None:
    inside = np.array([[-1.0], [-0.5], [0.5], [1.0]])
    outside = np.array([[-3.0], [3.0]])  # three times the training range
    x = X_EVAL[:, 0][None, :]
    for grid, bound in ((inside, 0.01), (outside, 0.02)):
        log_r, score = trained.evaluate_log_likelihood_ratio(X_EVAL, grid, evaluate_score=True)
        print(
            np.mean((log_r - exact_log_r(x, grid)) ** 2),
            np.mean((score[..., 0] - exact_score(x, grid)) ** 2),
        )
        assert np.mean((log_r - exact_log_r(x, grid)) ** 2) < bound
        assert np.mean((score[..., 0] - exact_score(x, grid)) ** 2) < 0.1
    # The learned form is the true one: α(x) = x, β = √c, denominator diag √(1 + c).
    net = trained.net
    with torch.no_grad():
        scaled = (X_EVAL - trained.scalers["x"].means) / trained.scalers["x"].stds
        factor = net.factor(torch.as_tensor(scaled, dtype=torch.float32)).numpy()
        denominator = net.triangular(net.denominator).numpy()
    np.testing.assert_allclose(factor[:, 1, 0], X_EVAL[:, 0], atol=0.15)
    np.testing.assert_allclose(np.abs(factor[:, 1, 1]), np.sqrt(INCOHERENT), atol=0.1)
    np.testing.assert_allclose(np.abs(denominator[1, 1]), np.sqrt(1 + INCOHERENT), atol=0.1)


@settings(max_examples=25, deadline=None)
@given(
    direction=st.tuples(st.floats(-1, 1), st.floats(-1, 1)).filter(
        lambda d: max(map(abs, d)) > 0.1
    ),
    reference=st.tuples(st.floats(-1, 1), st.floats(-1, 1)),
    seed=st.integers(0, 2**16),
)
def test_untrained_two_parameter_form_is_a_ratio_of_quadratics(
    direction: tuple[float, float], reference: tuple[float, float], seed: int
) -> None:
    """Along any line θ_ref + s·d, r̂·σ̂-ratio is a quadratic in s that is 1 at s = 0."""
    estimator = _random_estimator(find_components([2, 2]), np.asarray(reference), seed)
    steps = np.array([-2.0, -1.0, 0.0, 0.5, 1.5, 3.0])
    thetas = np.asarray(reference)[None, :] + steps[:, None] * np.asarray(direction)[None, :]
    x = np.random.default_rng(seed).normal(size=(5, 2))
    log_r, _ = estimator.evaluate_log_likelihood_ratio(x, thetas)
    np.testing.assert_array_equal(log_r[2], 0.0)
    net = estimator.net
    with torch.no_grad():
        m = net.monomials(torch.as_tensor(thetas, dtype=torch.float32))
        log_sigma = torch.log((m @ net.triangular(net.denominator)).square().sum(-1)).numpy()
    numerator = np.exp(log_r + log_sigma[:, None])  # dσ(x|θ)/dσ(x|θ_ref)
    for column in numerator.T:
        coefficients = np.polyfit(steps, column, 2)
        np.testing.assert_allclose(np.polyval(coefficients, steps), column, rtol=2e-4, atol=1e-5)
        assert coefficients[0] >= -1e-6  # a non-negative form: convex along every line


def _random_estimator(
    components: np.ndarray, reference: np.ndarray, seed: int
) -> QuadraticRatioEstimator:
    """An estimator with random weights (no training) for structural checks."""
    n_p = components.shape[1]
    estimator = QuadraticRatioEstimator(components, reference, n_hidden=(8,))
    torch.manual_seed(seed)
    estimator = QuadraticRatioEstimator.from_architecture(
        {**estimator.architecture(), "n_observables": 2, "n_parameters": n_p}
    )
    from minerflow.ml.scaling import Standardizer

    estimator.scalers = {"x": Standardizer.identity(2), "theta": Standardizer.identity(n_p)}
    with torch.no_grad():
        estimator.net.denominator.normal_()
    return estimator


def test_score_is_the_theta_gradient(trained: QuadraticRatioEstimator) -> None:
    theta = np.array([[0.7]])
    _, score = trained.evaluate_log_likelihood_ratio(X_EVAL, theta, evaluate_score=True)
    eps = 2e-3
    up, _ = trained.evaluate_log_likelihood_ratio(X_EVAL, theta + eps)
    down, _ = trained.evaluate_log_likelihood_ratio(X_EVAL, theta - eps)
    np.testing.assert_allclose(score[0, :, 0], (up - down)[0] / (2 * eps), atol=3e-3)
    paired = trained.evaluate_score(X_EVAL, theta)
    np.testing.assert_allclose(paired, score[0], atol=1e-6)


def test_save_load_round_trip(trained: QuadraticRatioEstimator, tmp_path) -> None:
    folder = trained.save(tmp_path / "quadratic")
    loaded = load_estimator(folder, device="cpu")
    assert isinstance(loaded, QuadraticRatioEstimator)
    np.testing.assert_array_equal(loaded.components, [[0], [1], [2]])
    grid = np.array([[-2.0], [0.0], [0.4]])
    for a, b in zip(
        trained.evaluate_log_likelihood_ratio(X_EVAL, grid, evaluate_score=True),
        loaded.evaluate_log_likelihood_ratio(X_EVAL, grid, evaluate_score=True),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::minerflow.physics.sampling.SamplingWarning")
def test_two_parameter_reference_file(reference_file, tmp_path) -> None:
    header = read_event_file(reference_file).header
    augmenter = SampleAugmenter(reference_file, test_split=0.5)
    rng = np.random.default_rng(2)
    sample = augmenter.sample_train_ratio(rng.normal(size=(10, 2)), np.zeros((1, 2)), 600, rng)
    estimator = QuadraticRatioEstimator(header.morphing_components, n_hidden=(16,))
    estimator.train(
        "alices",
        sample["x"],
        sample["y"],
        sample["theta0"],
        r_xz=sample["r_xz"],
        t_xz=sample["t_xz"],
        settings=FAST.replace(n_epochs=2),
    )
    grid = np.array([[0.0, 0.0], [10.0, 0.0], [-3.0, 2.0]])
    log_r, score = estimator.evaluate_log_likelihood_ratio(sample["x"][:30], grid, True, True)
    assert log_r.shape == (3, 30) and score.shape == (3, 30, 2)
    np.testing.assert_array_equal(log_r[0], 0.0)
    assert np.isfinite(score).all()
    loaded = load_estimator(estimator.save(tmp_path / "q2"), device="cpu")
    np.testing.assert_array_equal(
        loaded.evaluate_log_likelihood_ratio(sample["x"][:30], grid)[0], log_r
    )


# -- the morphing structure ------------------------------------------------------------------


def test_amplitude_powers_of_common_bases(reference_file) -> None:
    header = read_event_file(reference_file).header
    assert amplitude_powers(header.morphing_components).tolist() == [[0, 0], [0, 1], [1, 0]]
    toy_components = toy.DEFAULT_TOY.header(np.ones(6, dtype=np.int64)).morphing_components
    assert amplitude_powers(toy_components).tolist() == [[0, 0], [0, 1], [1, 0]]
    assert amplitude_powers([[0], [1], [2], [3], [4]]).tolist() == [[0], [1], [2]]
    nine = find_components([2, 2], max_overall_power=4)
    assert amplitude_powers(nine).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert QuadraticRatioEstimator().components is None  # filled in at training


@pytest.mark.parametrize(
    ("components", "message"),
    [
        ([[0], [1]], "squared polynomial amplitude"),
        ([[0], [2]], "squared polynomial amplitude"),
        ([[1], [2]], "squared polynomial amplitude"),
        ([[0, 0], [2, 2], [4, 4]], "squared polynomial amplitude"),
        ([[0], [-1]], "non-negative integers"),
        ([[0.5], [1]], "non-negative integers"),
        ([], "non-empty 2-D array"),
        ([[0, 0], [0, 4], [4, 0], [0, 2], [2, 0], [2, 2]], "squared polynomial amplitude"),
    ],
)
def test_components_that_are_not_a_squared_amplitude(components: list, message: str) -> None:
    with pytest.raises(InputError, match=f"quadratic estimator: components: expected .*{message}"):
        QuadraticRatioEstimator(components)


def test_amplitude_powers_must_be_closed_under_lowering() -> None:
    # Amplitude A0 + θ0 θ1 A1 squares to components (0,0), (1,1), (2,2): a valid morphing
    # basis, but shifting θ by the reference point would need the missing θ0 and θ1 terms.
    with pytest.raises(InputError, match="amplitude powers closed under lowering"):
        amplitude_powers([[0, 0], [1, 1], [2, 2]])


def test_structure_must_match_the_training_parameters() -> None:
    sample = ratio_sample(200, np.random.default_rng(1))
    with pytest.raises(InputError, match="components: expected 1 columns"):
        QuadraticRatioEstimator(find_components([2, 2]), n_hidden=(4,)).train("carl", **sample)
    with pytest.raises(InputError, match="reference: expected 1 values"):
        QuadraticRatioEstimator(reference=[0.0, 0.0], n_hidden=(4,)).train("carl", **sample)
    with pytest.raises(InputError, match="method alices: t_xz: expected a t_xz array"):
        QuadraticRatioEstimator(n_hidden=(4,)).train("alices", **{**sample, "t_xz": None})


# -- the toy simulator ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::minerflow.physics.sampling.SamplingWarning")
def test_toy_quadratic_against_the_exact_ratio(tmp_path) -> None:
    """Figures for the report: log r̂ of the morphing-aware estimator on the 2-parameter toy."""
    path = toy.write_event_file(tmp_path / "toy.h5", n_events=60_000, seed=1)
    header = read_event_file(path).header
    augmenter = SampleAugmenter(path, test_split=0.2)
    rng = np.random.default_rng(3)
    thetas = rng.uniform(-1, 1, size=(50, 2))
    sample = augmenter.sample_train_ratio(thetas, np.zeros((1, 2)), 50_000, rng)
    test = augmenter.sample_test(np.zeros((1, 2)), 2000, rng)
    grid = rng.uniform(-1, 1, size=(20, 2))
    exact = toy.log_likelihood_ratio(test["x"], grid, np.zeros((1, 2)))
    estimator = QuadraticRatioEstimator(header.morphing_components, n_hidden=(64, 64))
    estimator.train(
        "alices",
        sample["x"],
        sample["y"],
        sample["theta0"],
        r_xz=sample["r_xz"],
        t_xz=sample["t_xz"],
        alpha=1.0,
        settings=TrainingSettings(n_epochs=20, batch_size=256, lr=3e-3, progress=False),
    )
    log_r, _ = estimator.evaluate_log_likelihood_ratio(test["x"], grid)
    mse = float(np.mean((log_r - exact) ** 2))
    outside = np.array([[2.0, 0.0], [0.0, -2.0], [1.5, 1.5]])
    exact_out = toy.log_likelihood_ratio(test["x"], outside, np.zeros((1, 2)))
    mse_out = float(
        np.mean((estimator.evaluate_log_likelihood_ratio(test["x"], outside)[0] - exact_out) ** 2)
    )
    print(
        f"quadratic alices on the toy: MSE(log r) = {mse:.4f} in [-1,1]^2, {mse_out:.4f} at |θ|=2"
    )
    assert mse < 0.05
