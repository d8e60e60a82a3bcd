"""Scores of one test fold, from integer-encoded labels and per-class scores.

ROC AUC is computed from scores (``predict_proba``, else ``decision_function``),
never from hard labels, by one definition, :func:`roc_auc`: the AUC of the
positive column for two classes, the macro mean of one-vs-rest AUCs over the
classes present otherwise. scikit-learn is imported on use only.

Example
-------
>>> import numpy as np
>>> y_true = np.array([0, 0, 1, 1])
>>> scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
>>> roc_auc(y_true, scores, positive=1)
0.75
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, Optional

import numpy as np

from ..schema import METRICS

__all__ = ["METRICS", "binary_auc", "confusion_matrix", "roc_auc", "roc_curve_points", "score_fold"]


def binary_auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    """AUC of 0/1 labels from one score column; NaN for one class or a non-finite score.

    The one AUC computation of leukbench: :func:`roc_auc` (the table) and the
    ROC curves of the report both use it.

    Example
    -------
    >>> binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.3, 0.8]))
    0.75
    """
    from sklearn.metrics import roc_auc_score

    y_bin, score = np.asarray(y_bin), np.asarray(score, dtype=float)
    if len(y_bin) == 0 or y_bin.min() == y_bin.max() or not np.all(np.isfinite(score)):
        return float("nan")
    return float(roc_auc_score(y_bin, score))


def confusion_matrix(y_true, y_pred, classes) -> np.ndarray:
    """Counts of (true class, predicted class) pairs, in the order of ``classes``.

    Labels that are not in ``classes`` are left out.

    Example
    -------
    >>> confusion_matrix(["a", "a", "b"], ["a", "b", "b"], ["a", "b"]).tolist()
    [[1, 1], [0, 1]]
    """
    index = {str(c): i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(y_true, y_pred):
        i, j = index.get(str(t)), index.get(str(p))
        if i is not None and j is not None:
            counts[i, j] += 1
    return counts


def roc_curve_points(y_bin: np.ndarray, score: np.ndarray):
    """False- and true-positive rates of the ROC curve of 0/1 labels from one score column.

    Example
    -------
    >>> fpr, tpr = roc_curve_points(np.array([0, 1]), np.array([0.2, 0.9]))
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y_bin), np.asarray(score, dtype=float))
    return fpr, tpr


def roc_auc(y_true: np.ndarray, scores: np.ndarray, positive: Optional[int] = None) -> float:
    """ROC AUC of encoded labels from an ``(n, n_classes)`` score array.

    Parameters
    ----------
    y_true : ndarray of int
        Encoded true classes (column indices of ``scores``).
    scores : ndarray of shape (n, n_classes)
        Probability or decision score per class.
    positive : int, optional
        Encoded positive class of a binary problem (default: 1).

    Returns
    -------
    float
        Two classes: the AUC of the positive column. More: the macro mean of
        the one-vs-rest AUCs of the classes present in ``y_true``. NaN when
        ``y_true`` has a single class or the scores are not finite.

    Example
    -------
    >>> y = np.array([0, 1, 2, 0, 1, 2])
    >>> roc_auc(y, np.eye(3)[y])  # a perfect ranking of every class
    1.0
    >>> roc_auc(np.zeros(3, dtype=int), np.full((3, 2), 0.5))  # one class: undefined
    nan
    """
    y_true = np.asarray(y_true)
    if scores.shape[1] == 2:
        positive = 1 if positive is None else positive
        return binary_auc((y_true == positive).astype(int), scores[:, positive])
    aucs = [binary_auc((y_true == c).astype(int), scores[:, c]) for c in np.unique(y_true)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def score_fold(
    y_true: np.ndarray, y_pred: np.ndarray, scores: Optional[np.ndarray], n_classes: int,
    positive: Optional[int],
) -> Dict[str, float]:
    """Metrics of one test fold from integer-encoded labels and scores.

    Parameters
    ----------
    y_true, y_pred : ndarray of int
        Encoded true and predicted classes.
    scores : ndarray of shape (n, n_classes) or None
        Probability or decision score per class.
    n_classes : int
    positive : int or None
        Encoded positive class for binary problems.

    Returns
    -------
    dict
        ``accuracy, balanced_accuracy, roc_auc, f1, precision, recall, mcc``.
        F1, precision and recall are of the positive class for two classes,
        weighted over the classes otherwise. ROC AUC is :func:`roc_auc` of
        ``scores``; NaN when the fold has a single class or no scores exist.

    Example
    -------
    >>> y_true = np.array([0, 0, 1, 1])
    >>> m = score_fold(y_true, np.array([0, 1, 1, 1]), None, 2, positive=1)
    >>> m["accuracy"], m["recall"], m["roc_auc"]
    (0.75, 1.0, nan)
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        matthews_corrcoef,
        precision_score,
        recall_score,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
        }
        if n_classes == 2:
            kw = dict(average="binary", pos_label=positive, zero_division=0)
        else:
            kw = dict(average="weighted", labels=np.arange(n_classes), zero_division=0)
        out["f1"] = float(f1_score(y_true, y_pred, **kw))
        out["precision"] = float(precision_score(y_true, y_pred, **kw))
        out["recall"] = float(recall_score(y_true, y_pred, **kw))
    out["roc_auc"] = roc_auc(y_true, scores, positive) if scores is not None else float("nan")
    return {m: out[m] for m in METRICS}


def softmax(d: np.ndarray) -> np.ndarray:
    """Row-wise softmax of decision scores (each row sums to 1)."""
    d = d - d.max(axis=1, keepdims=True)
    e = np.exp(d)
    return e / e.sum(axis=1, keepdims=True)


def scores_of(est, X: np.ndarray, n_classes: int) -> Optional[np.ndarray]:
    """Probabilities, else decision scores, as an ``(n, n_classes)`` array.

    Binary decision scores ``d`` become ``[-d, d]``; multiclass decision
    scores are softmax-normalised so that one-vs-rest AUCs compare like
    probabilities. ``None`` when the model has neither.
    """
    if hasattr(est, "predict_proba"):
        try:
            return np.asarray(est.predict_proba(X), dtype=np.float64)
        except Exception:  # noqa: BLE001 - some models advertise it but cannot
            pass
    if hasattr(est, "decision_function"):
        d = np.asarray(est.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            return np.column_stack([-d, d])
        return softmax(d)
    return None
