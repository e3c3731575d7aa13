"""Expected limits in ml mode: minerflow against MadMiner's ``AsymptoticLimits``, same model.

A MadMiner-trained ALICES ``ParameterizedRatioEstimator`` (saved in MadMiner's format, loaded
by minerflow unchanged) gives log r̂ on the grid for the same Asimov events; both sides are
timed from the saved model and the event file to p-values (best of ``--repeats``):

* small: the reference file, 25×25 grid on [−20, 20]², L = 1e4 pb⁻¹, Asimov events = the
  test-partition events generated at ``sm`` (171), as the workflow (goal ≥ 5× MadMiner);
* large: a toy file, 100×100 grid, 10⁴ Asimov events from every run (k-factors): 10⁸ network
  evaluations, where batching over θ and events matters.

The Asimov events are selected exactly as MadMiner does (its test partition, which drops one
event at the boundary) so the inputs agree row by row; the mean kinematic log-likelihood per
event is compared. MadMiner runs in its own environment (``setup_madminer_env.sh``).

    .venv/bin/python benchmarks/bench_limits.py                       # full size
    .venv/bin/python benchmarks/bench_limits.py --smoke               # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minerflow.io.madminer_file import k_factors, read_event_file
from minerflow.ml.persistence import load_estimator
from minerflow.physics import toy
from minerflow.physics.limits import MorphedEvents, expected_limits, theta_grid

HERE = Path(__file__).resolve().parent
REFERENCE_FILE = HERE.parents[1] / "shared" / "data" / "dummy_data.h5"
MADMINER_PYTHON = HERE / ".venv-madminer" / "bin" / "python"


@dataclass(frozen=True)
class Case:
    label: str
    file: Path
    grid_range: tuple[float, float]
    resolution: int
    luminosity: float
    test_split: float
    n_asimov: int | None
    all_benchmarks: bool


def asimov_events(case: Case) -> tuple[MorphedEvents, float]:
    """MadMiner's Asimov events for θ_true = 0, and its n = L σ(θ_true) (test partition)."""
    events = read_event_file(case.file)
    n = events.n_events
    start = round((1.0 - case.test_split) * n) + 1
    ids = events.sampling_benchmarks(start)
    weights = events.weights(start) * k_factors(events.header, ids)[:, None]
    n_madminer = case.luminosity * weights[:, 0].sum() / case.test_split  # benchmark 0 = sm
    rows = np.arange(len(ids)) if case.all_benchmarks else np.flatnonzero(ids == 0)
    rows = rows[: case.n_asimov]
    if not case.all_benchmarks:  # one run only: MadMiner applies no k-factor there
        weights = events.weights(start)
    selected = MorphedEvents(
        events.observations(start)[rows],
        weights[rows] / case.test_split,
        events.header.morpher(),
        tuple(events.header.observable_names),
    )
    return selected, n_madminer


def run_madminer(case: Case, workdir: Path, args: argparse.Namespace) -> dict:
    if not MADMINER_PYTHON.exists():
        sys.exit(f"{MADMINER_PYTHON}: missing; run benchmarks/setup_madminer_env.sh first")
    command = [
        str(MADMINER_PYTHON), str(HERE / "madminer_limits_driver.py"), "--file", str(case.file),
        "--workdir", str(workdir), "--range", *map(str, case.grid_range),
        "--resolution", str(case.resolution), "--luminosity", str(case.luminosity),
        "--test-split", str(case.test_split), "--n-train", str(args.n_train),
        "--epochs", str(args.epochs), "--repeats", str(args.repeats),
    ]  # fmt: skip
    if case.n_asimov is not None:
        command += ["--n-asimov", str(case.n_asimov)]
    if case.all_benchmarks:
        command.append("--all-benchmarks")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"MadMiner driver failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_minerflow(case: Case, model: str, repeats: int) -> tuple[dict[str, float], dict]:
    """Best wall time from model + file to p-values, and the results of the last repeat."""
    grid = theta_grid([case.grid_range] * 2, case.resolution)
    times: dict[str, list[float]] = {"xsec": [], "kin": []}
    results = {}
    for _ in range(repeats):
        for key, include_xsec in (("xsec", True), ("kin", False)):
            start = time.perf_counter()
            estimator = load_estimator(model, device="cpu")
            events, _ = asimov_events(case)
            results[key] = expected_limits(
                "ml", events, grid, [0.0, 0.0], case.luminosity,
                estimator=estimator, include_xsec=include_xsec,
            )  # fmt: skip
            times[key].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-events", type=int, default=60_000)
    parser.add_argument("--large-resolution", type=int, default=100)
    parser.add_argument("--n-asimov", type=int, default=10_000)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.toy_events, args.large_resolution, args.n_asimov = 6_000, 10, 1_000
        args.n_train, args.epochs, args.repeats = 2_000, 1, 1

    with tempfile.TemporaryDirectory(prefix="bench_limits_") as scratch:
        toy_path = toy.write_event_file(Path(scratch) / "toy.h5", args.toy_events, seed=0)
        cases = [
            Case("reference 25x25", REFERENCE_FILE, (-20.0, 20.0), 25, 1e4, 0.2, None, False),
            Case(
                f"toy {args.large_resolution}x{args.large_resolution}", toy_path,
                toy.DEFAULT_LIMIT_REGION[0], args.large_resolution, toy.DEFAULT_LUMINOSITY,
                0.2, args.n_asimov, True,
            ),
        ]  # fmt: skip
        print(
            f"{'case':<16} {'xsec':<5} {'events':>7} {'MadMiner s':>11} {'minerflow s':>12} "
            f"{'speed-up':>9} {'max |Δ mean ℓ|':>15} {'same best fit':>14}"
        )
        for case in cases:
            workdir = Path(scratch) / case.label.replace(" ", "_")
            theirs = run_madminer(case, workdir, args)
            ours, results = run_minerflow(case, theirs["model"], args.repeats)
            reference = np.load(workdir / "madminer_limits.npz")
            events, n_madminer = asimov_events(case)
            if not np.allclose(events.observations, reference["x_asimov"], rtol=0, atol=1e-12):
                sys.exit(f"{case.label}: Asimov events differ from MadMiner's")
            for key in ("xsec", "kin"):
                result = results[key]
                ours_mean = result.kinematic / result.n_events
                their_mean = reference[f"kin_{key}"] / n_madminer
                same = int(reference[f"best_{key}"]) == result.best_fit_index
                print(
                    f"{case.label:<16} {key == 'xsec'!s:<5} {len(events):>7} "
                    f"{theirs['best'][key]:>11.3f} {ours[key]:>12.3f} "
                    f"{theirs['best'][key] / ours[key]:>8.1f}× "
                    f"{np.abs(ours_mean - their_mean).max():>15.2e} {same!s:>14}"
                )


if __name__ == "__main__":
    main()
