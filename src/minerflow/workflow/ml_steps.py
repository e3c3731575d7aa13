"""The steps of the MLModel workflow, from files to files: prepare, train a fold, evaluate, plot.

The law tasks in :mod:`minerflow.tasks.ml` only wire these together (which folder, which
branch, which sandbox); what each step computes lives here, so it is tested and benchmarked
without a scheduler.

* :func:`prepare_dataset` reads one training dataset in chunks (only the columns the model
  and the training ops use), runs the training calibrators, selector and producers, gives
  each event its fold from its identity and writes ``fold{f}of{k}.parquet`` plus
  ``stats.json`` (event counts and weight sums per fold, the dataset's processes).
* :func:`train_fold` calls ``model.train`` for one fold inside an MLflow run (parameters,
  per-epoch curves, the model folder, the learning-curve figure).
* :func:`evaluate_dataset` writes, for every input file, ``mlcolumns_<i>.parquet`` with one
  row per input event (row-aligned): the ``produces`` columns, ``fold`` (the model that
  predicted the event, -1 for an average of all) and, with a selector, ``selected``.
  Events failing the selector are evaluated too and marked ``selected = False`` rather than
  dropped, so the output stays aligned with its input file.
* :func:`plot_results` draws ROC curves (per fold and combined, event-weighted), output
  distributions per process (training vs out-of-fold test, with the weighted KS p-value),
  a confusion matrix for more than two classes, and learning curves.

Training history: ``train`` may return ``{"train": {term: [...]}, "validation": {term:
[...]}}`` (or a flat ``{term: [...]}``, taken as training curves), or write that as
``history.json`` into its output directory; either is logged per epoch and plotted.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from minerflow.config.analysis import dataset_source
from minerflow.errors import InputError
from minerflow.io.atomic import save_json
from minerflow.io.columnar import (
    ColumnarSource,
    ParquetChunkWriter,
    available_routes,
    count_rows,
    get_ak_column,
    has_ak_column,
    iter_chunks,
    set_ak_column,
)
from minerflow.ml.columnar_ops import apply_ops, op_columns
from minerflow.ml.folds import FoldStats, assign_folds, evaluate_out_of_fold

if TYPE_CHECKING:
    import order as od

    from minerflow.ml.mlmodel import MLModel

__all__ = [
    "EVALUATION_INDEX",
    "HISTORY_FILE",
    "STATS_FILE",
    "TRACKING_STEP",
    "OpChain",
    "classes_of",
    "evaluate_dataset",
    "evaluation_file_name",
    "fold_file_name",
    "ml_parent_run",
    "normalise_history",
    "plot_results",
    "prepare_dataset",
    "read_history",
    "train_fold",
]

STATS_FILE = "stats.json"
HISTORY_FILE = "history.json"
EVALUATION_INDEX = "files.json"
TRACKING_STEP = "ml_training"
_PARENT_TAG = "minerflow.ml_model_dir"


def fold_file_name(fold: int, folds: int) -> str:
    """``fold{f}of{k}.parquet``: the prepared events of one fold."""
    return f"fold{fold}of{folds}.parquet"


def evaluation_file_name(index: int) -> str:
    """``mlcolumns_<i>.parquet``: evaluation output row-aligned with input file ``i``."""
    return f"mlcolumns_{index}.parquet"


# --------------------------------------------------------------------------- op chains
@dataclass(frozen=True)
class OpChain:
    """Calibrators, one selector and producers to run on each chunk, by registered name."""

    calibrators: tuple[str, ...] = ()
    selector: str | None = None
    producers: tuple[str, ...] = ()

    @classmethod
    def for_training(cls, model: MLModel, config: od.Config, requested: OpChain) -> OpChain:
        """The chain training uses: the model's ``training_*`` hooks applied to the request."""
        return cls(
            tuple(model.training_calibrators(config, list(requested.calibrators))),
            model.training_selector(config, requested.selector) or None,
            tuple(model.training_producers(config, list(requested.producers))),
        )

    @classmethod
    def for_evaluation(cls, model: MLModel, config: od.Config, requested: OpChain) -> OpChain:
        """The chain evaluation uses: the request, producers through ``evaluation_producers``."""
        return cls(
            requested.calibrators,
            requested.selector,
            tuple(model.evaluation_producers(config, list(requested.producers))),
        )

    def columns(self) -> set[str]:
        """Input columns the chain reads from the files."""
        return op_columns(self.calibrators, self.selector, self.producers)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for folder keys and MLflow parameters)."""
        return {
            "calibrators": list(self.calibrators),
            "selector": self.selector,
            "producers": list(self.producers),
        }

    def readable(self) -> dict[str, str]:
        """The non-empty parts, for folder names (``sel=two_jets``)."""
        parts = {"cal": ",".join(self.calibrators), "sel": self.selector or ""}
        parts["prod"] = ",".join(self.producers)
        return {k: v for k, v in parts.items() if v}

    def apply(self, events: ak.Array) -> tuple[ak.Array, np.ndarray]:
        """Run calibrators and producers on *every* event; return them and the selector mask.

        Unlike :func:`apply_ops`, nothing is dropped, so an output built from the result
        stays row-aligned with its input.
        """
        events, _ = apply_ops(events, self.calibrators)
        _, mask = apply_ops(events, (), self.selector)
        events, _ = apply_ops(events, (), None, self.producers)
        return events, mask


def _read_routes(model: MLModel, config: od.Config, ops: OpChain, with_ids: bool = True) -> list:
    """Model columns (+ fold-identity columns) + what the ops need, minus what they produce."""
    from minerflow.ml.columnar_ops import get_op

    produced = {r for name in ops.producers for r in get_op("producer", name).produces}
    wanted = {str(r) for r in model.uses(config)} | ops.columns()
    if with_ids:
        wanted |= set(model.fold_id_columns)
    return sorted(wanted - produced)


def _weight_routes(source: ColumnarSource, weight_column: str | None) -> str | None:
    """``weight_column`` if every file of the dataset has it, else ``None`` (unit weights)."""
    if not weight_column:
        return None
    for path in source.files:
        if weight_column not in available_routes(path, source.format, source.tree):
            return None
    return weight_column


# --------------------------------------------------------------------------- preparation
def prepare_dataset(
    model: MLModel,
    config: od.Config,
    dataset: od.Dataset,
    ops: OpChain,
    out_dir: str | os.PathLike[str],
    *,
    chunk_size: int = 100_000,
    weight_column: str | None = "weight",
) -> dict[str, Any]:
    """Write one training dataset's events per fold and its statistics; return the stats.

    Reads only the needed columns (see module docstring), applies the training ops
    (events failing the selector are dropped here: they are not trained on), assigns folds
    with the model's ``fold_id_columns``/``fold_seed`` and appends each chunk's events of
    fold f to ``fold{f}of{k}.parquet``. ``stats.json`` holds the per-fold counts and weight
    sums (``weight_column`` when every file has it, else unit weights), events read and
    selected, and the dataset's processes: what ``train`` gets as ``input["stats"]``.
    """
    out = Path(out_dir)
    source = dataset_source(dataset)
    k = model.folds
    routes = _read_routes(model, config, ops)
    weight = _weight_routes(source, weight_column)
    read = sorted(set(routes) | ({weight} if weight else set()))
    counter = FoldStats(k)
    n_read = 0
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(ParquetChunkWriter(out / fold_file_name(f, k))) for f in range(k)
        ]
        for chunk in iter_chunks(source, read, chunk_size, prefetch=True):
            n_read += len(chunk.events)
            events, _ = apply_ops(chunk.events, ops.calibrators, ops.selector, ops.producers)
            folds = assign_folds(events, k, model.fold_id_columns, model.fold_seed)
            weights = ak.to_numpy(get_ak_column(events, weight)) if weight else None
            counter.add(folds, weights)
            for f, writer in enumerate(writers):
                writer.write(events[folds == f])
    stats = {
        "dataset": dataset.name,
        "processes": [p.name for p in dataset.processes],
        "files": [str(p) for p in source.files],
        "columns": read,
        "weight_column": weight,
        "n_read": n_read,
        "n_selected": int(counter.n_events.sum()),
        "ops": ops.to_dict(),
        "seconds": time.perf_counter() - started,
        **counter.to_dict(),
    }
    save_json(out / STATS_FILE, stats)
    return stats


# --------------------------------------------------------------------------- training
def normalise_history(history: Any, source: str) -> dict[str, dict[str, list[float]]]:
    """``{"train": {term: [...]}, "validation": {...}}`` from either documented form."""
    if not isinstance(history, Mapping):
        raise InputError(source, "history", "a mapping of loss terms to per-epoch values")
    if "train" in history and isinstance(history["train"], Mapping):
        train, validation = history["train"], history.get("validation") or {}
    else:
        train, validation = history, {}
    result: dict[str, dict[str, list[float]]] = {"train": {}, "validation": {}}
    for part, curves in (("train", train), ("validation", validation)):
        for term, values in curves.items():
            try:
                result[part][str(term)] = [float(v) for v in values]
            except (TypeError, ValueError):
                raise InputError(source, f"{part}.{term}", "a list of numbers per epoch") from None
    return result


def read_history(model_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[float]]] | None:
    """The normalised ``history.json`` of a model directory, or ``None`` if it has none."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return None
    try:
        return normalise_history(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as err:
        raise InputError(path, None, f"valid JSON ({err.msg})") from None


def ml_parent_run(
    tracking_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str], name: str,
    params: Mapping[str, Any],
) -> str:  # fmt: skip
    """Id of the MLflow run that groups one trained model's fold runs (found or created).

    Keyed by the model's output directory (tag ``minerflow.ml_model_dir``); the search and
    the creation happen under a file lock in ``<tracking_dir>/.minerflow/``, so parallel folds,
    re-runs and later plot runs all nest under one parent instead of each creating its own.
    (The store itself is safe to open in parallel: :func:`minerflow.tracking.store.client`.)
    """
    from mlflow.entities import Param, RunTag

    from minerflow.io.locks import file_lock
    from minerflow.tracking.provenance import provenance_tags
    from minerflow.tracking.store import client, experiment_id, experiment_name

    key = str(Path(model_dir).resolve())
    mlflow_client = client(tracking_dir)
    exp = experiment_id(mlflow_client, experiment_name(TRACKING_STEP))
    with file_lock(Path(tracking_dir).resolve() / ".minerflow" / "ml_parent_runs.lock"):
        found = mlflow_client.search_runs(
            [exp], f"tags.`{_PARENT_TAG}` = '{key}'", order_by=["start_time ASC"], max_results=1
        )
        if found:
            return str(found[0].info.run_id)
        tags = {_PARENT_TAG: key, "minerflow.step": TRACKING_STEP, **provenance_tags()}
        run = mlflow_client.create_run(exp, run_name=name, tags=tags)
        from minerflow.tracking.runs import flatten_params

        items = [Param(k, v) for k, v in flatten_params(params).items()]
        mlflow_client.log_batch(run.info.run_id, params=items[:100], tags=[RunTag("kind", "ml")])
        mlflow_client.set_terminated(run.info.run_id, "FINISHED")
        return str(run.info.run_id)


