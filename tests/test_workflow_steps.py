"""Workflow step functions (files in, files out, tracked) on the reference file and the toy.

The reference file runs with the seed input unchanged (only sizes overridden); the toy's
results are checked against its exact likelihood.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minerflow.config.workflow_input import load_workflow_input
from minerflow.errors import InputError
from minerflow.io.madminer_file import read_event_file
from minerflow.io.samples import load_samples
from minerflow.physics import toy
from minerflow.physics.limits import p_values, theta_grid
from minerflow.workflow import common, evaluation, plotting, sampling, training

SMALL = (
    "sampling.n_samples_train=600",
    "training.num_epochs=2",
    "training.batch_size=128",
    "evaluation.n_samples_test=30",
)


# --------------------------------------------------------------------------- small units


def test_sample_kind_follows_method_and_estimator() -> None:
    source = load_workflow_input(None)
    assert sampling.sample_kind(source, "alices") == "ratio"
    assert sampling.sample_kind(source, "sally") == "local"
    double = load_workflow_input(None, ["estimator=double_parameterized"])
    assert sampling.sample_kind(double, "alices") == "more_ratios"
    dens = load_workflow_input(
        None,
        [
            "methods=[scandal]",
            "scandal.theta_0.sampling_method=benchmark",
            "scandal.theta_0.sampling_arg=sm",
            "plotting.correlations_methods=[]",
            "plotting.all_methods_pvalue=null",
        ],
    )
    assert sampling.sample_kind(dens, "scandal") == "density"
    # the sampler is part of the key: a new estimator gives new ratio samples
    assert sampling.sampling_key(source, "alices") != sampling.sampling_key(double, "alices")


def test_derived_rng_is_reproducible_and_independent_per_key() -> None:
    a = common.derived_rng(7, "alices", 0).random(4)
    assert np.array_equal(a, common.derived_rng(7, "alices", 0).random(4))
    assert not np.array_equal(a, common.derived_rng(7, "alices", 1).random(4))
    assert not np.array_equal(a, common.derived_rng(7, "alice", 0).random(4))


def test_toy_files_are_recognised(tmp_path: Path, reference_file: Path) -> None:
    path = toy.write_event_file(tmp_path / "toy.h5", n_events=600, seed=3)
    assert common.is_toy(read_event_file(path).header)
    assert not common.is_toy(read_event_file(reference_file).header)


def test_theta_true_outside_the_region_is_an_input_error(
    reference_file: Path, reference_input_file: Path
) -> None:
    source = load_workflow_input(reference_input_file, ["asymptotic_limits.theta_true=[30, 0]"])
    with pytest.raises(InputError, match=r"theta_true\[0\]: expected a value inside"):
        common.open_event_file(reference_file, source)


def test_missing_event_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.h5: expected an existing event file"):
        common.open_event_file(tmp_path / "nope.h5", load_workflow_input(None))


def test_kinematic_only_limit_is_the_kinematic_term_alone() -> None:
    """Hand-computable: Δlog L = (0, −1) with one dof gives p = (1, χ²₁.sf(2) = 0.157299)."""

    class Result:
        mode = "ml"
        dof = 1
        kinematic = np.array([-3.0, -4.0])
        log_likelihood_ratio = np.array([0.0, -5.0])
        p_values = np.array([1.0, 0.5])

    limits = evaluation.LimitSet(np.array([[0.0], [1.0]]), np.array([0.0]))
    limits.add_result(Result(), (True, False))
    assert limits.arrays["ml"].tolist() == [1.0, 0.5]
    assert limits.arrays["ml_kin_llr"].tolist() == [0.0, -1.0]
    assert limits.arrays["ml_kin"][1] == pytest.approx(0.157299, abs=1e-6)
    assert limits.summary["ml_kin"]["include_xsec"] is False
    assert limits.summary["ml"]["p_value_at_theta_true"] == 1.0


def test_read_record_refuses_the_wrong_step(tmp_path: Path) -> None:
    common.record(tmp_path, "sampling", method="alices")
    assert common.read_record(tmp_path, "sampling")["method"] == "alices"
    with pytest.raises(InputError, match="expected a training folder, got 'sampling'"):
        common.read_record(tmp_path, "training")
    with pytest.raises(InputError, match="the output folder of a training step"):
        common.read_record(tmp_path / "empty", "training")


def _step_in_process(workdir: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with common.step_run("race", workdir, run_name="parallel", params={"a": 1}) as run:
            run.log_metrics({"m": 1.0})
        results.put("ok")
    except Exception as err:  # reported to the test, which fails on it
        results.put(f"{type(err).__name__}: {err}")


@pytest.mark.slow
def test_parallel_steps_on_a_new_store_each_log_a_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel task processes open their first runs at once on a store that does not exist
    yet (the store's own lock makes that safe; step_run adds none)."""
    import multiprocessing

    from minerflow.tracking.runs import find_runs, read_run
    from minerflow.tracking.store import import_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import_mlflow()
    context = multiprocessing.get_context("fork")
    n = 4
    barrier, results = context.Barrier(n), context.Queue()
    processes = [
        context.Process(target=_step_in_process, args=(str(tmp_path), barrier, results))
        for _ in range(n)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(n)]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * n
    runs = find_runs(tmp_path, "race")
    assert len(runs) == n
    assert {read_run(tmp_path, r).status for r in runs} == {"FINISHED"}


