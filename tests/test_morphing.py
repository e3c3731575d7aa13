"""Morphing: components, matrices and weights against hand results and the reference file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minerflow.errors import InputError
from minerflow.io.madminer_file import read_event_file
from minerflow.physics.morphing import (
    Morpher,
    component_gradients,
    component_values,
    find_components,
    morphing_matrix,
)

QUADRATIC_2D = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0]])
thetas_2d = arrays(
    np.float64, st.tuples(st.integers(1, 5), st.just(2)), elements=st.floats(-15.0, 15.0)
)


def test_find_components_reference(reference_file: Path) -> None:
    header = read_event_file(reference_file).header
    max_powers = [p.max_power for p in header.parameters]
    found = find_components(max_powers)
    assert {tuple(k) for k in found} == {tuple(k) for k in header.morphing_components}
    assert found.shape == (6, 2) and found.dtype == np.int64


def test_find_components_options() -> None:
    assert find_components([2]).tolist() == [[0], [1], [2]]
    assert len(find_components([2, 2], max_overall_power=4)) == 9
    assert find_components([1, 1, 1], max_overall_power=1).tolist() == [
        [0, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 0, 0],
    ]
    with pytest.raises(InputError, match="max_powers: expected non-negative powers"):
        find_components([2, -1])
    with pytest.raises(InputError, match="max_powers"):
        find_components([1.5])


def test_component_values_by_hand() -> None:
    theta = np.array([[2.0, -3.0]])
    np.testing.assert_array_equal(
        component_values(QUADRATIC_2D, theta), [[1.0, -3.0, 9.0, 2.0, -6.0, 4.0]]
    )
    grads = component_gradients(QUADRATIC_2D, theta)
    assert grads.shape == (1, 2, 6)
    np.testing.assert_array_equal(grads[0, 0], [0.0, 0.0, 0.0, 1.0, -3.0, 4.0])
    np.testing.assert_array_equal(grads[0, 1], [0.0, 1.0, -6.0, 0.0, 2.0, 0.0])
    at_zero = component_gradients(QUADRATIC_2D, np.zeros((1, 2)))
    assert np.isfinite(at_zero).all()
    np.testing.assert_array_equal(at_zero[0], [[0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]])


def test_one_parameter_lagrange_weights() -> None:
    """Basis θ = 0, 1, 2 gives the Lagrange polynomials: w_0(θ) = (θ-1)(θ-2)/2, ..."""
    morpher = Morpher.from_basis(find_components([2]), np.array([[0.0], [1.0], [2.0]]))
    theta = np.array([[0.5], [3.0]])
    t = theta[:, 0]
    expected = np.column_stack([(t - 1) * (t - 2) / 2, -t * (t - 2), t * (t - 1) / 2])
    np.testing.assert_allclose(morpher.weights(theta), expected, rtol=1e-13, atol=1e-14)
    expected_grad = np.column_stack([t - 1.5, 2 - 2 * t, t - 0.5])
    np.testing.assert_allclose(
        morpher.weight_gradients(theta)[:, 0, :], expected_grad, rtol=1e-13, atol=1e-14
    )


def test_reference_matrix_equals_stored(reference_file: Path) -> None:
    header = read_event_file(reference_file).header
    computed = morphing_matrix(header.morphing_components, header.benchmark_values)
    np.testing.assert_allclose(computed, header.morphing_matrix, rtol=1e-12, atol=1e-15)


def test_reference_morphs_back_to_every_benchmark(reference_file: Path) -> None:
    events = read_event_file(reference_file)
    header = events.header
    weights = events.weights()
    morphed = header.morpher().weights(header.benchmark_values) @ weights.T  # (n_b, n_events)
    relative = np.abs(morphed.T - weights) / np.abs(weights)  # every event, every benchmark
    assert relative.max() < 1e-10


def test_vectorised_equals_one_at_a_time(reference_file: Path, rng: np.random.Generator) -> None:
    morpher = read_event_file(reference_file).header.morpher()
    thetas = rng.normal(scale=5.0, size=(50, 2))
    batch, grads = morpher.weights(thetas), morpher.weight_gradients(thetas)
    assert batch.shape == (50, 6) and grads.shape == (50, 2, 6)
    for i in (0, 17, 49):
        np.testing.assert_allclose(batch[i], morpher.weights(thetas[i])[0], rtol=1e-14)
        np.testing.assert_allclose(grads[i], morpher.weight_gradients(thetas[i])[0], rtol=1e-14)


@settings(max_examples=60, deadline=None)
@given(thetas=thetas_2d)
def test_gradients_match_central_differences_quadratic(thetas: np.ndarray) -> None:
    """For a quadratic, central differences are exact up to rounding."""
    values = np.array([[0, 0], [10, 0], [-9.3, 2.6], [-4.2, 8.7], [-4.3, -7.7], [6.0, 8.3]])
    morpher = Morpher.from_basis(QUADRATIC_2D, values)
    grads = morpher.weight_gradients(thetas)
    h = 1e-3
    for p in range(2):
        step = np.zeros(2)
        step[p] = h
        numeric = (morpher.weights(thetas + step) - morpher.weights(thetas - step)) / (2 * h)
        np.testing.assert_allclose(grads[:, p, :], numeric, rtol=1e-6, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(theta=arrays(np.float64, (3, 3), elements=st.floats(-2.0, 2.0)))
def test_component_gradients_cubic_finite_differences(theta: np.ndarray) -> None:
    components = find_components([3, 2, 1], max_overall_power=3)
    grads = component_gradients(components, theta)
    h = 1e-5
    for p in range(3):
        step = np.zeros(3)
        step[p] = h
        numeric = (
            component_values(components, theta + step) - component_values(components, theta - step)
        ) / (2 * h)
        np.testing.assert_allclose(grads[:, p, :], numeric, rtol=1e-6, atol=1e-7)


def test_overdetermined_basis_reproduces_quadratic(rng: np.random.Generator) -> None:
    """Ten basis points for six components: least squares still morphs a quadratic exactly."""
    basis = rng.uniform(-10, 10, size=(10, 2))
    matrix = morphing_matrix(QUADRATIC_2D, basis)
    assert matrix.shape == (6, 10)
    np.testing.assert_allclose(
        matrix @ component_values(QUADRATIC_2D, basis), np.eye(6), atol=1e-10
    )
    coefficients = rng.normal(size=(6, 4))  # four "events", each a quadratic in θ

    def truth(thetas: np.ndarray) -> np.ndarray:
        return component_values(QUADRATIC_2D, thetas) @ coefficients

    event_weights = truth(basis)  # (n_b, n_events): the weights at each benchmark
    thetas = rng.uniform(-20, 20, size=(30, 2))
    morphed = Morpher(QUADRATIC_2D, matrix).weights(thetas) @ event_weights
    np.testing.assert_allclose(morphed, truth(thetas), rtol=1e-9, atol=1e-9)


def test_bad_bases_and_shapes() -> None:
    with pytest.raises(InputError, match="at least 6 basis points for 6 components, got 5"):
        morphing_matrix(QUADRATIC_2D, np.arange(10.0).reshape(5, 2))
    collinear = np.column_stack([np.arange(6.0), np.zeros(6)])  # θ_1 never varies
    with pytest.raises(InputError, match=r"determine all 6 components \(rank 3 < 6\)"):
        morphing_matrix(QUADRATIC_2D, collinear)
    with pytest.raises(InputError, match=r"thetas: expected shape \(n_theta, 2\), got \(4, 3\)"):
        component_values(QUADRATIC_2D, np.zeros((4, 3)))
    with pytest.raises(InputError, match="morphing_matrix: expected shape"):
        Morpher(QUADRATIC_2D, np.eye(5))
