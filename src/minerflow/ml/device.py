"""Where tensors live: CUDA when present, else the CPU, with an explicit override.

Small dense nets on a few CPU cores are dominated by per-operation overhead, so training
steps that are too small to parallelise run on one thread (see :func:`training_threads`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from minerflow.errors import InputError

__all__ = ["cpu_threads", "select_device", "training_threads"]

_KNOWN = ("auto", "cpu", "cuda", "mps")


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return the device to train and evaluate on.

    ``"auto"`` (or ``None``) picks CUDA when a GPU is visible, else the CPU; ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"`` force one. Asking for a device that is not there is an
    input error rather than a crash deep inside torch.

    >>> select_device("cpu")
    device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = name.split(":", 1)[0]
    if kind not in _KNOWN:
        raise InputError(
            "settings", "device", f"one of {', '.join(_KNOWN)} (or cuda:N), got {name!r}"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError("settings", "device", f"an available device, but {name!r} has no GPU here")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError("settings", "device", f"an available device, but {name!r} is not here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise InputError("settings", "device", f"a valid torch device, got {name!r}") from error


def _cores() -> int:
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(cores) if cores else os.cpu_count() or 1


def training_threads(batch_size: int, n_weights: int) -> int:
    """CPU threads for a training step of ``batch_size`` rows through ``n_weights`` weights.

    A step of a small dense net (128 rows x 3x100) is too short to split across threads:
    OpenMP hand-offs cost more than they save and, on a busy machine, spinning threads slow
    it down many times over. One thread below ~2e7 multiply-adds per step, all cores above.
    ``MINERFLOW_TORCH_THREADS`` overrides.
    """
    env = os.environ.get("MINERFLOW_TORCH_THREADS")
    if env:
        return max(1, int(env))
    return 1 if batch_size * n_weights < 20_000_000 else _cores()


@contextlib.contextmanager
def cpu_threads(n_threads: int) -> Iterator[int]:
    """Use ``n_threads`` intra-op CPU threads inside the block; restore the previous number."""
    previous = torch.get_num_threads()
    if n_threads != previous:
        torch.set_num_threads(n_threads)
    try:
        yield n_threads
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