def _plot_history(history: Mapping[str, Mapping[str, list[float]]], stem: Path, title: str) -> None:
    from minerflow.plotting.save import save_figure
    from minerflow.plotting.training import plot_training_history

    if not history["train"]:
        return
    validation = {k: v for k, v in history["validation"].items() if v}
    figure = plot_training_history(history["train"], validation or None, title=title)
    save_figure(figure, stem, ("png",))
    import matplotlib.pyplot as plt

    plt.close(figure)


def train_fold(
    model: MLModel,
    task: Any,
    inputs: Mapping[str, Any],
    target: Any,
    out_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str],
    params: Mapping[str, Any],
    parent_run_id: str | None,
) -> dict[str, Any]:
    """Train fold ``task.fold`` into ``target`` inside an MLflow run; return a summary.

    The run (experiment ``minerflow-ml_training``, named ``<model> fold f/k``) holds
    ``params``, the number of training events per dataset, the per-epoch curves
    (``train_<term>``, ``val_<term>``), the model folder and the learning-curve figure; it
    nests under ``parent_run_id`` (or ``$MINERFLOW_PARENT_RUN_ID``).
    """
    from minerflow.tracking.runs import tracked_run

    out = Path(out_dir)
    fold, k = int(task.fold), model.folds
    n_train = {
        f"{cfg}.{ds}": sum(int(s["n_events"][g]) for g in range(k) if g != fold)
        for cfg, per_ds in inputs["stats"].items()
        for ds, s in per_ds.items()
    }
    name = f"{model.cls_name} fold {fold}/{k}"
    with tracked_run(
        TRACKING_STEP,
        tracking_dir,
        run_name=name,
        params={**params, "fold": fold},
        tags={"minerflow.ml_model": model.cls_name, "minerflow.fold": fold},
        parent_run_id=parent_run_id,
    ) as tracked:
        started = time.perf_counter()
        returned = model.train(task, inputs, target)
        seconds = time.perf_counter() - started
        model_dir = Path(getattr(target, "path", target))
        if returned is not None:
            history = normalise_history(returned, f"model '{model.cls_name}' train")
        else:
            history = read_history(model_dir if model_dir.is_dir() else model_dir.parent)
        summary: dict[str, Any] = {
            "fold": fold,
            "folds": k,
            "n_train_events": n_train,
            "train_seconds": seconds,
            "mlflow_run_id": tracked.run_id,
            "model_output": str(model_dir.relative_to(out)) if model_dir.is_relative_to(out)
            else str(model_dir),
        }  # fmt: skip
        if history is not None:
            save_json(out / HISTORY_FILE, history)
            curves = {f"train_{t}": v for t, v in history["train"].items()}
            curves |= {f"val_{t}": v for t, v in history["validation"].items()}
            tracked.log_history(curves)
            _plot_history(history, out / "learning_curves", name)
            summary["n_epochs"] = max((len(v) for v in history["train"].values()), default=0)
        save_json(out / "training.json", summary)
        tracked.log_metrics(
            {"train_seconds": seconds, **{f"n_train_{k_}": v for k_, v in n_train.items()}}
        )
        if model_dir.exists():
            tracked.log_artifact(model_dir, "model")
        if (out / "learning_curves.png").is_file():
            tracked.log_artifact(out / "learning_curves.png", "plots")
    return summary


