"""Hyper-parameter sweeps over training settings: points, branches, summary table and plot.

``--sweep alpha=1,10,100 --sweep num_epochs=20,50`` is the product of the axes' values, six
points here. Each point is a set of ``training.<name>=<value>`` overrides of the workflow
input, so a sweep point is an ordinary training with other settings: its output folder is
keyed by them and it runs wherever trainings run (local workers or Slurm jobs). The sweep is
one parent MLflow run (experiment ``minerflow-sweep``) whose children are the trainings; the
summary reads the validation metric of every child back from MLflow.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from minerflow.config.workflow_input import TrainingSettings, WorkflowInput
from minerflow.errors import InputError
from minerflow.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from minerflow.tracking.runs import TrackedRun

__all__ = [
    "DEFAULT_METRIC",
    "SWEEP_KEY",
    "Sweep",
    "SweepResult",
    "apply_point",
    "collect_sweep_results",
    "parse_sweeps",
    "plot_sweep",
    "point_label",
    "point_overrides",
    "result_key",
    "results_from_models",
    "sweep_branches",
    "sweep_parent_run",
    "sweep_table",
    "write_sweep_summary",
]

SWEEP_KEY = "sweep"
"""Key of a branch's sweep point in its branch data (``{"method": ..., "sweep": {...}}``)."""
DEFAULT_METRIC = "best_loss"
"""Training-run metric compared across the sweep: the validation loss at the best epoch."""
_STEP = "sweep"
_TRAINING_STEP = "training"


@dataclass(frozen=True)
class Sweep:
    """Named axes of training-setting values; the sweep is their Cartesian product."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The swept settings, in command-line order."""
        return tuple(name for name, _ in self.axes)

    def points(self) -> list[dict[str, Any]]:
        """Every combination, the last axis varying fastest; ``[{}]`` for an empty sweep."""
        values = [vals for _, vals in self.axes]
        return [dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*values)]

    def __len__(self) -> int:
        return math.prod(len(vals) for _, vals in self.axes)


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets: ``"[50,50],[100]"`` -> ``["[50,50]", "[100]"]``."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts]


