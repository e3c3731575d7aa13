"""Accuracy of expected limits for every method on the toy: region IoU against the exact truth.

Issue 4 asks that the 68 % and 95 % CL regions of ``ml`` mode with the best estimator overlap
the truth regions with intersection over union ≥ 0.8, and for the figure of every method.
On one toy event file this trains

* the ratio methods carl, rolr, alice, alices, rascal, cascal (``ml`` mode), on one sample
  with θ0 from a flat prior over the limit region and θ1 = SM, α = 1;
* sally (``sally`` mode) and sallino (``sallino`` mode), on one local sample at the SM;
* nde and scandal (``ml`` mode with the flow's log p̂), on one sample with θ from the prior;

with the default architectures and training settings, and computes the expected limits on
the toy's 25×25 grid from the test-partition Asimov data (L = 10 fb⁻¹, θ_true = SM); sally
and sallino fill their histograms from the training partition. Each region is compared with
the one of the exact expected likelihood (``toy.expected_log_likelihood_ratio``) after both
maps are refined by cubic splines to 241×241 (:mod:`minerflow.physics.regions`). Reference
rows: ``truth`` mode (the exact log p on the same Asimov events: their Monte-Carlo limit) and
``histo`` (2-D histogram of both observables). The log r MSE is that of
``test_ml_toy_accuracy.py``: held-out test events at the SM × a 5×5 θ grid, against the exact
log r(x|θ, SM) (density estimators: log p̂(x|θ) − log p̂(x|SM)); score methods report the
correlation of t̂ with the exact score instead.

    .venv/bin/python benchmarks/accuracy_limits.py              # full size (tens of minutes)
    .venv/bin/python benchmarks/accuracy_limits.py --smoke      # tiny, under a minute
    .venv/bin/python benchmarks/accuracy_limits.py --save benchmarks/results/accuracy_limits.txt
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minerflow.io.atomic import atomic_path
from minerflow.io.madminer_file import read_event_file
from minerflow.ml.density import LikelihoodEstimator
from minerflow.ml.ratio import ParameterizedRatioEstimator
from minerflow.ml.score import ScoreEstimator
from minerflow.ml.training import TrainingSettings
from minerflow.physics import toy
from minerflow.physics.limits import expected_limits, theta_grid
from minerflow.physics.regions import CONFIDENCE_LEVELS, REFINEMENT, region_overlaps
from minerflow.physics.sampling import SampleAugmenter, partitions
from minerflow.physics.weighted_events import MorphedEvents

RATIO_METHODS = ("carl", "rolr", "alice", "alices", "rascal", "cascal")
SCORE_METHODS = ("sally", "sallino")
DENSITY_METHODS = ("nde", "scandal")
REGION = toy.DEFAULT_LIMIT_REGION
SM = np.zeros((1, 2))

Maps = dict[bool, np.ndarray]  # include_xsec -> log-likelihood ratio on the grid


@dataclass(frozen=True)
class Size:
    n_events: int  # toy events in the file
    test_split: float  # share of the file that gives the Asimov data
    n_samples: int  # training rows per sample
    n_epochs: int
    n_prior: int  # θ0 points drawn from the flat prior
    n_mse_events: int  # held-out events of the log r MSE
    resolution: int  # limit grid points per axis


FULL = Size(200_000, 0.1, 100_000, TrainingSettings().n_epochs, 1000, 2000, 25)
SMOKE = Size(6_000, 0.25, 3_000, 1, 50, 200, 9)


@dataclass(frozen=True)
class Row:
    method: str
    mode: str
    overlaps: dict[bool, dict[float, float]]  # include_xsec -> CL -> IoU with the exact regions
    log_r_mse: float | None
    score_correlation: float | None
    train_seconds: float
    limit_seconds: float


@dataclass(frozen=True)
class Setup:
    """The toy file's samplers and partitions, the grid, the exact maps and held-out events."""

    augmenter: SampleAugmenter
    test: MorphedEvents
    train: MorphedEvents
    grid: np.ndarray
    resolution: int
    exact: Maps
    x_mse: np.ndarray
    mse_grid: np.ndarray

    def limits(self, mode: str, **options: object) -> tuple[Maps, float]:
        """ml/histogram-mode maps with and without the rate term (one call), and its seconds.

        The result's ``kinematic`` term is the map without the rate term, as ``include_xsec=False``.
        """
        start = time.perf_counter()
        result = expected_limits(
            mode,  # type: ignore[arg-type]
            self.test,
            self.grid,
            toy.DEFAULT_THETA_TRUE,
            toy.DEFAULT_LUMINOSITY,
            **options,  # type: ignore[misc]
        )
        seconds = time.perf_counter() - start
        return {True: result.log_likelihood_ratio, False: result.kinematic}, seconds

    def overlaps(self, maps: Maps) -> dict[bool, dict[float, float]]:
        """IoU with the exact regions per include_xsec and CL, on the refined grid."""
        return {
            include: region_overlaps(
                maps[include], self.exact[include], REGION, self.resolution, CONFIDENCE_LEVELS
            )
            for include in (True, False)
        }


