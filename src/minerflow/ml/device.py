"""Where tensors live: CUDA when present, else the CPU, with an explicit override.

Small dense nets on a few CPU cores are dominated by per-operation overhead, so the CPU
thread count is kept at the number of physical cores torch reports (never oversubscribed).
"""

from __future__ import annotations

import os

import torch

from minerflow.errors import InputError

__all__ = ["configure_cpu_threads", "select_device"]

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


def configure_cpu_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads (default: ``MINERFLOW_TORCH_THREADS`` or the CPU count).

    Returns the number in use. Called once per training; cheap to call again.
    """
    if n_threads is None:
        env = os.environ.get("MINERFLOW_TORCH_THREADS")
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        n_threads = int(env) if env else (len(cores) if cores else os.cpu_count() or 1)
    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(max(1, n_threads))
    return torch.get_num_threads()
