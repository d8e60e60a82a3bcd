"""Uncertainty of a row and paired comparisons of rows, from the out-of-fold predictions.

Two questions, two tools:

* *How sure is this number?* A **subject-level (cluster) bootstrap**: subjects
  are drawn with replacement, every image of a drawn subject comes along (an
  image without a subject is a unit of its own), and the metric is recomputed
  on the pooled out-of-fold predictions of each resample. The 2.5th and 97.5th
  percentiles of those values are the 95 % interval. Resamples are expressed as
  integer weights per image, so one resample costs a few matrix products, not a
  Python loop.
* *Is the best row really better than this one?* The **corrected resampled
  t-test** of Nadeau & Bengio (2003), in the form of Bouckaert & Frank (2004)
  for repeated k-fold cross-validation: the per-fold differences of the two
  rows, with a variance inflated by ``n_test / n_train`` because the training
  sets of the folds overlap. scipy gives the t distribution; no maintained
  package implements this correction, hence this function.

Everything here is a plain function on NumPy arrays (integer-encoded labels,
``(n, n_classes)`` scores). ``docs/evaluation.md`` explains the assumptions.

Example
-------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1]); pred = np.array([0, 1, 1, 1, 0, 0])
>>> w = subject_resample_weights(np.array(["a", "a", "b", "b", "c", "c"]), 200, seed=0)
>>> w.shape
(200, 6)
>>> bool(np.all(w[:, 0] == w[:, 1]))   # images of one subject always travel together
True
>>> values = bootstrap_metric("balanced_accuracy", y, pred, None, w, n_classes=2, positive=1)
>>> lo, hi = percentile_interval(values)
>>> 0.0 <= lo <= hi <= 1.0
True
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_METRICS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_ALPHA",
    "subject_resample_weights",
    "bootstrap_metric",
    "percentile_interval",
    "TTestResult",
    "corrected_resampled_ttest",
]

#: Metrics the bootstrap recomputes (keys of :data:`leukbench.schema.METRICS`).
BOOTSTRAP_METRICS = ("balanced_accuracy", "roc_auc", "f1")
#: Resamples of the bootstrap by default.
DEFAULT_RESAMPLES = 1000
#: Level of the tie test and of the intervals (95 %).
DEFAULT_ALPHA = 0.05

_CHUNK = 250  # resamples per block: bounds memory at ~_CHUNK x n_images floats


def subject_resample_weights(groups: Sequence, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Integer weight of every image in each of ``n_resamples`` subject-level resamples.

    Parameters
    ----------
    groups : sequence
        Subject (or audit group) of each image; ``""`` or ``None`` makes the
        image a unit of its own.
    n_resamples : int
    seed : int

    Returns
    -------
    ndarray of shape (n_resamples, n_images)
        How many times each image is drawn: the draw count of its subject.
    """
    groups = np.asarray(["" if g is None else str(g) for g in groups], dtype=object)
    alone = groups == ""
    groups = groups.copy()
    groups[alone] = [f"\0image-{i}" for i in np.flatnonzero(alone)]
    units, index = np.unique(groups.astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=n_resamples)
    return counts[:, index].astype(np.float64)


