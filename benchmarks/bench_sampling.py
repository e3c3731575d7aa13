"""Sampling throughput: minerflow's SampleAugmenter against MadMiner's, side by side in one run.

Same specs as the MadMiner workflow: a ratio sample with θ0 = 20 random morphing points
(N(0, 1) prior per parameter) against θ1 = ``sm``, and a local sample at ``sm``; 10⁵ samples,
``test_split=0.5``. Files: the reference MadMiner file and a toy file of 10⁶ events (goal on
the toy file: ≥ 5× MadMiner). Each repeat starts from a fresh augmenter, so reading the file
is part of the time for both; the best of ``--repeats`` is reported.

MadMiner runs as a subprocess in its own environment (``benchmarks/setup_madminer_env.sh``),
timed inside that process (``madminer_sampling_driver.py``), so its import time is excluded.

    .venv/bin/python benchmarks/bench_sampling.py                     # full size
    .venv/bin/python benchmarks/bench_sampling.py --toy-events 100000 # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from minerflow.physics import toy
from minerflow.physics.parameters import Benchmark, Prior, RandomMorphingPoints
from minerflow.physics.sampling import SampleAugmenter

HERE = Path(__file__).resolve().parent
REFERENCE_FILE = HERE.parents[1] / "shared" / "data" / "dummy_data.h5"
MADMINER_PYTHON = HERE / ".venv-madminer" / "bin" / "python"


def time_minerflow(path: Path, n_samples: int, n_points: int, test_split: float, repeats: int):
    """Best wall time of our ratio and local samples, each from a fresh augmenter."""
    prior = RandomMorphingPoints(n_points, (Prior("gaussian", 0.0, 1.0),) * 2)
    sm = Benchmark("sm")
    calls = {
        "ratio": lambda aug, rng: aug.sample_train_ratio(prior, sm, n_samples, rng),
        "local": lambda aug, rng: aug.sample_train_local(sm, n_samples, rng),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small n_eff / outside-range points are expected here
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                sample = call(SampleAugmenter(path, test_split=test_split), rng)
                times[name].append(time.perf_counter() - start)
                assert sample["x"].shape == (n_samples, 2)
    return {name: min(values) for name, values in times.items()}


def time_madminer(path: Path, n_samples: int, n_points: int, test_split: float, repeats: int):
    """Best wall time of MadMiner's calls, measured inside its own environment."""
    if not MADMINER_PYTHON.exists():
        sys.exit(f"{MADMINER_PYTHON}: missing; run benchmarks/setup_madminer_env.sh first")
    command = [
        str(MADMINER_PYTHON), str(HERE / "madminer_sampling_driver.py"), "--file", str(path),
        "--n-samples", str(n_samples), "--n-points", str(n_points),
        "--test-split", str(test_split), "--repeats", str(repeats),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"MadMiner driver failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-events", type=int, default=1_000_000)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-points", type=int, default=20)
    parser.add_argument("--test-split", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-file", type=Path, default=REFERENCE_FILE)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_sampling_") as scratch:
        toy_path = Path(scratch) / "toy.h5"
        start = time.perf_counter()
        toy.write_event_file(toy_path, args.toy_events, seed=0)
        print(
            f"toy file: {args.toy_events:,} events written in {time.perf_counter() - start:.1f} s"
        )
        files = {"reference": args.reference_file, f"toy {args.toy_events:,}": toy_path}
        print(f"{'file':<16} {'sample':<7} {'MadMiner s':>11} {'minerflow s':>12} {'speed-up':>9}")
        for label, path in files.items():
            settings = (path, args.n_samples, args.n_points, args.test_split, args.repeats)
            theirs = time_madminer(*settings)
            ours = time_minerflow(*settings)
            for name in ("ratio", "local"):
                print(
                    f"{label:<16} {name:<7} {theirs[name]:>11.3f} {ours[name]:>12.3f} "
                    f"{theirs[name] / ours[name]:>8.1f}×"
                )


if __name__ == "__main__":
    main()
