"""What a process does around forking children that inherit its loaded modules.

minerflow forks a lot: luigi forks one process per task from the coordinating process, the
plot step forks one drawing process per core, ``minerflow run`` forks its tracker. A forked
child shares its parent's memory until it writes to it, and Python's garbage collector writes:
each full collection in the child walks every object it inherited (torch, matplotlib, MLflow)
and touches their headers, which costs the walk and a private copy of those pages.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["frozen_for_fork"]


@contextlib.contextmanager
def frozen_for_fork() -> Iterator[None]:
    """Fork in this block: the children get every object of this process frozen (out of their
    collector's sight, :func:`gc.freeze`); this process's collector is back to normal after.

    Measured on the seed-sized workflow (11 tasks, interleaved runs): 0.6 core-seconds less,
    0.4 s of its 7.5 s wall time.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