def percentile_interval(values: np.ndarray, alpha: float = DEFAULT_ALPHA):
    """The ``(alpha/2, 1 - alpha/2)`` percentiles of bootstrap ``values`` (NaNs ignored).

    Example
    -------
    >>> percentile_interval(np.arange(101.0), alpha=0.1)
    (5.0, 95.0)
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _weighted_counts(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return weights @ mask.astype(np.float64)


def _balanced_accuracy(weights, y_true, y_pred, n_classes):
    recalls = []
    for c in range(n_classes):
        is_c = y_true == c
        support = _weighted_counts(weights, is_c)
        hit = _weighted_counts(weights, is_c & (y_pred == c))
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(support > 0, hit / support, np.nan))
    recalls = np.column_stack(recalls)
    present = np.isfinite(recalls)
    with np.errstate(invalid="ignore"):
        return np.where(present.any(axis=1), np.nansum(recalls, axis=1) / present.sum(axis=1), np.nan)


def _f1_of_class(weights, y_true, y_pred, c):
    tp = _weighted_counts(weights, (y_true == c) & (y_pred == c))
    fp = _weighted_counts(weights, (y_true != c) & (y_pred == c))
    fn = _weighted_counts(weights, (y_true == c) & (y_pred != c))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, 0.0)  # scikit-learn's zero_division=0


def _f1(weights, y_true, y_pred, n_classes, positive):
    if n_classes == 2:
        return _f1_of_class(weights, y_true, y_pred, positive)
    total = np.zeros(len(weights))
    support_sum = np.zeros(len(weights))
    for c in range(n_classes):  # weighted by support, as score_fold's average="weighted"
        support = _weighted_counts(weights, y_true == c)
        total += support * _f1_of_class(weights, y_true, y_pred, c)
        support_sum += support
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support_sum > 0, total / support_sum, 0.0)


def _binary_auc(weights, is_positive, score):
    """Weighted Mann-Whitney AUC per resample (ties count one half), NaN without both classes."""
    if not np.all(np.isfinite(score)):
        return np.full(len(weights), np.nan)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[:, order]
    pos = is_positive[order].astype(np.float64)
    p = np.add.reduceat(w * pos, starts, axis=1)
    n = np.add.reduceat(w * (1.0 - pos), starts, axis=1)
    below = np.cumsum(n, axis=1) - n
    numerator = (p * (below + 0.5 * n)).sum(axis=1)
    n_pos, n_neg = p.sum(axis=1), n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), numerator / (n_pos * n_neg), np.nan)


def _roc_auc(weights, y_true, scores, n_classes, positive):
    if scores is None:
        return np.full(len(weights), np.nan)
    if n_classes == 2:
        return _binary_auc(weights, y_true == positive, scores[:, positive])
    aucs = np.column_stack([_binary_auc(weights, y_true == c, scores[:, c]) for c in range(n_classes)])
    present = np.isfinite(aucs)  # macro mean over the classes a resample holds, as score_fold does
    with np.errstate(invalid="ignore"):
        return np.where(present.any(axis=1), np.nansum(aucs, axis=1) / present.sum(axis=1), np.nan)


def bootstrap_metric(metric: str, y_true: np.ndarray, y_pred: np.ndarray, scores: Optional[np.ndarray],
                     weights: np.ndarray, *, n_classes: int, positive: Optional[int]) -> np.ndarray:
    """Value of ``metric`` on each resample given by ``weights``.

    Parameters
    ----------
    metric : {"balanced_accuracy", "roc_auc", "f1"}
        Defined as :func:`leukbench.evaluation.score_fold` defines it (binary
        F1 of the positive class, support-weighted F1 for more classes; AUC from
        scores, macro one-vs-rest for more classes).
    y_true, y_pred : ndarray of int, shape (n,)
    scores : ndarray of shape (n, n_classes) or None
    weights : ndarray of shape (n_resamples, n)
        From :func:`subject_resample_weights` (a row of ones is the plain metric).
    n_classes : int
    positive : int or None
        Encoded positive class of a binary problem.

    Returns
    -------
    ndarray of shape (n_resamples,)
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = []
    for start in range(0, len(weights), _CHUNK):
        w = weights[start:start + _CHUNK]
        if metric == "balanced_accuracy":
            out.append(_balanced_accuracy(w, y_true, y_pred, n_classes))
        elif metric == "f1":
            out.append(_f1(w, y_true, y_pred, n_classes, positive))
        elif metric == "roc_auc":
            out.append(_roc_auc(w, y_true, scores, n_classes, positive))
        else:
            raise ValueError(f"no bootstrap for metric {metric!r}; use one of {', '.join(BOOTSTRAP_METRICS)}")
    return np.concatenate(out) if out else np.empty(0)


class TTestResult(NamedTuple):
    """Outcome of :func:`corrected_resampled_ttest`."""

    mean_difference: float
    t: float
    p_value: float
    n_folds: int


def corrected_resampled_ttest(differences: Sequence[float], n_train: float, n_test: float) -> TTestResult:
    """Nadeau & Bengio's corrected resampled t-test on per-fold differences of two rows.

    ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d))`` with ``J`` folds
    (``k * repeats``) and ``J - 1`` degrees of freedom; the two-sided p-value
    comes from scipy's t distribution. Identical rows (all differences 0) give
    ``p = 1``; a constant non-zero difference gives ``p = 0``.

    Parameters
    ----------
    differences : sequence of float
        Metric of one row minus the other's, fold by fold (same folds).
    n_train, n_test : float
        Mean numbers of training and test images per fold.

    Example
    -------
    >>> r = corrected_resampled_ttest([0.02, 0.03, 0.01, 0.02, 0.04], n_train=800, n_test=200)
    >>> round(r.t, 3), r.p_value < 0.05
    (3.138, True)
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2 or not n_train > 0:
        return TTestResult(float(d.mean()) if j else float("nan"), float("nan"), float("nan"), j)
    mean, var = float(d.mean()), float(d.var(ddof=1))
    if var == 0.0:
        return TTestResult(mean, float("nan") if mean == 0 else math.copysign(math.inf, mean),
                           1.0 if mean == 0 else 0.0, j)
    t = mean / math.sqrt((1.0 / j + n_test / n_train) * var)
    return TTestResult(mean, float(t), float(2 * stats.t.sf(abs(t), df=j - 1)), j)
