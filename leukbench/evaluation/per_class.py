"""Per-class precision, recall and F1 of each row, from the out-of-fold predictions.

The results table gives one number per metric (binary: the positive class;
multiclass: weighted over the classes). This module gives scikit-learn's
"classification report" of every row instead, in the table's own terms:
each class's precision, recall and F1 are computed **per test fold** (every
fold of every repeat) by ``precision_recall_fscore_support`` with
``zero_division=0``, then summarised as the mean and the population standard
deviation (``ddof=0``) over the folds, as the table summarises its metrics.
A fold without a true image of a class does not count for that class (its
recall is undefined there); ``Folds`` says how many folds did. ``Support``
is the number of test images of the class over all folds and repeats (each
image counts once per repeat, as in the pooled confusion matrices).

Everything here is a plain function of the predictions frame (columns
``feature_set``, ``classifier``, ``repeat``, ``fold``, ``y_true``, ``y_pred``;
``repeat``/``fold`` may be absent for a single test split).

Example
-------
>>> import pandas as pd
>>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "repeat": 0,
...                       "fold": [0, 0, 0, 1, 1, 1],
...                       "y_true": ["a", "a", "b", "a", "b", "b"],
...                       "y_pred": ["a", "b", "b", "a", "b", "a"]})
>>> t = per_class_table(preds, ["a", "b"])
>>> print(t[["Class", "Recall", "Recall Std", "Support", "Folds"]].to_string(index=False))
Class  Recall  Recall Std  Support  Folds
    a    0.75        0.25        3      2
    b    0.75        0.25        3      2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from ..schema import TABLE_NAMES, std_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PER_CLASS_COLUMNS", "class_scores", "per_class_folds", "per_class_table"]

_METRICS = ("precision", "recall", "f1")

#: Columns of :func:`per_class_table` (and of ``per_class.csv``).
PER_CLASS_COLUMNS = ("Feature Set", "Model", "Class",
                     *[c for m in _METRICS for c in (TABLE_NAMES[m], std_name(TABLE_NAMES[m]))],
                     "Support", "Folds")

_SPLIT_COLUMNS = ("repeat", "fold")


def _codes(labels, classes: List[str]) -> np.ndarray:
    """Labels as indices into ``classes`` (compared as strings); -1 for any other label."""
    import pandas as pd

    return pd.Index(classes, dtype=object).get_indexer(pd.Series(labels, dtype=object).astype(str))


def class_scores(y_true, y_pred, classes: Sequence[str]) -> dict:
    """Precision, recall, F1 and support of each of ``classes`` on one set of predictions.

    ``precision_recall_fscore_support(..., labels=classes, zero_division=0)``;
    labels are compared as strings, and a predicted label outside ``classes``
    counts as a miss of the true class.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (float arrays) and ``support`` (int
        array), each in the order of ``classes``.

    Example
    -------
    >>> s = class_scores(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    >>> s["precision"].tolist(), s["recall"].tolist(), s["support"].tolist()
    ([1.0, 0.5], [0.5, 1.0], [2, 1])
    """
    from sklearn.metrics import precision_recall_fscore_support

    classes = [str(c) for c in classes]
    y_true, y_pred = _codes(y_true, classes), _codes(y_pred, classes)
    if len(y_true) == 0:
        zeros = np.zeros(len(classes))
        return {"precision": zeros, "recall": zeros.copy(), "f1": zeros.copy(),
                "support": np.zeros(len(classes), dtype=int)}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(len(classes)),
                                                 average=None, zero_division=0)
    return {"precision": np.asarray(p, float), "recall": np.asarray(r, float),
            "f1": np.asarray(f, float), "support": np.asarray(s, dtype=int)}


def _row_keys(predictions: pd.DataFrame,
              rows: Optional[Sequence[Tuple[str, str]]]) -> List[Tuple[str, str]]:
    """The (feature set, classifier) pairs to report: ``rows``, else those of the frame in order."""
    if rows is not None:
        return [(str(f), str(c)) for f, c in rows]
    if predictions.empty:
        return []
    pairs = predictions[["feature_set", "classifier"]].astype(str).drop_duplicates()
    return list(pairs.itertuples(index=False, name=None))


def _by_row(predictions: pd.DataFrame) -> dict:
    """The predictions of each (feature set, classifier), grouped once."""
    needed = {"feature_set", "classifier", "y_true", "y_pred"}
    if predictions.empty or not needed <= set(predictions.columns):
        return {}
    keys = [predictions["feature_set"].astype(str), predictions["classifier"].astype(str)]
    return {key: g for key, g in predictions.groupby(keys, sort=False)}


def per_class_folds(predictions: pd.DataFrame, classes: Sequence[str],
                    rows: Optional[Sequence[Tuple[str, str]]] = None) -> pd.DataFrame:
    """Per-class scores of every test fold: one row per feature set × classifier × split × class.

    Parameters
    ----------
    predictions : DataFrame
        The out-of-fold predictions (``ComparisonResult.predictions``).
    classes : sequence of str
        The classes, in report order.
    rows : sequence of (feature_set, classifier), optional
        Which rows, in which order (default: every pair in the frame, in order
        of appearance).

    Returns
    -------
    DataFrame
        ``feature_set, classifier, repeat, fold, class, precision, recall, f1,
        support`` (``repeat``/``fold`` are 0 when the frame has no such column).

    Example
    -------
    >>> import pandas as pd
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "fold": [0, 0, 1, 1],
    ...                       "y_true": ["a", "b", "a", "b"], "y_pred": ["a", "b", "b", "b"]})
    >>> per_class_folds(preds, ["a", "b"])["recall"].tolist()
    [1.0, 1.0, 0.0, 1.0]
    """
    import pandas as pd

    classes = [str(c) for c in classes]
    out = []
    by_row = _by_row(predictions)
    for fs, clf in _row_keys(predictions, rows):
        if (fs, clf) not in by_row:  # no predictions: the row has no folds
            continue
        p = by_row[(fs, clf)].dropna(subset=["y_true", "y_pred"])
        split_cols = [c for c in _SPLIT_COLUMNS if c in p.columns]
        groups = p.groupby(split_cols, sort=True) if split_cols else [((), p)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            where = dict(zip(split_cols, key))
            s = class_scores(g["y_true"], g["y_pred"], classes)
            for i, c in enumerate(classes):
                out.append({"feature_set": fs, "classifier": clf,
                            "repeat": where.get("repeat", 0), "fold": where.get("fold", 0),
                            "class": c, "precision": s["precision"][i], "recall": s["recall"][i],
                            "f1": s["f1"][i], "support": int(s["support"][i])})
    columns = ["feature_set", "classifier", "repeat", "fold", "class", *_METRICS, "support"]
    return pd.DataFrame(out, columns=columns)


def _mean_std(values: np.ndarray) -> Tuple[float, float]:
    """Mean and population std (one value: std NaN), as the results table has them."""
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), (float(values.std()) if len(values) > 1 else float("nan"))


def per_class_table(predictions: pd.DataFrame, classes: Sequence[str],
                    rows: Optional[Sequence[Tuple[str, str]]] = None) -> pd.DataFrame:
    """Per-class precision, recall and F1 of each row: mean ± std over the test folds.

    Parameters
    ----------
    predictions : DataFrame
        The out-of-fold predictions (``ComparisonResult.predictions``).
    classes : sequence of str
    rows : sequence of (feature_set, classifier), optional
        Which rows, in which order (default: every pair in the frame).

    Returns
    -------
    DataFrame
        One row per feature set × classifier × class, columns
        :data:`PER_CLASS_COLUMNS`: ``Precision``, ``Recall``, ``F1 Score``
        and their ``Std`` over the folds that hold the class, ``Support``
        (test images of the class over all folds and repeats) and ``Folds``
        (how many folds hold the class). A row without predictions has
        support 0 and NaN scores.
    """
    import pandas as pd

    folds = per_class_folds(predictions, classes, rows)
    out = []
    for fs, clf in _row_keys(predictions, rows):
        f = folds[(folds["feature_set"] == fs) & (folds["classifier"] == clf)]
        for c in [str(c) for c in classes]:
            fc = f[f["class"] == c]
            held = fc[fc["support"] > 0]
            row = {"Feature Set": fs, "Model": clf, "Class": c}
            for m in _METRICS:
                row[TABLE_NAMES[m]], row[std_name(TABLE_NAMES[m])] = _mean_std(
                    held[m].to_numpy(dtype=float))
            row["Support"] = int(fc["support"].sum())
            row["Folds"] = int(len(held))
            out.append(row)
    return pd.DataFrame(out, columns=list(PER_CLASS_COLUMNS))
