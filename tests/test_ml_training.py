"""The training loop: settings, schedule, early stopping, checkpoints, determinism, errors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from minerflow.errors import InputError
from minerflow.ml.nets import DenseNet
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.training import (
    CHECKPOINT_NAME,
    TrainingDivergedError,
    TrainingHistory,
    TrainingSettings,
    fit,
    learning_rate,
    split_rows,
    torch_seed,
)
from ml_gaussian_toy import ratio_sample

CPU = torch.device("cpu")


def regression_objective(model: torch.nn.Module):
    def objective(batch: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
        return ((model(batch["x"]) - batch["y"]) ** 2).mean().reshape(1)

    return objective


def train_regression(arrays, settings, checkpoint_dir=None, dropout=0.0, objective=None):
    with torch_seed(settings.seed, CPU):
        model = DenseNet(1, 1, (32, 32), "tanh", dropout)
        history = fit(
            model,
            objective(model) if objective else regression_objective(model),
            arrays,
            term_names=("mse",),
            term_weights=(1.0,),
            settings=settings,
            device=CPU,
            checkpoint_dir=checkpoint_dir,
        )
    return model, history


def noise_arrays(rng: np.random.Generator, n: int = 60) -> dict[str, np.ndarray]:
    return {"x": rng.normal(size=(n, 1)), "y": rng.normal(size=(n, 1))}


def test_settings_are_validated() -> None:
    with pytest.raises(InputError, match="training settings: n_epoch: expected one of n_epochs"):
        TrainingSettings.from_mapping({"n_epoch": 3})
    with pytest.raises(InputError, match="batch_size: expected a positive integer"):
        TrainingSettings(batch_size=0)
    with pytest.raises(InputError, match="validation_split"):
        TrainingSettings(validation_split=1.0)
    with pytest.raises(InputError, match="optimizer: expected one of adam, amsgrad"):
        TrainingSettings(optimizer="sgd")
    with pytest.raises(InputError, match="lr_schedule"):
        TrainingSettings(lr_schedule="step")
    settings = TrainingSettings().replace(n_epochs=3)
    assert settings.n_epochs == 3
    with pytest.raises(AttributeError):
        settings.n_epochs = 4  # type: ignore[misc]
    assert TrainingSettings.from_mapping(settings.to_dict()) == settings


def test_learning_rate_schedules() -> None:
    exponential = TrainingSettings(n_epochs=5, lr=1e-2, lr_final=1e-4, lr_schedule="exponential")
    rates = [learning_rate(exponential, e) for e in range(5)]
    assert rates[0] == pytest.approx(1e-2) and rates[-1] == pytest.approx(1e-4)
    assert rates[2] == pytest.approx(1e-3)  # geometric midpoint
    cosine = exponential.replace(lr_schedule="cosine")
    assert learning_rate(cosine, 0) == pytest.approx(1e-2)
    assert learning_rate(cosine, 2, 0.5) == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert learning_rate(cosine, 4, 1.0) == pytest.approx(1e-4)


def test_history_records_every_term_and_learning_rate(rng: np.random.Generator) -> None:
    settings = TrainingSettings(n_epochs=4, batch_size=16, lr=1e-2, lr_final=1e-3, progress=False)
    _, history = train_regression(noise_arrays(rng), settings)
    assert history.n_epochs == 4
    assert set(history.train) == set(history.validation) == {"mse", "total"}
    assert history.train["mse"] == history.train["total"]
    assert len(history.validation["total"]) == 4
    np.testing.assert_allclose(
        history.learning_rate, [learning_rate(settings, e) for e in range(4)]
    )
    assert history.wall_time > 0
    assert TrainingHistory.from_dict(history.to_dict()) == history


def test_early_stopping_really_restores_the_best_weights(rng: np.random.Generator) -> None:
    # A net fitting pure noise: validation loss improves at first, then rises as it overfits.
    arrays = noise_arrays(rng)
    settings = TrainingSettings(
        n_epochs=40,
        batch_size=10,
        lr=1e-2,
        lr_schedule="constant",
        validation_split=0.5,
        progress=False,
        seed=3,
    )
    model, history = train_regression(arrays, settings)
    validation = history.validation["total"]
    best = history.best_epoch
    assert best is not None and best < settings.n_epochs - 1
    assert validation[best] == min(validation)
    assert validation[-1] > validation[best] * 1.05
    _, val_rows = split_rows(len(arrays["x"]), 0.5, settings.seed)
    with torch.no_grad():
        x = torch.as_tensor(arrays["x"][val_rows], dtype=torch.float32)
        y = torch.as_tensor(arrays["y"][val_rows], dtype=torch.float32)
        restored = ((model(x) - y) ** 2).mean().item()
    assert restored == pytest.approx(validation[best], rel=1e-5)


def test_patience_stops_early(rng: np.random.Generator) -> None:
    settings = TrainingSettings(
        n_epochs=40,
        batch_size=10,
        lr=1e-2,
        lr_schedule="constant",
        validation_split=0.5,
        patience=3,
        progress=False,
        seed=3,
    )
    _, history = train_regression(noise_arrays(rng), settings)
    assert history.stopped_early
    assert history.n_epochs == history.best_epoch + 1 + 3


def test_deterministic_given_seed(rng: np.random.Generator) -> None:
    arrays = noise_arrays(rng, 200)
    settings = TrainingSettings(n_epochs=3, batch_size=16, progress=False, seed=11)
    first, _ = train_regression(arrays, settings, dropout=0.2)
    second, _ = train_regression(arrays, settings, dropout=0.2)
    other, _ = train_regression(arrays, settings.replace(seed=12), dropout=0.2)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert not torch.equal(first.linears[0].weight, other.linears[0].weight)


class InterruptError(Exception):
    pass


def interrupting(after_steps: int):
    def make(model: torch.nn.Module):
        inner = regression_objective(model)
        calls = {"n": 0}

        def objective(batch, training):
            if training:
                calls["n"] += 1
                if calls["n"] > after_steps:
                    raise InterruptError
            return inner(batch, training)

        return objective

    return make


def test_checkpoint_resume_equals_uninterrupted_run(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays = noise_arrays(rng, 100)
    settings = TrainingSettings(
        n_epochs=6, batch_size=16, lr=1e-2, lr_final=1e-3, validation_split=0.2, progress=False
    )
    reference, reference_history = train_regression(arrays, settings, dropout=0.1)
    steps_per_epoch = math.ceil(80 / 16)
    with pytest.raises(InterruptError):  # killed in the middle of epoch 4
        train_regression(arrays, settings, tmp_path, 0.1, interrupting(3 * steps_per_epoch + 2))
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert len(saved["history"]["train"]["total"]) == 3
    resumed, history = train_regression(arrays, settings, tmp_path, dropout=0.1)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert history.train == reference_history.train
    assert history.validation == reference_history.validation
    assert history.best_epoch == reference_history.best_epoch


def test_foreign_checkpoint_is_refused(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays = noise_arrays(rng, 50)
    settings = TrainingSettings(n_epochs=2, batch_size=16, progress=False)
    train_regression(arrays, settings, tmp_path)
    with pytest.raises(
        InputError, match="fingerprint: expected a checkpoint of this same training"
    ):
        train_regression(arrays, settings.replace(lr=5e-3), tmp_path)


def test_nan_loss_stops_with_a_clear_error(rng: np.random.Generator) -> None:
    def broken(model):
        def objective(batch, training):
            return torch.log(model(batch["x"]).mean() - 1e6).reshape(1)

        return objective

    settings = TrainingSettings(n_epochs=2, batch_size=16, progress=False)
    with pytest.raises(TrainingDivergedError, match="loss term mse is not finite in epoch 1"):
        train_regression(noise_arrays(rng), settings, objective=broken)


def test_progress_bar_only_when_asked(
    rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    arrays = noise_arrays(rng, 40)
    train_regression(arrays, TrainingSettings(n_epochs=2, batch_size=8, progress=True))
    assert "training" in capsys.readouterr().err
    train_regression(arrays, TrainingSettings(n_epochs=2, batch_size=8, progress=False))
    assert capsys.readouterr().err == ""


def test_estimator_resume_from_completed_checkpoint(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    sample = ratio_sample(2000, rng)
    settings = TrainingSettings(n_epochs=2, batch_size=64, progress=False)
    first = ParameterizedRatioEstimator(n_hidden=(16,))
    history = first.train("alices", **sample, settings=settings, checkpoint_dir=tmp_path)
    again = ParameterizedRatioEstimator(n_hidden=(16,))
    history_again = again.train("alices", **sample, settings=settings, checkpoint_dir=tmp_path)
    assert history_again.train == history.train
    for key, value in first.net.state_dict().items():
        assert torch.equal(value, again.net.state_dict()[key])
    with pytest.raises(InputError, match="fingerprint"):
        again.train("alice", **sample, settings=settings, checkpoint_dir=tmp_path)