# --------------------------------------------------------------------------- evaluation
def evaluate_dataset(
    model: MLModel,
    task: Any,
    config: od.Config,
    dataset: od.Dataset,
    models: Sequence[Any],
    ops: OpChain,
    out_dir: str | os.PathLike[str],
    *,
    chunk_size: int = 100_000,
) -> dict[str, Any]:
    """Evaluate every event of ``dataset``; one output file per input file, row-aligned.

    Training datasets are routed out of fold (fold f's events to model f only); other
    datasets follow ``model.evaluation_rule`` (``fold`` = -1 in the output when averaged).
    Returns (and writes as ``files.json``) the input files, their row counts and whether
    the dataset was used in training.
    """
    out = Path(out_dir)
    source = dataset_source(dataset)
    k = model.folds
    used = dataset in set(model.datasets(config))
    rule = "fold" if used else model.evaluation_rule
    needs_folds = rule == "fold"
    routes = _read_routes(model, config, ops, with_ids=needs_folds)
    produces = sorted(str(r) for r in model.produces(config))
    reserved = [r for r in produces if r.split(".")[0] in ("fold", "selected")]
    if reserved:
        raise InputError(f"model '{model.cls_name}'", "produces", "no column named fold/selected")
    files = []
    started = time.perf_counter()
    writers: dict[int, ParquetChunkWriter] = {}
    with contextlib.ExitStack() as stack:
        for chunk in iter_chunks(source, routes, chunk_size, prefetch=True):
            writer = writers.get(chunk.file_index)
            if writer is None:
                path = out / evaluation_file_name(chunk.file_index)
                writer = writers[chunk.file_index] = stack.enter_context(ParquetChunkWriter(path))
            events, mask = ops.apply(chunk.events)
            if needs_folds:
                folds = assign_folds(events, k, model.fold_id_columns, model.fold_seed)
            else:
                folds = np.zeros(len(events), dtype=np.int64)
            result = evaluate_out_of_fold(model, task, events, models, folds, used, config)
            if rule == "average":
                shown = np.full(len(events), -1, dtype=np.int64)
            elif isinstance(rule, int) and not isinstance(rule, bool):
                shown = np.full(len(events), rule, dtype=np.int64)
            else:
                shown = folds
            result = set_ak_column(result, "fold", shown.astype(np.int8))
            if ops.selector:
                result = set_ak_column(result, "selected", mask)
            writer.write(result)
    for index, path in enumerate(source.files):
        expected = count_rows(path, source.format, source.tree)
        written = writers[index].n_rows if index in writers else 0
        if written != expected:  # pragma: no cover - guarded by iter_chunks
            raise InputError(path, "rows", f"{expected} evaluated rows, wrote {written}")
        files.append({"input": str(path), "output": evaluation_file_name(index), "rows": written})
    info = {
        "dataset": dataset.name,
        "processes": [p.name for p in dataset.processes],
        "used_in_training": used,
        "rule": rule,
        "produces": produces,
        "ops": ops.to_dict(),
        "files": files,
        "seconds": time.perf_counter() - started,
    }
    save_json(out / EVALUATION_INDEX, info)
    return info


