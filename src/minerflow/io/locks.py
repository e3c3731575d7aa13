"""One lock for everything that must not run twice at once: an ``fcntl`` lock on a file.

Output folders, the MLflow store's creation and model sandboxes are shared by processes on one
machine (luigi's workers, two runs on one work dir). The kernel releases the lock when its
holder dies, so a ``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created, with its folder, if missing) for the block;
    wait while another process holds it. Yields ``True``; with ``wait=False`` it yields
    ``False`` at once (holding nothing) when another process has the lock."""
    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
