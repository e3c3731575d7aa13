"""Atomic outputs: write under a temporary name in the same folder, then rename.

A rename within one file system is atomic, so a reader (or a re-run after ``kill -9``)
sees either the complete old output or the complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_dir", "atomic_path", "save_json", "save_npy"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` when the block ends.

    An existing ``path`` is replaced only after the new content is complete. On an exception
    the temporary directory is deleted and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old / "content")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save one array as ``.npy`` atomically and return the final path."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array))
    return target


def save_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Save JSON-serialisable ``data`` atomically (indented, keys in insertion order)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return target
