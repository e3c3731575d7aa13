"""The MLModel tasks end to end on toy columnar data: prepare → k-fold training (2 workers) →
row-aligned out-of-fold evaluation → plots, re-runs, datasets outside training, bad input,
sandboxes, and the ROOT path on a real file (uproot-HZZ.root)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import awkward as ak
import luigi
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from minerflow.io.columnar import write_parquet
from minerflow.ml.folds import assign_folds
from minerflow.physics.toy_events import ToyProcess, generate_events, write_toy_analysis
from minerflow.plotting.metrics import roc_curve, weighted_confusion_matrix
from minerflow.tasks.base import build_locally, collect_records, new_run_token
from minerflow.tasks.ml import (
    WORKER_MODULES,
    MLEvaluation,
    MLTraining,
    PlotMLResults,
    PrepareMLEvents,
    read_failures,
)
from minerflow.tracking.runs import find_runs, metric_history, read_run
from support.mlflow_store import fresh_workdir

MODELS = str(Path(__file__).with_name("ml_task_models.py"))
OTHER = ToyProcess("other", 3, 5.0, 1.5, 30.0, 1.4, 2.2, 70.0, 120.0)


def _analysis(base: Path, n_events: int = 1200) -> Path:
    """Toy signal/background (2 parquet files each) plus a third process 'other'."""
    write_toy_analysis(base, n_events, seed=5, n_files=2)
    other = generate_events(OTHER, n_events, np.random.default_rng(9), n_generated=n_events)
    write_parquet(base / "data" / "other_0.parquet", other)
    config = yaml.safe_load((base / "analysis.yml").read_text())
    config["ml_modules"] = [MODELS]
    config["processes"].append({"name": "other", "id": 3, "xsec": 5.0})
    config["datasets"].append(
        {"name": "other", "process": "other", "files": ["data/other_*.parquet"]}
    )
    path = base / "analysis.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _build(*tasks: luigi.Task, workers: int = 1) -> bool:
    """Run ``tasks`` as ``minerflow ml`` does (forked workers start with MLflow imported)."""
    new_run_token()
    return build_locally(tasks, workers, WORKER_MODULES, log_level="CRITICAL")


def _params(workdir: Path, analysis: Path, model: str = "lin_binary", **extra: str) -> dict:
    return {"workdir": str(workdir), "ml_model": model, "analysis_file": str(analysis),
            "chunk_size": 500, **extra}  # fmt: skip


def _table(path: Path) -> ak.Array:
    return ak.from_arrow(pq.read_table(path))


def _inputs(files: list[str]) -> ak.Array:
    return ak.concatenate([_table(Path(f)) for f in files])


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One toy analysis and one work dir (one MLflow store) for the tests of this module."""
    base = tmp_path_factory.mktemp("ml")
    workdir = fresh_workdir(request.config, tmp_path_factory, "work")
    return {"analysis": _analysis(base / "toy"), "workdir": workdir, "base": base}


@pytest.fixture(scope="module")
def binary(shared: dict) -> dict:
    """lin_binary through every step with 2 workers (3 folds)."""
    analysis, workdir = shared["analysis"], shared["workdir"]
    plot = PlotMLResults(
        **_params(workdir, analysis, ml_model_settings="train_delay=1.0", formats="png")
    )
    assert _build(plot, workers=2), read_failures(workdir)
    return {**shared, "plot": plot}


def test_preparation_writes_each_event_to_its_fold_once(binary: dict) -> None:
    training = binary["plot"].training()
    for name, folder in training.prepared_dirs().items():
        stats = json.loads((folder / "stats.json").read_text())
        events = _inputs(stats["files"])
        folds = assign_folds(events, 3)
        assert stats["n_read"] == stats["n_selected"] == len(events) == 1200
        assert stats["n_events"] == np.bincount(folds, minlength=3).tolist()
        weights = ak.to_numpy(events.weight).astype(np.float64)
        np.testing.assert_allclose(
            stats["sum_weights"], np.bincount(folds, weights=weights, minlength=3), rtol=1e-12
        )
        assert stats["processes"] == [name] and stats["weight_column"] == "weight"
        for f in range(3):
            part = _table(folder / f"fold{f}of3.parquet")
            expected = np.sort(ak.to_numpy(events.event[folds == f]))
            np.testing.assert_array_equal(np.sort(ak.to_numpy(part.event)), expected)
            assert sorted(ak.fields(part)) == ["Jet", "MET", "event", "luminosityBlock",
                                               "run", "weight"]  # fmt: skip


