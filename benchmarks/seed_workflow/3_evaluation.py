"""Seed step 3: evaluate one trained model, and the limits the seed computes beside it.

As the seed's evaluation script, per model: expected limits from the rate alone
(``rates/grid.npy``, ``rates/rate.npz``); test events (ratio methods: ``sample_train_ratio``
named ``test`` on the train partition, a quirk of the seed; score methods:
``sample_train_local``); log r̂ and its score on the whole θ grid (ratio) or the score t̂
(score); for score methods the Fisher information (``full_information`` and
``histo_information``, logged); then for each ``include_xsec`` flag the expected limits of the
``histogram_vars`` histogram (``rates/histo[_kin].npz``) and of the model (``ml`` mode for
ratio methods, ``histo`` with the model, which MadMiner runs as ``sally``, for score methods:
``results/<method>/<mode>/<method>[_kin].npz``). p-values and best-fit index are saved as
``.npz`` (the seed saves a ragged list, which only old numpy accepts).

Tracking (with ``$MLFLOW_TRACKING_URI`` set), as the seed's evaluation step: one run in
``madminer-ml-eval`` with the command line's options as parameters, the tags
``context: workflow`` and ``method``, two or three metrics and the ``results/<method>`` folder
as artifacts, logged between the model's evaluation and the limits (so, as in the seed, the
artifacts are ``llr.npy`` and ``scores.npy``). Metrics: ratio methods the mean log r̂ over the
grid and the test events and the mean of each score component; score methods the mean of each
component of t̂. (The seed's "θ LLR" metrics average the first two test events over the grid;
the count and cost are the same.)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from seed_inputs import (
    RATIO_METHODS,
    SCORE_METHODS,
    configure_logging,
    limit_grid,
    method_of_folder,
    read_input,
    theta_values,
    tracked,
)

LOG = logging.getLogger("seed.evaluation")


def save_limits(path: Path, result: tuple[Any, ...]) -> None:
    """p-values and best-fit index of an ``expected_limits`` result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, p_values=result[1], best_fit=result[2])


def fisher_information(inputs: dict[str, Any], data_file: str, model: str, lumi: float) -> None:
    """Log the Fisher information of the model and of the input's histogram, as the seed."""
    from madminer.fisherinformation import FisherInformation

    settings = inputs["fisher_information"]
    fisher = FisherInformation(data_file, include_nuisance_parameters=False)
    info, _ = fisher.full_information(
        theta=settings["theta_true"], luminosity=lumi, model_file=model
    )
    LOG.info("Fisher information (model):\n%s", info)
    info, _ = fisher.histo_information(
        theta=settings["theta_true"],
        luminosity=lumi,
        observable=settings["observable"],
        bins=settings["histogram_bins"],
        histrange=settings["histogram_range"],
    )
    LOG.info("Fisher information (1-D histogram):\n%s", info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-file", required=True)
    parser.add_argument("--input-file", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--luminosity", type=float, default=1e4)
    parser.add_argument("--n-samples-test", type=int, default=100)
    args = parser.parse_args()
    configure_logging()
    method = method_of_folder(args.model_dir)
    with tracked("evaluation", args, {"method": method}) as mlflow:
        evaluate(args, method, mlflow)


def log_evaluation(
    mlflow: ModuleType, results_dir: Path, scores: np.ndarray, llr: np.ndarray | None
) -> None:
    """The seed's evaluation record: mean log r̂ and score components, the results folder."""
    metrics = {f"mean_score_{i}": float(np.mean(scores[..., i])) for i in range(scores.shape[-1])}
    if llr is not None:
        metrics["mean_log_r"] = float(np.mean(llr))
    mlflow.log_metrics(metrics)
    mlflow.log_artifacts(str(results_dir))


def evaluate(args: argparse.Namespace, method: str, mlflow: ModuleType | None) -> None:
    """Rate limits, the model on the test events, then histogram and model limits."""
    from madminer.limits import AsymptoticLimits
    from madminer.ml import ParameterizedRatioEstimator, ScoreEstimator
    from madminer.sampling import SampleAugmenter

    inputs = read_input(args.input_file)
    model = str(args.model_dir / method)
    rates_dir = args.output_dir / "rates"
    results_dir = args.output_dir / "results" / method
    test_dir = args.output_dir / "test" / method
    ranges, resolutions, theta_true = limit_grid(inputs)
    grid_settings = {
        "theta_true": theta_true,
        "grid_ranges": ranges,
        "grid_resolutions": resolutions,
        "luminosity": args.luminosity,
    }

    limits = AsymptoticLimits(args.data_file)
    rate = limits.expected_limits(mode="rate", include_xsec=True, **grid_settings)
    rates_dir.mkdir(parents=True, exist_ok=True)
    np.save(rates_dir / "grid.npy", rate[0])
    save_limits(rates_dir / "rate.npz", rate)
    grid = rate[0]

    sampler = SampleAugmenter(args.data_file, include_nuisance_parameters=False)
    specs = inputs[method]
    test = {"n_samples": args.n_samples_test, "folder": str(test_dir), "filename": "test"}
    results_dir.mkdir(parents=True, exist_ok=True)
    llr: np.ndarray | None = None
    if method in RATIO_METHODS:
        sampler.sample_train_ratio(
            theta0=theta_values(specs["theta_0"]), theta1=theta_values(specs["theta_1"]), **test
        )
        estimator = ParameterizedRatioEstimator()
        estimator.load(model)
        llr, scores = estimator.evaluate_log_likelihood_ratio(
            x=np.load(test_dir / "x_test.npy"),
            theta=grid,
            test_all_combinations=True,
            evaluate_score=True,
        )
        np.save(results_dir / "llr.npy", llr)
        mode = "ml"
    elif method in SCORE_METHODS:
        if inputs.get("fisher_information", {}).get("bool", False):
            fisher_information(inputs, args.data_file, model, args.luminosity)
        sampler.sample_train_local(theta=theta_values(specs["theta_0"]), **test)
        estimator = ScoreEstimator()
        estimator.load(model)
        scores = estimator.evaluate_score(x=np.load(test_dir / "x_test.npy"), theta=grid)
        mode = "histo"
    else:
        raise ValueError(f"no evaluation for method {method!r}")
    np.save(results_dir / "scores.npy", scores)
    if mlflow is not None:
        log_evaluation(mlflow, results_dir, scores, llr)

    histogram_vars = inputs["histogram_vars"]
    if isinstance(histogram_vars, str):
        histogram_vars = [histogram_vars]
    for include_xsec in inputs["include_xsec"]:
        suffix = "" if include_xsec else "_kin"
        histo = limits.expected_limits(
            mode="histo", include_xsec=include_xsec, hist_vars=histogram_vars, **grid_settings
        )
        save_limits(rates_dir / f"histo{suffix}.npz", histo)
        result = limits.expected_limits(
            mode=mode, include_xsec=include_xsec, model_file=model, **grid_settings
        )
        save_limits(results_dir / mode / f"{method}{suffix}.npz", result)


if __name__ == "__main__":
    main()
