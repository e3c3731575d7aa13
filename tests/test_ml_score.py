"""Score estimator (SALLY/SALLINO) against the exact score of the Gaussian toy."""

from __future__ import annotations

import numpy as np
import pytest

from minerflow.errors import InputError
from minerflow.ml.score import ScoreEstimator
from minerflow.ml.training import TrainingSettings
from ml_gaussian_toy import VARIANCE, local_sample, score


@pytest.mark.parametrize("method", ["sally", "sallino"])
def test_score_correlates_with_the_exact_score(method: str) -> None:
    rng = np.random.default_rng(7)
    sample = local_sample(8000, rng)
    estimator = ScoreEstimator(n_hidden=(32, 32))
    settings = TrainingSettings(n_epochs=5, batch_size=128, lr=2e-3, progress=False)
    history = estimator.train(method, **sample, settings=settings)
    assert history.term_names == ("mse_score",)
    x = rng.normal(0.0, np.sqrt(VARIANCE), size=(2000, 1))
    estimate = estimator.evaluate_score(x)
    assert estimate.shape == (2000, 1)
    truth = score(x[:, 0], 0.0)
    assert np.corrcoef(estimate[:, 0], truth)[0, 1] > 0.99
    assert np.mean((estimate[:, 0] - truth) ** 2) < 0.02


def test_several_components_and_bad_input(rng: np.random.Generator) -> None:
    x = rng.normal(size=(300, 3))
    t_xz = np.column_stack([x[:, 0], -x[:, 1], x[:, 2] ** 2])
    estimator = ScoreEstimator(n_hidden=(16,))
    estimator.train("sally", x, t_xz, settings=TrainingSettings(n_epochs=1, progress=False))
    assert estimator.evaluate_score(x[:5]).shape == (5, 3)
    with pytest.raises(InputError, match="x: expected 3 columns, got 2"):
        estimator.evaluate_score(x[:, :2])
    with pytest.raises(InputError, match="one of sallino, sally, got 'alices'"):
        estimator.train("alices", x, t_xz)
    with pytest.raises(InputError, match="method sally: t_xz: expected 300 rows like x, got 299"):
        estimator.train("sally", x, t_xz[:-1])
    with pytest.raises(InputError, match="method sally: t_xz: expected a t_xz array"):
        estimator.train("sally", x, None)
