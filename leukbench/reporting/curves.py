"""ROC points and confusion counts of one table row, from the stored out-of-fold predictions.

Both read only ``result.predictions`` (one row per test image per fold, with
``y_true``, ``y_pred`` and ``score_<class>`` columns), so that they can be
recomputed from ``predictions.csv`` alone.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .._validation import invalid
from ..schema import default_positive_label
from ._result import result_frame, result_table

__all__ = ["roc_points", "confusion_counts", "row_predictions", "row_classes", "positive_class"]


def _resolve_row(result, row) -> Tuple[str, str]:
    """``(feature set, model)`` of a table position, a table row or such a tuple."""
    if isinstance(row, (int, np.integer)):
        r = result_table(result).iloc[int(row)]
        return str(r["Feature Set"]), str(r["Model"])
    if isinstance(row, tuple) and len(row) == 2:
        return str(row[0]), str(row[1])
    if isinstance(row, (pd.Series, dict)):
        return str(row["Feature Set"]), str(row["Model"])
    raise invalid("row", "must be a table position, a table row or a (feature_set, model) tuple")


def row_predictions(result, row) -> Tuple[str, str, pd.DataFrame]:
    """Feature set, model and the out-of-fold predictions of one table row."""
    feature_set, model = _resolve_row(result, row)
    p = result_frame(result, "predictions")
    if p.empty:
        return feature_set, model, p
    p = p[(p["feature_set"].astype(str) == feature_set) & (p["classifier"].astype(str) == model)]
    return feature_set, model, p.reset_index(drop=True)


def row_classes(result, predictions: Optional[pd.DataFrame] = None) -> List[str]:
    """``result.classes``, then any other label seen in ``predictions`` (sorted)."""
    classes = [str(c) for c in (getattr(result, "classes", None) or [])]
    if predictions is not None and not predictions.empty:
        labels = set(predictions["y_true"].astype(str)) | set(predictions["y_pred"].astype(str))
        seen = sorted(labels)
        classes += [c for c in seen if c not in classes and c not in ("nan", "None")]
    return classes


def positive_class(result, classes: Sequence[str]) -> Optional[str]:
    """``result.positive_label`` when it is one of ``classes``, else the default of two classes.

    The default is :func:`leukbench.schema.default_positive_label`, the
    evaluation's own (``"all"`` for all/hem, otherwise the second class).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> positive_class(SimpleNamespace(positive_label=None), ["benign", "malignant"])
    'malignant'
    >>> positive_class(SimpleNamespace(positive_label="hem"), ["all", "hem"])
    'hem'
    """
    pos = getattr(result, "positive_label", None)
    if pos is not None and str(pos) in classes:
        return str(pos)
    return default_positive_label(classes)


def _binary_scores(p: pd.DataFrame, classes: Sequence[str], pos: str) -> Optional[np.ndarray]:
    """Scores of the positive class (minus the other class's when only that one is stored)."""
    col = f"score_{pos}"
    if col in p.columns:
        return p[col].to_numpy(dtype=float)
    others = [c for c in classes if c != pos]
    if len(others) == 1 and f"score_{others[0]}" in p.columns:
        return -p[f"score_{others[0]}"].to_numpy(dtype=float)
    return None


def _scored(p: pd.DataFrame, classes: Sequence[str], pos: Optional[str]):
    """Truth and score matrices (one column per curve class) or ``None`` without scores.

    Binary: one column, the positive class. Multiclass: one column per class
    (one-vs-rest), to be pooled into the micro-average curve.
    """
    from sklearn.preprocessing import label_binarize

    y_true = p["y_true"].astype(str).to_numpy()
    if len(classes) == 2:
        scores = _binary_scores(p, classes, pos)
        if scores is None:
            return None
        return (y_true == pos).astype(int)[:, None], scores[:, None]
    cols = [f"score_{c}" for c in classes]
    if not all(c in p.columns for c in cols):
        return None
    return label_binarize(y_true, classes=list(classes)), p[cols].to_numpy(dtype=float)


def _split_indices(p: pd.DataFrame) -> Optional[List[np.ndarray]]:
    """Row positions of each test split (repeat × fold); ``None`` without split columns."""
    group_cols = [c for c in ("repeat", "fold") if c in p.columns]
    if not group_cols:
        return None
    return [np.asarray(idx) for _, idx in p.groupby(group_cols, sort=True).indices.items()]


def _empty_points(feature_set: str, model: str, classes: Sequence[str]) -> Dict[str, Any]:
    return {
        "feature_set": feature_set,
        "model": model,
        "kind": "binary" if len(classes) == 2 else "micro-ovr",
        "positive_label": None,
        "fpr": np.array([]),
        "tpr": np.array([]),
        "auc": math.nan,
        "n_splits": 0,
        "fold_aucs": np.array([]),
        "auc_mean": math.nan,
        "auc_std": math.nan,
        "n": 0,
    }


def _binary_fold_aucs(truth: np.ndarray, scores: np.ndarray, keep: np.ndarray,
                      splits: List[np.ndarray]) -> List[float]:
    """AUC of each test split that holds both classes (as the table computes it)."""
    from ..evaluation.metrics import binary_auc

    aucs = []
    for idx in splits:
        idx = idx[keep[idx]]
        t = truth[idx]
        if 0 < t.sum() < len(t):
            aucs.append(binary_auc(t, scores[idx]))
    return aucs


def roc_points(result, row) -> Dict[str, Any]:
    """ROC curve and AUCs of one table row, computed from the stored scores.

    Binary problems use the score of the positive class (``result.
    positive_label``, else :func:`leukbench.schema.default_positive_label`);
    multiclass problems the micro-average one-vs-rest curve over all
    ``score_<class>`` columns.  The curve pools the predictions of all folds
    (and repeats); for binary problems the AUC is also computed per fold.
    The table's ROC AUC of a multiclass row is a macro average that the
    evaluation computes; it is not recomputed here.

    Parameters
    ----------
    result : comparison result
    row : int, table row (Series/dict) or (feature_set, model) tuple

    Returns
    -------
    dict
        ``feature_set``, ``model``, ``kind`` ("binary" or "micro-ovr"),
        ``positive_label``, ``fpr``, ``tpr`` (arrays), ``auc`` (pooled),
        ``n_splits`` (test splits, repeat × fold, that hold two classes or
        more), ``fold_aucs`` (binary: one per such split), ``auc_mean``,
        ``auc_std`` (binary: over those splits), ``n``.  Arrays are empty and
        AUCs NaN when no usable scores exist (and for ``fold_aucs``,
        ``auc_mean``, ``auc_std`` of a multiclass row).

    Example
    -------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "fold": [0, 0, 1, 1],
    ...                       "y_true": ["a", "b", "a", "b"], "y_pred": ["a", "b", "b", "b"],
    ...                       "score_b": [0.1, 0.9, 0.4, 0.8]})
    >>> r = SimpleNamespace(predictions=preds, classes=["a", "b"], positive_label="b")
    >>> pts = roc_points(r, ("f", "c"))
    >>> pts["kind"], pts["auc"], pts["n_splits"], pts["auc_mean"]
    ('binary', 1.0, 2, 1.0)
    """
    from ..evaluation.metrics import binary_auc, roc_curve_points

    feature_set, model, p = row_predictions(result, row)
    classes = row_classes(result, p)
    out = _empty_points(feature_set, model, classes)
    if p.empty or len(classes) < 2:
        return out
    binary = len(classes) == 2
    pos = positive_class(result, classes) if binary else None
    out["positive_label"] = pos
    scored = _scored(p, classes, pos)
    if scored is None:
        return out
    truth, scores = scored
    keep = np.isfinite(scores).all(axis=1)
    y_true = p["y_true"].astype(str).to_numpy()
    out["n"] = int(keep.sum())
    if len(set(y_true[keep])) < 2:  # no images, or a single class: no curve
        return out
    flat_truth, flat_scores = truth[keep].ravel(), scores[keep].ravel()
    out["fpr"], out["tpr"] = roc_curve_points(flat_truth, flat_scores)
    out["auc"] = binary_auc(flat_truth, flat_scores)
    splits = _split_indices(p)
    if splits is None:  # one test split: the pooled curve is the split's
        out["n_splits"] = 1
        aucs = [out["auc"]] if binary else []
    else:
        if binary:
            aucs = _binary_fold_aucs(truth[:, 0], scores[:, 0], keep, splits)
            out["n_splits"] = len(aucs)
        else:  # the table's macro AUC per split is the evaluation's; only count the splits
            aucs = []
            out["n_splits"] = sum(len(set(y_true[idx[keep[idx]]])) >= 2 for idx in splits)
    out["fold_aucs"] = np.asarray(aucs, dtype=float)
    if aucs:
        out["auc_mean"] = float(np.mean(aucs))
        out["auc_std"] = float(np.std(aucs, ddof=0)) if len(aucs) > 1 else 0.0
    return out


def confusion_counts(result, row) -> pd.DataFrame:
    """Confusion matrix counts of one table row, pooled over folds and repeats.

    Returns
    -------
    DataFrame
        Index: true class, columns: predicted class, in ``result.classes``
        order (other labels seen in the predictions appended).

    Example
    -------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c",
    ...                       "y_true": ["a", "a", "b"], "y_pred": ["a", "b", "b"]})
    >>> m = confusion_counts(SimpleNamespace(predictions=preds, classes=["a", "b"]), ("f", "c"))
    >>> m.to_numpy().tolist()
    [[1, 1], [0, 1]]
    """
    from ..evaluation.metrics import confusion_matrix

    _, _, p = row_predictions(result, row)
    classes = row_classes(result, p)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    if not p.empty:
        p = p.dropna(subset=["y_true", "y_pred"])
        counts = confusion_matrix(p["y_true"].astype(str), p["y_pred"].astype(str), classes)
    return pd.DataFrame(counts, index=pd.Index(classes, name="true"),
                        columns=pd.Index(classes, name="predicted"))
