"""Fold assignment from event identity, and out-of-fold routing enforced by the framework."""

from __future__ import annotations

import itertools
from typing import Any

import awkward as ak
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.ml.columnar_ops import set_ak_column
from minerflow.ml.folds import (
    FoldStats,
    assign_folds,
    evaluate_out_of_fold,
    event_hash,
    split_by_fold,
    training_folds,
)
from minerflow.ml.mlmodel import MLModel

MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _events(ids: np.ndarray) -> ak.Array:
    return ak.zip(
        {"run": ids[:, 0].astype(np.uint32), "luminosityBlock": ids[:, 1].astype(np.uint32),
         "event": ids[:, 2].astype(np.uint64), "x": np.arange(len(ids), dtype=np.float64)}
    )  # fmt: skip


def test_hash_matches_the_documented_formula() -> None:
    ids = np.array([[1, 7, 123456789], [355100, 42, 2**40 + 3]])
    g = 0x9E3779B97F4A7C15
    expected = []
    for row in ids:
        h = _mix((0 + g) & MASK)
        for j, v in enumerate(row):
            h = _mix(h ^ _mix((int(v) + g * (j + 1)) & MASK))
        expected.append(h)
    assert event_hash(_events(ids)).tolist() == expected
    assert assign_folds(_events(ids), 3).tolist() == [h % 3 for h in expected]


id_arrays = st.lists(
    st.tuples(st.integers(1, 400_000), st.integers(1, 5000), st.integers(0, 2**63)),
    min_size=1, max_size=300,
).map(np.array)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(ids=id_arrays, cuts=st.lists(st.integers(0, 300), max_size=5), k=st.integers(2, 7),
       seed=st.integers(0, 2**32))  # fmt: skip
def test_folds_do_not_depend_on_chunking_or_order(
    ids: np.ndarray, cuts: list[int], k: int, seed: int
) -> None:
    events = _events(ids)
    whole = assign_folds(events, k, seed=seed)
    bounds = [0, *sorted(min(c, len(ids)) for c in cuts), len(ids)]
    chunked = np.concatenate(
        [assign_folds(events[a:b], k, seed=seed) for a, b in itertools.pairwise(bounds)]
    )
    assert np.array_equal(whole, chunked)
    perm = np.random.default_rng(seed).permutation(len(ids))
    assert np.array_equal(assign_folds(events[perm], k, seed=seed), whole[perm])
    assert whole.min() >= 0 and whole.max() < k


def test_folds_are_balanced_and_seed_dependent() -> None:
    n, k = 60_000, 3
    ids = np.stack([np.ones(n), np.arange(n) // 1000 + 1, np.arange(1, n + 1)], axis=1).astype(
        np.int64
    )
    folds = assign_folds(_events(ids), k)
    counts = np.bincount(folds, minlength=k)
    sigma = np.sqrt(n * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - n / k) < 5 * sigma)
    other = assign_folds(_events(ids), k, seed=1)
    assert 0.6 < np.mean(other != folds) < 0.73  # independent assignment: 2/3 differ


def test_missing_identity_column_is_named() -> None:
    events = ak.zip({"run": np.array([1, 2]), "evt": np.array([3, 4])})
    with pytest.raises(InputError, match=r"luminosityBlock.*fold_id_columns"):
        assign_folds(events, 3)
    assert assign_folds(events, 3, id_columns=("run", "evt")).shape == (2,)


def test_training_folds_and_split() -> None:
    assert training_folds(1, 3) == [0, 2]
    with pytest.raises(InputError):
        training_folds(3, 3)
    events = ak.Array({"x": [0, 1, 2, 3, 4]})
    parts = split_by_fold(events, np.array([2, 0, 2, 1, 0]), 3)
    assert [p.x.tolist() for p in parts] == [[1, 4], [3], [0, 2]]


def test_fold_stats() -> None:
    stats = FoldStats(3)
    stats.add(np.array([0, 2, 2]), np.array([1.0, 2.0, 3.5]))
    stats.add(np.array([1]))
    assert stats.to_dict() == {"folds": 3, "n_events": [1, 1, 2], "sum_weights": [1.0, 1.0, 5.5],
                               "n_events_total": 4, "sum_weights_total": 7.5}  # fmt: skip