# --------------------------------------------------------------------------- plots
def classes_of(model: MLModel, config: od.Config) -> list[str]:
    """Class names for the plots: the first process of each training dataset, by process id."""
    processes = {d.processes.get_first() for d in model.datasets(config)}
    return [p.name for p in sorted(processes, key=lambda p: (p.id, p.name))]


def _float_routes(model: MLModel, config: od.Config, evaluations: Mapping[str, Path]) -> list:
    """The floating-point ``produces`` columns (candidate scores), read from an output file."""
    import pyarrow.parquet as pq

    produced = sorted(str(r) for r in model.produces(config))
    folder = next(iter(evaluations.values()))
    first = json.loads((folder / EVALUATION_INDEX).read_text())["files"][0]["output"]
    sample = ak.from_arrow(pq.ParquetFile(folder / first).read_row_group(0))
    return [
        r for r in produced
        if np.asarray(ak.flatten(get_ak_column(sample, r), axis=None)).dtype.kind == "f"
    ]  # fmt: skip


def _score_routes(produced: Sequence[str], classes: Sequence[str], chosen: Sequence[str]) -> list:
    """The score column per class (multi-class) or the one score column (binary).

    Candidates are the floating-point produced columns; one means binary, else each class
    needs one whose last route part is its name (``model.signal``), or ``chosen``.
    """
    if chosen:
        if len(chosen) not in (1, len(classes)):
            raise InputError(
                "--score-columns", ",".join(chosen), f"1 or {len(classes)} columns ({classes})"
            )
        return list(chosen)
    if len(produced) == 1:
        return list(produced)
    by_class = {c: [r for r in produced if r.split(".")[-1] == c] for c in classes}
    if all(len(v) == 1 for v in by_class.values()):
        return [by_class[c][0] for c in classes]
    raise InputError(
        "plot", "score columns",
        f"one produced column, or one per class named after it ({', '.join(classes)}); "
        f"the model produces {', '.join(produced)}: pick with --score-columns",
    )  # fmt: skip


