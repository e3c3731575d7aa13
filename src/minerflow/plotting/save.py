"""Write a figure in several formats, each atomically, so a reader never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from minerflow.errors import InputError
from minerflow.io.atomic import atomic_path
from minerflow.plotting.style import style_context

__all__ = ["SUPPORTED_FORMATS", "save_figure"]

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
    written under a temporary name and renamed when complete (:func:`atomic_path`).
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
    return paths
