"""Weighted histograms: filling, lookup, floors, capped volumes, bounded-uncertainty binning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.physics.histograms import (
    adaptive_edges,
    bin_index,
    bin_sums,
    bin_volumes,
    fill_histogram,
    log_probabilities,
    weighted_quantiles,
    with_flow_bins,
)


def test_weighted_quantiles_place_each_event_at_the_middle_of_its_weight() -> None:
    # weights 1, 3: positions 0.5/4 = 0.125 and (4 - 1.5)/4 = 0.625
    q = weighted_quantiles(np.array([10.0, 20.0]), np.array([1.0, 3.0]), np.array([0.125, 0.375]))
    assert q.tolist() == [10.0, 15.0]


def test_bin_index_is_c_order_and_outer_bins_absorb_out_of_range_values() -> None:
    edges = (np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    values = np.array([[0.5, 0.5], [1.5, 2.5], [-5.0, 9.0], [7.0, -1.0]])
    assert bin_index(values, edges).tolist() == [0, 5, 2, 3]


def test_fill_matches_numpy_histogramdd_inside_the_range(rng: np.random.Generator) -> None:
    x = rng.uniform(0, 1, size=(500, 2))
    w = rng.normal(1.0, 0.5, size=500)
    edges = (np.linspace(0, 1, 4), np.array([0.0, 0.2, 0.7, 1.0]))
    h = fill_histogram(x, w, edges)
    expected, _ = np.histogramdd(x, bins=edges, weights=w)
    expected2, _ = np.histogramdd(x, bins=edges, weights=w**2)
    np.testing.assert_allclose(h.sum_weights, expected, rtol=1e-12)
    np.testing.assert_allclose(h.sum_weights_squared, expected2, rtol=1e-12)
    assert h.shape == (3, 3)


def test_flow_bins_collect_underflow_and_overflow() -> None:
    edges = with_flow_bins(np.array([0.0, 1.0]))
    h = fill_histogram(np.array([-3.0, 0.5, 0.7, 4.0, 5.0]), np.ones(5), edges)
    assert h.sum_weights.tolist() == [1.0, 2.0, 2.0]


def test_probabilities_have_a_floor_and_sum_to_one() -> None:
    logp = log_probabilities(np.array([[3.0, 0.0, 1.0], [-1.0, 2.0, 2.0]]), floor=1e-6)
    p = np.exp(logp)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    # empty or negative bins get exactly floor / (1 + n floor)
    assert p[0, 1] == pytest.approx(1e-6 / (1 + 3e-6), rel=1e-12)
    assert p[1, 0] == pytest.approx(1e-6 / (1 + 3e-6), rel=1e-12)
    assert p[0, 0] == pytest.approx((0.75 + 1e-6) / (1 + 3e-6), rel=1e-12)


def test_outer_bin_widths_are_capped_at_both_ends() -> None:
    assert bin_volumes([np.array([0.0, 9.0, 10.0, 11.0, 30.0])]).tolist() == [2.0, 1.0, 1.0, 2.0]
    assert bin_volumes([np.array([-np.inf, 0.0, 1.0, np.inf])]).tolist() == [2.0, 1.0, 2.0]
    two_d = bin_volumes([np.array([0.0, 1.0, 2.0]), np.array([0.0, 3.0])])
    assert two_d.tolist() == [[3.0], [3.0]]


def test_density_lookup_is_probability_over_capped_volume() -> None:
    h = fill_histogram(np.array([0.5, 1.5, 1.6, 25.0]), np.ones(4), [np.array([0, 1, 2, 30.0])])
    volumes = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose((h.densities * volumes).sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(h.log_density(np.array([1.7, 99.0])), np.log(h.densities[[1, 2]]))
    np.testing.assert_allclose(h.log_probability(np.array([-4.0])), np.log(h.probabilities[0]))


def test_relative_uncertainty_is_zero_for_empty_and_inf_for_negative_bins() -> None:
    x = np.array([0.2, 0.4, 0.6, 0.8, 1.5, 1.6])
    h = fill_histogram(x, np.array([1.0, 1.0, 1.0, 1.0, 1.0, -2.0]), [np.arange(4.0)])
    assert h.relative_uncertainty.tolist() == [0.5, np.inf, 0.0]


def test_unit_weights_give_the_finest_binning_that_meets_the_bound() -> None:
    # unit weights: a bin of k events has sqrt(k)/k; 0.1 needs 100 events -> exactly 10 bins
    x = np.arange(1000.0)
    (edges,) = adaptive_edges(x, np.ones(1000), n_bins=25, max_relative_uncertainty=0.1)
    counts = fill_histogram(x, np.ones(1000), [edges]).sum_weights
    assert counts.tolist() == [100.0] * 10
    (edges,) = adaptive_edges(x, np.ones(1000), n_bins=25, max_relative_uncertainty=0.2)
    assert len(edges) == 26  # 40 events per bin already meet 0.2


def test_bound_unattainable_gives_one_bin() -> None:
    edges = adaptive_edges(np.arange(4.0), np.ones(4), n_bins=3, max_relative_uncertainty=0.1)
    assert [len(e) for e in edges] == [2]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(30, 400),
    n_dims=st.integers(1, 2),
    n_bins=st.integers(1, 12),
    bound=st.floats(0.05, 0.8),
    n_sets=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    negative=st.booleans(),
)
def test_every_filled_bin_meets_the_bound_whenever_one_bin_would(
    n: int, n_dims: int, n_bins: int, bound: float, n_sets: int, seed: int, negative: bool
) -> None:
    gen = np.random.default_rng(seed)
    x = gen.lognormal(size=(n, n_dims))
    w = gen.exponential(size=(n_sets, n))
    if negative:
        w[:, : n // 10] *= -0.3
    edges = adaptive_edges(x, w, n_bins, bound)
    assert all(len(e) - 1 <= n_bins for e in edges)
    assert all(np.all(np.diff(e) > 0) for e in edges)
    index = bin_index(x, edges)
    n_cells = int(np.prod([len(e) - 1 for e in edges]))
    s, s2 = bin_sums(index, n_cells, w), bin_sums(index, n_cells, w**2)
    filled = s2 > 0
    total_ok = np.all(np.sqrt((w**2).sum(1)) <= bound * w.sum(1))
    if total_ok:
        assert np.all(s[filled] > 0)
        assert np.all(np.sqrt(s2[filled]) <= bound * s[filled] * (1 + 1e-12))
    else:
        assert n_cells == 1


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(InputError, match="edges\\[0\\]: expected at least 2 strictly increasing"):
        fill_histogram(np.zeros(3), np.ones(3), [np.array([1.0, 0.0])])
    with pytest.raises(InputError, match="weights: expected shape"):
        fill_histogram(np.zeros(3), np.ones(2), [np.array([0.0, 1.0])])
    with pytest.raises(InputError, match="n_bins"):
        adaptive_edges(np.zeros((3, 2)), np.ones(3), n_bins=(3,))