def test_folds_trained_in_parallel_on_the_other_folds(binary: dict) -> None:
    training = binary["plot"].training()
    tasks = training.fold_tasks()
    spans = []
    for f, task in enumerate(tasks):
        out = task.output_dir()
        assert out.name.startswith(f"fold={f}of3__")
        assert out.parent.parent.name == "lin_binary"
        trained = np.load(out / f"mlmodel_f{f}of3" / "model.npz")["trained_ids"]
        expected = []
        for folder in training.prepared_dirs().values():
            for g in (g for g in range(3) if g != f):
                part = _table(folder / f"fold{g}of3.parquet")
                expected.append(np.stack([ak.to_numpy(part.run), ak.to_numpy(part.event)], 1))
        np.testing.assert_array_equal(
            np.unique(trained, axis=0), np.unique(np.concatenate(expected), axis=0)
        )
        meta = json.loads((out / "task.json").read_text())
        spans.append((meta["started"], meta["finished"]))
    # two workers: some pair of folds overlapped in time (each training sleeps 1 s)
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


def test_evaluation_is_row_aligned_and_out_of_fold(binary: dict) -> None:
    plot = binary["plot"]
    models = {
        f: np.load(t.output_dir() / f"mlmodel_f{f}of3" / "model.npz")["trained_ids"]
        for f, t in enumerate(plot.training().fold_tasks())
    }
    seen = {f: {tuple(row) for row in ids} for f, ids in models.items()}
    for task in plot.evaluation().get_branch_tasks().values():
        info = json.loads((task.output_dir() / "files.json").read_text())
        assert info["used_in_training"] and len(info["files"]) == 2
        for entry in info["files"]:
            events = _table(Path(entry["input"]))
            out = _table(task.output_dir() / entry["output"])
            assert len(out) == len(events) == entry["rows"]
            np.testing.assert_array_equal(ak.to_numpy(out.fold), assign_folds(events, 3))
            np.testing.assert_array_equal(
                ak.to_numpy(out.lin_binary.model_fold), ak.to_numpy(out.fold)
            )
            ids = zip(ak.to_numpy(events.run), ak.to_numpy(events.event), strict=True)
            for (run, event), fold in zip(ids, ak.to_numpy(out.fold), strict=True):
                assert (run, event) not in seen[int(fold)]
            assert sorted(ak.fields(out)) == ["fold", "lin_binary"]