def make_setup(folder: Path, size: Size, rng: np.random.Generator) -> Setup:
    path = toy.write_event_file(folder / "toy.h5", size.n_events, seed=11)
    events = read_event_file(path)
    parts = partitions(events.n_events, size.test_split, 0.0)
    grid = theta_grid(REGION, size.resolution)
    exact = {
        include: toy.expected_log_likelihood_ratio(
            grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY, include
        )
        for include in (True, False)
    }
    augmenter = SampleAugmenter(path, test_split=size.test_split, validation_split=0.0)
    x_mse = augmenter.sample_test(SM, size.n_mse_events, rng)["x"].astype(np.float64)
    return Setup(
        augmenter=augmenter,
        test=MorphedEvents.from_event_file(events, parts["test"]),
        train=MorphedEvents.from_event_file(events, parts["train"]),
        grid=grid,
        resolution=size.resolution,
        exact=exact,
        x_mse=x_mse,
        mse_grid=theta_grid(REGION, 5),
    )


def reference_rows(setup: Setup) -> list[Row]:
    """truth mode (exact log p on the Asimov events) and 2-D histograms of the observables."""
    rows = []
    for method, mode, options in (
        ("truth", "truth", {"log_likelihood": toy.log_likelihood}),
        (
            "histo",
            "histo",
            {"templates": setup.train, "observables": ("pt_j1", "delta_phi_jj")},
        ),
    ):
        maps, seconds = setup.limits(mode, **options)
        rows.append(Row(method, mode, setup.overlaps(maps), None, None, 0.0, seconds))
    return rows


