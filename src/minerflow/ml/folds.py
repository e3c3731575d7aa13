"""k-fold assignment from event identity, and out-of-fold evaluation enforced by the framework.

Every event gets ``fold = H(ids) mod k`` where ``H`` is a 64-bit hash of its identity columns
(by default ``run``, ``luminosityBlock``, ``event``). The hash depends on nothing but the
event, so the assignment is the same however the files are chunked, in any order, on any
re-run. Model ``f`` trains on every fold but ``f``; :func:`evaluate_out_of_fold` gives each
event of fold ``f`` to model ``f`` only, so no event is ever predicted by a model that saw it.

Hash: each identity value ``v_j`` (as a 64-bit pattern) is mixed with the SplitMix64
finaliser ``m`` (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
OOPSLA 2014): ``h_0 = m(seed + g)``, ``h_j = m(h_{j-1} XOR m(v_j + (j+1) g))`` with
``g = 0x9E3779B97F4A7C15``; folds are ``h mod k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from minerflow.errors import InputError
from minerflow.io.columnar import filter_columns, get_ak_column, has_ak_column, leaf_routes

if TYPE_CHECKING:
    import order as od

    from minerflow.ml.mlmodel import MLModel

__all__ = [
    "DEFAULT_ID_COLUMNS",
    "FoldStats",
    "assign_folds",
    "evaluate_out_of_fold",
    "event_hash",
    "split_by_fold",
    "training_folds",
]

DEFAULT_ID_COLUMNS = ("run", "luminosityBlock", "event")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _as_bits(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return values.astype(np.float64).view(np.uint64)
    if values.dtype.kind in "iub":
        return (
            values.astype(np.int64).view(np.uint64)
            if values.dtype.kind == "i"
            else values.astype(np.uint64)
        )
    raise TypeError(values.dtype)


def event_hash(
    events: ak.Array, id_columns: Sequence[str] = DEFAULT_ID_COLUMNS, seed: int = 0
) -> np.ndarray:
    """64-bit hash of each event's identity columns (flat numeric columns, by route)."""
    n = len(events)
    with np.errstate(over="ignore"):
        h = _mix(np.full(n, np.uint64(seed % 2**64), dtype=np.uint64) + _GOLDEN)
        for j, route in enumerate(id_columns):
            if not has_ak_column(events, route):
                have = ", ".join(leaf_routes(events)) or "none"
                raise InputError(
                    "events", route,
                    f"the event-identity column '{route}' for fold assignment (set the model's "
                    f"fold_id_columns); the events have {have}",
                )  # fmt: skip
            column = get_ak_column(events, route)
            try:
                values = _as_bits(np.asarray(ak.to_numpy(column)))
            except (TypeError, ValueError) as err:
                raise InputError("events", route, "a flat numeric identity column") from err
            h = _mix(h ^ _mix(values + _GOLDEN * np.uint64(j + 1)))
    return h


def assign_folds(
    events: ak.Array,
    folds: int,
    id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
    seed: int = 0,
) -> np.ndarray:
    """Fold index in ``[0, folds)`` of every event (int64), from its identity alone."""
    if folds < 1:
        raise InputError("folds", str(folds), "an integer >= 1")
    return (event_hash(events, id_columns, seed) % np.uint64(folds)).astype(np.int64)


def training_folds(fold: int, folds: int) -> list[int]:
    """The folds model ``fold`` trains on: every fold except ``fold`` itself."""
    if not 0 <= fold < folds:
        raise InputError("fold", str(fold), f"an index in [0, {folds})")
    return [g for g in range(folds) if g != fold]


def split_by_fold(events: ak.Array, fold_indices: np.ndarray, folds: int) -> list[ak.Array]:
    """The events of each fold, in input order within each fold."""
    fold_indices = np.asarray(fold_indices)
    return [events[fold_indices == f] for f in range(folds)]


