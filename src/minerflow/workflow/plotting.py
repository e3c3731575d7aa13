"""Plot step: the figures the input's ``plotting`` switches ask for, as PNG and PDF.

Reads evaluation folders (``results/<model>/``, ``rates/``) and model folders (training
histories) and writes ``plots/``:

* ``pvalue_<model>``: each model's expected p-value map with its best fit (and the exact
  truth contours for the toy); ``<method>_ensemble`` results (several sampling runs) are one
  more model;
* ``spread_<method>_ensemble``: the ensemble's map with every member's 1σ contour, and the
  member standard deviation of −2Δlog L;
* ``all_methods_separate`` (switch ``all_methods_separate``): every model and the histogram
  and rate limits side by side on one colour scale;
* ``all_methods`` (switch ``all_methods``): every limit's contours on one panel, the
  kinematics-only variants (``-Kin``) dashed; ``all_methods_pvalue`` names the method whose
  p-value map is drawn underneath (its ensemble's, if there is one, else its first run's);
* ``correlation_llr_<model>`` / ``correlation_score_<model>`` (switch ``correlations``, for
  ``correlations_methods``): estimate against the exact value, toy simulator only;
* ``cross_section`` (switch ``rates``): σ(θ) on the grid;
* ``fisher_information``: the truth / rate / histogram / SALLY information ellipses;
* ``training_<model>``: training and validation loss per epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minerflow.config.workflow_input import WorkflowInput
from minerflow.errors import InputError
from minerflow.io.atomic import save_json
from minerflow.workflow.common import (
    STEP_RECORD,
    ensemble_name,
    read_record,
    record,
    step_run,
)
from minerflow.workflow.evaluation import REFERENCE_FOLDER, RESULTS_FOLDER, load_limits

__all__ = ["PLOTS_FOLDER", "make_plots", "plot"]

STEP = "plotting"
PLOTS_FOLDER = "plots"
_KIN = "-Kin"


def _load(path: Path) -> np.ndarray | None:
    return np.load(path) if path.is_file() else None


def _main_limit(limits: dict[str, tuple[np.ndarray, int]]) -> tuple[str, str | None]:
    """Names of a model's limit with the rate term and of its kinematics-only variant."""
    for mode in ("ml", "sally", "sallino"):
        if mode in limits or f"{mode}_kin" in limits:
            with_rate = mode if mode in limits else f"{mode}_kin"
            return with_rate, (
                f"{mode}_kin" if f"{mode}_kin" in limits and mode in limits else None
            )
    raise InputError("plotting", "limits", f"an ml/sally limit, found {sorted(limits)}")


def _background(names: Collection[str], method: str | None) -> str | None:
    """The limit drawn under the contours: ``method``'s ensemble, else its first model."""
    if method is None:
        return None
    if ensemble_name(method) in names:
        return ensemble_name(method)
    return next((name for name in names if name.rsplit("_", 1)[0] == method), None)


def _labels(records: Sequence[dict[str, Any]]) -> tuple[str, ...] | None:
    """Axis labels: the event file's parameter names, as written there."""
    for entry in records:
        names = entry.get("parameter_names")
        if names and len(names) == 2:
            return tuple(names)
    return None


