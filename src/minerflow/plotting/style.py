"""One look for every minerflow figure: mplhep's ROOT style, colour-blind-safe colours.

Figures are built as :class:`matplotlib.figure.Figure` objects (never through pyplot), so
nothing leaks between calls and many figures can be made in one process. The style is
applied with an ``rc_context`` around figure construction (:func:`styled`) and again around
saving (:mod:`minerflow.plotting.save`), because some settings (fonts, mathtext) are read
only when the figure is drawn.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import matplotlib
import mplhep
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "axis_label",
    "colour",
    "new_figure",
    "style_context",
    "styled",
    "warm_up_drawing",
]

#: Petroff's 10 colours (arXiv:2107.02270), chosen to stay distinct under the common forms of
#: colour-vision deficiency; matplotlib ships them as the ``petroff10`` style.
PALETTE: tuple[str, ...] = (
    "#3f90da",
    "#ffa90e",
    "#bd1f01",
    "#94a4a2",
    "#832db6",
    "#a96b59",
    "#e76300",
    "#b9ac70",
    "#717581",
    "#92dadd",
)

_RC: dict[str, Any] = {
    **mplhep.style.ROOT,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "font.size": 18,
    "axes.titlesize": "medium",
    "legend.fontsize": "small",
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
}

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def style_context() -> Iterator[None]:
    """Apply the minerflow style for the duration of the block only."""
    with matplotlib.rc_context(_RC):
        yield


def styled(function: Callable[P, R]) -> Callable[P, R]:
    """Run a figure-building function inside :func:`style_context`."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with style_context():
            return function(*args, **kwargs)

    return wrapper


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float] = (7.5, 6.5),
    **subplot_kw: Any,
) -> tuple[Figure, Any]:
    """A pyplot-free figure with constrained layout (outside legends and colour bars fit).

    Returns ``(figure, axes)`` where ``axes`` is one Axes for a 1×1 grid, else an array.
    The pixel size of a saved PNG is ``figsize × dpi`` exactly (no tight bounding box).
    """
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=True, **subplot_kw)
    return figure, axes


def colour(index: int) -> str:
    """The ``index``-th palette colour, cycling when there are more series than colours."""
    return PALETTE[index % len(PALETTE)]


def axis_label(name: str, unit: str | None = None) -> str:
    """An axis label in the usual ``name [unit]`` form; no brackets for dimensionless values.

    >>> axis_label("σ", "pb")
    'σ [pb]'
    >>> axis_label("θ₀")
    'θ₀'
    """
    return f"{name} [{unit}]" if unit else name


_WARM: set[str] = set()


def warm_up_drawing(formats: tuple[str, ...] = ("png", "pdf")) -> None:
    """Draw a small figure of every kind of element into memory, once per format.

    The first drawing of a process loads fonts, the formula parser, the backend and the code
    of each artist; done once before worker processes are forked (or inherited from the
    process they were forked from), they all start with it done.
    """
    import io

    for fmt in formats:
        if fmt in _WARM:
            continue
        with style_context():
            figure, axes = new_figure(figsize=(2.0, 2.0))
            axes.plot([0.0, 1.0], [0.0, 1.0], label=r"$\theta_0$")
            axes.contour([[0.0, 1.0], [1.0, 2.0]])
            axes.legend()
            figure.colorbar(axes.pcolormesh([[0.0, 1.0]]), ax=axes)
            figure.savefig(io.BytesIO(), format=fmt)
        _WARM.add(fmt)
