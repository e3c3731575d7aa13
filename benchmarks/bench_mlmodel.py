"""MLModel workflow throughput: out-of-fold evaluation and preparation, as the input grows 10×.

The example model (``examples/toy_classifier.py``: eight features from jagged jets/leptons,
an MLP 8 → 64 → 64 → 1 in torch, k = 3) evaluates toy signal events from parquet through the
real evaluation step (:func:`minerflow.workflow.ml_steps.evaluate_dataset`: chunked read of
the used columns, fold hashing, routing to the out-of-fold model, row-aligned parquet
output). The fold models have random weights: throughput does not depend on training.
The preparation step (:func:`~minerflow.workflow.ml_steps.prepare_dataset`: read, fold
assignment, one parquet per fold, statistics) is timed on the same file.

Each size runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) and the peak of Python
allocations (``tracemalloc``, which numpy reports to) belong to that size alone. The CPU
time of the evaluation (all threads) is printed beside the wall time: on a busy machine
``events / eval cpu`` shows what an idle one would reach. Goal: at
least 10⁶ events/s evaluation on 2 cores, and peak memory flat as the input grows 10×
(chunks of ``--chunk-size`` events bound it).

    .venv/bin/python benchmarks/bench_mlmodel.py                        # 10^5 and 10^6 events
    .venv/bin/python benchmarks/bench_mlmodel.py --sizes 20000 200000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "toy_classifier.py"


def measure(config_file: Path, chunk_size: int, threads: int, workdir: Path) -> dict[str, float]:
    """Time preparation and evaluation of the toy signal events of ``config_file``."""
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
    models = []
    for fold in range(model.folds):
        torch.manual_seed(fold)
        net = model._network().eval()
        models.append((net, 0.0, 1.0))
    results: dict[str, float] = {"n_events": n_events}

    tracemalloc.start()
    start = time.perf_counter()
    prepare_dataset(model, config, dataset, OpChain(), workdir / "prep", chunk_size=chunk_size)
    results["prepare_seconds"] = time.perf_counter() - start
    results["prepare_tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.reset_peak()

    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        info = evaluate_dataset(
            model, None, config, dataset, models, OpChain(), workdir / "eval", chunk_size=chunk_size
        )
    results["evaluate_seconds"] = time.perf_counter() - start
    results["evaluate_cpu_seconds"] = time.process_time() - cpu
    results["evaluate_tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert info["files"][0]["rows"] == n_events
    results["prepare_events_per_s"] = n_events / results["prepare_seconds"]
    results["evaluate_events_per_s"] = n_events / results["evaluate_seconds"]
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.one, args.chunk_size, args.threads, Path(tmp))))
        return
    from minerflow.physics.toy_events import write_toy_analysis

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:  # data written here, so the child's peak memory is its own work
            config_file = write_toy_analysis(Path(tmp) / str(n), (n, 1), seed=1, n_files=1)
            command = [sys.executable, __file__, "--one", str(config_file), "--chunk-size",
                       str(args.chunk_size), "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"size {n} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    header = (f"{'events':>10} {'eval ev/s':>12} {'prep ev/s':>12} {'eval s':>8} {'eval cpu':>8} "
              f"{'prep s':>8} {'RSS MB':>8} {'eval tm MB':>10} {'prep tm MB':>10}")  # fmt: skip
    print(f"chunk size {args.chunk_size}, torch threads {args.threads}")
    print(header)
    for r in rows:
        print(
            f"{r['n_events']:>10.0f} {r['evaluate_events_per_s']:>12.3g} "
            f"{r['prepare_events_per_s']:>12.3g} {r['evaluate_seconds']:>8.2f} "
            f"{r['evaluate_cpu_seconds']:>8.2f} "
            f"{r['prepare_seconds']:>8.2f} {r['peak_rss_mb']:>8.0f} "
            f"{r['evaluate_tracemalloc_peak_mb']:>10.0f} {r['prepare_tracemalloc_peak_mb']:>10.0f}"
        )
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"peak RSS grows {growth:.2f}x for {rows[-1]['n_events'] / rows[0]['n_events']:.0f}x"
              " the events")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
