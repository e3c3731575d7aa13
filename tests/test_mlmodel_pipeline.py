"""The example model through the API steps the ML tasks run: prepare, train per fold, evaluate.

This is the contract ``tasks/ml.py`` implements (there with law targets and MLflow); here the
steps are called directly on toy data, and the out-of-fold scores must separate the classes.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import law
import numpy as np
import pytest

from minerflow.config.analysis import dataset_source, load_analysis, single_config
from minerflow.io.columnar import ParquetChunkWriter, iter_chunks, read_columns
from minerflow.ml.folds import FoldStats, assign_folds, evaluate_out_of_fold, training_folds
from minerflow.ml.mlmodel import build_model, load_ml_modules
from minerflow.physics.toy_events import generate_events, write_toy_analysis

EXAMPLE = str(Path(__file__).parents[1] / "examples" / "toy_classifier.py")
features = load_ml_modules(EXAMPLE)[0].features


def _auc(score: np.ndarray, label: np.ndarray, weight: np.ndarray) -> float:
    """Weighted ROC AUC = P(score_sig > score_bkg) over weighted pairs (ties count 1/2)."""
    order = np.argsort(score)
    y, w = label[order], weight[order]
    bkg_below = np.cumsum(w * (1 - y)) - w * (1 - y)
    return float(np.sum(w * y * bkg_below) / (np.sum(w * y) * np.sum(w * (1 - y))))


def _nth(values: ak.Array, n: int) -> np.ndarray:
    """The n-th entry per event the slow, obvious way: pad with None, fill 0."""
    padded = ak.fill_none(ak.pad_none(values, n + 1, axis=1, clip=True), 0.0)
    return ak.to_numpy(padded[:, n])


def test_example_features_equal_the_padded_definition(rng: np.random.Generator) -> None:
    events = generate_events("signal", 4000, rng)
    events = events[rng.permutation(len(events))][500:3500]  # gathered and sliced, as per fold
    x = features(events)
    jets, leptons = events.Jet, events.Lepton
    expected = np.stack(
        [
            ak.to_numpy(ak.num(jets.pt, axis=1)),
            ak.to_numpy(ak.sum(ak.values_astype(jets.pt, np.float64), axis=1)),
            _nth(jets.pt, 0), _nth(jets.pt, 1),
            np.abs(_nth(jets.eta, 0)), np.abs(_nth(jets.eta, 1)),
            ak.to_numpy(ak.num(leptons.pt, axis=1)),
            _nth(leptons.pt, 0), np.abs(_nth(leptons.eta, 0)),
            ak.to_numpy(events.MET.pt),
        ],
        axis=1,
    ).astype(np.float32)  # fmt: skip
    assert x.dtype == np.float32 and x.shape == (3000, 10)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert features(events[:0]).shape == (0, 10)


def test_auc_helper_exact() -> None:
    assert _auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), np.ones(4)) == 0.75


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Train in this process on one thread: once torch has started its OpenMP threads, a
    process forked later (luigi's workers in another test) hangs in its first torch call."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_example_model_prepare_train_evaluate(tmp_path: Path) -> None:
    analysis = load_analysis(write_toy_analysis(tmp_path / "toy", 4000, seed=11, n_files=2))
    config = single_config(analysis)
    model = build_model("toy_classifier", analysis, parameters={"epochs": 8}, ml_modules=[EXAMPLE])
    k = model.folds
    columns = sorted(set(model.uses(config)) | set(model.fold_id_columns))
    # preparation: per dataset, per-fold parquet files and statistics
    prepared: dict[str, list[Path]] = {}
    stats: dict[str, dict] = {}
    for dataset in model.datasets(config):
        paths = [tmp_path / "prep" / dataset.name / f"fold{f}of{k}.parquet" for f in range(k)]
        counter = FoldStats(k)
        writers = [ParquetChunkWriter(p).__enter__() for p in paths]
        for chunk in iter_chunks(dataset_source(dataset), columns, chunk_size=1500):
            folds = assign_folds(chunk.events, k, model.fold_id_columns, model.fold_seed)
            counter.add(folds, ak.to_numpy(chunk.events.weight))
            for f, writer in enumerate(writers):
                writer.write(chunk.events[folds == f])
        for writer in writers:
            writer.__exit__(None, None, None)
        prepared[dataset.name], stats[dataset.name] = paths, counter.to_dict()
    assert stats["signal"]["n_events_total"] == 4000
    # training: fold f's model sees every fold but f
    targets = []
    for f in range(k):
        task = types.SimpleNamespace(fold=f)
        train_files = {n: [p[g] for g in training_folds(f, k)] for n, p in prepared.items()}
        inputs = {"events": {config.name: train_files}, "stats": {config.name: stats}}
        target = law.LocalDirectoryTarget(str(tmp_path / "models" / f"mlmodel_f{f}of{k}"))
        model.train(task, inputs, target)
        targets.append(target)
    models = [model.open_model(t) for t in targets]
    # evaluation: out of fold for the training datasets, chunk by chunk
    scores, labels, weights, feats = [], [], [], []
    for dataset in model.datasets(config):
        for chunk in iter_chunks(dataset_source(dataset), columns, chunk_size=1000):
            folds = assign_folds(chunk.events, k, model.fold_id_columns, model.fold_seed)
            out = evaluate_out_of_fold(model, None, chunk.events, models, folds, True, config)
            assert ak.fields(out) == ["toy_classifier"] and len(out) == len(chunk.events)
            scores.append(ak.to_numpy(out.toy_classifier.score))
            labels.append(np.full(len(out), dataset.name == "signal", dtype=float))
            weights.append(ak.to_numpy(chunk.events.weight))
            feats.append(features(chunk.events))
    label, weight = np.concatenate(labels), np.concatenate(weights)
    auc = _auc(np.concatenate(scores), label, weight)
    # the classifier beats every single input feature (each used in its better direction)
    x = np.concatenate(feats)
    best_single = max(
        max(a, 1 - a) for a in (_auc(x[:, j], label, weight) for j in range(x.shape[1]))
    )
    assert auc > best_single + 0.01 and auc > 0.8
    # a dataset not used in training gets the average of the three models
    source = dataset_source(config.get_dataset("signal"))
    events = read_columns(source, columns)[:50]
    averaged = evaluate_out_of_fold(model, None, events, models, np.zeros(50, int), False, config)
    singles = [
        ak.to_numpy(evaluate_out_of_fold(model, None, events, models, np.full(50, f), True, config)
                    .toy_classifier.score)
        for f in range(k)
    ]  # fmt: skip
    np.testing.assert_allclose(
        ak.to_numpy(averaged.toy_classifier.score), np.mean(singles, axis=0), rtol=1e-6
    )
