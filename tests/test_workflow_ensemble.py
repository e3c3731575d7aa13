"""Two sampling runs per method: the evaluation step also evaluates each method's ensemble,
with the member spread as its uncertainty (tiny sizes, the toy simulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minerflow.config.workflow_input import load_workflow_input
from minerflow.errors import InputError
from minerflow.io.madminer_file import read_event_file
from minerflow.ml.ensemble import Ensemble
from minerflow.ml.persistence import load_estimator
from minerflow.physics import toy
from minerflow.physics.limits import MorphedEvents, expected_limits, theta_grid
from minerflow.physics.sampling import partitions
from minerflow.workflow import evaluation, plotting, sampling, training

TINY = [
    "sampling.n_samples_train=300",
    "sampling.n_sampling_runs=2",
    "training.num_epochs=1",
    "training.n_hidden=[16, 16]",
    "evaluation.n_samples_test=20",
    "methods=[alices, sally]",
    "plotting.correlations_methods=[alices]",
    "asymptotic_limits.resolutions=[5, 5]",
]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("ensemble")
    data = toy.write_event_file(work / "toy.h5", n_events=1200, seed=5)
    source = load_workflow_input(None, TINY)
    done = {}
    for folder in sampling.sample(data, source, work):
        model = training.train(folder, source, work, progress=False)
        done[model.name] = evaluation.evaluate(data, model, source, work)
    return {"work": work, "data": data, "source": source, "done": done}


def _members(work: Path, method: str) -> list[Any]:
    return [load_estimator(work / "models" / f"{method}_{k}", device="cpu") for k in (0, 1)]


def _test_events(data: Path) -> tuple[MorphedEvents, MorphedEvents]:
    event_file = read_event_file(data)
    parts = partitions(event_file.header.n_events, 0.5, 0.0)
    return (
        MorphedEvents.from_event_file(event_file, parts["test"]),
        MorphedEvents.from_event_file(event_file, parts["train"]),
    )


@pytest.mark.slow
def test_the_ensemble_comes_with_the_last_run(two_runs: dict[str, Any]) -> None:
    done, work = two_runs["done"], two_runs["work"]
    assert done["alices_0"].ensemble is None and done["sally_0"].ensemble is None
    assert done["alices_1"].ensemble == work / "results" / "alices_ensemble"
    assert done["sally_1"].ensemble == work / "results" / "sally_ensemble"
    record = json.loads((work / "results" / "alices_ensemble" / "step.json").read_text())
    assert record["key"]["members"] == ["alices_0", "alices_1"]


@pytest.mark.slow
def test_ensemble_predictions_are_member_mean_and_spread(two_runs: dict[str, Any]) -> None:
    results = two_runs["work"] / "results"
    for array in ("llr", "scores"):
        a, b = (np.load(results / f"alices_{k}" / f"{array}.npy") for k in (0, 1))
        np.testing.assert_allclose(
            np.load(results / "alices_ensemble" / f"{array}.npy"), (a + b) / 2
        )
        np.testing.assert_allclose(
            np.load(results / "alices_ensemble" / f"{array}_std.npy"), np.abs(a - b) / np.sqrt(2)
        )


@pytest.mark.slow
def test_ensemble_limits_are_the_ensembles_with_member_spread(two_runs: dict[str, Any]) -> None:
    work, source = two_runs["work"], two_runs["source"]
    events, templates = _test_events(two_runs["data"])
    assert len(events) <= evaluation.ASIMOV_EVENTS  # the full Asimov set: exact comparisons
    grid = theta_grid([(-1.0, 1.0), (-1.0, 1.0)], [5, 5])
    folder = work / "results" / "alices_ensemble" / "limits"
    direct = expected_limits(
        "ml",
        events,
        grid,
        np.zeros(2),
        source.luminosity,
        estimator=Ensemble(_members(work, "alices")),
    )
    np.testing.assert_allclose(
        np.load(folder / "ml_llr.npy"), direct.log_likelihood_ratio, atol=1e-9
    )
    np.testing.assert_allclose(np.load(folder / "ml.npy"), direct.p_values, atol=1e-9)
    member_p = np.load(folder / "ml_members.npy")
    deltas = []
    for k in (0, 1):
        np.testing.assert_array_equal(
            member_p[k], np.load(work / "results" / f"alices_{k}" / "limits" / "ml.npy")
        )
        deltas.append(np.load(work / "results" / f"alices_{k}" / "limits" / "ml_llr.npy"))
    q_std = np.abs(2 * deltas[0] - 2 * deltas[1]) / np.sqrt(2)
    np.testing.assert_allclose(np.load(folder / "ml_q_std.npy"), q_std, atol=1e-9)
    spread = json.loads((folder.parent / "limits.json").read_text())["ml_kin"]["spread"]
    assert spread["n_members"] == 2 and len(spread["allowed_fraction_68_members"]) == 2
    sally = expected_limits(
        "sally",
        events,
        grid,
        np.zeros(2),
        source.luminosity,
        templates=templates,
        estimator=Ensemble(_members(work, "sally")),
    )
    stored = np.load(work / "results" / "sally_ensemble" / "limits" / "sally.npy")
    np.testing.assert_allclose(stored, sally.p_values, atol=1e-9)


@pytest.mark.slow
def test_plots_show_the_ensembles(two_runs: dict[str, Any]) -> None:
    written = {p.name for p in plotting.plot(two_runs["source"], two_runs["work"])}
    assert {"pvalue_alices_ensemble.png", "spread_alices_ensemble.png"} <= written
    assert "spread_sally_ensemble.pdf" in written and "spread_alices_0.png" not in written


@pytest.mark.slow
def test_the_coordinated_run_evaluates_the_same_ensembles(
    two_runs: dict[str, Any], tmp_path: Path
) -> None:
    from minerflow.tasks.lfi import run_workflow

    work = tmp_path / "work"
    result = run_workflow(work, data_file=two_runs["data"], overrides=TINY, workers=2)
    assert {r.step for r in result.records if r.status == "ran"} >= {"ensemble", "plot"}
    for method in ("alices", "sally"):
        (found,) = (work / "ensemble" / "v1").glob(f"method={method}__*/results/{method}_ensemble")
        by_steps = two_runs["work"] / "results" / f"{method}_ensemble"
        for name in ("scores.npy", "scores_std.npy", f"limits/{_MAIN[method]}_members.npy"):
            np.testing.assert_allclose(np.load(found / name), np.load(by_steps / name), atol=1e-9)
    assert {"pvalue_alices_ensemble.png", "spread_sally_ensemble.png"} <= {
        p.name for p in result.plots_dir.iterdir()
    }


_MAIN = {"alices": "ml", "sally": "sally"}


def test_an_ensemble_needs_two_models_of_one_method(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="two or more models"):
        evaluation.evaluate_ensemble(
            tmp_path / "x.h5", [tmp_path], load_workflow_input(None), tmp_path
        )
