"""Evaluation step: predictions, expected limits and Fisher information, per model and overall.

Per trained model (``results/<method>_<run>/``): test events from the test partition at
``theta_true`` (``x_test.npy``) and the limit grid (``grid.npy``); for ratio and density models
log r̂(x|θ, θ_ref) for every (θ, event) pair (``llr.npy``, ``(n_grid, n_test)``) and the score
for the first :data:`SCORE_EVENTS` events (``scores.npy``, ``(n_grid, min(n_test, 100), n_p)``,
what the correlation plots need); for score models t̂(x) (``scores.npy``, ``(n_test, n_p)``)
and the SALLY Fisher information. Expected limits (Asimov data of the test partition,
arXiv:1907.10621) for every ``include_xsec`` value from one evaluation of the estimator: ``ml``
mode for ratio and density models, on a stratified, weight-preserving subsample of
:data:`ASIMOV_EVENTS` Asimov events (:mod:`minerflow.workflow.asimov`), ``sally``/``sallino``
mode for score models; the kinematics-only variant (``include_xsec: false``) is stored with the
suffix ``_kin``. With the toy simulator's event file the exact values are stored beside the
estimates (``true_llr.npy``, ``true_scores.npy``, same shapes).

Per method with several sampling runs (``results/<method>_ensemble/``, :func:`evaluate_ensemble`):
the same files for the runs' models as one :class:`~minerflow.ml.ensemble.Ensemble` (member
means), plus the member spread as the uncertainty of the estimate (``*_std.npy``,
``limits/<name>_members.npy``, ``limits/<name>_q_std.npy``, ``spread`` in ``limits.json``).

Model-independent results (``rates/``): σ(θ) on the grid, limits in ``rate`` and ``histo``
mode (``histogram_vars``), the exact ``truth`` for the toy, and the truth / rate / histogram
Fisher information (``fisher_information``).

Every limit is saved as ``limits/<name>.npy`` (p-values on the grid) and
``limits/<name>_llr.npy`` (Δlog L), with ``limits.json`` holding the best fit and the p-value at
``theta_true``: plain arrays and JSON, no ragged object arrays (the seed's
``np.save([p_values, best_fit])`` fails on numpy ≥ 1.24).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from minerflow.config.workflow_input import WorkflowInput, stable_hash
from minerflow.errors import InputError
from minerflow.io.atomic import atomic_dir, save_json, save_npy
from minerflow.workflow.asimov import asimov_subsample
from minerflow.workflow.common import (
    STEP_RECORD,
    StepTimer,
    derived_rng,
    ensemble_name,
    is_toy,
    model_name,
    open_event_file,
    read_record,
    record,
    step_run,
)
from minerflow.workflow.sampling import augmenter, draw_test_sample

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFile
    from minerflow.physics.limits import LimitResult, MorphedEvents

__all__ = [
    "ASIMOV_EVENTS",
    "REFERENCE_FOLDER",
    "RESULTS_FOLDER",
    "SCORE_EVENTS",
    "Evaluated",
    "LimitSet",
    "evaluate",
    "evaluate_ensemble",
    "evaluate_model",
    "evaluate_reference",
    "limit_name",
    "load_limits",
    "reference_key",
]

STEP = "evaluation"
RESULTS_FOLDER = "results"
REFERENCE_FOLDER = "rates"
ASIMOV_EVENTS = 2000
"""Equal-weight events that stand for the Asimov set in ``ml`` limits (:mod:`.asimov`)."""
SCORE_EVENTS = 100
"""Test events whose score t̂(x|θ) a ratio model is evaluated on at every θ (``scores.npy``)."""


_ONE_SIGMA = 0.3173  # p-value bounds of the 1σ and 2σ regions, 2Φ(−n)
_TWO_SIGMA = 0.0455


def limit_name(mode: str, include_xsec: bool) -> str:
    """File name of a limit: the mode, with ``_kin`` when the rate term is left out."""
    return mode if include_xsec else f"{mode}_kin"


@dataclass(frozen=True)
class _Setting:
    """What every evaluation of one input on one event file shares."""

    event_file: EventFile
    grid: np.ndarray
    theta_true: np.ndarray
    luminosity: float
    events: MorphedEvents
    templates: MorphedEvents
    toy: bool
    test_split: float


def _setting(event_file: EventFile, workflow_input: WorkflowInput, test_split: float) -> _Setting:
    from minerflow.physics.limits import MorphedEvents, theta_grid
    from minerflow.physics.sampling import partitions

    limits = workflow_input.asymptotic_limits
    parts = partitions(event_file.header.n_events, test_split, 0.0)
    return _Setting(
        event_file=event_file,
        grid=theta_grid([(r.min, r.max) for r in limits.region.values()], limits.resolutions),
        theta_true=np.asarray(limits.theta_true, dtype=np.float64),
        luminosity=workflow_input.luminosity,
        events=MorphedEvents.from_event_file(event_file, parts["test"]),
        templates=MorphedEvents.from_event_file(event_file, parts["train"]),
        toy=is_toy(event_file.header),
        test_split=test_split,
    )


class LimitSet:
    """Writes limits into a folder as ``<name>.npy`` / ``<name>_llr.npy`` plus a summary."""

    def __init__(self, grid: np.ndarray, theta_true: np.ndarray) -> None:
        self.grid = grid
        self.true_index = int(np.argmin(np.linalg.norm(grid - theta_true, axis=1)))
        self.summary: dict[str, dict[str, Any]] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def add(
        self, name: str, mode: str, include_xsec: bool, p_values: np.ndarray, llr: np.ndarray
    ) -> None:
        """Keep one limit (p-values and Δlog L on the grid)."""
        best = int(np.argmax(llr))
        self.arrays[name] = np.asarray(p_values, dtype=np.float64)
        self.arrays[f"{name}_llr"] = np.asarray(llr, dtype=np.float64)
        self.summary[name] = {
            "mode": mode,
            "include_xsec": include_xsec,
            "best_fit_index": best,
            "best_fit": self.grid[best].tolist(),
            "p_value_at_theta_true": float(p_values[self.true_index]),
            "allowed_fraction_68": float(np.mean(p_values > _ONE_SIGMA)),
        }

    def add_result(self, result: LimitResult, include_xsec: Sequence[bool] = (True,)) -> None:
        """Keep a :class:`~minerflow.physics.limits.LimitResult` computed with the rate term,
        and for ``False`` in ``include_xsec`` its kinematics-only variant (``result.kinematic``
        alone)."""
        for with_rate in include_xsec:
            delta, p = _variant(result, with_rate)
            self.add(limit_name(result.mode, with_rate), result.mode, with_rate, p, delta)

    def add_spread(self, members: Sequence[LimitResult], include_xsec: Sequence[bool]) -> None:
        """Keep the member limits of an ensemble beside its limit (added first).

        Per limit: ``<name>_members`` (member p-values, ``(n_members, n_grid)``) and
        ``<name>_q_std`` (sample standard deviation over members of ``q = −2Δlog L``); the
        summary gains ``spread`` (the median and largest std of q inside the ensemble's 2σ
        region, each member's p-value at θ_true and allowed 68 % fraction).
        """
        from minerflow.ml.ensemble import EnsembleEstimate

        for with_rate in include_xsec:
            name = limit_name(members[0].mode, with_rate)
            variants = [_variant(member, with_rate) for member in members]
            q_std = EnsembleEstimate(np.stack([-2.0 * delta for delta, _ in variants])).std
            member_p = np.stack([p for _, p in variants])
            self.arrays[f"{name}_members"] = member_p
            self.arrays[f"{name}_q_std"] = q_std
            inside = self.arrays[name] > _TWO_SIGMA
            self.summary[name]["spread"] = {
                "n_members": len(members),
                "q_std_median_2sigma": float(np.median(q_std[inside])),
                "q_std_max_2sigma": float(q_std[inside].max()),
                "p_value_at_theta_true_members": member_p[:, self.true_index].tolist(),
                "allowed_fraction_68_members": np.mean(member_p > _ONE_SIGMA, axis=1).tolist(),
            }

    def write(self, folder: Path) -> None:
        """Write every array and ``limits.json`` into ``folder/limits``."""
        for name, values in self.arrays.items():
            save_npy(folder / "limits" / f"{name}.npy", values)
        save_json(folder / "limits.json", self.summary)

    def metrics(self) -> dict[str, float]:
        """Scalar summaries for MLflow: best fit and p-value at the true point per limit."""
        out: dict[str, float] = {}
        for name, entry in self.summary.items():
            out[f"{name}.p_value_at_theta_true"] = entry["p_value_at_theta_true"]
            out[f"{name}.allowed_fraction_68"] = entry["allowed_fraction_68"]
            for i, value in enumerate(entry["best_fit"]):
                out[f"{name}.best_fit_{i}"] = value
            for key in ("q_std_median_2sigma", "q_std_max_2sigma"):
                if "spread" in entry:
                    out[f"{name}.{key}"] = entry["spread"][key]
        return out


def _variant(result: LimitResult, with_rate: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(Δlog L, p)`` of a result with its rate term, or of its kinematic term alone.

    The kinematic term does not depend on the rate term, so one evaluation of the estimator
    gives both variants.
    """
    from minerflow.physics.limits import p_values

    if with_rate:
        return result.log_likelihood_ratio, result.p_values
    delta, p, _ = p_values(result.kinematic, result.dof)
    return delta, p


def load_limits(folder: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, int]]:
    """Read back ``{name: (p_values, best_fit_index)}`` of a results or rates folder."""
    source = Path(folder)
    summary_path = source / "limits.json"
    if not summary_path.is_file():
        raise InputError(source, "limits.json", "an evaluation output folder")
    summary = json.loads(summary_path.read_text())
    return {
        name: (np.load(source / "limits" / f"{name}.npy"), int(entry["best_fit_index"]))
        for name, entry in summary.items()
    }