class FoldStats:
    """Event counts and weight sums per fold, accumulated chunk by chunk (JSON-ready).

    The preparation step keeps one per dataset and hands them to ``train`` so a model can
    normalise classes (e.g. weight each process to the same total).
    """

    def __init__(self, folds: int) -> None:
        self.folds = folds
        self.n_events = np.zeros(folds, dtype=np.int64)
        self.sum_weights = np.zeros(folds, dtype=np.float64)

    def add(self, fold_indices: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count one chunk; without weights every event weighs 1."""
        idx = np.asarray(fold_indices, dtype=np.int64)
        w = np.ones(len(idx)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.n_events += np.bincount(idx, minlength=self.folds)[: self.folds]
        self.sum_weights += np.bincount(idx, weights=w, minlength=self.folds)[: self.folds]

    def to_dict(self) -> dict[str, Any]:
        """Per-fold lists and totals."""
        return {
            "folds": self.folds,
            "n_events": self.n_events.tolist(),
            "sum_weights": self.sum_weights.tolist(),
            "n_events_total": int(self.n_events.sum()),
            "sum_weights_total": float(self.sum_weights.sum()),
        }


# --------------------------------------------------------------------------- evaluation
def _checked_call(
    model: MLModel,
    task: Any,
    events: ak.Array,
    one_model: Any,
    used_in_training: bool,
    produces: Sequence[str],
) -> ak.Array:
    """Call the user's ``evaluate`` with one model; check its result and keep ``produces``."""
    where = f"model '{model.cls_name}'"
    positions = ak.Array(np.zeros(len(events), dtype=np.int64))
    result = model.evaluate(task, events, [one_model], positions, used_in_training)
    if not isinstance(result, ak.Array):
        raise InputError(
            where, "evaluate", f"an awkward array of events, got {type(result).__name__}"
        )
    if len(result) != len(events):
        raise InputError(
            where, "evaluate", f"one row per input event ({len(events)}), got {len(result)}"
        )
    missing = [r for r in produces if not has_ak_column(result, r)]
    if missing:
        raise InputError(
            where, "evaluate", f"the produced column '{missing[0]}' in its result (see produces)"
        )
    return filter_columns(result, produces)


def _is_float(column: ak.Array) -> bool:
    return np.asarray(ak.flatten(column, axis=None)).dtype.kind == "f"


def _average(outputs: list[ak.Array], produces: Sequence[str]) -> ak.Array:
    """Mean of floating-point produced columns over the outputs; others from the first."""
    from minerflow.io.columnar import set_ak_column

    result = outputs[0]
    for route in leaf_routes(result):
        if _is_float(get_ak_column(result, route)):
            total = sum(get_ak_column(out, route) for out in outputs)
            result = set_ak_column(result, route, total / len(outputs))
    return result


def evaluate_out_of_fold(
    model: MLModel,
    task: Any,
    events: ak.Array,
    models: Sequence[Any],
    fold_indices: np.ndarray | ak.Array,
    events_used_in_training: bool,
    config_inst: od.Config | None = None,
) -> ak.Array:
    """Evaluate one chunk, giving every event only to a model that never saw it.

    For a training dataset (``events_used_in_training``) the events of fold ``f`` are
    passed to ``model.evaluate`` with ``models=[models[f]]``, and the results are put back in
    input order. For other datasets ``model.evaluation_rule`` decides: ``"average"`` calls
    ``evaluate`` once per fold model on all events and averages the floating-point produced
    columns; ``"fold"`` routes as for training events; an int ``f`` uses model ``f`` only.
    The result holds exactly the ``produces`` columns, one row per input event; a wrong
    length or a missing column raises ``InputError`` naming the model.
    """
    k = model.folds
    if len(models) != k:
        raise InputError(
            f"model '{model.cls_name}'", "models", f"{k} fold models, got {len(models)}"
        )
    produces = sorted(str(r) for r in model.produces(config_inst or model.config_inst))
    folds = np.asarray(fold_indices, dtype=np.int64)
    if len(folds) != len(events) or (len(folds) and (folds.min() < 0 or folds.max() >= k)):
        raise InputError(
            f"model '{model.cls_name}'", "fold_indices", f"one index in [0, {k}) per event"
        )
    rule = "fold" if events_used_in_training else model.evaluation_rule
    if rule == "average":
        outputs = [_checked_call(model, task, events, m, False, produces) for m in models]
        return _average(outputs, produces)
    if isinstance(rule, int) and not isinstance(rule, bool):
        if not 0 <= rule < k:
            raise InputError(f"model '{model.cls_name}'", "evaluation_rule", f"a fold in [0, {k})")
        return _checked_call(model, task, events, models[rule], False, produces)
    if rule != "fold":
        raise InputError(
            f"model '{model.cls_name}'", "evaluation_rule", "'average', 'fold' or a fold index"
        )
    # one gather (packed, so user code does not resolve the index again for every column
    # it reads) puts the events in fold order; each fold is then a zero-copy slice
    order = np.argsort(folds, kind="stable")
    bounds = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(folds, minlength=k), out=bounds[1:])
    by_fold = ak.to_packed(events[order])
    pieces = [
        _checked_call(
            model, task, by_fold[int(bounds[f]) : int(bounds[f + 1])], models[f],
            events_used_in_training, produces,
        )
        for f in range(k)
        if bounds[f + 1] > bounds[f]
    ]  # fmt: skip
    if not pieces:  # an empty chunk: still call once so the output has its columns
        return _checked_call(model, task, events, models[0], events_used_in_training, produces)
    merged = pieces[0] if len(pieces) == 1 else ak.concatenate(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return merged[inverse]
