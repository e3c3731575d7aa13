"""Training curves: every loss term per epoch, training solid and validation dashed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minerflow.errors import InputError
from minerflow.plotting.style import colour, new_figure, styled

__all__ = ["best_epoch", "plot_training_history"]

_LOG_RATIO = 10.0  # auto log scale when positive values span more than this factor


def best_epoch(curve: Sequence[float]) -> int:
    """1-based epoch of the lowest finite value (the first one on ties).

    >>> best_epoch([3.0, 1.0, 2.0, 1.0])
    2
    """
    values = np.asarray(curve, dtype=np.float64)
    if not np.any(np.isfinite(values)):
        raise InputError("training history", "curve", "at least one finite value")
    return int(np.nanargmin(np.where(np.isfinite(values), values, np.nan))) + 1


def _curves(history: Mapping[str, Sequence[float]], name: str) -> dict[str, np.ndarray]:
    curves = {key: np.asarray(values, dtype=np.float64) for key, values in history.items()}
    for key, values in curves.items():
        if values.ndim != 1 or values.size == 0:
            raise InputError(name, key, f"a non-empty list of per-epoch values, got {values.shape}")
    return curves


@styled
def plot_training_history(
    train: Mapping[str, Sequence[float]],
    validation: Mapping[str, Sequence[float]] | None = None,
    *,
    monitor: str | None = None,
    best: int | None = None,
    log_y: bool | None = None,
    ylabel: str = "Loss",
    title: str | None = None,
) -> Figure:
    """Loss terms per epoch (x axis 1-based), with a marker at the best epoch.

    ``train`` and ``validation`` map a loss-term name to one value per epoch. The best epoch
    (``best``, 1-based) defaults to the minimum of the ``monitor`` term on validation (on
    training without validation); ``monitor`` defaults to ``"loss"`` if present, else the
    first term. ``log_y=None`` picks a log scale when all values are positive and span more
    than a factor 10.
    """
    train_curves = _curves(train, "train")
    validation_curves = _curves(validation or {}, "validation")
    if not train_curves:
        raise InputError("plot_training_history", "train", "at least one loss term")
    monitor = monitor or ("loss" if "loss" in train_curves else next(iter(train_curves)))
    reference = validation_curves.get(monitor, train_curves.get(monitor))
    if reference is None:
        raise InputError("plot_training_history", "monitor", f"one of {list(train_curves)}")
    best = best or best_epoch(reference)
    figure, ax = new_figure(figsize=(9.6, 6.4))
    handles: list = []
    for index, (term, values) in enumerate(train_curves.items()):
        line_colour = colour(index)
        epochs = np.arange(1, values.size + 1)
        ax.plot(epochs, values, color=line_colour, lw=2.2, gid=f"train:{term}")
        if term in validation_curves:
            held_out = validation_curves[term]
            ax.plot(
                np.arange(1, held_out.size + 1),
                held_out,
                color=line_colour,
                lw=2.2,
                ls="--",
                gid=f"validation:{term}",
            )
        handles.append(Line2D([], [], color=line_colour, lw=2.2, label=term))
    ax.axvline(best, color="dimgray", ls=":", lw=1.5)
    ax.plot(best, reference[best - 1], ls="none", marker="o", ms=10, mfc="none", mec="black", mew=2)
    handles += [
        Line2D([], [], color="dimgray", lw=2.2, label="training"),
        Line2D([], [], color="dimgray", lw=2.2, ls="--", label="validation"),
        Line2D(
            [],
            [],
            color="dimgray",
            ls=":",
            marker="o",
            mfc="none",
            mec="black",
            label=f"best epoch ({best})",
        ),
    ]
    values = np.concatenate([*train_curves.values(), *validation_curves.values()])
    values = values[np.isfinite(values)]
    if log_y is None:
        log_y = bool(values.size and values.min() > 0 and values.max() / values.min() > _LOG_RATIO)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    figure.legend(handles=handles, loc="outside right upper")
    if title:
        ax.set_title(title)
    return figure