def _typed(name: str, raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise InputError("--sweep", name, f"YAML values, got {raw!r}") from None
    try:
        settings = TrainingSettings.model_validate({name: value})
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"])
        raise InputError("--sweep", name, f"valid values ({message}), got {raw!r}") from None
    return getattr(settings, name)


def parse_sweeps(texts: Sequence[str]) -> Sweep:
    """Parse ``name=v1,v2,...`` strings (one per ``--sweep``) into a :class:`Sweep`.

    Names are training settings (``alpha``, ``num_epochs``, ``lr``, ``batch_size``,
    ``n_hidden``, ...); values are YAML scalars or lists and are validated like the input
    file's ``training`` section.

    >>> parse_sweeps(["alpha=1,10", "n_hidden=[50,50],[100]"]).points()[1]
    {'alpha': 1.0, 'n_hidden': (100,)}
    """
    known = list(TrainingSettings.model_fields)
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for text in texts:
        name, sep, raw = text.partition("=")
        name = name.strip().removeprefix("training.")
        if not sep or not raw.strip():
            raise InputError("--sweep", text, "name=value1,value2,...")
        if name not in known:
            raise InputError("--sweep", name, f"a training setting, one of {known}")
        if name in dict(axes):
            raise InputError("--sweep", name, "each setting swept once")
        values = tuple(_typed(name, part) for part in _split_values(raw))
        if len(set(map(repr, values))) != len(values):
            raise InputError("--sweep", name, f"distinct values, got {raw!r}")
        axes.append((name, values))
    return Sweep(tuple(axes))


def point_overrides(point: Mapping[str, Any]) -> tuple[str, ...]:
    """A point as input overrides (``--set`` syntax): ``("training.alpha=10.0", ...)``."""
    return tuple(f"training.{name}={json.dumps(_plain(value))}" for name, value in point.items())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def apply_point(workflow_input: WorkflowInput, point: Mapping[str, Any]) -> WorkflowInput:
    """The input with the point's training settings (validated; the source file is kept)."""
    data = {**workflow_input.training.model_dump(), **point}
    try:
        training = TrainingSettings.model_validate(data)
    except ValidationError as exc:
        key = ".".join(["training", *map(str, exc.errors()[0]["loc"])])
        raise InputError(workflow_input.source, key, str(exc.errors()[0]["msg"])) from None
    return workflow_input.model_copy(update={"training": training})


def point_label(point: Mapping[str, Any]) -> str:
    """``alpha=10,num_epochs=20`` (for folder names, run names and table rows)."""
    return ",".join(f"{name}={_text(value)}" for name, value in point.items()) or "-"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "x".join(_text(v) for v in value)
    return str(value)


def sweep_branches(branches: Sequence[Mapping[str, Any]], sweep: Sweep) -> list[dict[str, Any]]:
    """Every base branch (e.g. method × sampling run) once per sweep point.

    The point is stored under :data:`SWEEP_KEY`; an empty sweep leaves the branches as
    they are, so a workflow without ``--sweep`` keeps its folder keys.
    """
    if not sweep.axes:
        return [dict(branch) for branch in branches]
    return [{**branch, SWEEP_KEY: point} for branch in branches for point in sweep.points()]


@contextlib.contextmanager
def sweep_parent_run(
    workdir: str | os.PathLike[str], sweep: Sweep, *, input_file: str | None = None
) -> Iterator[TrackedRun]:
    """The sweep's parent MLflow run; every training started inside becomes its child.

    Its id is exported in ``MINERFLOW_PARENT_RUN_ID`` (forwarded to worker processes and
    Slurm jobs), which :func:`~minerflow.tracking.runs.tracked_run` picks up.
    """
    from minerflow.tracking.runs import tracked_run

    with tracked_run(
        _STEP,
        workdir,
        run_name="sweep "
        + " ".join(f"{name}={','.join(_text(v) for v in values)}" for name, values in sweep.axes),
        params={"axes": {name: [_plain(v) for v in values] for name, values in sweep.axes}},
        input_file=input_file,
        export_as_parent=True,
    ) as parent:
        yield parent


@dataclass(frozen=True)
class SweepResult:
    """One training of the sweep: its method, sampling run, point and validation metric."""

    method: str
    run: int
    point: dict[str, Any]
    value: float
    run_id: str


def collect_sweep_results(
    workdir: str | os.PathLike[str],
    parent_run_id: str,
    sweep: Sweep,
    metric: str = DEFAULT_METRIC,
) -> list[SweepResult]:
    """The sweep's trainings, read back from MLflow (children of ``parent_run_id``).

    A child's point comes from its logged ``training.<name>`` parameters; a child without
    ``metric`` (a failed training) is left out. Sorted by method, run, then point order.
    The default metric, the best validation loss, includes ``alpha`` times the score term;
    to compare across ``alpha`` pick a single term's final value, e.g. ``val_improved_xe``.
    """
    from minerflow.tracking.runs import find_runs, read_run

    order = {point_label(p): i for i, p in enumerate(sweep.points())}
    results = []
    for run_id in find_runs(workdir, _TRAINING_STEP, parent_run_id):
        record = read_run(workdir, run_id)
        if metric not in record.metrics:
            continue
        point = {name: _typed(name, record.params[f"training.{name}"]) for name in sweep.names}
        results.append(
            SweepResult(
                method=record.params.get("method", "-"),
                run=int(record.params.get("run", 0)),
                point=point,
                value=record.metrics[metric],
                run_id=run_id,
            )
        )
    return sorted(results, key=lambda r: (r.method, r.run, order.get(point_label(r.point), -1)))


def result_key(method: str, run: int, point: Mapping[str, Any]) -> str:
    """``alices/0/alpha=10``: one training of a sweep (matches folders to MLflow runs)."""
    return f"{method}/{run}/{point_label(point)}"


def results_from_models(
    models: Sequence[tuple[Mapping[str, Any], str | os.PathLike[str]]],
    run_ids: Mapping[str, str] | None = None,
) -> list[SweepResult]:
    """The sweep's trainings read from their model folders: ``(branch data, folder)`` pairs.

    The value is :data:`DEFAULT_METRIC` as the training logged it, the validation total loss
    (the training total without a validation split) at the best epoch, read from the folder's
    ``history.json``, so trainings reused from an earlier run count as well. ``run_ids`` maps
    :func:`result_key` to MLflow run ids (:func:`collect_sweep_results` of this sweep's
    parent); a training without one (reused) shows ``-``.
    """
    results = []
    for branch, folder in models:
        history = json.loads((Path(folder) / "history.json").read_text())
        best = history.get("best_epoch")
        curve = history["validation"].get("total") or history["train"]["total"]
        if best is None or not curve:
            continue
        method, run = str(branch["method"]), int(branch["run"])
        point = dict(branch.get(SWEEP_KEY) or {})
        results.append(
            SweepResult(
                method=method,
                run=run,
                point=point,
                value=float(curve[best]),
                run_id=(run_ids or {}).get(result_key(method, run, point), "-"),
            )
        )
    return results


def sweep_table(
    results: Sequence[SweepResult], names: Sequence[str], metric: str = DEFAULT_METRIC
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: method, run, one column per axis, the metric, best-per-method mark."""
    best: dict[str, float] = {}
    for result in results:
        best[result.method] = min(best.get(result.method, math.inf), result.value)
    header = ["method", "run", *names, metric, "best", "mlflow_run"]
    rows = [
        [
            r.method,
            str(r.run),
            *(_text(r.point[name]) for name in names),
            f"{r.value:.6g}",
            "*" if r.value == best[r.method] else "",
            r.run_id,
        ]
        for r in results
    ]
    return header, rows


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def plot_sweep(
    results: Sequence[SweepResult], sweep: Sweep, metric: str = DEFAULT_METRIC
) -> Figure:
    """The metric over the sweep: x is the first axis, one line per method × other axes.

    Sampling runs of the same point are averaged, their spread drawn as a band. A numeric
    first axis spanning more than a factor 10 is drawn on a log scale.
    """
    from minerflow.plotting.style import colour, new_figure, style_context

    first, rest = sweep.names[0], sweep.names[1:]
    values = [v for name, vals in sweep.axes if name == first for v in vals]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for result in results:
        rest_label = point_label({name: result.point[name] for name in rest})
        slot = groups.setdefault((result.method, rest_label), {})
        slot.setdefault(values.index(result.point[first]), []).append(result.value)
    with style_context():
        figure, ax = new_figure(figsize=(8.0, 6.0))
        for index, ((method, rest_label), slot) in enumerate(sorted(groups.items())):
            positions = sorted(slot)
            xs = [values[i] if numeric else i for i in positions]
            means = [sum(slot[i]) / len(slot[i]) for i in positions]
            label = method if not rest else f"{method} ({rest_label})"
            ax.plot(xs, means, marker="o", color=colour(index), label=label, gid=label)
            if any(len(slot[i]) > 1 for i in positions):
                ax.fill_between(
                    xs,
                    [min(slot[i]) for i in positions],
                    [max(slot[i]) for i in positions],
                    color=colour(index),
                    alpha=0.2,
                )
        if numeric and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [_text(v) for v in values])
        ax.set_xlabel(first)
        ax.set_ylabel(f"validation {metric.replace('_', ' ')}")
        ax.legend(loc="best")
    return figure


def write_sweep_summary(
    results: Sequence[SweepResult],
    sweep: Sweep,
    out_dir: str | os.PathLike[str],
    metric: str = DEFAULT_METRIC,
) -> list[Path]:
    """Write ``sweep.md``, ``sweep.csv`` and ``sweep.png``/``.pdf`` into ``out_dir``."""
    from minerflow.plotting.save import save_figure

    if not results:
        raise InputError(str(out_dir), "sweep", f"finished trainings with metric '{metric}'")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    header, rows = sweep_table(results, sweep.names, metric)
    paths = []
    for name, text in (
        ("sweep.md", _markdown(header, rows)),
        ("sweep.csv", _csv_text(header, rows)),
    ):
        with atomic_path(folder / name) as tmp:
            Path(tmp).write_text(text)
        paths.append(folder / name)
    paths += save_figure(plot_sweep(results, sweep, metric), folder / "sweep")
    return paths
