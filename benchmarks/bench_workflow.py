"""The whole workflow: minerflow against the seed's way of running it, and the task layer's cost.

Side by side in one run, on the same event file and input with the same sample sizes and
epochs (the seed's defaults: 1000 training samples, one sampling run, test split 0.5, α = 10,
batch 100, 2 epochs, validation 0.3, L = 10⁴ pb⁻¹, 100 test events):

(a) the seed: ``seed_workflow/{1_sampling,2_training,3_evaluation,4_plotting}.py`` driving
    MadMiner 0.9.6 (``benchmarks/.venv-madminer-seed``, numpy < 1.24 for its histogram mode),
    one process per step and per method, one after another as the seed's shell layer runs them;
(b) ``minerflow run`` in a fresh work dir (the seed's settings set explicitly with ``--set``);
(c) ``minerflow run`` again: nothing to do.

It prints the wall times, the ratio (a)/(b) (goal ≥ 10×), the no-op re-run and the task
layer's overhead per task: (b)'s wall time minus the time in which at least one task was
building its output (from the ``started``/``finished`` of every ``task.json``), divided by the
number of tasks.

Both sides track in MLflow, each in a SQLite store in its own work dir, since the seed records
its steps there too. The seed's side does what its workflow does: one process creates its three
experiments up front (``madminer-ml-sample``, ``-train``, ``-eval``; the seed does this so that
parallel steps do not race to create them), then each sampling, training and evaluation process
records one run: the step's options as parameters, tags, the evaluation's mean log r̂ or score
as metrics, the saved model and results as artifacts and the network via
``mlflow.pytorch.log_model``; plotting is untracked, as in the seed. The store is given to
those processes by ``MLFLOW_TRACKING_URI``, which ``minerflow run`` never sees (it keeps its
default store in its work dir). ``--no-seed-mlflow`` times the seed's scripts without any
tracking, for comparison.

The seed's scripts are not available offline; the stand-ins follow its description
(``/work/shared/reference/madminer-algorithms.md`` §7b) and open their runs themselves instead
of being launched by ``mlflow run``, whose extra process per step would only add to the seed's
time. The seed trains ``sally`` with MadMiner's defaults (50 epochs, batch 128), minerflow with
the input's training settings.

With ``--repeat N`` both sides run N times, alternately, and the ratio is that of the medians
(this machine's timings vary by 10-20 % from run to run); the breakdown is the last round's.

    bash benchmarks/setup_madminer_seed_env.sh
    .venv/bin/python benchmarks/bench_workflow.py [--repeat 3] [--no-seed-mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
SEED_DIR = HERE / "seed_workflow"
SEED_PYTHON = HERE / ".venv-madminer-seed" / "bin" / "python"
MINERFLOW = Path(sys.executable).parent / "minerflow"
RATIO_METHODS = frozenset({"alice", "alices", "cascal", "carl", "rolr", "rascal"})


@dataclass(frozen=True)
class Timed:
    label: str
    seconds: float


def load_text() -> str:
    """The 1-, 5- and 15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(tracking_uri: str | None) -> dict[str, str]:
    """This process's environment with ``MLFLOW_TRACKING_URI`` set to ``tracking_uri`` or unset."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def timed(label: str, command: list[str], log: Path, env: dict[str, str]) -> Timed:
    """Run ``command`` with output into ``log``; fail loudly with the log's tail."""
    started = time.perf_counter()
    with open(log, "ab") as handle:
        handle.write(f"$ {' '.join(command)}\n".encode())
        handle.flush()
        done = subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False
        )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        sys.exit(f"{label} failed (exit {done.returncode}); end of {log}:\n{tail}")
    return Timed(label, seconds)


def create_experiments_command() -> list[str]:
    """One seed-env process creating the seed's experiments (names from ``seed_inputs``)."""
    snippet = (
        "import sys; sys.path.insert(0, sys.argv[1]); import mlflow; "
        "from seed_inputs import EXPERIMENTS; client = mlflow.MlflowClient(); "
        "[client.create_experiment(name) for name in EXPERIMENTS.values()]"
    )
    return [str(SEED_PYTHON), "-c", snippet, str(SEED_DIR)]


