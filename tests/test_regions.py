"""Confidence-region masks, their intersection over union, and the refined comparison grid."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from minerflow.errors import InputError
from minerflow.physics import toy
from minerflow.physics.limits import p_values, theta_grid
from minerflow.physics.regions import (
    intersection_over_union,
    refine_map,
    region_mask,
    region_overlaps,
)

MASKS = hnp.arrays(np.bool_, st.tuples(st.integers(1, 6), st.integers(1, 6)))


def test_region_mask_keeps_p_above_one_minus_cl() -> None:
    p = np.array([[0.9, 0.5, 0.33], [0.31, 0.06, 0.04]])
    assert region_mask(p, 0.68).tolist() == [[True, True, True], [False, False, False]]
    assert region_mask(p, 0.95).tolist() == [[True, True, True], [True, True, False]]
    assert not region_mask(np.array([1.0 - 0.68]), 0.68)[0]  # the boundary itself is outside


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda: region_mask(np.array([0.5]), 1.0), "confidence_level"),
        (lambda: region_mask(np.array([0.5]), 0.0), "confidence_level"),
        (lambda: region_mask(np.array([0.5, np.nan]), 0.68), "p_values"),
        (lambda: intersection_over_union(np.ones(3), np.ones(3, bool)), "mask_a"),
        (lambda: intersection_over_union(np.ones(3, bool), np.ones(4, bool)), "mask_b"),
        (lambda: refine_map(np.zeros(8), [(0, 1), (0, 1)], 3), "values"),
        (lambda: refine_map(np.array([0.0, np.inf, 1.0]), [(0, 1)], 3), "values"),
        (lambda: refine_map(np.zeros(3), [(0, 1)], 3, refinement=0), "refinement"),
        (lambda: refine_map(np.zeros(3), [(1, 1)], 3), "ranges[0]"),
    ],
)
def test_bad_input_is_a_one_line_error(call, key: str) -> None:
    with pytest.raises(InputError, match=rf"^regions: {re.escape(key)}: expected [^\n]+$"):
        call()


def test_intersection_over_union_by_hand() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0:2, 0:3] = True  # 6 cells
    b[1:3, 1:4] = True  # 6 cells, 2 shared
    assert intersection_over_union(a, b) == pytest.approx(2 / 10)
    assert intersection_over_union(a, np.zeros((4, 4), bool)) == 0.0
    assert intersection_over_union(np.zeros(5, bool), np.zeros(5, bool)) == 1.0  # equal, empty


@settings(max_examples=60, deadline=None)
@given(data=st.data(), a=MASKS)
def test_intersection_over_union_properties(data: st.DataObject, a: np.ndarray) -> None:
    b = data.draw(hnp.arrays(np.bool_, a.shape))
    iou = intersection_over_union(a, b)
    assert iou == intersection_over_union(b, a)
    assert 0.0 <= iou <= 1.0
    assert intersection_over_union(a, a.copy()) == 1.0
    assert intersection_over_union(a & ~b, b & ~a) == (0.0 if (a ^ b).any() else 1.0)
    if (a | b).any():  # B ⊆ A ∪ B, so IoU(B, A ∪ B) is the share of the union B covers
        assert intersection_over_union(b, a | b) == pytest.approx(b.sum() / (a | b).sum())
    assert (iou == 1.0) == np.array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(
    coefficients=hnp.arrays(np.float64, (4, 4), elements=st.floats(-3, 3)),
    resolutions=st.tuples(st.integers(4, 9), st.integers(4, 9)),
    refinement=st.integers(1, 5),
)
def test_refine_map_is_exact_for_cubic_polynomials(
    coefficients: np.ndarray, resolutions: tuple[int, int], refinement: int
) -> None:
    ranges = [(-1.0, 2.0), (-0.5, 0.5)]

    def poly(thetas: np.ndarray) -> np.ndarray:
        powers = np.arange(4)
        return np.einsum(
            "ij,ni,nj->n",
            coefficients,
            thetas[:, :1] ** powers,
            thetas[:, 1:] ** powers,
        )

    coarse = theta_grid(ranges, resolutions)
    fine, values = refine_map(poly(coarse), ranges, resolutions, refinement)
    expected_shape = [(n - 1) * refinement + 1 for n in resolutions]
    np.testing.assert_array_equal(fine, theta_grid(ranges, expected_shape))
    np.testing.assert_allclose(values, poly(fine), atol=1e-9)


def test_refine_map_on_short_and_single_point_axes() -> None:
    fine, values = refine_map(np.array([0.0, 1.0, 4.0]), [(0.0, 2.0)], 3, 2)  # θ², a parabola
    np.testing.assert_allclose(fine[:, 0], [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(values, fine[:, 0] ** 2, atol=1e-12)
    fine, values = refine_map(np.array([1.0, 3.0]), [(0.0, 1.0), (5.0, 5.0)], (2, 1), 4)
    np.testing.assert_allclose(fine, [[0, 5], [0.25, 5], [0.5, 5], [0.75, 5], [1, 5]])
    np.testing.assert_allclose(values, [1.0, 1.5, 2.0, 2.5, 3.0])


def test_offset_intervals_overlap_by_the_lattice_count() -> None:
    # log L = −(θ − c)²/2 on a 0.01 fine lattice: the region is |θ − c| < w, w² = χ²₁ quantile,
    # m = ⌊w/h⌋ lattice points each side, and intervals k steps apart share 2m + 1 − k points
    ranges = [(-3.0, 3.0)]
    axis = np.linspace(-3.0, 3.0, 61)
    a, b = -0.5 * (axis + 0.25) ** 2, -0.5 * (axis - 0.25) ** 2
    overlaps = region_overlaps(a, b, ranges, 61, refinement=10)
    for cl, iou in overlaps.items():
        m = math.floor(math.sqrt(stats.chi2.isf(1 - cl, 1)) / 0.01)
        assert iou == pytest.approx((2 * m + 1 - 50) / (2 * m + 1 + 50), rel=1e-12)


def test_offset_discs_overlap_by_the_lens_area() -> None:
    # 2 dof: log L = −|θ − c|²/(2s²) gives discs of radius r = s·sqrt(−2 log(1 − CL))
    ranges = [(-1.0, 1.0), (-1.0, 1.0)]
    grid = theta_grid(ranges, 21)
    s, d = 0.2, 0.2
    maps = [-0.5 * np.sum((grid - c) ** 2, axis=1) / s**2 for c in ([-d / 2, 0], [d / 2, 0])]
    overlaps = region_overlaps(*maps, ranges, 21, refinement=10)
    for cl, iou in overlaps.items():
        r = s * math.sqrt(-2 * math.log(1 - cl))
        lens = 2 * r**2 * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r**2 - d**2)
        assert iou == pytest.approx(lens / (2 * math.pi * r**2 - lens), abs=0.005)
    assert region_overlaps(maps[0], maps[0] + 7.0, ranges, 21) == {0.68: 1.0, 0.95: 1.0}


def test_refinement_one_compares_the_grid_points_themselves() -> None:
    ranges = [(-1.0, 1.0), (-1.0, 1.0)]
    grid = theta_grid(ranges, 9)
    a = -3.0 * np.sum(grid**2, axis=1)
    b = -3.0 * np.sum((grid - [0.25, 0.0]) ** 2, axis=1)
    for cl, iou in region_overlaps(a, b, ranges, 9, refinement=1).items():
        masks = [region_mask(p_values(v, 2)[1], cl) for v in (a, b)]
        assert iou == intersection_over_union(*masks)


@pytest.mark.parametrize("include_xsec", [True, False])
def test_refined_exact_likelihood_finds_the_directly_evaluated_regions(include_xsec: bool) -> None:
    # the toy's exact expected log L on a coarse 13×13 grid (the 68 % region with the rate term
    # holds 5 points), refined ×5, against the same likelihood evaluated on the 61×61 grid
    region, true, lumi = toy.DEFAULT_LIMIT_REGION, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY
    coarse = toy.expected_log_likelihood_ratio(theta_grid(region, 13), true, lumi, include_xsec)
    fine, refined = refine_map(coarse, region, 13, refinement=5)
    direct = toy.expected_log_likelihood_ratio(fine, true, lumi, include_xsec)
    for cl in (0.68, 0.95):
        masks = [region_mask(p_values(v, 2)[1], cl) for v in (refined, direct)]
        assert masks[1].sum() >= 40
        assert intersection_over_union(*masks) >= 0.99
