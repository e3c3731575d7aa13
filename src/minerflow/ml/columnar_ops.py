"""Calibrators, selectors and producers: small registered functions on event chunks.

Each is a plain function of an awkward array, registered under its name with the columns it
``uses`` and ``produces``, so the framework reads exactly the columns it needs and checks
that it delivered what it promised:

* a **calibrator** returns the events with existing columns corrected;
* a **selector** returns a boolean mask (one entry per event) of the events to keep;
* a **producer** returns the events with new columns added.

>>> @producer(uses={"Jet.pt"}, produces={"n_jet"})
... def count_jets(events):
...     return set_ak_column(events, "n_jet", ak.num(events.Jet.pt, axis=1))

The ``training_*`` hooks of an ``MLModel`` pick which ones training uses; evaluation uses
the requested ones (or ``evaluation_producers``). :func:`apply_ops` runs a chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import awkward as ak
import numpy as np

from minerflow.errors import InputError
from minerflow.io.columnar import get_ak_column, has_ak_column, set_ak_column

__all__ = [
    "ColumnarOp",
    "apply_ops",
    "calibrator",
    "get_ak_column",
    "get_op",
    "known_ops",
    "op_columns",
    "producer",
    "selector",
    "set_ak_column",
]

Kind = Literal["calibrator", "selector", "producer"]
_OPS: dict[Kind, dict[str, ColumnarOp]] = {"calibrator": {}, "selector": {}, "producer": {}}


@dataclass(frozen=True)
class ColumnarOp:
    """A registered calibrator, selector or producer and its declared columns."""

    name: str
    kind: Kind
    func: Callable[..., Any]
    uses: frozenset[str]
    produces: frozenset[str]

    def __call__(self, events: ak.Array, **kwargs: Any) -> Any:
        """Run the function and check its result against the declaration."""
        where = f"{self.kind} '{self.name}'"
        result = self.func(events, **kwargs)
        if self.kind == "selector":
            mask = np.asarray(ak.to_numpy(result) if isinstance(result, ak.Array) else result)
            if mask.dtype != np.bool_ or mask.shape != (len(events),):
                raise InputError(where, "result", f"a boolean mask of {len(events)} events")
            return mask
        if not isinstance(result, ak.Array) or len(result) != len(events):
            raise InputError(where, "result", f"the events ({len(events)} rows) with its columns")
        for route in sorted(self.produces):
            if not has_ak_column(result, route):
                raise InputError(where, route, "the column it declares in 'produces'")
        return result


def _register(kind: Kind, uses: Iterable[str], produces: Iterable[str], name: str | None) -> Any:
    def decorate(func: Callable[..., Any]) -> ColumnarOp:
        op_name = name or func.__name__
        previous = _OPS[kind].get(op_name)
        if previous is not None and previous.func.__module__ != func.__module__:
            raise InputError(
                f"module '{func.__module__}'", op_name,
                f"a unique {kind} name; already defined in '{previous.func.__module__}'",
            )  # fmt: skip
        op = ColumnarOp(op_name, kind, func, frozenset(uses), frozenset(produces))
        _OPS[kind][op_name] = op
        return op

    return decorate


def calibrator(
    *, uses: Iterable[str] = (), produces: Iterable[str] = (), name: str | None = None
) -> Callable[[Callable[..., Any]], ColumnarOp]:
    """Register a function that corrects columns (returns the events)."""
    return _register("calibrator", uses, produces, name)


def selector(
    *, uses: Iterable[str] = (), name: str | None = None
) -> Callable[[Callable[..., Any]], ColumnarOp]:
    """Register a function that returns a boolean mask of the events to keep."""
    return _register("selector", uses, (), name)


def producer(
    *, uses: Iterable[str] = (), produces: Iterable[str] = (), name: str | None = None
) -> Callable[[Callable[..., Any]], ColumnarOp]:
    """Register a function that adds columns (returns the events)."""
    return _register("producer", uses, produces, name)


def known_ops(kind: Kind) -> list[str]:
    """Registered names of one kind, sorted."""
    return sorted(_OPS[kind])


def get_op(kind: Kind, name: str) -> ColumnarOp:
    """The registered op ``name`` of ``kind``; an unknown name lists the known ones."""
    if name not in _OPS[kind]:
        raise InputError(
            f"--{kind}s", name, f"a known {kind}: {', '.join(known_ops(kind)) or 'none'}"
        )
    return _OPS[kind][name]


def _chain(
    calibrators: Sequence[str], selector_name: str | None, producers: Sequence[str]
) -> list[ColumnarOp]:
    ops = [get_op("calibrator", n) for n in calibrators]
    if selector_name:
        ops.append(get_op("selector", selector_name))
    return ops + [get_op("producer", n) for n in producers]


def op_columns(
    calibrators: Sequence[str] = (), selector_name: str | None = None, producers: Sequence[str] = ()
) -> set[str]:
    """Input columns the chain needs from the files (uses not produced by an earlier op)."""
    needed: set[str] = set()
    made: set[str] = set()
    for op in _chain(calibrators, selector_name, producers):
        needed |= {r for r in op.uses if r not in made}
        made |= op.produces
    return needed


def apply_ops(
    events: ak.Array,
    calibrators: Sequence[str] = (),
    selector_name: str | None = None,
    producers: Sequence[str] = (),
    **kwargs: Any,
) -> tuple[ak.Array, np.ndarray]:
    """Run calibrators, then the selector (dropping failing events), then producers.

    Returns the surviving events and the selection mask over the input events (all True
    without a selector), so callers can keep outputs aligned with their input files.
    """
    mask = np.ones(len(events), dtype=np.bool_)
    for op in _chain(calibrators, selector_name, producers):
        if op.kind == "selector":
            mask = op(events, **kwargs)
            events = events[mask]
        else:
            events = op(events, **kwargs)
    return events, mask