def seed_commands(args: argparse.Namespace, work: Path, track: bool) -> list[tuple[str, list[str]]]:
    """The seed's processes in order, as ``(label, command)``.

    Creating the experiments (when tracked), sampling, training per method and sampling run,
    evaluation per model, plotting.
    """
    methods = yaml.safe_load(args.input_file.read_text())["methods"]
    common = ["--input-file", str(args.input_file), "--output-dir", str(work)]
    data = ["--data-file", str(args.data_file)]

    def script(name: str) -> list[str]:
        return [str(SEED_PYTHON), str(SEED_DIR / name)]

    sampling = [
        *script("1_sampling.py"), *data, *common,
        "--n-samples-train", str(args.n_samples_train),
        "--n-sampling-runs", str(args.n_sampling_runs), "--test-split", str(args.test_split),
    ]  # fmt: skip
    commands = [("create experiments", create_experiments_command())] if track else []
    commands.append(("sampling", sampling))
    for method in methods:
        for run in range(args.n_sampling_runs):
            commands.append((f"training {method} {run}", [
                *script("2_training.py"), "--output-dir", str(work),
                "--train-folder", str(work / "data" / f"Samples_{method}_{run}"),
                "--alpha", str(args.alpha), "--batch-size", str(args.batch_size),
                "--num-epochs", str(args.num_epochs), "--valid-split", str(args.valid_split),
            ]))  # fmt: skip
    # The seed saves one model per method (models/<method>/<method>): the last run's.
    for method in methods:
        commands.append((f"evaluation {method}", [
            *script("3_evaluation.py"), *data, *common,
            "--model-dir", str(work / "models" / method),
            "--luminosity", str(args.luminosity), "--n-samples-test", str(args.n_samples_test),
        ]))  # fmt: skip
    commands.append(("plotting", [*script("4_plotting.py"), *common]))
    return commands


def minerflow_command(args: argparse.Namespace, work: Path) -> list[str]:
    """``minerflow run`` with the seed's settings spelled out as overrides."""
    settings = {
        "sampling.n_samples_train": args.n_samples_train,
        "sampling.n_sampling_runs": args.n_sampling_runs,
        "sampling.test_split": args.test_split,
        "training.alpha": args.alpha,
        "training.batch_size": args.batch_size,
        "training.num_epochs": args.num_epochs,
        "training.valid_split": args.valid_split,
        "evaluation.luminosity": args.luminosity,
        "evaluation.n_samples_test": args.n_samples_test,
    }
    command = [
        str(MINERFLOW), "run", "--data-file", str(args.data_file),
        "--input-file", str(args.input_file), "--workdir", str(work),
        "--workers", str(args.workers),
    ]  # fmt: skip
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    return command


def task_intervals(work: Path) -> list[tuple[str, float, float]]:
    """``(step, started, finished)`` of every task output in the work dir."""
    intervals = []
    for meta_file in work.glob("*/*/*/task.json"):
        meta = json.loads(meta_file.read_text())
        intervals.append((meta["step"], float(meta["started"]), float(meta["finished"])))
    return sorted(intervals, key=lambda item: item[1])