def reference_key(workflow_input: WorkflowInput, test_split: float) -> dict[str, Any]:
    """The settings that determine the model-independent results."""
    config = workflow_input.step_config(STEP)
    keep = ("asymptotic_limits", "include_xsec", "histogram_vars", "fisher_information")
    return {
        **{k: config[k] for k in keep},
        "luminosity": config["luminosity"],
        "test_split": test_split,
    }


def _fisher_theta(workflow_input: WorkflowInput) -> np.ndarray:
    fisher = workflow_input.fisher_information
    point = fisher.theta_true or workflow_input.asymptotic_limits.theta_true
    return np.asarray(point, dtype=np.float64)


def _reference(setting: _Setting, workflow_input: WorkflowInput, folder: Path) -> dict[str, float]:
    """Compute and write the model-independent results into ``folder``; return metrics."""
    from minerflow.physics import fisher, limits

    grid, events = setting.grid, setting.events
    save_npy(folder / "grid.npy", grid)
    save_npy(folder / "xsecs.npy", events.cross_sections(grid))
    found = LimitSet(grid, setting.theta_true)
    common = {"templates": setting.templates}
    result = limits.expected_limits(
        "rate", events, grid, setting.theta_true, setting.luminosity, include_xsec=True
    )
    found.add_result(result)
    if workflow_input.histogram_vars:
        result = limits.expected_limits(
            "histo",
            events,
            grid,
            setting.theta_true,
            setting.luminosity,
            observables=workflow_input.histogram_vars,
            keep_histograms=False,
            **common,
        )
        found.add_result(result, workflow_input.include_xsec)
    for include_xsec in workflow_input.include_xsec:
        if setting.toy:
            from minerflow.physics import toy

            llr = toy.expected_log_likelihood_ratio(
                grid, setting.theta_true, setting.luminosity, include_xsec
            )
            delta, p_values, _ = limits.p_values(llr, grid.shape[1])
            found.add(limit_name("truth", include_xsec), "truth", include_xsec, p_values, delta)
    found.write(folder)
    informations: dict[str, np.ndarray] = {}
    settings = workflow_input.fisher_information
    theta = _fisher_theta(workflow_input)
    if settings.enabled:
        luminosity = setting.luminosity
        informations["truth"] = fisher.truth_information(events, theta, luminosity)
        informations["rate"] = fisher.rate_information(events, theta, luminosity)
        assert settings.observable is not None  # checked by the input model
        bins: Any = list(settings.histogram_bins) if settings.histogram_bins else 10
        informations["histo"] = fisher.histogram_information(
            events, theta, luminosity, [settings.observable], bins, settings.histogram_range
        )
        if setting.toy:
            from minerflow.physics import toy

            informations["exact"] = toy.fisher_information(theta, luminosity)
    _write_fisher(folder, informations, theta, setting.luminosity)
    return {
        **found.metrics(),
        **{f"fisher.{k}.det": float(np.linalg.det(v)) for k, v in informations.items()},
    }


