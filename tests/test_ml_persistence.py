"""Saving and loading estimators: own folders, format versions, MadMiner models."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minerflow.errors import InputError
from minerflow.ml.persistence import FORMAT_VERSION, load_estimator, read_settings
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.score import ScoreEstimator
from minerflow.ml.training import TrainingSettings
from ml_gaussian_toy import local_sample, ratio_sample

QUICK = TrainingSettings(n_epochs=2, batch_size=64, progress=False)


@pytest.fixture
def trained_ratio(rng: np.random.Generator) -> ParameterizedRatioEstimator:
    estimator = ParameterizedRatioEstimator(n_hidden=(16, 8), activation="relu")
    estimator.train("alices", **ratio_sample(1000, rng), alpha=2.0, settings=QUICK)
    return estimator


def test_ratio_round_trip_gives_identical_outputs(trained_ratio, rng, tmp_path: Path) -> None:
    folder = trained_ratio.save(tmp_path / "alices")
    settings = read_settings(folder)
    assert settings["format_version"] == FORMAT_VERSION
    assert settings["estimator_type"] == "parameterized_ratio"
    assert settings["architecture"] == {
        "n_observables": 1,
        "n_parameters": 1,
        "n_hidden": [16, 8],
        "activation": "relu",
        "dropout": 0.0,
    }
    assert settings["method"] == "alices" and settings["alpha"] == 2.0
    assert settings["training"]["n_epochs"] == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        "settings.json",
        "theta_means.npy",
        "theta_stds.npy",
        "weights.pt",
        "x_means.npy",
        "x_stds.npy",
    ]
    loaded = load_estimator(folder, device="cpu")
    assert isinstance(loaded, ParameterizedRatioEstimator)
    assert loaded.history == trained_ratio.history and loaded.settings == trained_ratio.settings
    x, thetas = rng.normal(size=(50, 1)), np.linspace(-1, 1, 7)[:, None]
    before = trained_ratio.evaluate_log_likelihood_ratio(x, thetas, evaluate_score=True)
    after = loaded.evaluate_log_likelihood_ratio(x, thetas, evaluate_score=True)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert isinstance(ParameterizedRatioEstimator.load(folder), ParameterizedRatioEstimator)
    with pytest.raises(InputError, match="estimator_type: expected score, got parameterized_ratio"):
        ScoreEstimator.load(folder)


def test_score_round_trip_and_replacing_a_folder(rng, tmp_path: Path) -> None:
    estimator = ScoreEstimator(n_hidden=(8,))
    estimator.train("sally", **local_sample(500, rng), settings=QUICK)
    folder = tmp_path / "sally"
    (folder / "stale").mkdir(parents=True)
    estimator.save(folder)
    assert not (folder / "stale").exists()  # the folder is replaced whole, atomically
    loaded = load_estimator(folder)
    x = rng.normal(size=(30, 1))
    np.testing.assert_array_equal(estimator.evaluate_score(x), loaded.evaluate_score(x))


def test_newer_format_and_broken_folders(trained_ratio, tmp_path: Path) -> None:
    folder = trained_ratio.save(tmp_path / "model")
    settings_path = folder / "settings.json"
    settings = json.loads(settings_path.read_text())
    settings_path.write_text(json.dumps({**settings, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(InputError) as error:
        load_estimator(folder)
    message = str(error.value)
    assert message.startswith(f"{settings_path}: format_version: expected at most {FORMAT_VERSION}")
    assert f"saved with format {FORMAT_VERSION + 1}" in message
    settings_path.write_text(json.dumps({**settings, "estimator_type": "magic"}))
    with pytest.raises(InputError, match=r"estimator_type: expected one of .*score, got 'magic'"):
        load_estimator(folder)
    settings_path.write_text(json.dumps(settings))
    (folder / "weights.pt").unlink()
    with pytest.raises(InputError, match=r"weights\.pt: expected the saved network weights"):
        load_estimator(folder)
    with pytest.raises(InputError, match=r"expected a model folder with settings\.json"):
        load_estimator(tmp_path / "nowhere")


def write_madminer_model(prefix: Path, rng, kind: str, activation: str) -> dict:
    """Files as MadMiner's Estimator.save writes them (layers.{i} keys, float32 scaling)."""
    n_x, n_p, hidden = 2, 2, [6, 5]
    n_in = n_x + n_p if kind == "parameterized_ratio" else n_x
    n_out = 1 if kind == "parameterized_ratio" else n_p
    widths = [n_in, *hidden, n_out]
    state = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        state[f"layers.{i}.weight"] = torch.tensor(rng.normal(size=(b, a)), dtype=torch.float32)
        state[f"layers.{i}.bias"] = torch.tensor(rng.normal(size=b), dtype=torch.float32)
    if kind == "parameterized_ratio":  # MadMiner's ratio model holds its layer list twice
        state |= {key.replace("layers", "append"): value for key, value in state.items()}
    torch.save(state, f"{prefix}_state_dict.pt")
    settings = {
        "n_observables": n_x,
        "n_parameters": n_p,
        "features": None,
        "n_hidden": hidden,
        "activation": activation,
        "dropout_prob": 0.0,
        "estimator_type": kind,
    }
    Path(f"{prefix}_settings.json").write_text(json.dumps(settings))
    scaling = {
        "x_means": rng.normal(size=n_x),
        "x_stds": rng.uniform(0.5, 2, n_x),
        "theta_means": rng.normal(size=n_p),
        "theta_stds": rng.uniform(0.5, 2, n_p),
    }
    for name, values in scaling.items():
        if kind == "parameterized_ratio" or name.startswith("x"):
            np.save(f"{prefix}_{name}.npy", values.astype(np.float32))
    return {"state": state, "scaling": scaling}


