"""MLModel workflow throughput: out-of-fold evaluation and preparation, as the input grows 10×.

The example model (``examples/toy_classifier.py``: ten features from jagged jets/leptons,
an MLP 10 → 64 → 64 → 1 in torch, k = 3) evaluates toy signal events from parquet through the
real evaluation step (:func:`minerflow.workflow.ml_steps.evaluate_dataset`: chunked read of
the used columns, fold hashing, routing to the out-of-fold model, row-aligned parquet
output). The fold models have random weights: throughput does not depend on training.
The preparation step (:func:`~minerflow.workflow.ml_steps.prepare_dataset`: read, fold
assignment, one parquet per fold, statistics) is timed on the same file.

Each (size, step) runs in a fresh subprocess pinned to ``--cores`` CPUs (2), so its peak RSS
(``ru_maxrss``) belongs to that step and size alone; torch's one-time start-up (thread pool,
kernel selection) is done before the clock starts. Torch gets one thread by default: the
other core reads and decodes the next chunk meanwhile (``iter_chunks(prefetch=True)``), and
two torch threads on two busy cores spend more time waiting for each other than computing.
Besides events/s (wall) the table gives CPU seconds per million events (all threads): on a
machine shared with other work the wall time depends on the load, the CPU time much less.
The load average is printed with the results. Goal: at least 10⁶ events/s evaluation on 2
cores, and peak memory flat as the input grows 10× (chunks of ``--chunk-size`` events bound
it; the smallest default size is already two chunks, so both sizes run in the steady state of
up to three chunks in flight).

    .venv/bin/python benchmarks/bench_mlmodel.py                        # 2x10^5 and 2x10^6
    .venv/bin/python benchmarks/bench_mlmodel.py --sizes 20000 200000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "toy_classifier.py"


def measure(config_file: Path, step: str, chunk_size: int, threads: int, workdir: Path) -> dict:
    """Time one step (``evaluate`` or ``prepare``) over the toy signal events."""
    import numpy as np
    import torch

    from minerflow.config.analysis import dataset_source, load_analysis, single_config
    from minerflow.io.columnar import count_rows
    from minerflow.ml.mlmodel import build_model
    from minerflow.workflow.ml_steps import OpChain, evaluate_dataset, prepare_dataset

    torch.set_num_threads(threads)
    analysis = load_analysis(config_file)
    config = single_config(analysis)
    model = build_model("toy_classifier", analysis, ml_modules=[str(EXAMPLE)])
    dataset = config.get_dataset("signal")
    n_events = sum(count_rows(p, "parquet") for p in dataset_source(dataset).files)
    n_features = len(sys.modules[type(model).__module__].FEATURE_NAMES)
    models = []
    for fold in range(model.folds):
        torch.manual_seed(fold)
        net = model._network().eval()
        with torch.inference_mode():  # start-up: thread pool and kernels, once per process
            net(torch.zeros(model.eval_batch_size, n_features))
        mean, std = np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
        models.append((net, mean, std))
    start, cpu = time.perf_counter(), time.process_time()
    if step == "evaluate":
        info = evaluate_dataset(
            model, None, config, dataset, models, OpChain(), workdir, chunk_size=chunk_size
        )
        assert info["files"][0]["rows"] == n_events
    else:
        prepare_dataset(model, config, dataset, OpChain(), workdir, chunk_size=chunk_size)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {
        "step": step,
        "n_events": n_events,
        "seconds": seconds,
        "events_per_s": n_events / seconds,
        "cpu_s_per_million": cpu_seconds / n_events * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mlp": f"{n_features} -> {' -> '.join(map(str, model.hidden))} -> 1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--cores", type=int, default=2, help="CPUs the steps may use (2)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=("evaluate", "prepare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        if hasattr(os, "sched_setaffinity") and args.cores < len(os.sched_getaffinity(0)):
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(args.one, args.step, args.chunk_size, args.threads, Path(tmp))
        print(json.dumps(row))
        return
    from minerflow.physics.toy_events import write_toy_analysis

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:  # data written here, so the child's peak memory is its own work
            config_file = write_toy_analysis(Path(tmp) / str(n), (n, 1), seed=1, n_files=1)
            for step in ("evaluate", "prepare"):
                command = [sys.executable, __file__, "--one", str(config_file), "--step", step,
                           "--chunk-size", str(args.chunk_size), "--threads", str(args.threads),
                           "--cores", str(args.cores)]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"size {n} {step} failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()
    print(f"MLP {rows[0]['mlp']}, chunk size {args.chunk_size}, torch threads {args.threads}, "
          f"{args.cores} of {os.cpu_count()} CPUs; load average (1 min) {load_before[0]:.1f} "
          f"before, {load_after[0]:.1f} after")  # fmt: skip
    heads = ("step", "events", "events/s", "seconds", "CPU s/M", "RSS MB")
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (9, 10, 10, 8, 8, 7), strict=True)))
    for r in rows:
        print(
            f"{r['step']:>9} {r['n_events']:>10} {r['events_per_s']:>10.3g} {r['seconds']:>8.2f} "
            f"{r['cpu_s_per_million']:>8.2f} {r['peak_rss_mb']:>7.0f}"
        )
    for step in ("evaluate", "prepare"):
        first, *_, last = [r for r in rows if r["step"] == step] * 2  # one size: first = last
        if len(args.sizes) > 1:
            print(f"{step}: peak RSS grows {last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x for "
                  f"{last['n_events'] / first['n_events']:.0f}x the events")  # fmt: skip
    print(json.dumps({"load_average": [load_before, load_after], "rows": rows}))


if __name__ == "__main__":
    main()
