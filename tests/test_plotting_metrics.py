"""Weighted ROC/AUC, KS test and confusion matrix against exact, hand-computable answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minerflow.errors import InputError
from minerflow.plotting.metrics import (
    effective_sample_size,
    roc_curve,
    weighted_confusion_matrix,
    weighted_ks_test,
)


def mann_whitney(scores, labels, weights):
    """Brute-force weighted Mann–Whitney statistic with half credit for ties."""
    pos, neg = labels == 1, labels == 0
    above = scores[pos][:, None] > scores[neg][None, :]
    tied = scores[pos][:, None] == scores[neg][None, :]
    pair_weights = weights[pos][:, None] * weights[neg][None, :]
    return np.sum(pair_weights * (above + 0.5 * tied)) / pair_weights.sum()


def test_roc_of_hand_example():
    curve = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(curve.true_positive_rate, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(curve.false_positive_rate, [0, 0, 0.5, 0.5, 1])
    assert curve.auc == pytest.approx(0.75)


def test_perfect_reversed_and_identical_classifiers():
    labels = np.array([1, 1, 1, 0, 0])
    assert roc_curve(np.array([5.0, 4, 3, -1, -2]), labels).auc == 1.0
    assert roc_curve(np.array([-5.0, -4, -3, 1, 2]), labels).auc == 0.0
    # the same score for every event: one step from (0,0) to (1,1), area exactly 1/2
    assert roc_curve(np.full(5, 7.3), labels).auc == 0.5


def test_scores_outside_unit_interval_are_fine():
    curve = roc_curve(np.array([-300.0, 1e6, 42.0]), np.array([0, 1, 0]))
    assert curve.auc == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=2, max_size=40),
    st.lists(st.booleans(), min_size=2, max_size=40),
)
def test_auc_equals_mann_whitney_for_unit_weights(raw_scores, raw_labels):
    n = min(len(raw_scores), len(raw_labels))
    scores = np.array(raw_scores[:n], dtype=float)
    labels = np.array(raw_labels[:n], dtype=int)
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    auc = roc_curve(scores, labels).auc
    assert auc == pytest.approx(mann_whitney(scores, labels, np.ones(n)), abs=1e-12)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert auc == pytest.approx(u / (labels.sum() * (n - labels.sum())), abs=1e-12)


def test_signed_weights_enter_linearly(rng):
    scores = np.round(rng.normal(size=200), 1)
    labels = (rng.random(200) < 0.4).astype(int)
    weights = rng.choice([1.0, 2.5, -0.3], size=200)
    curve = roc_curve(scores, labels, weights)
    assert curve.auc == pytest.approx(mann_whitney(scores, labels, weights), rel=1e-12)
    assert curve.true_positive_rate[-1] == pytest.approx(1.0)
    assert curve.false_positive_rate[-1] == pytest.approx(1.0)


def test_integer_weights_equal_repeated_events():
    scores = np.array([0.2, 0.5, 0.9, 0.1])
    labels = np.array([1, 0, 1, 0])
    weighted = roc_curve(scores, labels, np.array([2.0, 1.0, 3.0, 1.0]))
    repeated = roc_curve(np.repeat(scores, [2, 1, 3, 1]), np.repeat(labels, [2, 1, 3, 1]))
    np.testing.assert_allclose(weighted.true_positive_rate, repeated.true_positive_rate)
    assert weighted.auc == pytest.approx(repeated.auc)


def test_roc_rejects_a_missing_class():
    with pytest.raises(InputError, match="roc_curve: labels: expected both classes"):
        roc_curve(np.array([1.0, 2.0]), np.array([1, 1]))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=60),
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=60),
)
def test_ks_matches_scipy_asymptotic_for_unit_weights(a, b):
    a, b = np.array(a), np.array(b)
    ours = weighted_ks_test(a, b)
    theirs = stats.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-300)
    assert ours.n_effective == (a.size, b.size)


def test_ks_single_events_give_a_finite_p_value():
    # scipy rounds n = 1·1/2 to 0 and returns NaN; one event each is clamped to n = 1
    result = weighted_ks_test(np.array([0.0]), np.array([1.0]))
    assert result.statistic == 1.0 and result.p_value == stats.kstwo.sf(1.0, 1)


def test_ks_hand_cases():
    disjoint = weighted_ks_test(np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0]))
    assert disjoint.statistic == 1.0
    same = weighted_ks_test(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
    assert same.statistic == 0.0 and same.p_value == 1.0
    # weights 3:1 on {0, 1} vs 1:1: F_a(0) = 3/4, F_b(0) = 1/2 -> D = 1/4
    weighted = weighted_ks_test(
        np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([3.0, 1.0]), np.array([1.0, 1.0])
    )
    assert weighted.statistic == pytest.approx(0.25)
    assert weighted.n_effective == pytest.approx((1.6, 2.0))


def test_ks_integer_weights_equal_repeated_events_statistic(rng):
    a, b = rng.normal(size=30), rng.normal(0.3, size=20)
    counts = rng.integers(1, 4, size=30)
    weighted = weighted_ks_test(a, b, counts.astype(float))
    assert weighted.statistic == pytest.approx(weighted_ks_test(np.repeat(a, counts), b).statistic)


def test_effective_sample_size():
    assert effective_sample_size(np.ones(17)) == 17.0
    assert effective_sample_size(np.array([2.0, 0.0, 0.0])) == 1.0


def test_confusion_matrix_weighted_row_normalised():
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 1, 0])
    weights = np.array([1.0, 2.0, 1.0, 0.5, 1.5, 4.0])
    raw = weighted_confusion_matrix(true, predicted, weights, n_classes=3, normalize=False)
    np.testing.assert_allclose(raw, [[2, 2, 0], [0, 2, 0], [4, 0, 0]])
    np.testing.assert_allclose(
        weighted_confusion_matrix(true, predicted, weights, n_classes=3),
        [[0.5, 0.5, 0], [0, 1, 0], [1, 0, 0]],
    )


def test_confusion_matrix_from_scores_and_empty_class():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [-1.0, 3.0, 2.0]])
    matrix = weighted_confusion_matrix(np.array([0, 1, 1]), scores)
    np.testing.assert_allclose(matrix[:2], [[1, 0, 0], [0, 1, 0]])
    assert np.all(np.isnan(matrix[2]))


def test_confusion_matrix_rejects_out_of_range_classes():
    with pytest.raises(InputError, match="indices below 2"):
        weighted_confusion_matrix(np.array([0, 2]), np.array([0, 1]), n_classes=2)