@dataclass
class _Predictions:
    scores: list[np.ndarray]
    weights: list[np.ndarray]
    labels: list[np.ndarray]
    folds: list[np.ndarray]

    def joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.concatenate(self.scores),
            np.concatenate(self.weights),
            np.concatenate(self.labels),
            np.concatenate(self.folds),
        )


def _scores(events: ak.Array, routes: Sequence[str]) -> np.ndarray:
    return np.stack(
        [np.asarray(ak.to_numpy(get_ak_column(events, r)), dtype=np.float64) for r in routes],
        axis=1,
    )


def _test_predictions(
    evaluations: Mapping[str, Path], labels: Mapping[str, int], routes: Sequence[str],
    weight_column: str | None, config: od.Config,
) -> _Predictions:  # fmt: skip
    """Out-of-fold predictions of the training datasets, weights from the aligned inputs."""
    import pyarrow.parquet as pq

    pred = _Predictions([], [], [], [])
    for name, folder in evaluations.items():
        info = json.loads((folder / EVALUATION_INDEX).read_text())
        dataset = config.get_dataset(name)
        source = dataset_source(dataset)
        weight = _weight_routes(source, weight_column)
        for entry in info["files"]:
            out = ak.from_arrow(pq.read_table(folder / entry["output"]))
            if weight:
                single = ColumnarSource(name, (Path(entry["input"]),), source.format, source.tree)
                w = np.concatenate(
                    [ak.to_numpy(c.events[weight]) for c in iter_chunks(single, [weight])]
                ).astype(np.float64)
            else:
                w = np.ones(len(out))
            keep = ak.to_numpy(out.selected) if has_ak_column(out, "selected") else slice(None)
            pred.scores.append(_scores(out, routes)[keep])
            pred.weights.append(w[keep])
            pred.folds.append(ak.to_numpy(out.fold).astype(np.int64)[keep])
            pred.labels.append(np.full(len(pred.weights[-1]), labels[name], dtype=np.int64))
    return pred


