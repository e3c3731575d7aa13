"""Sample folders in the MadMiner workflow layout: one ``<stem>_<name>.npy`` file per array.

A folder written here looks like one written by MadMiner's ``SampleAugmenter``
(``x_train.npy``, ``theta0_train.npy``, ``y_train.npy``, ``r_xz_train.npy``, ...), so users
find familiar files, and :func:`load_samples` also reads folders MadMiner wrote. Next to the
arrays a small ``<name>_meta.json`` records the effective number of events, the θ specs and
the seed; it is written last, so its presence marks a complete sample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minerflow.errors import InputError
from minerflow.io.atomic import save_json, save_npy

__all__ = ["SAMPLE_STEMS", "load_samples", "meta_path", "sample_path", "save_samples"]

#: Array names a sample may hold, in the order they are written. The first nine are the file
#: stems of the MadMiner workflow; ``event_index`` (the file row each sample row came from)
#: is minerflow's provenance record.
SAMPLE_STEMS: tuple[str, ...] = (
    "x",
    "theta",
    "theta0",
    "theta1",
    "y",
    "r_xz",
    "t_xz",
    "t_xz0",
    "t_xz1",
    "event_index",
)
_FORMAT_VERSION = 1


def _check_name(folder: Path, name: str) -> None:
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise InputError(folder, "name", f"a plain sample name without '/', got {name!r}")


def sample_path(folder: str | os.PathLike[str], stem: str, name: str) -> Path:
    """Path of one array file, ``<folder>/<stem>_<name>.npy`` (MadMiner's naming)."""
    return Path(folder) / f"{stem}_{name}.npy"


def meta_path(folder: str | os.PathLike[str], name: str) -> Path:
    """Path of the sample's metadata file, ``<folder>/<name>_meta.json``."""
    return Path(folder) / f"{name}_meta.json"


def save_samples(
    folder: str | os.PathLike[str],
    name: str,
    samples: Mapping[str, Any],
    *,
    specs: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> list[Path]:
    """Write ``samples`` as ``<stem>_<name>.npy`` files plus ``<name>_meta.json``.

    Every array is written atomically; the metadata file comes last, so a folder with the
    metadata holds the complete sample. ``n_effective`` goes into the metadata, not into an
    array file. ``specs`` (JSON-serialisable, e.g. the θ specs as written in ``input.yml``)
    and ``seed`` are recorded so the sample can be traced and redrawn.

    Returns the written paths (arrays, then metadata).
    """
    target = Path(folder)
    _check_name(target, name)
    unknown = sorted(set(samples) - set(SAMPLE_STEMS) - {"n_effective"})
    if unknown:
        raise InputError(target, "samples", f"array names among {SAMPLE_STEMS}, got {unknown}")
    stems = [stem for stem in SAMPLE_STEMS if samples.get(stem) is not None]
    if "x" not in stems:
        raise InputError(target, "samples", "an 'x' array")
    arrays = {stem: np.asarray(samples[stem]) for stem in stems}
    n_rows = {stem: (array.shape[0] if array.ndim else -1) for stem, array in arrays.items()}
    if len(set(n_rows.values())) != 1:
        raise InputError(target, "samples", f"the same number of rows in every array, got {n_rows}")
    written = [save_npy(sample_path(target, stem, name), arrays[stem]) for stem in stems]
    n_effective = samples.get("n_effective")
    meta = {
        "format_version": _FORMAT_VERSION,
        "name": name,
        "n_samples": n_rows["x"],
        "arrays": stems,
        "n_effective": None if n_effective is None else float(n_effective),
        "specs": dict(specs) if specs is not None else None,
        "seed": seed,
    }
    try:
        written.append(save_json(meta_path(target, name), meta))
    except TypeError as error:
        raise InputError(target, "specs", f"JSON-serialisable specs ({error})") from error
    return written


def load_samples(folder: str | os.PathLike[str], name: str) -> dict[str, np.ndarray]:
    """Read the sample ``name`` from ``folder`` into a dict keyed by file stem.

    With a ``<name>_meta.json`` (written by :func:`save_samples`) every array it lists must
    be present; without one (a folder MadMiner wrote) every ``<stem>_<name>.npy`` found is
    read. All arrays must have the same number of rows. ``n_effective`` is included when the
    metadata has it.
    """
    source = Path(folder)
    _check_name(source, name)
    meta_file = meta_path(source, name)
    meta: dict[str, Any] | None = None
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as error:
            raise InputError(meta_file, None, f"valid JSON ({error.msg})") from error
        if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), list):
            raise InputError(meta_file, "arrays", "a list of array names")
        if meta.get("format_version", 0) > _FORMAT_VERSION:
            raise InputError(meta_file, "format_version", f"at most {_FORMAT_VERSION}")
        stems = [str(stem) for stem in meta["arrays"]]
    else:
        stems = [stem for stem in SAMPLE_STEMS if sample_path(source, stem, name).exists()]
        if not stems:
            raise InputError(source, f"x_{name}.npy", "a sample file (none found)")
    samples: dict[str, np.ndarray] = {}
    for stem in stems:
        path = sample_path(source, stem, name)
        if not path.exists():
            raise InputError(path, None, "an existing sample file (listed in the metadata)")
        try:
            samples[stem] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(path, None, f"a readable .npy array ({error})") from error
    n_rows = {stem: (array.shape[0] if array.ndim else -1) for stem, array in samples.items()}
    if len(set(n_rows.values())) != 1:
        raise InputError(source, name, f"the same number of rows in every array, got {n_rows}")
    if meta is not None and meta.get("n_samples") not in (None, *n_rows.values()):
        raise InputError(meta_file, "n_samples", f"{meta['n_samples']} rows, found {n_rows}")
    if meta is not None and meta.get("n_effective") is not None:
        samples["n_effective"] = np.asarray(float(meta["n_effective"]))
    return samples