def busy_seconds(intervals: list[tuple[str, float, float]]) -> float:
    """Length of the union of the intervals (parallel tasks overlap)."""
    total, end = 0.0, float("-inf")
    for _, start, finish in intervals:
        if finish > end:
            total += finish - max(start, end)
            end = finish
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-file", type=Path, default=SHARED / "dummy_data.h5")
    parser.add_argument("--input-file", type=Path, default=SHARED / "input.yml")
    parser.add_argument("--workdir", type=Path, help="keep the outputs here (default: a temp dir)")
    parser.add_argument("--workers", type=int, default=2, help="minerflow run --workers")
    parser.add_argument("--n-samples-train", type=int, default=1000)
    parser.add_argument("--n-sampling-runs", type=int, default=1)
    parser.add_argument("--test-split", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-epochs", type=int, default=2)
    parser.add_argument("--valid-split", type=float, default=0.3)
    parser.add_argument("--luminosity", type=float, default=1e4)
    parser.add_argument("--n-samples-test", type=int, default=100)
    parser.add_argument(
        "--no-seed-mlflow",
        dest="seed_mlflow",
        action="store_false",
        help="run the seed's scripts without MLflow tracking",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run both sides this many times, alternately, and report the medians",
    )
    args = parser.parse_args()
    if not SEED_PYTHON.exists():
        sys.exit(f"{SEED_PYTHON}: missing; run benchmarks/setup_madminer_seed_env.sh first")

    with tempfile.TemporaryDirectory(prefix="bench_workflow_") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        if root.exists() and any(root.iterdir()):
            sys.exit(f"{root}: not empty; give a fresh --workdir")
        print(f"load average before: {load_text()} ({os.cpu_count()} CPUs)")
        seed_log = root / "seed.log"
        rounds = []
        for round_ in range(args.repeat):
            seed_work, minerflow_work = root / f"seed-{round_}", root / f"minerflow-{round_}"
            for folder in (seed_work, minerflow_work):
                folder.mkdir(parents=True)
            seed_store = f"sqlite:///{seed_work / 'mlflow.db'}" if args.seed_mlflow else None
            seed_env, minerflow_env = environment(seed_store), environment(None)
            floor = timed(
                "import madminer",
                [str(SEED_PYTHON), "-c", "import madminer.ml, madminer.sampling, madminer.limits"],
                seed_log,
                seed_env,
            )
            seed = [
                timed(label, cmd, seed_log, seed_env)
                for label, cmd in seed_commands(args, seed_work, args.seed_mlflow)
            ]
            seed_total = sum(t.seconds for t in seed)
            command = minerflow_command(args, minerflow_work)
            started = time.time()
            first = timed("minerflow run", command, root / "minerflow.log", minerflow_env)
            ended = time.time()
            noop = timed("minerflow run (no-op)", command, root / "minerflow.log", minerflow_env)
            rounds.append((seed_total, first.seconds, noop.seconds))
            print(
                f"round {round_ + 1}: seed {seed_total:.2f} s, minerflow {first.seconds:.2f} s "
                f"({seed_total / first.seconds:.1f}x), no-op {noop.seconds:.2f} s; "
                f"load average {load_text()}"
            )

        intervals = task_intervals(minerflow_work)
        busy = busy_seconds(intervals)
        n_tasks = len(intervals)
        overhead = first.seconds - busy
        by_step: dict[str, list[float]] = {}
        for step, start, finish in intervals:
            by_step.setdefault(step, []).append(finish - start)

        tracking = f"MLflow store {seed_store}" if seed_store else "no MLflow tracking"
        print(f"\nlast round in detail\n(a) seed scripts (MadMiner 0.9.6, one process per step and "
              f"method; {tracking})")  # fmt: skip
        print(f"  {'process start + import madminer':<34} {floor.seconds:7.2f} s")
        for item in seed:
            print(f"  {item.label:<34} {item.seconds:7.2f} s")
        print(f"  {'total':<34} {seed_total:7.2f} s")
        print(f"\n(b) minerflow run (--workers {args.workers}), {n_tasks} tasks")
        for step, seconds in by_step.items():
            print(f"  {step:<12} {len(seconds)} task(s), build {sum(seconds):6.2f} s summed")
        print(f"  wall {first.seconds:.2f} s; some task building {busy:.2f} s of it")
        print(f"  start-up until the first task: {intervals[0][1] - started:.2f} s; "
              f"after the last: {ended - intervals[-1][2]:.2f} s")  # fmt: skip
        print(f"  task-layer overhead {overhead:.2f} s = {overhead / n_tasks:.2f} s per task")
        print(f"(c) no-op re-run: {noop.seconds:.2f} s ({noop.seconds / n_tasks:.3f} s per task)")
        seed_median, minerflow_median, noop_median = (
            statistics.median(column) for column in zip(*rounds, strict=True)
        )
        ratio = seed_median / minerflow_median
        if args.repeat > 1:
            print(
                f"\nmedians of {args.repeat} rounds: seed {seed_median:.2f} s, minerflow "
                f"{minerflow_median:.2f} s, no-op {noop_median:.2f} s; ratios per round "
                + ", ".join(f"{a / b:.1f}x" for a, b, _ in rounds)
            )
        print(f"\nwall-time ratio seed / minerflow: {ratio:.1f}x (goal >= 10x)")
        if args.workdir:
            print(f"logs: {root}/seed.log, {root}/minerflow.log")
        print(json.dumps({
            "rounds": [[round(x, 3) for x in r] for r in rounds],
            "seed_s": round(seed_median, 3), "seed_mlflow": args.seed_mlflow,
            "seed_import_s": round(floor.seconds, 3),
            "seed_steps_s": {t.label: round(t.seconds, 3) for t in seed},
            "minerflow_s": round(minerflow_median, 3), "noop_s": round(noop_median, 3),
            "ratio": round(ratio, 2), "n_tasks": n_tasks, "busy_s": round(busy, 3),
            "overhead_per_task_s": round(overhead / n_tasks, 3), "loadavg": load_text(),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
