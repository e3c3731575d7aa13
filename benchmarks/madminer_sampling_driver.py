"""Time MadMiner's SampleAugmenter on one event file; runs inside benchmarks/.venv-madminer.

Called by ``bench_sampling.py`` as a subprocess (MadMiner lives only in its own environment).
Prints one JSON object: the best and all wall times (seconds) of each sampling call, each
repeat starting from a fresh ``SampleAugmenter`` so file reading is included, as in ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", required=True)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-points", type=int, default=20)
    parser.add_argument("--test-split", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from madminer.sampling import SampleAugmenter, benchmark, random_morphing_points

    np.random.seed(args.seed)
    prior = random_morphing_points(args.n_points, [("gaussian", 0.0, 1.0), ("gaussian", 0.0, 1.0)])
    calls = {
        "ratio": lambda aug: aug.sample_train_ratio(
            theta0=prior,
            theta1=benchmark("sm"),
            n_samples=args.n_samples,
            test_split=args.test_split,
        ),
        "local": lambda aug: aug.sample_train_local(
            theta=benchmark("sm"), n_samples=args.n_samples, test_split=args.test_split
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    shapes: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            result = call(SampleAugmenter(args.file))
            times[name].append(time.perf_counter() - start)
            shapes[name] = list(np.shape(result[0]))
    print(json.dumps({"best": {k: min(v) for k, v in times.items()}, "all": times, "x": shapes}))


if __name__ == "__main__":
    main()