def _train_predictions(
    model: MLModel, task: Any, config: od.Config, prepared: Mapping[str, Path],
    models: Sequence[Any], labels: Mapping[str, int], routes: Sequence[str],
    weight_column: str | None, chunk_size: int,
) -> _Predictions:  # fmt: skip
    """Predictions on training events: fold g's events by model g+1 mod k, which trained on them."""
    k = model.folds
    pred = _Predictions([], [], [], [])
    for name, folder in prepared.items():
        stats = json.loads((folder / STATS_FILE).read_text())
        weight = stats.get("weight_column") if weight_column else None
        files = tuple(folder / fold_file_name(g, k) for g in range(k))
        source = ColumnarSource(name, files, "parquet")
        columns = available_routes(files[0], "parquet")
        for chunk in iter_chunks(source, columns, chunk_size):
            g = chunk.file_index
            shifted = np.full(len(chunk.events), (g + 1) % k, dtype=np.int64)
            out = evaluate_out_of_fold(model, task, chunk.events, models, shifted, True, config)
            pred.scores.append(_scores(out, routes))
            w = ak.to_numpy(chunk.events[weight]) if weight else np.ones(len(chunk.events))
            pred.weights.append(np.asarray(w, dtype=np.float64))
            pred.folds.append(shifted)
            pred.labels.append(np.full(len(chunk.events), labels[name], dtype=np.int64))
    return pred


def _save(figure: Any, stem: Path, formats: Sequence[str]) -> list[str]:
    import matplotlib.pyplot as plt

    from minerflow.plotting.save import save_figure

    paths = save_figure(figure, stem, formats)
    plt.close(figure)
    return [p.name for p in paths]


