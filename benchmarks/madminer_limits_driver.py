"""Train a MadMiner ALICES model and time MadMiner's ``AsymptoticLimits`` (ml mode) with it.

Runs inside benchmarks/.venv-madminer, called by ``bench_limits.py``. Training (untimed) follows
the workflow: θ0 = 20 random morphing points with N(0, 1) priors, θ1 = ``sm``, 3×100 tanh,
α = 10, batch 128. The model is saved with MadMiner's ``save(prefix)``, so minerflow loads the
very same network. Writes ``<workdir>/madminer_limits.npz`` (p-values and terms of the last
repeat, the Asimov events) and prints one JSON line with the wall times.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--range", type=float, nargs=2, default=(-20.0, 20.0))
    parser.add_argument("--resolution", type=int, default=25)
    parser.add_argument("--luminosity", type=float, default=1e4)
    parser.add_argument("--test-split", type=float, default=0.2)
    parser.add_argument("--n-asimov", type=int, default=None)
    parser.add_argument("--all-benchmarks", action="store_true", help="Asimov from every run")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from madminer.limits import AsymptoticLimits
    from madminer.ml import ParameterizedRatioEstimator
    from madminer.sampling import SampleAugmenter, benchmark, random_morphing_points

    np.random.seed(1)
    prior = random_morphing_points(20, [("gaussian", 0.0, 1.0), ("gaussian", 0.0, 1.0)])
    x, theta0, _, y, r_xz, t_xz, _ = SampleAugmenter(args.file).sample_train_ratio(
        theta0=prior, theta1=benchmark("sm"), n_samples=args.n_train, test_split=0.5
    )
    estimator = ParameterizedRatioEstimator(n_hidden=(100, 100, 100), activation="tanh")
    estimator.train(
        method="alices", x=x, y=y, theta=theta0, r_xz=r_xz, t_xz=t_xz, alpha=10.0,
        n_epochs=args.epochs, batch_size=128, validation_split=0.3, n_workers=0, verbose="none",
    )  # fmt: skip
    prefix = args.workdir / "model" / "alices"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    estimator.save(str(prefix))

    theta_true = np.zeros(2)
    settings = {
        "mode": "ml", "theta_true": theta_true, "grid_ranges": [tuple(args.range)] * 2,
        "grid_resolutions": [args.resolution] * 2, "model_file": str(prefix),
        "luminosity": args.luminosity, "test_split": args.test_split, "n_asimov": args.n_asimov,
        "sample_only_from_closest_benchmark": not args.all_benchmarks,
    }  # fmt: skip
    times: dict[str, list[float]] = {"xsec": [], "kin": []}
    arrays = {}
    for _ in range(args.repeats):
        for key, include_xsec in (("xsec", True), ("kin", False)):
            limits = AsymptoticLimits(args.file)
            start = time.perf_counter()
            _, p_values, best, log_r_kin, log_p_xsec, _ = limits.expected_limits(
                include_xsec=include_xsec, **settings
            )
            times[key].append(time.perf_counter() - start)
            arrays.update({
                f"p_{key}": p_values, f"best_{key}": best, f"kin_{key}": log_r_kin,
                f"rate_{key}": log_p_xsec,
            })  # fmt: skip
    x_asimov, w_asimov = limits._asimov_data(
        theta_true, args.test_split, not args.all_benchmarks, args.n_asimov
    )
    np.savez(args.workdir / "madminer_limits.npz", x_asimov=x_asimov, w_asimov=w_asimov, **arrays)
    best_times = {k: min(v) for k, v in times.items()}
    print(json.dumps({"best": best_times, "all": times, "model": str(prefix)}))


if __name__ == "__main__":
    main()
