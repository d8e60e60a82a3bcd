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
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_METRICS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_ALPHA",
    "Resamples",
    "subject_resamples",
    "subject_resample_weights",
    "bootstrap_metric",
    "bootstrap_metrics",
    "weighted_confusion",
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
_MAX_PAIR_TABLE = 4_000_000  # units x units above which the AUC works from image weights


class Resamples(NamedTuple):
    """Subject-level resamples: how often each unit is drawn, and the unit of each image.

    A unit is a subject (or audit group); an image without one is a unit of
    its own. Metrics are computed from per-unit sums, so a resample costs
    ``O(units)``, not ``O(images)``.
    """

    counts: np.ndarray  # (n_resamples, n_units) draws of each unit
    unit: np.ndarray  # (n_images,) unit of each image

    def image_weights(self) -> np.ndarray:
        """``(n_resamples, n_images)``: how many times each image is drawn."""
        return self.counts[:, self.unit]

    def take(self, rows: np.ndarray) -> "Resamples":
        """The same resamples, restricted to the images ``rows`` (e.g. one test fold)."""
        return Resamples(self.counts, self.unit[rows])


def subject_resamples(groups: Sequence, n_resamples: int, seed: int = 0) -> Resamples:
    """Draw the units of ``groups`` with replacement, ``n_resamples`` times (seeded).

    Parameters
    ----------
    groups : sequence
        Subject (or audit group) of each image; ``""`` or ``None`` makes the
        image a unit of its own.
    n_resamples : int
    seed : int
    """
    groups = np.asarray(["" if g is None else str(g) for g in groups], dtype=object)
    alone = groups == ""
    groups = groups.copy()
    groups[alone] = [f"\0image-{i}" for i in np.flatnonzero(alone)]
    units, index = np.unique(groups.astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=n_resamples)
    return Resamples(counts.astype(np.float64), index.astype(np.int64))


def subject_resample_weights(groups: Sequence, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Integer weight of every image in each of ``n_resamples`` subject-level resamples.

    Returns
    -------
    ndarray of shape (n_resamples, n_images)
        How many times each image is drawn: the draw count of its subject
        (see :func:`subject_resamples` for the parameters).
    """
    return subject_resamples(groups, n_resamples, seed).image_weights()


def _unit_sums(unit: np.ndarray, n_units: int, rows: np.ndarray) -> np.ndarray:
    """Per-unit sums of the rows of ``rows`` (``(n_images, m)`` -> ``(n_units, m)``)."""
    out = np.zeros((n_units, rows.shape[1]))
    np.add.at(out, unit, rows)
    return out


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


def weighted_confusion(y_true: np.ndarray, y_pred: np.ndarray, resamples: Resamples, n_classes: int):
    """Confusion matrix and class support of every resample, from per-unit counts.

    Returns ``(matrix, support)`` of shapes ``(n_resamples, n_classes,
    n_classes)`` and ``(n_resamples, n_classes)``; a prediction that is no
    class is counted in the support only (it lowers recall like any error).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    width = n_classes + 1  # the last column: a prediction that is no class
    column = np.where((y_pred >= 0) & (y_pred < n_classes), y_pred, n_classes)
    indicator = np.zeros((len(y_true), n_classes * width))
    indicator[np.arange(len(y_true)), y_true * width + column] = 1
    counts = resamples.counts @ _unit_sums(resamples.unit, resamples.counts.shape[1], indicator)
    counts = counts.reshape(len(resamples.counts), n_classes, width)
    return counts[:, :, :n_classes], counts.sum(axis=2)


def _balanced_accuracy(matrix, support):
    hits = np.diagonal(matrix, axis1=1, axis2=2)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / support, 0.0)
        return np.where(present.any(axis=1), recall.sum(axis=1) / present.sum(axis=1), np.nan)


def _f1_per_class(matrix, support):
    tp = np.diagonal(matrix, axis1=1, axis2=2)
    predicted = matrix.sum(axis=1)
    denom = predicted + support  # 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, 0.0)  # scikit-learn's zero_division=0


def _f1(matrix, support, n_classes, positive):
    per_class = _f1_per_class(matrix, support)
    if n_classes == 2:
        return per_class[:, positive]
    total = support.sum(axis=1)  # weighted by support, as score_fold's average="weighted"
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (per_class * support).sum(axis=1) / total, 0.0)


