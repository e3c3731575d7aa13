"""Time MadMiner 0.9.6's ParameterizedRatioEstimator (runs inside benchmarks/.venv-madminer).

Reads the arrays bench_training.py wrote (``x.npy``, ``y.npy``, ``theta.npy``, ``r_xz.npy``,
``t_xz.npy``, ``x_test.npy``, ``grid.npy``) and, for each ``--n-workers`` value, trains a fresh
estimator and times ``train``; the last model is saved under ``<out>/alices`` and evaluated on
``x_test`` x ``grid`` with the score (timed). Prints one JSON line with the timings.
Imports only MadMiner's own stack, never minerflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from madminer.ml import ParameterizedRatioEstimator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--method", default="alices")
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--validation-split", type=float, default=0.3)
    parser.add_argument("--n-workers", type=int, nargs="+", default=[8, 0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = {
        name: np.load(args.data / f"{name}.npy") for name in ("x", "y", "theta", "r_xz", "t_xz")
    }
    train_seconds = {}
    estimator = None
    for n_workers in args.n_workers:
        estimator = ParameterizedRatioEstimator(n_hidden=(100, 100, 100), activation="tanh")
        start = time.perf_counter()
        estimator.train(
            args.method,
            x=data["x"], y=data["y"], theta=data["theta"], r_xz=data["r_xz"], t_xz=data["t_xz"],
            alpha=args.alpha, n_epochs=args.epochs, batch_size=args.batch_size,
            validation_split=args.validation_split, n_workers=n_workers, verbose="none",
        )  # fmt: skip
        train_seconds[str(n_workers)] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    estimator.save(str(args.out / "alices"))
    x_test, grid = np.load(args.data / "x_test.npy"), np.load(args.data / "grid.npy")
    start = time.perf_counter()
    log_r, score = estimator.evaluate_log_likelihood_ratio(
        x=x_test, theta=grid, test_all_combinations=True, evaluate_score=True
    )
    evaluate_seconds = time.perf_counter() - start
    np.save(args.out / "log_r.npy", log_r)
    np.save(args.out / "score.npy", score)
    print(json.dumps({"train_seconds": train_seconds, "evaluate_seconds": evaluate_seconds}))


if __name__ == "__main__":
    main()