def make_plots(
    workflow_input: WorkflowInput,
    result_dirs: Sequence[str | os.PathLike[str]],
    reference_dir: str | os.PathLike[str] | None,
    model_dirs: Sequence[str | os.PathLike[str]],
    plot_dir: str | os.PathLike[str],
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Draw every figure the input asks for into ``plot_dir``; returns the written files."""
    from minerflow.plotting.correlations import plot_log_r_correlation, plot_score_correlation
    from minerflow.plotting.fisher import plot_fisher_ellipses
    from minerflow.plotting.limits import (
        plot_limit_contours,
        plot_limit_spread,
        plot_pvalue_map,
        plot_pvalue_maps,
    )
    from minerflow.plotting.rates import plot_cross_section_map
    from minerflow.plotting.save import FigureJob, draw_figures
    from minerflow.plotting.training import plot_training_history

    target = Path(plot_dir)
    settings = workflow_input.plotting
    results = {Path(d).name: Path(d) for d in sorted(map(str, result_dirs))}
    if not results:
        raise InputError("plotting", RESULTS_FOLDER, "at least one evaluated model (run evaluate)")
    records = [read_record(d, "evaluation") for d in results.values()]
    reference = Path(reference_dir) if reference_dir is not None else None
    reference_limits = load_limits(reference) if reference is not None else {}
    if reference is not None:
        records.append(read_record(reference, "evaluation"))
    toy = all(bool(r.get("toy")) for r in records)
    grid = np.load(next(iter(results.values())) / "grid.npy")
    theta_true = list(workflow_input.asymptotic_limits.theta_true)
    labels = _labels(records)
    common: dict[str, Any] = {"parameter_labels": labels} if labels else {}
    truth = reference_limits.get("truth", (None, 0))[0]
    truth_kin = reference_limits.get("truth_kin", (None, 0))[0]
    # the comparisons (many panels, the slowest) first: they are drawn in parallel in order
    comparisons: list[FigureJob] = []
    jobs: list[FigureJob] = []

    with_rate: dict[str, np.ndarray] = {}
    kinematic: dict[str, np.ndarray] = {}
    for name, folder in results.items():
        limits = load_limits(folder)
        main, kin = _main_limit(limits)
        p_values, best = limits[main]
        with_rate[name] = p_values
        if kin is not None:
            kinematic[name] = limits[kin][0]
        jobs.append(
            FigureJob(
                f"pvalue_{name}",
                plot_pvalue_map,
                (grid, p_values),
                {
                    "method": name,
                    "best_fit": best,
                    "truth_p_values": truth,
                    "theta_true": theta_true,
                    **common,
                },
            )
        )
        members = _load(folder / "limits" / f"{main}_members.npy")
        if members is not None:
            jobs.append(
                FigureJob(
                    f"spread_{name}",
                    plot_limit_spread,
                    (grid, p_values, members, np.load(folder / "limits" / f"{main}_q_std.npy")),
                    {
                        "method": name,
                        "truth_p_values": truth,
                        "theta_true": theta_true,
                        **common,
                    },
                )
            )
    for mode in ("histo", "rate"):
        if mode in reference_limits:
            with_rate[mode] = reference_limits[mode][0]
        if f"{mode}_kin" in reference_limits:
            kinematic[mode] = reference_limits[f"{mode}_kin"][0]
    if settings.all_methods_separate:
        comparisons.append(
            FigureJob(
                "all_methods_separate",
                plot_pvalue_maps,
                (grid, with_rate),
                {
                    "truth_p_values": truth,
                    "theta_true": theta_true,
                    **common,
                },
            )
        )
    if settings.all_methods:
        contours = {**with_rate, **{f"{k}{_KIN}": v for k, v in kinematic.items()}}
        comparisons.append(
            FigureJob(
                "all_methods",
                plot_limit_contours,
                (grid, contours),
                {
                    "truth_p_values": truth,
                    "theta_true": theta_true,
                    "background": _background(with_rate, settings.all_methods_pvalue),
                    **common,
                },
            )
        )
        if truth_kin is not None and kinematic:
            comparisons.append(
                FigureJob(
                    "all_methods_kin",
                    plot_limit_contours,
                    (grid, {f"{k}{_KIN}": v for k, v in kinematic.items()}),
                    {
                        "truth_p_values": truth_kin,
                        "theta_true": theta_true,
                        "title": "kinematics only (no rate term)",
                        **common,
                    },
                )
            )
    if settings.correlations and toy:
        for name, folder in results.items():
            if name.rsplit("_", 1)[0] not in settings.correlations_methods:
                continue
            llr, true_llr = _load(folder / "llr.npy"), _load(folder / "true_llr.npy")
            if llr is not None and true_llr is not None:
                jobs.append(
                    FigureJob(
                        f"correlation_llr_{name}",
                        plot_log_r_correlation,
                        (true_llr, llr),
                        {"method": name},
                    )
                )
            scores, true_scores = _load(folder / "scores.npy"), _load(folder / "true_scores.npy")
            if scores is not None and true_scores is not None:
                n_p = scores.shape[-1]  # ratio models: one score per (θ, event) pair
                jobs.append(
                    FigureJob(
                        f"correlation_score_{name}",
                        plot_score_correlation,
                        (true_scores.reshape(-1, n_p), scores.reshape(-1, n_p)),
                        {
                            "method": name,
                            **common,
                        },
                    )
                )
    if settings.rates and reference is not None and (reference / "xsecs.npy").is_file():
        jobs.append(
            FigureJob(
                "cross_section",
                plot_cross_section_map,
                (np.load(reference / "grid.npy"), np.load(reference / "xsecs.npy")),
                {
                    "theta_ref": theta_true,
                    **common,
                },
            )
        )
    informations: dict[str, np.ndarray] = {}
    fisher_theta = theta_true
    for folder in ([reference] if reference is not None else []) + list(results.values()):
        path = folder / "fisher.json"
        if path.is_file():
            content = json.loads(path.read_text())
            fisher_theta = content["theta"]
            informations |= {
                k: 0.5 * (np.asarray(v) + np.asarray(v).T)
                for k, v in content["information"].items()
            }
    if informations and grid.shape[1] == 2:
        jobs.append(
            FigureJob(
                "fisher_information",
                plot_fisher_ellipses,
                (informations,),
                {
                    "theta_ref": fisher_theta,
                    # the limit region: the ellipses are the linearised version of those limits
                    "xlim": (float(grid[:, 0].min()), float(grid[:, 0].max())),
                    "ylim": (float(grid[:, 1].min()), float(grid[:, 1].max())),
                    **common,
                },
            )
        )
    for folder in map(Path, model_dirs):
        history_path = folder / "history.json"
        if not history_path.is_file():
            continue
        history = json.loads(history_path.read_text())
        validation = {k: v for k, v in history["validation"].items() if v}
        best = history.get("best_epoch")
        jobs.append(
            FigureJob(
                f"training_{folder.name}",
                plot_training_history,
                (history["train"], validation or None),
                {
                    "monitor": "total",
                    "best": None if best is None else best + 1,
                    "title": folder.name,
                },
            )
        )
    written = draw_figures([*comparisons, *jobs], target, settings.formats)
    with step_run(
        STEP,
        tracking_dir or target.parent,
        run_name="plotting",
        params={"plotting": workflow_input.canonical_dict()["plotting"], "models": list(results)},
        input_file=workflow_input.source,
    ) as tracked:
        tracked.log_artifact(target, "plots")
    save_json(target / "index.json", sorted(p.name for p in written))
    record(target, STEP, models=list(results), toy=toy, files=sorted(p.name for p in written))
    return written


def plot(workflow_input: WorkflowInput, output_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``minerflow plot`` step: plots of everything evaluated under ``output_dir``."""
    root = Path(output_dir)
    results = sorted(p.parent for p in (root / RESULTS_FOLDER).glob(f"*/{STEP_RECORD}"))
    reference = root / REFERENCE_FOLDER
    models = sorted(p.parent for p in (root / "models").glob(f"*/{STEP_RECORD}"))
    return make_plots(
        workflow_input,
        results,
        reference if (reference / STEP_RECORD).is_file() else None,
        models,
        root / PLOTS_FOLDER,
        tracking_dir=root,
    )
