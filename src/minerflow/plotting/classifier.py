"""Figures for analysis classifiers (the MLModel workflow): ROC, output overlays, confusion.

The numbers come from :mod:`minerflow.plotting.metrics` (event-weighted, negative weights
kept with their sign); learning curves reuse
:func:`minerflow.plotting.training.plot_training_history`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minerflow.errors import InputError
from minerflow.plotting.metrics import RocCurve, weighted_ks_test
from minerflow.plotting.style import colour, new_figure, styled

__all__ = [
    "WeightedValues",
    "plot_confusion_matrix",
    "plot_output_distributions",
    "plot_roc_curves",
    "weighted_histogram",
]

#: Per-event values alone (unit weights) or ``(values, weights)``.
WeightedValues = np.ndarray | tuple[np.ndarray, np.ndarray]


@styled
def plot_roc_curves(
    curves: Mapping[str, RocCurve],
    *,
    combined: str | None = "combined",
    positive_label: str = "Signal",
    negative_label: str = "Background",
    title: str | None = None,
) -> Figure:
    """ROC curves (one per fold, say) with the AUC of each in the legend.

    The curve named ``combined`` (if present) is drawn thick and black on top; the others
    thin in the palette colours. Axes are the weighted efficiencies
    ``ε_neg = FPR`` (x) and ``ε_pos = TPR`` (y); the diagonal is a random classifier.
    """
    if not curves:
        raise InputError("plot_roc_curves", "curves", "at least one ROC curve")
    figure, ax = new_figure(figsize=(7.6, 7.0))
    ax.plot([0, 1], [0, 1], color="dimgray", ls=":", lw=1.5, label="Random (AUC = 0.5)")
    for index, (name, curve) in enumerate(curves.items()):
        is_combined = name == combined
        ax.plot(
            curve.false_positive_rate,
            curve.true_positive_rate,
            color="black" if is_combined else colour(index),
            lw=3.0 if is_combined else 1.8,
            zorder=3 if is_combined else 2,
            label=f"{name} (AUC = {curve.auc:.3f})",
            gid=f"roc:{name}",
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{negative_label} efficiency")
    ax.set_ylabel(f"{positive_label} efficiency")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return figure


def _split(sample: WeightedValues, name: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(sample, tuple):
        values, weights = (np.asarray(part, dtype=np.float64) for part in sample)
    else:
        values = np.asarray(sample, dtype=np.float64)
        weights = np.ones_like(values)
    if values.ndim != 1 or weights.shape != values.shape:
        raise InputError(name, "values", f"1-D values and matching weights, got {values.shape}")
    return values, weights


def weighted_histogram(
    values: np.ndarray, weights: np.ndarray, edges: np.ndarray, *, density: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Bin contents and their uncertainties ``√Σw²``, divided by ``Σw · width`` if ``density``.

    Events outside ``edges`` are not shown but count in the normalisation, so shapes of
    samples with different tails stay comparable.

    >>> weighted_histogram(np.array([0.5, 1.5, 1.5]), np.ones(3), np.array([0.0, 1.0, 2.0]))[0]
    array([0.33333333, 0.66666667])
    """
    counts, _ = np.histogram(values, bins=edges, weights=weights)
    sum_w2, _ = np.histogram(values, bins=edges, weights=weights**2)
    errors = np.sqrt(sum_w2)
    if density:
        scale = weights.sum() * np.diff(edges)
        return counts / scale, errors / scale
    return counts, errors


def _format_p(p_value: float) -> str:
    return f"{p_value:.3f}" if p_value >= 1e-3 else f"{p_value:.1e}"


