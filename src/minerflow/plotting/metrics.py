"""Event-weighted classifier metrics: ROC curve and AUC, two-sample KS test, confusion matrix.

Physics samples carry per-event weights, some of them negative (NLO generators, background
subtraction). Here every weight enters with its sign: a weighted sum is then an unbiased
estimate of the corresponding integral over the true distribution, so the ROC curve, the AUC
and the empirical CDFs are unbiased estimates too. The price is that a curve or an empirical
CDF can step backwards where negative weights sit; nothing is clipped. Each class must have a
positive total weight. Scores may take any real values (no [0, 1] assumption).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from minerflow.errors import InputError

__all__ = [
    "KSResult",
    "RocCurve",
    "effective_sample_size",
    "roc_curve",
    "weighted_confusion_matrix",
    "weighted_ks_test",
]


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve from the highest threshold down: FPR and TPR start at 0 and end at 1."""

    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    thresholds: np.ndarray  # event counted as positive when score >= threshold; first is +inf
    auc: float


@dataclass(frozen=True)
class KSResult:
    """Weighted two-sample Kolmogorov–Smirnov statistic, its p-value, the sizes used."""

    statistic: float
    p_value: float
    n_effective: tuple[float, float]


def _weights(values: np.ndarray, weights: np.ndarray | None, name: str) -> np.ndarray:
    if weights is None:
        return np.ones(values.shape[0])
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != values.shape[:1]:
        raise InputError(name, "weights", f"shape {values.shape[:1]}, got {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise InputError(name, "weights", "finite values")
    return weights


def _finite_1d(values: np.ndarray, name: str, key: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(name, key, f"a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise InputError(name, key, "finite values")
    return values


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective number of events ``(Σw)² / Σw²``; equals n for unit weights.

    >>> effective_sample_size(np.array([1.0, 1.0, 2.0]))
    2.6666666666666665
    """
    weights = np.asarray(weights, dtype=np.float64)
    return float(weights.sum() ** 2 / np.sum(weights**2))


def roc_curve(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> RocCurve:
    """Event-weighted ROC curve of "score ≥ threshold ⇒ positive" and its area.

    TPR(t) = Σ_{pos, s≥t} w / Σ_pos w and FPR(t) likewise for the negatives, with one point
    per distinct score. The AUC is the trapezoid area under that curve, which equals the
    weighted Mann–Whitney statistic
    ``Σ_{i∈pos} Σ_{j∈neg} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W_pos W_neg)``
    (Hanley & McNeil 1982, Radiology 143:29), i.e. the probability that a random positive
    scores above a random negative. Labels are truthy for the positive class.

    >>> round(roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])).auc, 4)
    0.75
    """
    scores = _finite_1d(scores, "roc_curve", "scores")
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise InputError("roc_curve", "labels", f"shape {scores.shape}, got {labels.shape}")
    positive = labels.astype(bool)
    weights = _weights(scores, weights, "roc_curve")
    w_pos, w_neg = weights[positive].sum(), weights[~positive].sum()
    if not (w_pos > 0.0 and w_neg > 0.0):
        raise InputError("roc_curve", "labels", "both classes with a positive total weight")
    distinct, group = np.unique(-scores, return_inverse=True)  # highest score first
    pos_per_group = np.bincount(group, weights=np.where(positive, weights, 0.0))
    neg_per_group = np.bincount(group, weights=np.where(positive, 0.0, weights))
    tpr = np.concatenate([[0.0], np.cumsum(pos_per_group) / w_pos])
    fpr = np.concatenate([[0.0], np.cumsum(neg_per_group) / w_neg])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    thresholds = np.concatenate([[np.inf], -distinct])
    return RocCurve(fpr, tpr, thresholds, auc)


def weighted_ks_test(
    sample_a: np.ndarray,
    sample_b: np.ndarray,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> KSResult:
    """Two-sample KS test with event weights (used for train-vs-test overtraining checks).

    Statistic ``D = sup_x |F_a(x) − F_b(x)|`` with weighted empirical CDFs
    ``F(x) = Σ_{x_i ≤ x} w_i / Σ w_i``. The p-value uses the distribution of D for two
    unweighted samples (``scipy.stats.kstwo`` at ``n = round(n_a n_b / (n_a + n_b))``, as
    ``scipy.stats.ks_2samp(method="asymp")`` does) with Kish's effective sizes
    ``n = (Σw)²/Σw²`` in place of the event counts. For unit weights it reproduces scipy's
    asymptotic test exactly; for weighted samples it is an approximation that is good when
    the weights vary little (Kish, *Survey Sampling*, 1965, for the effective size).
    """
    a = _finite_1d(sample_a, "weighted_ks_test", "sample_a")
    b = _finite_1d(sample_b, "weighted_ks_test", "sample_b")
    wa, wb = _weights(a, weights_a, "sample_a"), _weights(b, weights_b, "sample_b")
    if not (wa.sum() > 0.0 and wb.sum() > 0.0):
        raise InputError("weighted_ks_test", "weights", "a positive total weight per sample")
    points = np.union1d(a, b)
    order_a, order_b = np.argsort(a, kind="stable"), np.argsort(b, kind="stable")
    cum_a = np.concatenate([[0.0], np.cumsum(wa[order_a])]) / wa.sum()
    cum_b = np.concatenate([[0.0], np.cumsum(wb[order_b])]) / wb.sum()
    cdf_a = cum_a[np.searchsorted(a[order_a], points, side="right")]
    cdf_b = cum_b[np.searchsorted(b[order_b], points, side="right")]
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    n_a, n_b = effective_sample_size(wa), effective_sample_size(wb)
    n = max(round(n_a * n_b / (n_a + n_b)), 1)
    p_value = float(np.clip(stats.kstwo.sf(statistic, n), 0.0, 1.0))
    return KSResult(statistic, p_value, (n_a, n_b))


def weighted_confusion_matrix(
    true_classes: np.ndarray,
    predicted: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    n_classes: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Event-weighted confusion matrix ``M[true, predicted]``, rows normalised by default.

    ``predicted`` holds class indices (n,) or per-class scores (n, k), whose argmax is the
    prediction. Row normalisation divides by the row's total weight, so ``M[i, j]`` is the
    weighted fraction of class-i events predicted as j; a class with zero total weight gives
    a row of NaN.

    >>> weighted_confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1])).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    true_classes = np.asarray(true_classes)
    predicted = np.asarray(predicted)
    if predicted.ndim == 2:
        n_classes = n_classes or predicted.shape[1]
        predicted = np.argmax(predicted, axis=1)
    if true_classes.ndim != 1 or predicted.shape != true_classes.shape:
        raise InputError(
            "weighted_confusion_matrix",
            "predicted",
            f"{true_classes.shape[0]} predictions, got shape {predicted.shape}",
        )
    if true_classes.size and min(true_classes.min(), predicted.min()) < 0:
        raise InputError("weighted_confusion_matrix", "classes", "non-negative class indices")
    weights = _weights(true_classes, weights, "weighted_confusion_matrix")
    k = n_classes or int(max(true_classes.max(initial=0), predicted.max(initial=0)) + 1)
    flat = true_classes.astype(np.int64) * k + predicted.astype(np.int64)
    if flat.size and flat.max() >= k * k:
        raise InputError("weighted_confusion_matrix", "classes", f"indices below {k}")
    matrix = np.bincount(flat, weights=weights, minlength=k * k).reshape(k, k)
    if not normalize:
        return matrix
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals != 0.0, matrix / totals, np.nan)