def plot_results(
    model: MLModel,
    task: Any,
    config: od.Config,
    *,
    evaluations: Mapping[str, Path],
    prepared: Mapping[str, Path],
    models: Sequence[Any],
    histories: Sequence[Mapping[str, Mapping[str, list[float]]] | None],
    out_dir: str | os.PathLike[str],
    weight_column: str | None = "weight",
    signal: str | None = None,
    score_columns: Sequence[str] = (),
    formats: Sequence[str] = ("png", "pdf"),
    chunk_size: int = 100_000,
) -> dict[str, Any]:
    """Draw the classifier figures into ``out_dir``; return (and save) ``metrics.json``.

    Classes are the processes of the training datasets (:func:`classes_of`). With one score
    column the ROC treats ``signal`` (default: the first class) as positive; with one score
    column per class (matched by name, or ``score_columns`` in class order) there is one
    one-vs-rest ROC figure per class and a row-normalised, event-weighted confusion matrix
    of the arg-max. ROC: one curve per fold (its out-of-fold events) and the combined one.
    Output distributions: test = out-of-fold predictions of the evaluation, train = each
    training event predicted by a model that trained on it; legend: weighted KS p-value.
    """
    from minerflow.plotting.classifier import (
        plot_confusion_matrix,
        plot_output_distributions,
        plot_roc_curves,
    )
    from minerflow.plotting.metrics import roc_curve, weighted_confusion_matrix, weighted_ks_test
    from minerflow.plotting.training import plot_training_history

    out = Path(out_dir)
    classes = classes_of(model, config)
    if len(classes) < 2:
        raise InputError(f"model '{model.cls_name}'", "datasets", "training data of 2+ processes")
    labels = {d.name: classes.index(d.processes.get_first().name) for d in model.datasets(config)}
    produced = _float_routes(model, config, evaluations)
    routes = _score_routes(produced, classes, score_columns)
    binary = len(routes) == 1
    positive = signal or classes[0]
    if positive not in classes:
        raise InputError("--signal", positive, f"one of the classes {', '.join(classes)}")
    test = _test_predictions(evaluations, labels, routes, weight_column, config)
    train = _train_predictions(
        model, task, config, prepared, models, labels, routes, weight_column, chunk_size
    )
    t_scores, t_weights, t_labels, t_folds = test.joined()
    r_scores, r_weights, r_labels, _ = train.joined()
    metrics: dict[str, Any] = {"classes": classes, "score_columns": routes, "figures": []}
    figures: list[str] = metrics["figures"]
    # ROC: binary on the one score; multi-class one-vs-rest per class
    roc_targets = [(positive, 0)] if binary else [(c, i) for i, c in enumerate(classes)]
    metrics["auc"] = {}
    for cls_name, column in roc_targets:
        is_pos = t_labels == classes.index(cls_name)
        curves = {}
        for f in range(model.folds):
            sel = t_folds == f
            if is_pos[sel].any() and (~is_pos[sel]).any():
                curves[f"fold {f}"] = roc_curve(t_scores[sel, column], is_pos[sel], t_weights[sel])
        curves["combined"] = roc_curve(t_scores[:, column], is_pos, t_weights)
        metrics["auc"][cls_name] = {name: c.auc for name, c in curves.items()}
        stem = "roc" if binary else f"roc_{cls_name}"
        rest = "Background" if binary else "Other classes"
        figures += _save(
            plot_roc_curves(curves, positive_label=cls_name, negative_label=rest,
                            title=f"{model.cls_name}: out-of-fold ROC"),
            out / stem, formats,
        )  # fmt: skip
    # output distributions per process, train vs test, one figure per score column
    metrics["ks_p_value"] = {}
    for column, route in enumerate(routes):
        train_s, test_s = {}, {}
        for i, cls_name in enumerate(classes):
            tr, te = r_labels == i, t_labels == i
            if tr.any() and te.any():
                train_s[cls_name] = (r_scores[tr, column], r_weights[tr])
                test_s[cls_name] = (t_scores[te, column], t_weights[te])
                ks = weighted_ks_test(r_scores[tr, column], t_scores[te, column],
                                      r_weights[tr], t_weights[te])  # fmt: skip
                metrics["ks_p_value"].setdefault(route, {})[cls_name] = ks.p_value
        stem = "output_distributions" if binary else f"output_distributions_{route.split('.')[-1]}"
        figures += _save(
            plot_output_distributions(train_s, test_s, xlabel=route,
                                      title=f"{model.cls_name}: training vs test"),
            out / stem, formats,
        )  # fmt: skip
    if not binary:
        matrix = weighted_confusion_matrix(
            t_labels, t_scores, t_weights, n_classes=len(classes), normalize=True
        )
        metrics["confusion_matrix"] = matrix.tolist()
        figures += _save(
            plot_confusion_matrix(matrix, classes, title=f"{model.cls_name} (out of fold)"),
            out / "confusion_matrix", formats,
        )  # fmt: skip
    # learning curves of every fold in one figure
    train_curves, val_curves = {}, {}
    for f, history in enumerate(histories):
        if history and history["train"]:
            term = "loss" if "loss" in history["train"] else next(iter(history["train"]))
            train_curves[f"fold {f}"] = history["train"][term]
            if history["validation"].get(term):
                val_curves[f"fold {f}"] = history["validation"][term]
    if train_curves:
        figures += _save(
            plot_training_history(train_curves, val_curves or None, monitor="fold 0"
                                  if "fold 0" in train_curves else None,
                                  title=f"{model.cls_name}: learning curves"),
            out / "learning_curves", formats,
        )  # fmt: skip
    metrics["n_test_events"] = len(t_labels)
    metrics["n_train_events"] = len(r_labels)
    save_json(out / "metrics.json", metrics)
    return metrics