def madminer_forward(model: dict, inputs: np.ndarray, activation) -> np.ndarray:
    """MadMiner's layout by hand: activation before every layer except the first."""
    hidden = inputs
    n_layers = sum(key.startswith("layers.") for key in model["state"]) // 2
    for i in range(n_layers):
        if i > 0:
            hidden = activation(hidden)
        weight = model["state"][f"layers.{i}.weight"].double().numpy()
        hidden = hidden @ weight.T + model["state"][f"layers.{i}.bias"].double().numpy()
    return hidden


def test_load_a_madminer_ratio_model(rng, tmp_path: Path) -> None:
    prefix = tmp_path / "models" / "alices" / "alices"
    prefix.parent.mkdir(parents=True)
    model = write_madminer_model(prefix, rng, "parameterized_ratio", "sigmoid")
    estimator = load_estimator(prefix, device="cpu")
    assert isinstance(estimator, ParameterizedRatioEstimator) and estimator.activation == "relu"
    x, thetas = rng.normal(size=(20, 2)), rng.normal(size=(3, 2))
    log_r, _ = estimator.evaluate_log_likelihood_ratio(x, thetas)
    s = {k: v.astype(np.float32).astype(np.float64) for k, v in model["scaling"].items()}
    for j, theta in enumerate(thetas):
        inputs = np.hstack(
            [
                np.repeat([(theta - s["theta_means"]) / s["theta_stds"]], 20, 0),
                (x - s["x_means"]) / s["x_stds"],
            ]
        )
        expected = madminer_forward(model, inputs, lambda h: np.maximum(h, 0.0))[:, 0]
        np.testing.assert_allclose(log_r[j], expected, rtol=1e-5, atol=1e-5)


def test_load_a_madminer_score_model(rng, tmp_path: Path) -> None:
    prefix = tmp_path / "sally"
    model = write_madminer_model(prefix, rng, "score", "tanh")
    estimator = load_estimator(prefix)
    assert isinstance(estimator, ScoreEstimator)
    x = rng.normal(size=(10, 2))
    s = model["scaling"]
    inputs = (x - s["x_means"].astype(np.float32)) / s["x_stds"].astype(np.float32)
    np.testing.assert_allclose(
        estimator.evaluate_score(x), madminer_forward(model, inputs, np.tanh), rtol=1e-5, atol=1e-5
    )


def test_unsupported_madminer_models(rng, tmp_path: Path) -> None:
    prefix = tmp_path / "m"
    write_madminer_model(prefix, rng, "parameterized_ratio", "prelu")
    with pytest.raises(InputError, match=r"m_settings.json: activation: expected one of tanh"):
        load_estimator(prefix)
    settings_path = Path(f"{prefix}_settings.json")
    settings = json.loads(settings_path.read_text())
    settings_path.write_text(json.dumps({**settings, "estimator_type": "likelihood"}))
    expected = "estimator_type: expected one of parameterized_ratio, score"
    with pytest.raises(InputError, match=expected):
        load_estimator(prefix)