def test_plots_and_metrics_match_the_evaluation(binary: dict, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    plot = binary["plot"]
    out = plot.output_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["signal", "background"]
    for name in ("roc", "output_distributions", "learning_curves"):
        image = mpimg.imread(out / f"{name}.png")
        assert image.shape[0] > 200 and image[..., :3].std() > 0.05
    assert not (out / "confusion_matrix.png").exists()  # binary
    # the combined weighted ROC from the written evaluation, recomputed here
    scores, labels, weights, folds = [], [], [], []
    for task in plot.evaluation().get_branch_tasks().values():
        info = json.loads((task.output_dir() / "files.json").read_text())
        for entry in info["files"]:
            result = _table(task.output_dir() / entry["output"])
            scores.append(ak.to_numpy(result.lin_binary.score))
            weights.append(ak.to_numpy(_table(Path(entry["input"])).weight).astype(float))
            labels.append(np.full(len(result), info["dataset"] == "signal"))
            folds.append(ak.to_numpy(result.fold))
    s, y, w, f = (np.concatenate(a) for a in (scores, labels, weights, folds))
    auc = metrics["auc"]["signal"]
    assert auc["combined"] == pytest.approx(roc_curve(s, y, w).auc, abs=1e-12)
    for k in range(3):
        assert auc[f"fold {k}"] == pytest.approx(roc_curve(s[f == k], y[f == k], w[f == k]).auc)
    assert 0.75 < auc["combined"] < 1.0
    for p_value in metrics["ks_p_value"]["lin_binary.score"].values():
        assert 0.0 <= p_value <= 1.0
    assert metrics["n_test_events"] == metrics["n_train_events"] == 2400


def test_every_fold_is_an_mlflow_run_under_one_parent(binary: dict) -> None:
    workdir = binary["workdir"]
    runs = [read_run(workdir, r) for r in find_runs(workdir, "ml_training")]
    folds = [r for r in runs if "minerflow.fold" in r.tags]
    assert sorted(r.tags["minerflow.fold"] for r in folds) == ["0", "1", "2"]
    parents = {r.parent_run_id for r in folds}
    assert len(parents) == 1 and None not in parents
    plots = [r for r in runs if r.tags.get("mlflow.runName") == "lin_binary plots"]
    assert [r.parent_run_id for r in plots] == list(parents)
    for run in folds:
        assert run.status == "FINISHED"
        assert run.params["ml_model"] == "lin_binary" and run.params["folds"] == "3"
        assert len(metric_history(workdir, run.run_id, "train_loss")) == 25
        assert len(metric_history(workdir, run.run_id, "val_loss")) == 25
        fold = run.tags["minerflow.fold"]
        assert "model/model.npz" in run.artifacts or any(
            a.endswith("model.npz") for a in run.artifacts
        ), (fold, run.artifacts)
        assert "plots/learning_curves.png" in run.artifacts
    assert any(a.startswith("plots/roc") for a in plots[0].artifacts)


def test_rerun_is_a_no_op(binary: dict) -> None:
    plot = binary["plot"]
    before = {p: p.stat().st_mtime_ns for p in binary["workdir"].rglob("*.parquet")}
    assert _build(PlotMLResults(**plot.param_kwargs), workers=2)
    records = collect_records([plot])
    assert {r.status for r in records} == {"reused"}
    assert len(records) == 2 + 3 + 2 + 1
    assert {p: p.stat().st_mtime_ns for p in binary["workdir"].rglob("*.parquet")} == before


def test_dataset_outside_training_gets_the_average(binary: dict) -> None:
    params = _params(binary["workdir"], binary["analysis"], ml_model_settings="train_delay=1.0")
    evaluation = MLEvaluation(**params, datasets="other")
    assert _build(evaluation)
    [task] = evaluation.get_branch_tasks().values()
    info = json.loads((task.output_dir() / "files.json").read_text())
    assert (info["used_in_training"], info["rule"]) == (False, "average")
    out = _table(task.output_dir() / "mlcolumns_0.parquet")
    assert set(ak.to_numpy(out.fold)) == {-1}
    model = evaluation.model_inst
    events = _table(Path(info["files"][0]["input"]))
    models = evaluation.training().open_models()
    singles = [ak.to_numpy(model.evaluate(None, events, [m], None).lin_binary.score)
               for m in models]  # fmt: skip
    np.testing.assert_allclose(ak.to_numpy(out.lin_binary.score), np.mean(singles, 0), rtol=1e-6)


@pytest.mark.slow
def test_multiclass_confusion_matrix(shared: dict) -> None:
    workdir = shared["workdir"]
    plot = PlotMLResults(**_params(workdir, shared["analysis"], "lin_three", formats="png"))
    assert _build(plot, workers=2), read_failures(workdir)
    metrics = json.loads((plot.output_dir() / "metrics.json").read_text())
    assert metrics["classes"] == ["signal", "background", "other"]
    assert metrics["score_columns"] == ["lin_three.signal", "lin_three.background",
                                        "lin_three.other"]  # fmt: skip
    figures = set(metrics["figures"])
    assert {"confusion_matrix.png", "roc_signal.png", "roc_other.png"} <= figures
    assert "output_distributions_other.png" in figures
    truth, scores, weights = [], [], []
    for label, task in enumerate(plot.evaluation().get_branch_tasks().values()):
        info = json.loads((task.output_dir() / "files.json").read_text())
        label = metrics["classes"].index(info["dataset"])
        for entry in info["files"]:
            out = _table(task.output_dir() / entry["output"])
            scores.append(np.stack([ak.to_numpy(out.lin_three[c]) for c in metrics["classes"]], 1))
            weights.append(ak.to_numpy(_table(Path(entry["input"])).weight).astype(float))
            truth.append(np.full(len(out), label))
    matrix = weighted_confusion_matrix(
        np.concatenate(truth), np.concatenate(scores), np.concatenate(weights)
    )
    np.testing.assert_allclose(metrics["confusion_matrix"], matrix, atol=1e-12)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert matrix[2, 2] > 0.5  # 'other' is the easiest class of the three


# --------------------------------------------------------------------------- bad input
def test_missing_column_names_dataset_file_and_column(shared: dict) -> None:
    workdir, analysis = shared["workdir"], shared["analysis"]
    assert not _build(MLTraining(**_params(workdir, analysis, "lin_missing_column")))
    lines = read_failures(workdir)
    data = re.escape(str(analysis.parent / "data"))
    for line in lines:  # one per dataset (both lack the column)
        found = re.search(
            rf"^minerflow.PrepareMLEvents: {data}/(\w+)_0\.parquet: Jet\.btag: expected column "
            r"'Jet\.btag' in this file of dataset '(\w+)'",
            line,
        )
        assert found and found.group(1) == found.group(2), line
    assert len(lines) == 2
    assert not list((workdir / "ml_preparation" / "v1" / "lin_missing_column").rglob("*.parquet"))


def test_dataset_without_files(shared: dict) -> None:
    config = yaml.safe_load(shared["analysis"].read_text())
    config["datasets"][0]["files"] = ["nothing_*.parquet"]
    broken = shared["analysis"].with_name("no_files.yml")
    broken.write_text(yaml.safe_dump(config))
    assert not _build(MLTraining(**_params(shared["workdir"], broken)))
    [line] = read_failures(shared["workdir"])
    assert "datasets.signal.files" in line and "event files for dataset 'signal'" in line


def test_evaluate_with_wrong_length_keeps_the_trained_models(shared: dict) -> None:
    workdir = shared["workdir"]
    params = _params(workdir, shared["analysis"], "lin_bad_length")
    training = MLTraining(**params)
    assert _build(training)
    trained = workdir / "ml_training" / "v1" / "lin_bad_length"
    models = {p: p.stat().st_mtime_ns for p in trained.rglob("model.npz")}
    assert len(models) == 3
    assert not _build(MLEvaluation(**params))
    lines = read_failures(workdir)
    expected = "model 'lin_bad_length': evaluate: expected one row per input event"
    assert lines and expected in lines[0]
    assert training.complete()
    assert {p: p.stat().st_mtime_ns for p in trained.rglob("model.npz")} == models
    assert not list((workdir / "ml_evaluation" / "v1" / "lin_bad_length").rglob("*.parquet"))


def test_sandbox_requirements_that_fail_to_install(shared: dict) -> None:
    workdir, analysis = shared["workdir"], shared["analysis"]
    requirements = shared["base"] / "broken.txt"
    requirements.write_text("# version 1\n./no-such-package-0.1-py3-none-any.whl\n")
    settings = f"sandbox_spec=venv::{requirements}"
    training = MLTraining(**_params(workdir, analysis, ml_model_settings=settings))
    assert not _build(training)
    lines = read_failures(workdir)
    assert lines[0].startswith(f"minerflow.MLTraining: {requirements}: pip install: expected")
    assert training.preparation().complete()  # the preparation before it is kept
    assert not any(t.output_dir().exists() for t in training.fold_tasks())


@pytest.mark.slow
def test_training_runs_inside_a_working_sandbox(shared: dict, tmp_path: Path) -> None:
    toy = shared["analysis"]
    requirements = tmp_path / "ml_env.txt"
    requirements.write_text("# version 1\n# minerflow: inherit\n")
    settings = f"sandbox_spec=venv::{requirements},folds=2"
    training = MLTraining(**_params(tmp_path, toy, ml_model_settings=settings))
    assert _build(training, workers=2), read_failures(tmp_path)
    for f, task in enumerate(training.fold_tasks()):
        env = json.loads((task.output_dir() / f"mlmodel_f{f}of2" / "environment.json").read_text())
        assert env["prefix"].startswith(str(tmp_path / ".minerflow" / "sandboxes"))
        assert env["prefix"] != os.sys.prefix


# --------------------------------------------------------------------------- real ROOT file
def test_preparation_of_a_real_root_file(tmp_path: Path) -> None:
    import uproot
    from skhep_testdata import data_path

    source = data_path("uproot-HZZ.root")
    config = {
        "version": 1, "analysis": "hzz", "config": "hzz", "ml_modules": [MODELS],
        "processes": [{"name": "zz", "id": 1}],
        "datasets": [{"name": "hzz", "process": "zz", "files": [source], "format": "root",
                      "tree": "events"}],
    }  # fmt: skip
    analysis = tmp_path / "hzz.yml"
    analysis.write_text(yaml.safe_dump(config))
    task = PrepareMLEvents(**_params(tmp_path / "w", analysis, "hzz_prep",
                                     weight_column="EventWeight"))  # fmt: skip
    assert _build(task), read_failures(tmp_path / "w")
    [branch] = task.get_branch_tasks().values()
    stats = json.loads((branch.output_dir() / "stats.json").read_text())
    tree = uproot.open(source)["events"]
    raw = tree.arrays(["NMuon", "Muon_Px", "EventWeight", "MET_px", "MET_py"], library="ak")
    assert stats["n_read"] == stats["n_events_total"] == len(raw) == 2421
    folds = assign_folds(ak.zip({"MET_px": raw.MET_px, "MET_py": raw.MET_py}), 3,
                         ("MET_px", "MET_py"))  # fmt: skip
    weights = ak.to_numpy(raw.EventWeight).astype(np.float64)
    np.testing.assert_allclose(
        stats["sum_weights"], np.bincount(folds, weights=weights, minlength=3), rtol=1e-6
    )
    for f in range(3):
        part = _table(branch.output_dir() / f"fold{f}of3.parquet")
        np.testing.assert_array_equal(ak.num(part.Muon.Px, axis=1), raw.NMuon[folds == f])
        np.testing.assert_allclose(
            ak.to_numpy(ak.flatten(part.Muon.Px)), ak.to_numpy(ak.flatten(raw.Muon_Px[folds == f]))
        )