@pytest.mark.parametrize(
    ("estimator", "method", "expected"),
    [
        ("parameterized", "alices", "ParameterizedRatioEstimator"),
        ("double_parameterized", "alices", "DoubleParameterizedRatioEstimator"),
        ("quadratic", "alices", "QuadraticRatioEstimator"),
        ("parameterized", "sally", "ScoreEstimator"),
    ],
)
def test_the_estimator_key_selects_the_estimator(
    estimator: str, method: str, expected: str
) -> None:
    source = load_workflow_input(None, [f"estimator={estimator}", "training.n_hidden=[7, 5]"])
    built = training.build_estimator(source, method, {"theta_ref": [0.0, 0.0]})
    assert type(built).__name__ == expected
    assert built.n_hidden == (7, 5)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def reference_run(
    tmp_path_factory: pytest.TempPathFactory, reference_file: Path, reference_input_file: Path
) -> tuple[Path, object]:
    """Every step on the reference file with the seed input (small sizes)."""
    work = tmp_path_factory.mktemp("steps")
    source = load_workflow_input(reference_input_file, SMALL)
    folders = sampling.sample(reference_file, source, work)
    models = [training.train(f, source, work, progress=False) for f in folders]
    for model in models:
        evaluation.evaluate(reference_file, model, source, work)
    plotting.plot(source, work)
    return work, source


@pytest.mark.slow
def test_samples_have_madminer_names_and_records(reference_run: tuple[Path, object]) -> None:
    work, _ = reference_run
    assert sorted(p.name for p in work.glob("Samples_*")) == [
        "Samples_alice_0",
        "Samples_alices_0",
        "Samples_sally_0",
    ]
    arrays = load_samples(work / "Samples_alices_0", "alices_train")
    assert {"x", "theta0", "theta1", "y", "r_xz", "t_xz"} <= set(arrays)
    assert (work / "Samples_alices_0" / "x_alices_train.npy").is_file()
    assert len(arrays["x"]) == 600
    local = common.read_record(work / "Samples_sally_0", "sampling")
    assert local["kind"] == "local" and local["theta_ref"] == [0.0, 0.0]  # benchmark 'sm'
    assert set(load_samples(work / "Samples_sally_0", "sally_train")) >= {"x", "t_xz"}


@pytest.mark.slow
def test_models_load_and_record_their_training(reference_run: tuple[Path, object]) -> None:
    from minerflow.ml.persistence import load_estimator

    work, _ = reference_run
    model = load_estimator(work / "models" / "alices_0", device="cpu")
    assert type(model).__name__ == "ParameterizedRatioEstimator"
    history = json.loads((work / "models" / "alices_0" / "history.json").read_text())
    assert len(history["train"]["total"]) == 2
    assert type(load_estimator(work / "models" / "sally_0", device="cpu")).__name__ == (
        "ScoreEstimator"
    )


@pytest.mark.slow
def test_evaluation_arrays_have_the_seed_shapes(reference_run: tuple[Path, object]) -> None:
    work, _ = reference_run
    results = work / "results"
    assert np.load(results / "alices_0" / "llr.npy").shape == (625, 30)
    assert np.load(results / "alices_0" / "scores.npy").shape == (625, 30, 2)
    assert np.load(results / "sally_0" / "scores.npy").shape == (30, 2)
    for name, modes in (("alices_0", "ml"), ("sally_0", "sally")):
        summary = json.loads((results / name / "limits.json").read_text())
        assert set(summary) == {modes, f"{modes}_kin"}
        p = np.load(results / name / "limits" / f"{modes}.npy")
        assert p.shape == (625,) and p.dtype == np.float64
        assert p.max() == pytest.approx(1.0)  # the best fit has p = 1
    rates = json.loads((work / "rates" / "limits.json").read_text())
    assert set(rates) == {"rate", "histo", "histo_kin"}  # no truth: not the toy
    fisher = json.loads((work / "rates" / "fisher.json").read_text())["information"]
    assert set(fisher) == {"truth", "rate", "histo"}
    # truth ≥ histogram ≥ rate information (positive semi-definite differences)
    truth, histo, rate = (np.array(fisher[k]) for k in ("truth", "histo", "rate"))
    assert np.linalg.eigvalsh(truth - histo).min() > -1e-9 * np.abs(truth).max()
    assert np.linalg.eigvalsh(histo - rate).min() > -1e-9 * np.abs(histo).max()
    assert "sally_0" in json.loads((results / "sally_0" / "fisher.json").read_text())["information"]


