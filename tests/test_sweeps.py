"""Hyper-parameter sweeps: parsing, points as overrides and branches, summary, plot, MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.config.workflow_input import load_workflow_input
from minerflow.errors import InputError
from minerflow.workflow.sweeps import (
    SWEEP_KEY,
    Sweep,
    SweepResult,
    apply_point,
    collect_sweep_results,
    parse_sweeps,
    plot_sweep,
    point_label,
    point_overrides,
    sweep_branches,
    sweep_parent_run,
    sweep_table,
    write_sweep_summary,
)
from support.remote_tasks import SweepTraining, make_toy_samples, run_task


def test_product_of_axes_in_command_line_order() -> None:
    sweep = parse_sweeps(["alpha=1,10,100", "num_epochs=20,50"])
    assert sweep.names == ("alpha", "num_epochs")
    assert len(sweep) == 6
    points = sweep.points()
    assert points[0] == {"alpha": 1.0, "num_epochs": 20}
    assert points[1] == {"alpha": 1.0, "num_epochs": 50}
    assert points[-1] == {"alpha": 100.0, "num_epochs": 50}
    assert isinstance(points[0]["alpha"], float) and isinstance(points[0]["num_epochs"], int)
    assert parse_sweeps([]).points() == [{}]


def test_values_are_typed_like_the_input_file() -> None:
    sweep = parse_sweeps(["training.n_hidden=[50,50],[100]", "activation=tanh,relu", "lr=1e-3"])
    assert sweep.axes == (
        ("n_hidden", ((50, 50), (100,))),
        ("activation", ("tanh", "relu")),
        ("lr", (0.001,)),
    )


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["alpha"], r"^--sweep: alpha: expected name=value1,value2"),
        (["alpha="], r"^--sweep: alpha=: expected name=value1"),
        (["aplha=1,2"], r"^--sweep: aplha: expected a training setting, one of \['alpha'"),
        (["alpha=1", "alpha=2"], r"^--sweep: alpha: expected each setting swept once"),
        (["alpha=1,1.0"], r"^--sweep: alpha: expected distinct values"),
        (["num_epochs=0,5"], r"^--sweep: num_epochs: expected valid values .*got '0'"),
        (["activation=tanh,swish"], r"^--sweep: activation: expected valid values"),
        (["alpha=[1"], r"^--sweep: alpha: expected YAML values"),
    ],
)
def test_bad_sweeps_are_one_line_errors(texts: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_sweeps(texts)


@settings(max_examples=25, deadline=None)
@given(
    alphas=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=4, unique=True),
    epochs=st.lists(st.integers(1, 500), min_size=1, max_size=3, unique=True),
)
def test_points_round_trip_through_input_overrides(alphas: list[float], epochs: list[int]) -> None:
    sweep = parse_sweeps(
        [f"alpha={','.join(map(repr, alphas))}", f"num_epochs={','.join(map(str, epochs))}"]
    )
    assert len(sweep.points()) == len(alphas) * len(epochs)
    base = load_workflow_input(None)
    for point in sweep.points():
        via_overrides = load_workflow_input(None, point_overrides(point))
        assert via_overrides.training == apply_point(base, point).training
        assert (via_overrides.training.alpha, via_overrides.training.num_epochs) == (
            point["alpha"],
            point["num_epochs"],
        )


def test_apply_point_changes_only_training_and_the_training_key() -> None:
    base = load_workflow_input(None)
    swept = apply_point(base, {"alpha": 1.0, "n_hidden": (10,)})
    assert swept.training.alpha == 1.0 and swept.training.n_hidden == (10,)
    assert swept.training.lr == base.training.lr
    assert swept.source == base.source
    assert swept.step_hash("sampling") == base.step_hash("sampling")  # samples are shared
    assert swept.step_hash("training") != base.step_hash("training")  # models are not
    with pytest.raises(InputError, match=r"default_input\.yml: training\.num_epochs"):
        apply_point(base, {"num_epochs": -1})


def test_branches_are_base_branches_times_points() -> None:
    sweep = parse_sweeps(["alpha=1,10"])
    base = [{"method": "alices", "run": 0}, {"method": "sally", "run": 0}]
    branches = sweep_branches(base, sweep)
    assert branches == [
        {"method": "alices", "run": 0, SWEEP_KEY: {"alpha": 1.0}},
        {"method": "alices", "run": 0, SWEEP_KEY: {"alpha": 10.0}},
        {"method": "sally", "run": 0, SWEEP_KEY: {"alpha": 1.0}},
        {"method": "sally", "run": 0, SWEEP_KEY: {"alpha": 10.0}},
    ]
    assert sweep_branches(base, parse_sweeps([])) == base  # no sweep: keys unchanged
    assert point_label({"alpha": 10.0, "n_hidden": (50, 50)}) == "alpha=10,n_hidden=50x50"


def _results() -> tuple[Sweep, list[SweepResult]]:
    sweep = parse_sweeps(["alpha=1,10,100", "num_epochs=1,2"])
    values = {"alices": [5.0, 4.0, 3.0, 2.5, 2.0, 2.2], "sally": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]}
    results = [
        SweepResult(method, run, point, value + 0.1 * run, f"{method}{run}{i}")
        for method, vals in values.items()
        for run in (0, 1)
        for i, (point, value) in enumerate(zip(sweep.points(), vals, strict=True))
    ]
    return sweep, results


def test_summary_table_marks_the_best_point_per_method() -> None:
    sweep, results = _results()
    header, rows = sweep_table(results, sweep.names)
    assert header == ["method", "run", "alpha", "num_epochs", "best_loss", "best", "mlflow_run"]
    best = [row for row in rows if row[5] == "*"]
    assert best == [
        ["alices", "0", "100", "1", "2", "*", "alices04"],
        ["sally", "0", "100", "2", "0.5", "*", "sally05"],
    ]


def test_plot_shows_mean_and_spread_over_runs() -> None:
    sweep, results = _results()
    figure = plot_sweep(results, sweep)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"  # alpha spans a factor 100
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert set(lines) == {
        "alices (num_epochs=1)",
        "alices (num_epochs=2)",
        "sally (num_epochs=1)",
        "sally (num_epochs=2)",
    }
    line = lines["alices (num_epochs=2)"]
    np.testing.assert_allclose(line.get_xdata(), [1.0, 10.0, 100.0])
    np.testing.assert_allclose(line.get_ydata(), [4.05, 2.55, 2.25])  # mean of runs 0 and 1
    assert len(ax.collections) == 4  # one min-max band per line


def test_summary_files(tmp_path: Path) -> None:
    sweep, results = _results()
    paths = write_sweep_summary(results, sweep, tmp_path)
    assert sorted(p.name for p in paths) == ["sweep.csv", "sweep.md", "sweep.pdf", "sweep.png"]
    with open(tmp_path / "sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    assert float(rows[0]["best_loss"]) == 5.0
    assert (tmp_path / "sweep.md").read_text().count("\n") == 26
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="finished trainings"):
        write_sweep_summary([], sweep, tmp_path)


@pytest.mark.slow
def test_sweep_trains_in_parallel_branches_tracked_under_one_parent(tmp_path: Path) -> None:
    samples = make_toy_samples(tmp_path)
    texts = ("alpha=1,100",)
    sweep = parse_sweeps(texts)
    task = SweepTraining(workdir=str(tmp_path), samples=str(samples), sweep=texts)
    with sweep_parent_run(tmp_path, sweep) as parent:
        assert run_task(task, workers=2)
    results = collect_sweep_results(tmp_path, parent.run_id, sweep)
    assert [r.point for r in results] == sweep.points()
    for branch, result in enumerate(results):
        out = task.as_branch(branch).output_dir()
        assert out.name.startswith(f"point={point_label(result.point).replace('=', '-')}__")
        (model,) = (out / "models").iterdir()
        history = json.loads((model / "history.json").read_text())
        best = history["validation"]["total"][history["best_epoch"]]
        assert result.value == pytest.approx(best, rel=1e-12)
        record = json.loads((model / "step.json").read_text())
        assert record["settings"]["training"]["alpha"] == result.point["alpha"]
    assert results[0].value < results[1].value  # alpha weighs the score term into the loss
    paths = write_sweep_summary(results, sweep, tmp_path / "summary")
    assert "| alices | 0 | 1 |" in (tmp_path / "summary" / "sweep.md").read_text()
    assert len(paths) == 4
