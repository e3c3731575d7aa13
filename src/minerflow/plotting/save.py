"""Write figures in several formats, each atomically (a reader never sees half a file), and
draw many figures in parallel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from minerflow.errors import InputError
from minerflow.forking import frozen_for_fork
from minerflow.io.atomic import atomic_path
from minerflow.plotting.style import style_context, warm_up_drawing

__all__ = ["SUPPORTED_FORMATS", "FigureJob", "draw_figures", "save_figure"]

SUPPORTED_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")

# Fixed metadata keeps re-runs byte-stable where the format allows it (no creation date).
_METADATA: dict[str, dict[str, str | None]] = {
    "png": {"Software": "minerflow"},
    "pdf": {"Creator": "minerflow", "CreationDate": None},
    "svg": {"Creator": "minerflow", "Date": None},
}


def save_figure(
    figure: Figure,
    path_stem: str | os.PathLike[str],
    formats: Sequence[str] = ("png", "pdf"),
    *,
    dpi: float | None = None,
) -> list[Path]:
    """Save ``figure`` as ``<path_stem>.<format>`` for every format and return the paths.

    The stem is used as given (a dot in it is kept, not taken for a suffix). Each file is
    written under a temporary name and renamed when complete (:func:`atomic_path`). The
    layout is solved when the first format is drawn and then fixed on the figure, so every
    format shows the same layout.
    """
    unknown = [fmt for fmt in formats if fmt not in SUPPORTED_FORMATS]
    if unknown or not formats:
        raise InputError(
            str(path_stem), "formats", f"one or more of {list(SUPPORTED_FORMATS)}, got {formats}"
        )
    stem = Path(path_stem)
    paths: list[Path] = []
    with style_context():
        for fmt in formats:
            target = stem.parent / f"{stem.name}.{fmt}"
            with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                figure.savefig(handle, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
            paths.append(target)
            # the layout is solved once: later formats keep it (solving it is half the cost)
            figure.set_layout_engine("none")
    return paths


@dataclass(frozen=True)
class FigureJob:
    """One figure to draw: ``function(*args, **kwargs)``, saved as ``<folder>/<name>.<format>``.

    ``function`` is a module-level plotting function and the arguments plain data (arrays,
    numbers, strings), so a job can be handed to another process.
    """

    name: str
    function: Callable[..., Figure]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _draw(job: FigureJob, folder: Path, formats: Sequence[str]) -> list[Path]:
    return save_figure(job.function(*job.args, **job.kwargs), folder / job.name, formats)


def draw_figures(
    jobs: Iterable[FigureJob],
    folder: str | os.PathLike[str],
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Draw and save every job into ``folder``; returns the written files in job order.

    Drawing is CPU work in pure Python (text layout, rasterising): with several jobs the
    figures are drawn by one forked process per available core, so a dozen figures take a
    fraction of the time. Put the most expensive jobs first.
    """
    import concurrent.futures
    import multiprocessing

    todo = list(jobs)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    workers = min(len(todo), len(os.sched_getaffinity(0)))
    if workers < 2:
        return [path for job in todo for path in _draw(job, target, formats)]
    warm_up_drawing()  # once here, not once in every drawing process
    context = multiprocessing.get_context("fork")
    with (
        frozen_for_fork(),
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        done = list(pool.map(_draw, todo, [target] * len(todo), [formats] * len(todo)))
    return [path for paths in done for path in paths]