@pytest.mark.slow
def test_plot_formats_are_the_inputs(
    reference_run: tuple[Path, object], reference_input_file: Path, tmp_path: Path
) -> None:
    """``plotting.formats`` decides the files: SVG alone here, where the default is PNG+PDF."""
    import shutil

    work, _ = reference_run
    copy = tmp_path / "work"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns("plots", "mlflow.db*"))
    svg_only = load_workflow_input(reference_input_file, [*SMALL, "plotting.formats=svg"])
    written = plotting.plot(svg_only, copy)
    assert written and {p.suffix for p in written} == {".svg"}
    assert {p.suffix for p in (copy / "plots").iterdir()} == {".svg", ".json"}
    assert {p.name for p in written} == {
        f"{p.stem}.svg" for p in (work / "plots").glob("*.png")
    }  # the same figures as the default's PNGs


@pytest.mark.slow
def test_plots_and_tracking(
    reference_run: tuple[Path, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from minerflow.tracking.runs import find_runs, metric_history, read_run
    from minerflow.tracking.store import import_mlflow, tracking_uri

    work, _ = reference_run
    names = {p.name for p in (work / "plots").iterdir()}
    for stem in (
        "all_methods",
        "all_methods_separate",
        "pvalue_alices_0",
        "cross_section",
        "fisher_information",
        "training_sally_0",
    ):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert not any(n.startswith("correlation") for n in names)  # no truth for this file
    training_runs = find_runs(work, "training")
    assert len(training_runs) == 3
    run = read_run(work, training_runs[0])
    assert run.status == "FINISHED"
    assert run.tags["minerflow.event_file_sha256"]
    assert len(metric_history(work, run.run_id, "train_total")) == 2
    assert "model_folder/settings.json" in run.artifacts
    # the model logged with mlflow.pytorch loads back with the trained weights
    uri = tracking_uri(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # restored after the test
    import_mlflow().set_tracking_uri(uri)
    import mlflow.pytorch

    try:
        logged = mlflow.pytorch.load_model(run.tags["minerflow.model_uri"])
    finally:  # MLflow's global URI would outlive the test (and re-set the variable later)
        import_mlflow().set_tracking_uri(None)
    saved = __import__("torch").load(Path(run.tags["minerflow.model_dir"]) / "weights.pt")
    assert all(np.array_equal(v.numpy(), saved[k].numpy()) for k, v in logged.state_dict().items())
    assert len(find_runs(work, "sampling")) == 3
    assert len(find_runs(work, "evaluation")) == 4  # three models and the reference


@pytest.mark.slow
def test_toy_results_match_the_exact_likelihood(tmp_path: Path) -> None:
    """With a toy file, the stored truth is the toy's exact likelihood, to the last digit; the
    ml limit from the Asimov subsample matches the full Asimov set's."""
    data = toy.write_event_file(tmp_path / "toy.h5", n_events=5000, seed=5)
    source = load_workflow_input(
        None,
        [
            *SMALL,
            "methods=[alices, sally]",
            "plotting.correlations_methods=[alices]",
            "asymptotic_limits.resolutions=[5, 5]",
        ],
    )
    folders = sampling.sample(data, source, tmp_path)
    for folder in folders:
        evaluation.evaluate(
            data, training.train(folder, source, tmp_path, progress=False), source, tmp_path
        )
    grid = theta_grid([(-1.0, 1.0), (-1.0, 1.0)], [5, 5])
    result = tmp_path / "results" / "alices_0"
    x_test = np.load(result / "x_test.npy")
    assert np.array_equal(np.load(result / "grid.npy"), grid)
    exact = toy.log_likelihood_ratio(x_test, grid, np.zeros((1, 2)))
    assert np.array_equal(np.load(result / "true_llr.npy"), exact)
    llr = toy.expected_log_likelihood_ratio(grid, np.zeros(2), source.luminosity, False)
    expected = p_values(llr, 2)[1]
    assert np.array_equal(np.load(tmp_path / "rates" / "limits" / "truth_kin.npy"), expected)
    fisher = json.loads((tmp_path / "rates" / "fisher.json").read_text())["information"]
    assert np.allclose(fisher["exact"], toy.fisher_information(np.zeros(2), source.luminosity))
    # 2500 test events > ASIMOV_EVENTS: the model saw a subsample; the full set agrees
    from minerflow.ml.persistence import load_estimator
    from minerflow.physics.limits import MorphedEvents, expected_limits
    from minerflow.physics.sampling import partitions

    event_file = read_event_file(data)
    parts = partitions(event_file.header.n_events, 0.5, 0.0)
    events = MorphedEvents.from_event_file(event_file, parts["test"])
    assert len(events) > evaluation.ASIMOV_EVENTS
    full = expected_limits(
        "ml",
        events,
        grid,
        np.zeros(2),
        source.luminosity,
        estimator=load_estimator(tmp_path / "models" / "alices_0", device="cpu"),
    )
    stored = np.load(result / "limits" / "ml_llr.npy")
    inside = full.log_likelihood_ratio > -3.1  # the 2σ region
    assert np.abs(2 * (stored - full.log_likelihood_ratio))[inside].max() < 0.3
    written = plotting.plot(source, tmp_path)
    assert {"correlation_llr_alices_0.png", "correlation_score_alices_0.png"} <= {
        p.name for p in written
    }
