"""The stratified Asimov subsample: a permutation along a phase-space path, exact weight shares,
and a weighted mean far closer to the full one than independent draws give."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minerflow.workflow.asimov import asimov_subsample, phase_space_order


def test_order_snakes_through_a_lattice() -> None:
    """One event per cell of a 4 × 4 lattice: rows up and down in turn (a boustrophedon)."""
    i, j = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    points = np.column_stack([i.ravel(), j.ravel()])
    shuffled = np.random.default_rng(1).permutation(16)
    order = phase_space_order(points[shuffled], cells=4)
    visited = points[shuffled][order].tolist()
    expected = [[a, b if a % 2 == 0 else 3 - b] for a in range(4) for b in range(4)]
    assert visited == [[float(a), float(b)] for a, b in expected]


def test_order_in_three_dimensions_moves_one_cell_at_a_time() -> None:
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    path = grid[phase_space_order(grid, cells=3)]
    assert sorted(map(tuple, path)) == sorted(map(tuple, grid))  # a permutation
    steps = np.abs(np.diff(path, axis=0)).sum(axis=1)
    assert np.all(steps == 1.0)  # neighbours only: the path never jumps


@settings(max_examples=60, deadline=None)
@given(
    weights=arrays(np.float64, st.integers(2, 60), elements=st.floats(0.0, 10.0)),
    size=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
@example(weights=np.array([5e-324, 0.0, 0.0, 0.0]), size=3, seed=0)  # a subnormal total weight
def test_every_event_gets_its_share_of_the_draws(weights: np.ndarray, size: int, seed: int) -> None:
    """Systematic resampling: event i appears ⌊N w_i⌋ or ⌈N w_i⌉ times, N draws in all."""
    x = np.random.default_rng(seed).normal(size=(len(weights), 2))
    index = asimov_subsample(x, weights, size, np.random.default_rng(seed))
    if len(weights) <= size or not weights.sum() > 0:
        assert index is None
        return
    assert index is not None and len(index) == size
    counts = np.bincount(index, minlength=len(weights))
    share = size * weights / weights.sum()
    assert np.all(counts >= np.floor(share - 1e-9)) and np.all(counts <= np.ceil(share + 1e-9))


def test_negative_weights_keep_the_full_set() -> None:
    x = np.zeros((10, 2))
    weights = np.ones(10)
    weights[3] = -0.5
    assert asimov_subsample(x, weights, 5, np.random.default_rng(0)) is None


def test_weighted_mean_of_a_smooth_function_is_kept_to_high_accuracy() -> None:
    """2 000 of 40 000 weighted events: the stratified mean of a smooth f (std 1.9) is within
    0.01 of the full weighted mean, several times closer than resampling in file order gets
    (measured: 0.002 against 0.018 on average)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40_000, 2))
    weights = np.exp(-0.5 * np.sum(x**2, axis=1)) * (1.0 + 0.5 * np.tanh(x[:, 0]))
    f = np.sin(3.0 * x[:, 0]) + x[:, 1] ** 2 + x[:, 0] * x[:, 1]
    exact = float(f @ weights / weights.sum())
    errors = []
    for seed in range(10):
        index = asimov_subsample(x, weights, 2000, np.random.default_rng(seed))
        assert index is not None
        errors.append(abs(float(f[index].mean()) - exact))
    cumulative = np.cumsum(weights) / weights.sum()
    plain = []
    for seed in range(10):
        points = (np.random.default_rng(seed).random() + np.arange(2000)) / 2000
        plain.append(abs(float(f[np.searchsorted(cumulative, points)].mean()) - exact))
    assert max(errors) < 0.01
    assert np.mean(errors) < np.mean(plain) / 4


@pytest.mark.parametrize("n_events", [5, 2000])
def test_no_subsample_when_the_set_is_small(n_events: int) -> None:
    x = np.ones((n_events, 2))
    assert asimov_subsample(x, np.ones(n_events), 2000, np.random.default_rng(0)) is None
