"""Ensembles: mean and spread on hand-built members, training, dispatch, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minerflow.errors import InputError
from minerflow.ml.density import LikelihoodEstimator
from minerflow.ml.ensemble import (
    DensityEnsemble,
    Ensemble,
    EnsembleEstimate,
    RatioEnsemble,
    ScoreEnsemble,
)
from minerflow.ml.persistence import load_estimator
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.scaling import Standardizer
from minerflow.ml.score import ScoreEstimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics.limits import DensityEstimator, RatioEstimator
from ml_gaussian_toy import local_sample, ratio_sample

QUICK = TrainingSettings(n_epochs=2, batch_size=64, lr=3e-3, progress=False, device="cpu")
SLOPES = (1.0, 2.0, 4.0)
OFFSETS = (0.5, -1.0, 2.0)


def linear_member(slope: float, offset: float) -> ParameterizedRatioEstimator:
    """log r̂(x|θ) = slope·θ + offset exactly, for θ > -5 (one ReLU unit, θ unscaled)."""
    estimator = ParameterizedRatioEstimator.from_architecture(
        {"n_observables": 1, "n_parameters": 1, "n_hidden": [1], "activation": "relu"}
    )
    estimator.scalers = {"x": Standardizer.identity(1), "theta": Standardizer.identity(1)}
    first, last = estimator.net.linears
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0]]))  # hidden = relu(θ + 5)
        first.bias.fill_(5.0)
        last.weight.fill_(slope)
        last.bias.fill_(offset - 5.0 * slope)
    return estimator.to("cpu")


@pytest.fixture
def hand_built() -> RatioEnsemble:
    return Ensemble([linear_member(s, o) for s, o in zip(SLOPES, OFFSETS, strict=True)])


def test_mean_and_spread_of_hand_built_members(hand_built: RatioEnsemble) -> None:
    x = np.linspace(-1, 1, 4)[:, None]
    thetas = np.array([[-1.0], [0.0], [2.0]])
    log_r, score = hand_built.evaluate_with_spread(
        "evaluate_log_likelihood_ratio", x, thetas, evaluate_score=True
    )
    members = np.array([s * thetas + o for s, o in zip(SLOPES, OFFSETS, strict=True)])
    members = np.broadcast_to(members, (3, 3, 4))
    np.testing.assert_allclose(log_r.members, members, atol=1e-6)
    np.testing.assert_allclose(log_r.mean, members.mean(axis=0), atol=1e-6)
    # Slopes 1, 2, 4: mean 7/3, sample variance ((4/3)² + (1/3)² + (5/3)²)/2 = 7/3.
    np.testing.assert_allclose(score.mean, 7 / 3, atol=1e-6)
    np.testing.assert_allclose(score.std, np.sqrt(7 / 3), atol=1e-6)
    assert score.members.shape == (3, 3, 4, 1)
    # θ = 0: log r̂ = offsets 0.5, -1, 2 → mean 0.5, std 1.5.
    np.testing.assert_allclose(log_r.mean[1], 0.5, atol=1e-6)
    np.testing.assert_allclose(log_r.std[1], 1.5, atol=1e-6)
    mean_log_r, mean_score = hand_built.evaluate_log_likelihood_ratio(x, thetas, True, True)
    np.testing.assert_array_equal(mean_log_r, log_r.mean)
    np.testing.assert_array_equal(mean_score, score.mean)
    assert hand_built.evaluate_log_likelihood_ratio(x, thetas)[1] is None
    np.testing.assert_allclose(hand_built.evaluate_score(x, [[0.0]]), 7 / 3, atol=1e-6)


def test_single_member_has_zero_spread() -> None:
    estimate = EnsembleEstimate(np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(estimate.std, [0.0, 0.0])
    np.testing.assert_array_equal(estimate.mean, [1.0, 2.0])


def test_ensemble_kind_follows_the_members() -> None:
    ratio = Ensemble([ParameterizedRatioEstimator(), ParameterizedRatioEstimator()])
    density = Ensemble([LikelihoodEstimator()])
    score = Ensemble([ScoreEstimator()])
    assert type(ratio) is RatioEnsemble and type(density) is DensityEnsemble
    assert type(score) is ScoreEnsemble
    # The limits recognise ensembles like their members.
    assert isinstance(ratio, RatioEstimator) and not isinstance(ratio, DensityEstimator)
    assert isinstance(density, DensityEstimator)
    assert not hasattr(score, "evaluate_log_likelihood_ratio")
    assert len(ratio) == 2 and ratio.member_type == "parameterized_ratio"
    assert not ratio.is_trained


def test_train_all_with_per_member_samples_and_seeds(rng, tmp_path) -> None:
    samples = [local_sample(400, rng, theta=0.0) for _ in range(3)]
    ensemble = Ensemble([ScoreEstimator(n_hidden=(8,)) for _ in range(3)])
    histories = ensemble.train_all(
        "sally", samples=samples, settings=QUICK, checkpoint_dir=tmp_path / "ckpt"
    )
    assert [h.n_epochs for h in histories] == [2, 2, 2]
    assert [m.settings.seed for m in ensemble.members] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "member_0",
        "member_1",
        "member_2",
    ]
    x = np.linspace(-2, 2, 9)[:, None]
    estimate = ensemble.evaluate_with_spread("evaluate_score", x)
    assert estimate.members.shape == (3, 9, 1)
    assert (estimate.std > 0).all()  # different seeds and samples give different members
    np.testing.assert_allclose(ensemble.evaluate_score(x), estimate.members.mean(axis=0))
    # Same data and the same explicit seed: identical members, zero spread.
    same = Ensemble([ScoreEstimator(n_hidden=(8,)) for _ in range(2)])
    same.train_all("sally", **samples[0], settings=QUICK, seeds=[7, 7])
    np.testing.assert_array_equal(same.evaluate_with_spread("evaluate_score", x).std, 0.0)


def test_save_load_round_trip(rng, tmp_path) -> None:
    sample = ratio_sample(600, rng)
    ensemble = Ensemble([ParameterizedRatioEstimator(n_hidden=(8,)) for _ in range(2)])
    ensemble.train_all("alices", **sample, alpha=1.0, settings=QUICK)
    folder = ensemble.save(tmp_path / "ensemble")
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["estimator_type"] == "ensemble"
    assert settings["member_type"] == "parameterized_ratio"
    for loaded in (load_estimator(folder, device="cpu"), Ensemble.load(folder, device="cpu")):
        assert type(loaded) is RatioEnsemble and len(loaded) == 2
        x, thetas = sample["x"][:20], np.array([[-0.5], [0.5]])
        for a, b in zip(
            ensemble.evaluate_with_spread("evaluate_log_likelihood_ratio", x, thetas, True, True),
            loaded.evaluate_with_spread("evaluate_log_likelihood_ratio", x, thetas, True, True),
            strict=True,
        ):
            np.testing.assert_array_equal(a.members, b.members)


def test_density_ensemble_spread(rng) -> None:
    theta = rng.uniform(-1, 1, 300)
    x = rng.normal(theta, 1.0)[:, None]
    ensemble = Ensemble(
        [LikelihoodEstimator(flow="maf", n_transforms=1, n_hidden=(8,)) for _ in range(2)]
    )
    ensemble.train_all("nde", x=x, theta=theta[:, None], settings=QUICK)
    log_p, score = ensemble.evaluate_with_spread("evaluate_log_likelihood", x[:5], [[0.0]])
    assert score is None and log_p.members.shape == (2, 1, 5)
    mean, _ = ensemble.evaluate_log_likelihood(x[:5], [[0.0]])
    np.testing.assert_array_equal(mean, log_p.mean)
    log_r, _ = ensemble.evaluate_log_likelihood_ratio(x[:5], [[0.5]], [[0.0]])
    assert log_r.shape == (1, 5)


# -- bad input ---------------------------------------------------------------------------


def test_bad_members_and_arguments(hand_built: RatioEnsemble, tmp_path) -> None:
    with pytest.raises(InputError, match="ensemble: members: expected at least one estimator"):
        Ensemble([])
    with pytest.raises(InputError, match="expected estimators of one type, got"):
        Ensemble([ParameterizedRatioEstimator(), ScoreEstimator()])
    with pytest.raises(InputError, match="members: expected estimators, got a str"):
        Ensemble(["model"])
    with pytest.raises(InputError, match="function: expected an evaluation method of"):
        hand_built.evaluate_with_spread("save", tmp_path)
    with pytest.raises(InputError, match="settings: expected 3 entries"):
        hand_built.train_all("carl", settings=[QUICK, QUICK])
    with pytest.raises(InputError, match="seeds: expected 3 entries"):
        hand_built.train_all("carl", seeds=[1])
    folder = hand_built.save(tmp_path / "e")
    settings = json.loads((folder / "settings.json").read_text())
    (folder / "settings.json").write_text(json.dumps({**settings, "member_type": "score"}))
    with pytest.raises(InputError, match="member_0: estimator_type: expected score"):
        load_estimator(folder, device="cpu")
    with pytest.raises(InputError, match="estimator_type: expected ensemble"):
        Ensemble.load(folder / "member_0", device="cpu")
