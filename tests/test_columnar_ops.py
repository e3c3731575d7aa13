"""Registered calibrators, selectors and producers: chains, declared columns, errors."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from minerflow.errors import InputError
from minerflow.ml.columnar_ops import (
    apply_ops,
    calibrator,
    get_op,
    op_columns,
    producer,
    selector,
    set_ak_column,
)


@calibrator(uses={"Jet.pt"}, produces={"Jet.pt"}, name="test_scale_jets")
def _scale(events: ak.Array) -> ak.Array:
    return set_ak_column(events, "Jet.pt", events.Jet.pt * 1.1)


@selector(uses={"Jet.pt"}, name="test_two_jets")
def _two_jets(events: ak.Array) -> ak.Array:
    return ak.num(events.Jet.pt, axis=1) >= 2


@producer(uses={"Jet.pt"}, produces={"features.ht", "features.n_jet"}, name="test_ht")
def _ht(events: ak.Array) -> ak.Array:
    events = set_ak_column(events, "features.ht", ak.sum(events.Jet.pt, axis=1))
    return set_ak_column(events, "features.n_jet", ak.num(events.Jet.pt, axis=1))


@producer(uses={"features.ht", "MET.pt"}, produces={"features.st"}, name="test_st")
def _st(events: ak.Array) -> ak.Array:
    return set_ak_column(events, "features.st", events.features.ht + events.MET.pt)


@producer(produces={"promised"}, name="test_broken_producer")
def _broken(events: ak.Array) -> ak.Array:
    return events


EVENTS = ak.Array(
    {"Jet": [[{"pt": 10.0}, {"pt": 20.0}], [{"pt": 5.0}], []], "MET": [{"pt": 1.0}] * 3}
)


def test_chain_runs_in_order_and_reports_the_mask() -> None:
    out, mask = apply_ops(EVENTS, ["test_scale_jets"], "test_two_jets", ["test_ht", "test_st"])
    assert mask.tolist() == [True, False, False]
    assert out.features.ht.tolist() == pytest.approx([33.0])
    assert out.features.st.tolist() == pytest.approx([34.0])
    assert out.features.n_jet.tolist() == [2]


def test_columns_to_read_exclude_produced_ones() -> None:
    assert op_columns(["test_scale_jets"], "test_two_jets", ["test_ht", "test_st"]) == {
        "Jet.pt", "MET.pt"
    }  # fmt: skip


def test_errors_name_the_op() -> None:
    with pytest.raises(
        InputError, match=r"--producers: nope: expected a known producer: .*test_ht"
    ):
        get_op("producer", "nope")
    with pytest.raises(InputError, match="producer 'test_broken_producer': promised"):
        apply_ops(EVENTS, producers=["test_broken_producer"])

    @selector(name="test_bad_mask")
    def _bad(events: ak.Array) -> np.ndarray:
        return np.ones(len(events) + 1, dtype=bool)

    with pytest.raises(InputError, match="boolean mask of 3 events"):
        apply_ops(EVENTS, selector_name="test_bad_mask")