def progress(row: Row) -> None:
    print(
        f"  {row.method}: training {row.train_seconds:.0f} s, limits {row.limit_seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )


def log_r_mse(setup: Setup, log_r: np.ndarray) -> float:
    truth = toy.log_likelihood_ratio(setup.x_mse, setup.mse_grid, SM)
    return float(np.mean((log_r - truth) ** 2))


def ratio_rows(setup: Setup, size: Size, settings: TrainingSettings, rng) -> list[Row]:
    prior = rng.uniform(REGION[0][0], REGION[0][1], (size.n_prior, 2))
    sample = setup.augmenter.sample_train_ratio(prior, SM, size.n_samples, rng)
    rows = []
    for method in RATIO_METHODS:
        estimator = ParameterizedRatioEstimator()
        history = estimator.train(
            method, sample["x"], sample["y"], sample["theta0"], sample["r_xz"], sample["t_xz"],
            alpha=1.0, settings=settings,
        )  # fmt: skip
        maps, seconds = setup.limits("ml", estimator=estimator)
        log_r, _ = estimator.evaluate_log_likelihood_ratio(setup.x_mse, setup.mse_grid)
        mse = log_r_mse(setup, log_r)
        rows.append(Row(method, "ml", setup.overlaps(maps), mse, None, history.wall_time, seconds))
        progress(rows[-1])
    return rows


def score_rows(setup: Setup, size: Size, settings: TrainingSettings, rng) -> list[Row]:
    sample = setup.augmenter.sample_train_local(SM, size.n_samples, rng)
    exact_score = toy.score(setup.x_mse, SM)[0]
    rows = []
    for method in SCORE_METHODS:
        estimator = ScoreEstimator()
        history = estimator.train(method, sample["x"], sample["t_xz"], settings=settings)
        maps, seconds = setup.limits(method, estimator=estimator, templates=setup.train)
        estimate = estimator.evaluate_score(setup.x_mse)
        correlation = min(
            float(np.corrcoef(estimate[:, k], exact_score[:, k])[0, 1]) for k in range(2)
        )
        overlaps = setup.overlaps(maps)
        rows.append(Row(method, method, overlaps, None, correlation, history.wall_time, seconds))
        progress(rows[-1])
    return rows


def density_rows(setup: Setup, size: Size, settings: TrainingSettings, rng) -> list[Row]:
    prior = rng.uniform(REGION[0][0], REGION[0][1], (size.n_prior, 2))
    sample = setup.augmenter.sample_train_density(prior, size.n_samples, rng)
    rows = []
    for method in DENSITY_METHODS:
        estimator = LikelihoodEstimator()
        history = estimator.train(
            method, sample["x"], sample["theta"], t_xz=sample["t_xz"], alpha=1.0, settings=settings
        )
        maps, seconds = setup.limits("ml", estimator=estimator)
        log_p, _ = estimator.evaluate_log_likelihood(setup.x_mse, setup.mse_grid)
        log_p_sm, _ = estimator.evaluate_log_likelihood(setup.x_mse, SM)
        mse = log_r_mse(setup, log_p - log_p_sm)
        rows.append(Row(method, "ml", setup.overlaps(maps), mse, None, history.wall_time, seconds))
        progress(rows[-1])
    return rows


def table(rows: list[Row], size: Size) -> str:
    n_fine = (size.resolution - 1) * REFINEMENT + 1
    levels = [f"{cl:.0%}" for cl in CONFIDENCE_LEVELS]
    head = (
        f"{'method':8s} {'mode':8s} "
        + " ".join(f"{'xsec ' + cl:>9s}" for cl in levels)
        + " "
        + " ".join(f"{'kin ' + cl:>9s}" for cl in levels)
        + f" {'log r MSE':>10s} {'t corr':>8s} {'train s':>8s} {'limits s':>9s}"
    )
    lines = [
        "IoU of the expected CL regions with those of the exact toy likelihood "
        f"({size.resolution}×{size.resolution} grid on [-1, 1]², refined to {n_fine}×{n_fine}); "
        "xsec: with the rate term, kin: without; t corr: min over components of corr(t̂, t)",
        head,
        "-" * len(head),
    ]
    for row in rows:
        ious = [row.overlaps[include][cl] for include in (True, False) for cl in CONFIDENCE_LEVELS]
        mse = "—" if row.log_r_mse is None else f"{row.log_r_mse:.4f}"
        corr = "—" if row.score_correlation is None else f"{row.score_correlation:.4f}"
        lines.append(
            f"{row.method:8s} {row.mode:8s} "
            + " ".join(f"{iou:9.3f}" for iou in ious)
            + f" {mse:>10s} {corr:>8s} {row.train_seconds:8.1f} {row.limit_seconds:9.1f}"
        )
    return "\n".join(lines)


def provenance(size: Size, argv: list[str]) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return "\n".join(
        [
            f"date: {datetime.date.today().isoformat()}",
            f"command: .venv/bin/python {shlex.join(argv)}",
            f"commit: {commit}; {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)",
            f"size: {size}",
            f"L = {toy.DEFAULT_LUMINOSITY:g} pb^-1, theta_true = {toy.DEFAULT_THETA_TRUE}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--save", type=Path, help="also write the table (with provenance) here")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    size = SMOKE if args.smoke else FULL
    settings = TrainingSettings(n_epochs=size.n_epochs, progress=False, seed=4)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # low effective sample sizes of the sampler
        setup = make_setup(Path(folder), size, rng)
        rows = reference_rows(setup)
        rows += ratio_rows(setup, size, settings, rng)
        rows += score_rows(setup, size, settings, rng)
        rows += density_rows(setup, size, settings, rng)
    text = f"{provenance(size, sys.argv)}\n\n{table(rows, size)}\n"
    text += f"\ntotal {time.perf_counter() - start:.0f} s\n"
    print(text)
    if args.save:
        with atomic_path(args.save) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    main()