class RoutingProbe(MLModel):
    """Each 'model' is its fold number; evaluate records which model saw which events."""

    # recorded state, not a setting: private, so it stays out of the settings hash
    _calls: list[tuple[int, np.ndarray]] = []  # noqa: RUF012

    def sandbox(self, task: Any) -> None:
        return None

    def datasets(self, config_inst: Any) -> set[Any]:
        return set()

    def uses(self, config_inst: Any) -> set[str]:
        return {"x"}

    def produces(self, config_inst: Any) -> set[str]:
        return {"probe.model", "probe.score", "probe.n"}

    def open_model(self, target: Any) -> Any:
        return target

    def train(self, task: Any, input: Any, output: Any) -> None:
        return None

    def evaluate(self, task, events, models, fold_indices, events_used_in_training=False):
        model = np.empty(len(events))
        for f, m in enumerate(models):  # the columnflow pattern: models[f] for fold_indices == f
            mask = ak.to_numpy(fold_indices == f)
            model[mask] = m
        type(self)._calls.append((models[0], ak.to_numpy(events.event)))
        events = set_ak_column(events, "probe.model", model.astype(np.int64))
        events = set_ak_column(events, "probe.score", model * 1.5)
        return set_ak_column(events, "probe.n", np.full(len(events), 7))


@settings(max_examples=40, deadline=None)
@given(k=st.integers(2, 6), n=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_routing_never_gives_an_event_to_a_model_that_trained_on_it(
    k: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(1, 9, n), rng.integers(1, 99, n), rng.permutation(n)], axis=1)
    events = _events(ids.reshape(n, 3))
    folds = assign_folds(events, k)
    model = RoutingProbe.derive(f"routing_probe_{k}", cls_dict={"folds": k})()
    RoutingProbe._calls.clear()
    out = evaluate_out_of_fold(
        model, None, events, list(range(k)), folds, True, config_inst=object()
    )
    assert len(out) == n
    assert sorted(ak.fields(out)) == ["probe"]
    # the model used for each event is the one of its own fold: it trained on every other fold
    assert np.array_equal(ak.to_numpy(out.probe.model), folds)
    for used_model, event_ids in RoutingProbe._calls:
        if len(event_ids):
            # model f trained on every fold but f, so it may only ever see events of fold f
            seen_folds = folds[np.isin(ids[:, 2], event_ids)]
            assert set(seen_folds.tolist()) == {used_model}


def test_datasets_not_in_training_average_all_models() -> None:
    events = _events(np.array([[1, 1, 1], [1, 1, 2], [1, 1, 3]]))
    model = RoutingProbe.derive("routing_probe_avg", cls_dict={"folds": 3})()
    out = evaluate_out_of_fold(model, None, events, [1.0, 2.0, 4.0], np.zeros(3), False, object())
    assert out.probe.score.tolist() == pytest.approx([3.5, 3.5, 3.5])  # mean of 1.5, 3, 6
    assert out.probe.n.tolist() == [7, 7, 7]  # integer columns come from the first model
    single = RoutingProbe.derive("routing_probe_one", cls_dict={"folds": 3, "evaluation_rule": 2})()
    out = evaluate_out_of_fold(single, None, events, [1.0, 2.0, 4.0], np.zeros(3), False, object())
    assert out.probe.score.tolist() == [6.0, 6.0, 6.0]


class WrongLength(RoutingProbe):
    def evaluate(self, task, events, models, fold_indices, events_used_in_training=False):
        return super().evaluate(task, events, models, fold_indices)[:-1]


class MissingColumn(RoutingProbe):
    def produces(self, config_inst: Any) -> set[str]:
        return {"probe.model", "probe.typo"}


def test_bad_evaluate_results_name_the_model() -> None:
    events = _events(np.array([[1, 1, 1], [1, 1, 2], [1, 1, 3]]))
    with pytest.raises(
        InputError,
        match=r"model 'WrongLength': evaluate: expected one row per input event \(\d\), got \d",
    ):
        evaluate_out_of_fold(
            WrongLength(), None, events, [0, 1, 2], assign_folds(events, 3), True, object()
        )
    with pytest.raises(InputError, match=r"model 'MissingColumn': evaluate: .*'probe\.typo'"):
        evaluate_out_of_fold(MissingColumn(), None, events, [0, 1, 2], np.zeros(3), True, object())
    with pytest.raises(InputError, match="3 fold models, got 2"):
        evaluate_out_of_fold(RoutingProbe(), None, events, [0, 1], np.zeros(3), True, object())