def _auc_by_images(weights, is_positive, score):
    """Weighted Mann-Whitney AUC per resample from image weights (ties count one half)."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[:, order]
    pos = is_positive[order].astype(w.dtype)
    p = np.add.reduceat(w * pos, starts, axis=1)
    n = np.add.reduceat(w, starts, axis=1) - p
    below = np.cumsum(n, axis=1) - n
    return (p * (below + 0.5 * n)).sum(axis=1), p.sum(axis=1), n.sum(axis=1)


def _auc_by_units(resamples: Resamples, is_positive, score):
    """The same from a units x units table of pairs ranked right (cheap when units are few)."""
    n_units = resamples.counts.shape[1]
    pos_unit, pos_score = resamples.unit[is_positive], score[is_positive]
    pairs = np.zeros((n_units, n_units))  # [u, v]: positives of u ranked above negatives of v
    for v in np.unique(resamples.unit[~is_positive]):
        negatives = np.sort(score[~is_positive & (resamples.unit == v)])
        below = np.searchsorted(negatives, pos_score, "left")
        ties = np.searchsorted(negatives, pos_score, "right") - below
        pairs[:, v] = np.bincount(pos_unit, weights=below + 0.5 * ties, minlength=n_units)
    c = resamples.counts
    numerator = ((c @ pairs) * c).sum(axis=1)
    n_pos = c @ np.bincount(pos_unit, minlength=n_units)
    n_neg = c @ np.bincount(resamples.unit[~is_positive], minlength=n_units)
    return numerator, n_pos, n_neg


def _binary_auc(resamples: Resamples, is_positive, score):
    """Weighted AUC per resample, NaN without both classes or with a non-finite score."""
    if not np.all(np.isfinite(score)):
        return np.full(len(resamples.counts), np.nan)
    n_units = resamples.counts.shape[1]
    if n_units * n_units <= _MAX_PAIR_TABLE and n_units < len(score):
        numerator, n_pos, n_neg = _auc_by_units(resamples, is_positive, score)
    else:
        numerator, n_pos, n_neg = _auc_by_images(resamples.image_weights(), is_positive, score)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), numerator / (n_pos * n_neg), np.nan)


def _roc_auc(resamples, y_true, scores, n_classes, positive):
    if scores is None:
        return np.full(len(resamples.counts), np.nan)
    if n_classes == 2:
        return _binary_auc(resamples, y_true == positive, scores[:, positive])
    aucs = np.column_stack([_binary_auc(resamples, y_true == c, scores[:, c]) for c in range(n_classes)])
    present = np.isfinite(aucs)  # macro mean over the classes a resample holds, as score_fold does
    with np.errstate(invalid="ignore"):
        return np.where(present.any(axis=1), np.nansum(aucs, axis=1) / present.sum(axis=1), np.nan)


def bootstrap_metrics(metrics: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, scores: Optional[np.ndarray],
                      weights: np.ndarray, *, n_classes: int, positive: Optional[int]) -> Dict[str, np.ndarray]:
    """Each of ``metrics`` on each resample given by ``weights`` (one confusion matrix shared).

    Parameters
    ----------
    metrics : sequence of {"balanced_accuracy", "roc_auc", "f1"}
        Defined as :func:`leukbench.evaluation.score_fold` defines them (binary
        F1 of the positive class, support-weighted F1 for more classes; AUC from
        scores, macro one-vs-rest for more classes).
    y_true, y_pred : ndarray of int, shape (n,)
    scores : ndarray of shape (n, n_classes) or None
    weights : Resamples or ndarray of shape (n_resamples, n)
        From :func:`subject_resamples` (restricted to these images with
        :meth:`Resamples.take`), or plain image weights such as
        :func:`subject_resample_weights` gives (a row of ones is the plain metric).
    n_classes : int
    positive : int or None
        Encoded positive class of a binary problem.

    Returns
    -------
    dict metric -> ndarray of shape (n_resamples,)
    """
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"no bootstrap for metric {unknown[0]!r}; use one of {', '.join(BOOTSTRAP_METRICS)}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not isinstance(weights, Resamples):
        weights = Resamples(np.asarray(weights, dtype=np.float64), np.arange(len(y_true)))
    out: Dict[str, List[np.ndarray]] = {m: [] for m in metrics}
    for start in range(0, len(weights.counts), _CHUNK):
        w = Resamples(weights.counts[start:start + _CHUNK], weights.unit)
        if "balanced_accuracy" in out or "f1" in out:
            matrix, support = weighted_confusion(y_true, y_pred, w, n_classes)
        if "balanced_accuracy" in out:
            out["balanced_accuracy"].append(_balanced_accuracy(matrix, support))
        if "f1" in out:
            out["f1"].append(_f1(matrix, support, n_classes, positive))
        if "roc_auc" in out:
            out["roc_auc"].append(_roc_auc(w, y_true, scores, n_classes, positive))
    return {m: np.concatenate(v) if v else np.empty(0) for m, v in out.items()}


def bootstrap_metric(metric: str, y_true: np.ndarray, y_pred: np.ndarray, scores: Optional[np.ndarray],
                     weights: np.ndarray, *, n_classes: int, positive: Optional[int]) -> np.ndarray:
    """Value of one ``metric`` on each resample (see :func:`bootstrap_metrics`)."""
    return bootstrap_metrics([metric], y_true, y_pred, scores, weights, n_classes=n_classes,
                             positive=positive)[metric]


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