@styled
def plot_output_distributions(
    train: Mapping[str, WeightedValues],
    test: Mapping[str, WeightedValues],
    *,
    bins: int | Sequence[float] = 30,
    xlabel: str = "Classifier output",
    density: bool = True,
    log_y: bool = False,
    title: str | None = None,
) -> Figure:
    """Classifier output per process: training as filled histograms, test as points.

    Both are normalised to unit area (``density``) so shapes compare; the legend gives the
    weighted two-sample KS p-value of train vs test per process
    (:func:`~minerflow.plotting.metrics.weighted_ks_test`): a small p-value flags
    overtraining. Processes are matched by name; each needs both samples.
    """
    missing = sorted(set(train) ^ set(test))
    if missing or not train:
        raise InputError("plot_output_distributions", "processes", f"the same names, {missing}")
    split_train = {name: _split(sample, f"train/{name}") for name, sample in train.items()}
    split_test = {name: _split(test[name], f"test/{name}") for name in train}
    pooled = np.concatenate([v for v, _ in (*split_train.values(), *split_test.values())])
    edges = (
        np.histogram_bin_edges(pooled, bins=bins)
        if isinstance(bins, int)
        else np.asarray(bins, dtype=np.float64)
    )
    centres = 0.5 * (edges[1:] + edges[:-1])
    figure, ax = new_figure(figsize=(10.0, 6.6))
    handles: list = []
    for index, name in enumerate(train):
        line_colour = colour(index)
        train_values, train_weights = split_train[name]
        test_values, test_weights = split_test[name]
        heights, _ = weighted_histogram(train_values, train_weights, edges, density=density)
        ax.stairs(
            heights, edges, fill=True, color=line_colour, alpha=0.25, zorder=1, gid=f"train:{name}"
        )
        ax.stairs(heights, edges, color=line_colour, lw=1.8, zorder=2)
        points, errors = weighted_histogram(test_values, test_weights, edges, density=density)
        ax.errorbar(
            centres,
            points,
            yerr=errors,
            ls="none",
            marker="o",
            ms=5,
            color=line_colour,
            gid=f"test:{name}",
        )
        ks = weighted_ks_test(train_values, test_values, train_weights, test_weights)
        handles.append(
            Line2D(
                [], [], color=line_colour, lw=6, label=f"{name} (KS p = {_format_p(ks.p_value)})"
            )
        )
    handles += [
        Line2D([], [], color="dimgray", lw=6, alpha=0.4, label="training"),
        Line2D([], [], color="dimgray", ls="none", marker="o", label="test"),
    ]
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Normalised events / bin width" if density else "Events")
    figure.legend(handles=handles, loc="outside right upper")
    if title:
        ax.set_title(title)
    return figure


@styled
def plot_confusion_matrix(
    matrix: np.ndarray,
    class_labels: Sequence[str],
    *,
    value_format: str = ".2f",
    xlabel: str = "Predicted class",
    ylabel: str = "True class",
    title: str | None = None,
) -> Figure:
    """Confusion matrix ``M[true, predicted]`` as a colour grid with the value in each cell.

    Intended for the row-normalised, event-weighted matrix of
    :func:`~minerflow.plotting.metrics.weighted_confusion_matrix` (colour scale 0 to 1);
    NaN cells (a class without events) are shown as "–".
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    k = len(class_labels)
    if matrix.shape != (k, k):
        raise InputError("plot_confusion_matrix", "matrix", f"shape ({k}, {k}), got {matrix.shape}")
    finite = matrix[np.isfinite(matrix)]
    normalised = finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0)
    vmax = 1.0 if normalised else float(finite.max())
    size = 2.2 + 1.3 * k
    figure, ax = new_figure(figsize=(size + 1.6, size))
    image = ax.imshow(matrix, vmin=0.0, vmax=vmax, origin="upper")
    image.set_gid("confusion")
    cmap = image.get_cmap()
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            red, green, blue, _ = cmap(value / vmax)
            dark = 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.5
            text, text_colour = format(value, value_format), "white" if dark else "black"
        else:
            text, text_colour = "–", "black"
        ax.text(j, i, text, ha="center", va="center", color=text_colour, fontsize="small")
    ax.set_xticks(
        range(k), class_labels, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center"
    )
    ax.set_yticks(range(k), class_labels)
    ax.minorticks_off()
    ax.tick_params(top=False, right=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    figure.colorbar(image, ax=ax, label="Fraction of true class" if normalised else "Events")
    if title:
        ax.set_title(title)
    return figure