def _write_fisher(
    folder: Path, informations: Mapping[str, np.ndarray], theta: np.ndarray, luminosity: float
) -> None:
    save_json(
        folder / "fisher.json",
        {
            "theta": theta.tolist(),
            "luminosity": luminosity,
            # symmetrised: quadrature and float sums leave asymmetries of order 1e-16
            "information": {
                k: (0.5 * (np.asarray(v) + np.asarray(v).T)).tolist()
                for k, v in informations.items()
            },
        },
    )


def _current(folder: Path, key: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished output made with exactly ``key``."""
    path = folder / STEP_RECORD
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("key_hash") == stable_hash(key)
    except json.JSONDecodeError:
        return False


def evaluate_reference(
    event_file: EventFile | str | os.PathLike[str],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    test_split: float | None = None,
    tracking_dir: str | os.PathLike[str] | None = None,
    reuse: bool = True,
) -> Path:
    """Write ``rates/``: σ(θ), rate / histo / truth limits and Fisher information.

    With ``reuse``, a ``rates/`` folder made with the same settings is kept as it is.
    """

    if not hasattr(event_file, "header"):
        event_file = open_event_file(event_file, workflow_input)
    split = workflow_input.sampling.test_split if test_split is None else test_split
    key = reference_key(workflow_input, split)
    target = Path(output_dir) / REFERENCE_FOLDER
    if reuse and _current(target, key):
        return target
    timer = StepTimer()
    with step_run(
        STEP,
        tracking_dir or output_dir,
        run_name="evaluation reference (rate, histo, truth)",
        params={"model": "reference", **key},
        input_file=workflow_input.source,
        event_file=event_file.path,
    ) as tracked:
        with atomic_dir(target) as tmp, timer.part("evaluation"):
            setting = _setting(event_file, workflow_input, split)
            metrics = _reference(setting, workflow_input, tmp)
            record(
                tmp,
                STEP,
                model="reference",
                toy=setting.toy,
                key=key,
                key_hash=stable_hash(key),
                event_file=str(Path(event_file.path).resolve()),
                parameter_names=list(event_file.header.parameter_names),
            )
        tracked.log_metrics({**metrics, **timer.metrics()})
        for name in ("limits.json", "fisher.json", STEP_RECORD):
            tracked.log_artifact(target / name, "reference")
    return target


def _predictions(
    estimator: Any, family: str, theta_ref: np.ndarray, x: np.ndarray, grid: np.ndarray
) -> dict[str, np.ndarray]:
    """``scores`` (score models: t̂(x); others: t̂(x|θ) of the first :data:`SCORE_EVENTS`
    events at every θ) and, for ratio and density models, ``llr``: log r̂(x|θ, θ_ref) on every
    (θ, event) pair, evaluated without scores."""
    if family == "score":
        return {"scores": np.asarray(estimator.evaluate_score(x), dtype=np.float64)}
    extra = (theta_ref[None, :],) if family == "density" else ()

    def log_ratio(events: np.ndarray, with_score: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return estimator.evaluate_log_likelihood_ratio(
            events, grid, *extra, test_all_combinations=True, evaluate_score=with_score
        )

    return {"llr": log_ratio(x, False)[0], "scores": log_ratio(x[:SCORE_EVENTS], True)[1]}


def _correlation_metrics(truth: np.ndarray, estimate: np.ndarray, name: str) -> dict[str, float]:
    keep = np.isfinite(truth) & np.isfinite(estimate)
    t, e = truth[keep], estimate[keep]
    return {
        f"{name}_mse": float(np.mean((e - t) ** 2)),
        f"{name}_correlation": float(np.corrcoef(t, e)[0, 1]),
    }


def _theta_ref(setting: _Setting, trained: Mapping[str, Any]) -> np.ndarray:
    """The model's reference point: its record's, else the file's reference benchmark, else 0."""
    header = setting.event_file.header
    index = header.reference_benchmark_index
    default = header.benchmark_values[index] if index is not None else 0 * setting.theta_true
    return np.asarray(trained.get("theta_ref") or default, dtype=np.float64)


def _limit_mode(family: str, method: str) -> str:
    if family == "score":
        return "sallino" if method == "sallino" else "sally"
    return "ml"


def _expected_limits(
    setting: _Setting, estimator: Any, mode: str, theta_ref: np.ndarray, seed: int
) -> LimitResult:
    """Expected limits of one estimator (``ml``: on the stratified Asimov subsample).

    For ``ml`` the estimator sees :data:`ASIMOV_EVENTS` equal-weight events that stand for the
    weighted test partition (:mod:`minerflow.workflow.asimov`); the count ``n = L·σ(θ_true)``
    and σ(θ) of the rate term still come from every event. The score modes fill histograms
    from one t̂ per event and use every event.
    """
    from minerflow.physics import limits

    events, grid = setting.events, setting.grid
    options: dict[str, Any] = {
        "templates": setting.templates,
        "estimator": estimator,
        "theta_ref": theta_ref,
        "keep_histograms": False,
    }
    if mode == "ml":
        weights = events.weights(setting.theta_true[None, :])[0]
        rng = derived_rng(seed, "asimov")
        index = asimov_subsample(events.observations, weights, ASIMOV_EVENTS, rng)
        if index is not None:
            # a heavy event is drawn several times: evaluate it once, count it as often
            rows, drawn = np.unique(index, return_counts=True)
            return limits.observed_limits(
                "ml",
                events.observations[rows],
                events,
                grid,
                setting.luminosity,
                n_observed=setting.luminosity * float(weights.sum()),
                multiplicity=drawn,
                **options,
            )
    return limits.expected_limits(
        mode, events, grid, setting.theta_true, setting.luminosity, **options
    )


def _combined(
    setting: _Setting,
    members: Sequence[Any],
    results: Sequence[LimitResult],
    theta_ref: np.ndarray,
    seed: int,
) -> LimitResult:
    """The limit of the members' ensemble (:class:`~minerflow.ml.ensemble.Ensemble`: the mean
    log r̂ or t̂).

    ``ml``: the kinematic term is linear in log r̂ and every member saw the same Asimov
    events, so the ensemble's term is the mean of the members' terms (no new evaluation).
    Score modes histogram the mean t̂, which the ensemble evaluates.
    """
    from minerflow.ml.ensemble import Ensemble
    from minerflow.physics.limits import p_values

    first = results[0]
    if len(results) == 1:
        return first
    if first.mode != "ml":
        return _expected_limits(setting, Ensemble(members), first.mode, theta_ref, seed)
    kinematic = np.mean([result.kinematic for result in results], axis=0)
    delta, p, best = p_values(kinematic + first.rate + first.constraint, first.dof)
    return replace(
        first, kinematic=kinematic, log_likelihood_ratio=delta, p_values=p, best_fit_index=best
    )


def _model_results(
    setting: _Setting,
    workflow_input: WorkflowInput,
    trained: dict[str, Any],
    members: Sequence[Any],
    folder: Path,
    name: str,
) -> dict[str, float]:
    """Predictions, limits (and SALLY Fisher information) of model ``name`` into ``folder``; with
    several members, of their ensemble, with the spread beside.

    Ratio and density models: log r̂ on every (θ, test event) pair without scores, and the
    score t̂(x|θ) only for the first :data:`SCORE_EVENTS` test events at every θ (what the
    correlation plots show); the exact values for the toy on the same pairs. An ensemble
    stores the member mean under the same names and the member standard deviation as
    ``<name>_std.npy``; its limits are those of the mean prediction (:func:`_combined`), with
    the member limits and the spread of q (:meth:`LimitSet.add_spread`).
    """
    from minerflow.ml.ensemble import Ensemble, EnsembleEstimate
    from minerflow.physics import fisher

    family = str(trained["family"])
    mode = _limit_mode(family, str(trained["method"]))
    grid, theta_true = setting.grid, setting.theta_true
    seed = workflow_input.sampling.seed
    theta_ref = _theta_ref(setting, trained)
    aug = augmenter(setting.event_file, setting.test_split)
    n_test = workflow_input.evaluation.n_samples_test
    x_test = np.asarray(draw_test_sample(aug, theta_true, n_test, seed)["x"], dtype=np.float64)
    save_npy(folder / "grid.npy", grid)
    save_npy(folder / "x_test.npy", x_test)
    save_npy(folder / "theta_ref.npy", theta_ref)
    each = [_predictions(member, family, theta_ref, x_test, grid) for member in members]
    predictions: dict[str, np.ndarray] = {}
    for array in each[0]:
        estimate = EnsembleEstimate(np.stack([values[array] for values in each]))
        predictions[array] = estimate.mean
        save_npy(folder / f"{array}.npy", estimate.mean)
        if len(members) > 1:
            save_npy(folder / f"{array}_std.npy", estimate.std)
    results = [_expected_limits(setting, m, mode, theta_ref, seed) for m in members]
    found = LimitSet(grid, theta_true)
    combined = _combined(setting, members, results, theta_ref, seed)
    found.add_result(combined, workflow_input.include_xsec)
    if len(members) > 1:
        found.add_spread(results, workflow_input.include_xsec)
    found.write(folder)
    metrics = found.metrics()
    if setting.toy:
        metrics |= _truth(family, theta_ref, x_test, grid, predictions, folder)
    if family == "score" and workflow_input.fisher_information.enabled:
        model = members[0] if len(members) == 1 else Ensemble(members)
        info = fisher.score_information(model, setting.events, theta_ref, setting.luminosity)
        _write_fisher(folder, {name: info}, theta_ref, setting.luminosity)
        metrics["fisher.det"] = float(np.linalg.det(info))
    return metrics


def _truth(
    family: str,
    theta_ref: np.ndarray,
    x_test: np.ndarray,
    grid: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    folder: Path,
) -> dict[str, float]:
    """The toy's exact log r and scores on the predictions' pairs; correlation metrics."""
    from minerflow.physics import toy

    metrics: dict[str, float] = {}
    if family == "score":
        true_scores = toy.score(x_test, theta_ref[None, :])[0]
    else:
        true_llr = toy.log_likelihood_ratio(x_test, grid, theta_ref[None, :])
        save_npy(folder / "true_llr.npy", true_llr)
        metrics |= _correlation_metrics(true_llr, predictions["llr"], "llr")
        true_scores = toy.score(x_test[:SCORE_EVENTS], grid)
    save_npy(folder / "true_scores.npy", true_scores)
    return metrics | _correlation_metrics(true_scores, predictions["scores"], "score")


def _evaluate(
    event_file: EventFile | str | os.PathLike[str],
    model_dirs: Sequence[str | os.PathLike[str]],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    name: str | None,
    tracking_dir: str | os.PathLike[str] | None,
) -> Path:
    """Evaluate the models of ``model_dirs`` (one, or the members of an ensemble ``name``)."""
    from minerflow.ml.persistence import load_estimator

    records = [read_record(folder, "training") for folder in model_dirs]
    trained = records[0]
    method = str(trained["method"])
    for folder, other in zip(model_dirs, records, strict=True):
        if (other["method"], other["test_split"]) != (method, trained["test_split"]):
            raise InputError(folder, "method", f"a {method} model like the other members")
    if not hasattr(event_file, "header"):
        event_file = open_event_file(event_file, workflow_input)
    name = name or str(trained["model"])
    workflow_input.theta_specs(method)  # the method must be listed
    device = workflow_input.training.device
    members = [load_estimator(folder, device=device) for folder in model_dirs]
    split = float(trained["test_split"])
    target = Path(output_dir) / RESULTS_FOLDER / name
    key = {
        **workflow_input.step_config(STEP, method),
        "test_split": split,
        "asimov_events": ASIMOV_EVENTS,
        "score_events": SCORE_EVENTS,
        **({"members": [str(r["model"]) for r in records]} if len(records) > 1 else {}),
    }
    timer = StepTimer()
    with step_run(
        STEP,
        tracking_dir or output_dir,
        run_name=f"evaluation {name}",
        params={"model": name, "method": method, **key},
        input_file=workflow_input.source,
        event_file=event_file.path,
    ) as tracked:
        with atomic_dir(target) as tmp, timer.part("evaluation"):
            setting = _setting(event_file, workflow_input, split)
            metrics = _model_results(setting, workflow_input, trained, members, tmp, name)
            folders = [str(Path(folder).resolve()) for folder in model_dirs]
            record(
                tmp,
                STEP,
                model=name,
                method=method,
                family=trained["family"],
                toy=setting.toy,
                **({"model_dir": folders[0]} if len(folders) == 1 else {"model_dirs": folders}),
                key=key,
                key_hash=stable_hash(key),
                event_file=str(Path(event_file.path).resolve()),
                parameter_names=list(event_file.header.parameter_names),
            )
        tracked.log_metrics({**metrics, **timer.metrics()})
        for artifact in ("limits.json", "fisher.json", STEP_RECORD):
            if (target / artifact).is_file():
                tracked.log_artifact(target / artifact, "results")
    return target


def evaluate_model(
    event_file: EventFile | str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Evaluate one trained model into ``results/<model>/`` (see the module docstring)."""
    return _evaluate(event_file, [model_dir], workflow_input, output_dir, None, tracking_dir)


def evaluate_ensemble(
    event_file: EventFile | str | os.PathLike[str],
    model_dirs: Sequence[str | os.PathLike[str]],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Evaluate the models of one method (one per sampling run) as one
    :class:`~minerflow.ml.ensemble.Ensemble` into ``results/<method>_ensemble/``.

    The arrays and limits are those of the member mean; ``<array>_std.npy`` holds the member
    standard deviation of each prediction, ``limits/<name>_members.npy`` every member's
    p-values, ``limits/<name>_q_std.npy`` the spread of q = −2Δlog L, and ``limits.json`` its
    summary (``spread``), the uncertainty that training randomness and finite samples leave.
    """
    if len(model_dirs) < 2:
        raise InputError("evaluation", "model_dirs", "two or more models for an ensemble")
    method = str(read_record(model_dirs[0], "training")["method"])
    name = ensemble_name(method)
    return _evaluate(event_file, model_dirs, workflow_input, output_dir, name, tracking_dir)


class Evaluated(NamedTuple):
    """What the ``minerflow evaluate`` step left: the model's results and ``rates/``."""

    result: Path
    reference: Path
    reference_reused: bool
    """``rates/`` was current already and kept as it was."""
    ensemble: Path | None = None
    """``results/<method>_ensemble`` once every sampling run's model of the method is there."""


def evaluate(
    data_file: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    workflow_input: WorkflowInput,
    output_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
) -> Evaluated:
    """The ``minerflow evaluate`` step: the model's results, and ``rates/`` if not current.

    With ``n_sampling_runs > 1``, once the models of every run of this model's method sit
    beside it (``models/<method>_<run>``), their ensemble is evaluated too.
    """
    event_file = open_event_file(data_file, workflow_input)
    trained = read_record(model_dir, "training")
    split = float(trained["test_split"])
    reused = _current(Path(output_dir) / REFERENCE_FOLDER, reference_key(workflow_input, split))
    reference = evaluate_reference(
        event_file, workflow_input, output_dir, test_split=split, tracking_dir=tracking_dir
    )
    result = evaluate_model(
        event_file, model_dir, workflow_input, output_dir, tracking_dir=tracking_dir
    )
    runs = workflow_input.sampling.n_sampling_runs
    members = [Path(model_dir).parent / model_name(str(trained["method"]), k) for k in range(runs)]
    ensemble = None
    if runs > 1 and all((folder / STEP_RECORD).is_file() for folder in members):
        ensemble = evaluate_ensemble(
            event_file, members, workflow_input, output_dir, tracking_dir=tracking_dir
        )
    return Evaluated(result, reference, reused, ensemble)
