"""ml-mode expected limits with the best estimator (ALICES) against the toy's exact regions.

Issue 4's correctness criterion: the 68 % and 95 % CL regions of ``ml`` mode overlap the truth
regions with intersection over union ≥ 0.8, with and without the rate term. ALICES is trained
as in ``test_ml_toy_accuracy.py`` (10⁵ rows, θ0 from a flat prior over the limit region,
θ1 = SM, 10 epochs); the Asimov data are the test partition of the same toy file. Both the
``truth`` mode on the same events (which shares their Monte-Carlo fluctuations, so the
difference is the estimator alone) and the toy's exact expected likelihood are compared.

Maps are computed on the workflow's 25×25 grid and compared on a 241×241 grid by cubic
refinement (:mod:`minerflow.physics.regions`): on 25×25 the 68 % region with the rate term has
only ~17 points. Slow (one to two minutes on two cores); the table prints with ``-s``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from minerflow.io.madminer_file import read_event_file
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics import toy
from minerflow.physics.limits import expected_limits, p_values, theta_grid
from minerflow.physics.regions import (
    CONFIDENCE_LEVELS,
    REFINEMENT,
    refine_map,
    region_mask,
    region_overlaps,
)
from minerflow.physics.sampling import SampleAugmenter, partitions
from minerflow.physics.weighted_events import MorphedEvents

pytestmark = pytest.mark.slow

REGION = toy.DEFAULT_LIMIT_REGION
RESOLUTIONS = toy.DEFAULT_LIMIT_RESOLUTIONS
TEST_SPLIT = 0.1  # 20 000 Asimov events: enough that truth mode finds the exact regions
SETTINGS = TrainingSettings(n_epochs=10, progress=False, seed=4)
SM = np.zeros((1, 2))

Maps = dict[bool, np.ndarray]  # include_xsec -> log-likelihood ratio on the grid


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory):
    return toy.write_event_file(tmp_path_factory.mktemp("toy") / "toy.h5", 200_000, seed=11)


@pytest.fixture(scope="module")
def alices(toy_file) -> ParameterizedRatioEstimator:
    """ALICES with default architecture, trained on the file's training partition."""
    augmenter = SampleAugmenter(toy_file, test_split=TEST_SPLIT, validation_split=0.0)
    rng = np.random.default_rng(13)
    prior = rng.uniform(REGION[0][0], REGION[0][1], (1000, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = augmenter.sample_train_ratio(prior, SM, 100_000, rng)
    estimator = ParameterizedRatioEstimator()
    estimator.train(
        "alices", sample["x"], sample["y"], sample["theta0"], sample["r_xz"], sample["t_xz"],
        alpha=1.0, settings=SETTINGS,
    )  # fmt: skip
    return estimator


@pytest.fixture(scope="module")
def maps(toy_file, alices) -> dict[str, Maps]:
    """Expected log-likelihood-ratio maps of ml mode, truth mode and the exact likelihood.

    One ``expected_limits`` call per mode (the estimator's evaluation is what takes time): its
    ``log_likelihood_ratio`` is the map with the rate term and its ``kinematic`` term the map
    without it, exactly what ``include_xsec=False`` returns.
    """
    events = read_event_file(toy_file)
    test = MorphedEvents.from_event_file(
        events, partitions(events.n_events, TEST_SPLIT, 0.0)["test"]
    )
    grid = theta_grid(REGION, RESOLUTIONS)
    common = (test, grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY)
    options = {"ml": {"estimator": alices}, "truth": {"log_likelihood": toy.log_likelihood}}
    out: dict[str, Maps] = {}
    for mode, option in options.items():
        result = expected_limits(mode, *common, **option)  # type: ignore[arg-type]
        out[mode] = {True: result.log_likelihood_ratio, False: result.kinematic}
    out["exact"] = {
        include: toy.expected_log_likelihood_ratio(
            grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY, include
        )
        for include in (True, False)
    }
    return out


def _overlaps(a: Maps, b: Maps) -> dict[bool, dict[float, float]]:
    return {include: region_overlaps(a[include], b[include], REGION, RESOLUTIONS) for include in a}


def test_exact_regions_are_well_inside_the_grid(maps: dict[str, Maps]) -> None:
    # an IoU of regions cut by the grid's edge would say little: the 95 % regions must close
    for include, values in maps["exact"].items():
        _, fine = refine_map(values, REGION, RESOLUTIONS)
        n = (RESOLUTIONS[0] - 1) * REFINEMENT + 1
        mask = region_mask(p_values(fine, 2)[1], 0.95).reshape(n, n)
        assert mask[n // 2, n // 2] and mask.sum() > 0.03 * n**2, include
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_ml_regions_overlap_the_truth_regions(maps: dict[str, Maps]) -> None:
    table = {
        (reference, include): overlaps
        for reference in ("truth", "exact")
        for include, overlaps in _overlaps(maps["ml"], maps[reference]).items()
    }
    baseline = _overlaps(maps["truth"], maps["exact"])
    print("\nIoU of ALICES ml-mode regions (25×25 grid refined to 241×241)")
    for (reference, include), overlaps in table.items():
        row = "  ".join(f"{cl:.0%}: {iou:.3f}" for cl, iou in overlaps.items())
        print(f"  vs {reference:5s} {'with' if include else 'without'} rate term  {row}")
    for include, overlaps in baseline.items():
        row = "  ".join(f"{cl:.0%}: {iou:.3f}" for cl, iou in overlaps.items())
        print(f"  (truth mode vs exact, {'with' if include else 'without'} rate term  {row})")
    for key, overlaps in table.items():
        assert set(overlaps) == set(CONFIDENCE_LEVELS)
        assert min(overlaps.values()) >= 0.8, key


def test_ml_best_fit_is_at_the_true_point(maps: dict[str, Maps]) -> None:
    # Asimov data at θ_true = SM: the ml best fit may miss it by at most one grid cell
    grid = theta_grid(REGION, RESOLUTIONS)
    for include in (True, False):
        best = grid[int(np.argmax(maps["ml"][include]))]
        assert np.all(np.abs(best - toy.DEFAULT_THETA_TRUE) <= 1 / 12 + 1e-9), (include, best)


class _ExactScore:
    """The toy's exact score at the SM, standing in for a perfectly trained SALLY model."""

    def evaluate_score(self, x: np.ndarray) -> np.ndarray:
        return toy.score(np.asarray(x, dtype=float), SM)[0]


@pytest.mark.parametrize("mode", ["sally", "sallino"])
def test_score_histogram_regions_overlap_the_exact_regions(
    toy_file, maps: dict[str, Maps], mode: str
) -> None:
    # with the exact score, sally and sallino histograms must find the exact regions; sallino
    # once compared densities of different statistics across θ and missed them (IoU 0.1-0.2)
    events = read_event_file(toy_file)
    split = partitions(events.n_events, TEST_SPLIT, 0.0)
    test, train = (MorphedEvents.from_event_file(events, split[name]) for name in ("test", "train"))
    grid = theta_grid(REGION, RESOLUTIONS)
    result = expected_limits(
        mode, test, grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY,
        estimator=_ExactScore(), templates=train,
    )  # fmt: skip
    estimated = {True: result.log_likelihood_ratio, False: result.kinematic}
    for include, overlaps in _overlaps(estimated, maps["exact"]).items():
        assert min(overlaps.values()) >= 0.75, (mode, include, overlaps)
