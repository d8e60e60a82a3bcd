"""Calibration of a row's out-of-fold probabilities: the expected calibration error and reliability curves.

*Do the scores mean what they say?* A model is calibrated when, of the images
it gives probability 0.8, about 80 % are right. The **expected calibration
error** (ECE) measures the gap on the top-label confidence: the confidence of
an image is its largest predicted probability, the images are put into
``n_bins`` equal-width bins of confidence on [0, 1] (bin ``k`` holds
``(k/n_bins, (k+1)/n_bins]``, the first also 0, as in
``sklearn.calibration.calibration_curve``), and

    ECE = sum over bins of (images in the bin / images) × |accuracy − mean confidence|

where *accuracy* is the fraction of the bin's images whose most probable class
is the true one. For two classes the reliability curve of the positive class
(fraction of positives against the mean predicted probability per bin) is
given as well. The out-of-fold predictions of all folds (and repeats) are
pooled: each fold's model contributes the images it was tested on.

Only probabilities can be calibrated. A model without ``predict_proba`` gets
decision scores (see :func:`leukbench.evaluation.metrics.scores_of`: binary
``[-d, d]``, multiclass softmax of the decision function). The predictions
frame does not record which it was, so :func:`score_kind` applies a rule: the
scores are probabilities when every score is finite, lies in [0, 1] and each
image's scores sum to 1 (within 1e-4: float32 probabilities). Binary decision scores ``[-d, d]`` never pass it;
softmax-normalised multiclass decision scores do, so for more than two classes
a registered classifier that has no ``predict_proba`` is also treated as giving
decision scores.

Example
-------
>>> import numpy as np
>>> y = np.array([0, 1, 1, 0])
>>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
>>> round(expected_calibration_error(y, proba, n_bins=10), 3)
0.35
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._validation import invalid

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CALIBRATION_COLUMNS",
    "PROBABILITIES",
    "DECISION_SCORES",
    "NO_SCORES",
    "DEFAULT_N_BINS",
    "are_probabilities",
    "reliability_bins",
    "expected_calibration_error",
    "score_kind",
    "row_calibration",
    "calibration_table",
]

#: Bins of the expected calibration error and of the reliability curves.
DEFAULT_N_BINS = 10

#: What a row's scores are (``Scores`` in ``calibration.csv``).
PROBABILITIES, DECISION_SCORES, NO_SCORES = "probabilities", "decision scores", "no scores"

#: Columns of :func:`calibration_table` (and of ``calibration.csv``).
CALIBRATION_COLUMNS = ("Feature Set", "Model", "Scores", "ECE", "n_bins", "n")

#: Tolerance of the probability rule: float32 probabilities (e.g. GaussianNB on float32
#: features) sum to 1 only within about 1e-5.
_ATOL = 1e-4


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise invalid("n_bins", f"must be a whole number of 1 or more (got {n_bins!r})")
    return int(n_bins)


def are_probabilities(scores: np.ndarray, atol: float = _ATOL) -> bool:
    """Whether an ``(n, n_classes)`` score array reads as probabilities.

    True when it has rows, every value is finite and in [0, 1], and each row
    sums to 1 (within ``atol``).

    Example
    -------
    >>> are_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    True
    >>> are_probabilities(np.array([[-1.5, 1.5]]))  # binary decision scores [-d, d]
    False
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.size == 0 or not np.all(np.isfinite(s)):
        return False
    return bool(s.min() >= -atol and s.max() <= 1 + atol
                and np.allclose(s.sum(axis=1), 1.0, rtol=0, atol=atol))


def reliability_bins(hits, prob, n_bins: int = DEFAULT_N_BINS) -> Dict[str, np.ndarray]:
    """Equal-width bins of ``prob`` on [0, 1]: images, mean probability and observed rate per bin.

    Parameters
    ----------
    hits : array of 0/1 (or bool)
        The event whose probability ``prob`` is: "the image is positive" for a
        class's curve, "the top class is right" for the confidence curve.
    prob : array of float in [0, 1]
    n_bins : int

    Returns
    -------
    dict
        ``edges`` (``n_bins + 1``), ``count`` (int, per bin), ``mean_prob`` and
        ``observed`` (per bin, NaN for an empty bin). The non-empty bins' values
        are ``sklearn.calibration.calibration_curve(hits, prob, n_bins=n_bins)``.

    Example
    -------
    >>> b = reliability_bins([0, 1, 1, 1], [0.05, 0.9, 0.95, 0.85], n_bins=2)
    >>> b["count"].tolist(), b["observed"].tolist()
    ([1, 3], [0.0, 1.0])
    """
    from sklearn.calibration import calibration_curve

    n_bins = _check_bins(n_bins)
    hits = np.asarray(hits, dtype=int)
    prob = np.clip(np.asarray(prob, dtype=float), 0.0, 1.0)  # float noise of a softmax or 1 - p
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], prob), minlength=n_bins)
    mean_prob, observed = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    if len(prob):
        # pos_label=1: a bin set where every image is a hit (or none is) is still binary
        frac, mean = calibration_curve(hits, prob, n_bins=n_bins, strategy="uniform", pos_label=1)
        observed[count > 0], mean_prob[count > 0] = frac, mean
    return {"edges": edges, "count": count, "mean_prob": mean_prob, "observed": observed}


def _gap(bins: Dict[str, np.ndarray]) -> float:
    """Weighted mean |observed − mean probability| over the non-empty bins."""
    count = bins["count"]
    if count.sum() == 0:
        return float("nan")
    full = count > 0
    return float(np.sum(count[full] / count.sum()
                        * np.abs(bins["observed"][full] - bins["mean_prob"][full])))


def expected_calibration_error(y_true, proba, n_bins: int = DEFAULT_N_BINS) -> float:
    """Expected calibration error of the top-label confidence (the largest probability).

    Parameters
    ----------
    y_true : array of int
        Encoded true classes (column indices of ``proba``).
    proba : array of shape (n, n_classes)
        Predicted probabilities (rows sum to 1).
    n_bins : int
        Equal-width confidence bins on [0, 1].

    Returns
    -------
    float
        In [0, 1]; 0 for a perfectly calibrated model; NaN without images.

    Example
    -------
    >>> y = np.array([0, 0, 1, 1])
    >>> expected_calibration_error(y, np.eye(2)[y])  # sure and right: calibrated
    0.0
    >>> expected_calibration_error(y, np.eye(2)[1 - y])  # sure and always wrong
    1.0
    """
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or len(proba) == 0:
        return float("nan")
    hits = proba.argmax(axis=1) == np.asarray(y_true)
    return _gap(reliability_bins(hits, proba.max(axis=1), n_bins))


def _registered_without_proba(model: Optional[str]) -> bool:
    """Whether ``model`` is a registered classifier whose estimator has no ``predict_proba``."""
    if not model:
        return False
    from ..classifiers import make_classifier
    from ..exceptions import LeukbenchError
    from .tuning import base_name

    try:
        estimator = make_classifier(base_name(str(model)))  # a tuned row has its classifier's scores
    except (LeukbenchError, ImportError):  # not registered here, or its package is missing
        return False
    return not hasattr(estimator, "predict_proba")


def score_kind(scores: np.ndarray, model: Optional[str] = None) -> str:
    """What a row's ``(n, n_classes)`` scores are: probabilities, decision scores, or none.

    :data:`NO_SCORES` when no image has a finite score; :data:`PROBABILITIES`
    when :func:`are_probabilities` holds (and, for more than two classes,
    ``model`` is not a registered classifier without ``predict_proba``);
    :data:`DECISION_SCORES` otherwise.

    Example
    -------
    >>> score_kind(np.array([[0.3, 0.7]])), score_kind(np.array([[-2.0, 2.0]]))
    ('probabilities', 'decision scores')
    >>> score_kind(np.full((2, 2), np.nan))
    'no scores'
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.size == 0 or not np.isfinite(s).all(axis=1).any():
        return NO_SCORES
    if not are_probabilities(s):
        return DECISION_SCORES
    if s.shape[1] > 2 and _registered_without_proba(model):
        return DECISION_SCORES  # a softmax of decision scores passes the rule
    return PROBABILITIES


def _encoded(predictions: pd.DataFrame, classes: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Encoded true classes and the score matrix of the images with a known class."""
    index = {str(c): i for i, c in enumerate(classes)}
    cols = [f"score_{c}" for c in classes]
    if predictions.empty or not all(c in predictions.columns for c in cols):
        return np.zeros(0, dtype=int), np.zeros((0, len(classes)))
    y = predictions["y_true"].astype(str).map(index)
    known = y.notna().to_numpy()
    return (y[known].to_numpy(dtype=int),
            predictions.loc[known, cols].to_numpy(dtype=float).reshape(-1, len(classes)))


def row_calibration(predictions: pd.DataFrame, classes: Sequence[str], model: Optional[str] = None,
                    positive: Optional[str] = None, n_bins: int = DEFAULT_N_BINS) -> Dict[str, Any]:
    """Calibration of one row from its out-of-fold predictions (all folds and repeats pooled).

    Parameters
    ----------
    predictions : DataFrame
        The predictions of one feature set × classifier (``y_true`` and one
        ``score_<class>`` column per class).
    classes : sequence of str
    model : str, optional
        The classifier's registered name (see :func:`score_kind`).
    positive : str, optional
        The positive class of a binary problem (default: the second class).
    n_bins : int

    Returns
    -------
    dict
        ``scores`` (:func:`score_kind`), ``ece`` (NaN unless probabilities),
        ``n`` (images with a known class and finite scores), ``n_bins``,
        ``confidence`` (:func:`reliability_bins` of the top-label confidence),
        and for two classes ``positive_label`` and ``positive`` (the bins of the
        positive class's probability); those are ``None`` when not computed.

    Example
    -------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"y_true": ["a", "b", "b"], "score_a": [0.8, 0.3, 0.1],
    ...                   "score_b": [0.2, 0.7, 0.9]})
    >>> c = row_calibration(p, ["a", "b"], n_bins=5)
    >>> c["scores"], round(c["ece"], 3), c["n"], c["positive_label"]
    ('probabilities', 0.2, 3, 'b')
    """
    n_bins = _check_bins(n_bins)
    classes = [str(c) for c in classes]
    y, scores = _encoded(predictions, classes)
    finite = np.isfinite(scores).all(axis=1)
    y, scores = y[finite], scores[finite]
    out: Dict[str, Any] = {"scores": score_kind(scores, model), "ece": float("nan"), "n": int(len(y)),
                           "n_bins": n_bins, "confidence": None, "positive_label": None,
                           "positive": None}
    if out["scores"] != PROBABILITIES:
        return out
    out["ece"] = expected_calibration_error(y, scores, n_bins)
    out["confidence"] = reliability_bins(scores.argmax(axis=1) == y, scores.max(axis=1), n_bins)
    if len(classes) == 2:
        pos = positive if positive in classes else classes[1]
        k = classes.index(pos)
        out["positive_label"] = pos
        out["positive"] = reliability_bins(y == k, scores[:, k], n_bins)
    return out


def calibration_table(predictions: pd.DataFrame, classes: Sequence[str],
                      rows: Optional[Sequence[Tuple[str, str]]] = None,
                      n_bins: int = DEFAULT_N_BINS, positive: Optional[str] = None) -> pd.DataFrame:
    """The expected calibration error of each row: columns :data:`CALIBRATION_COLUMNS`.

    Parameters
    ----------
    predictions : DataFrame
        The out-of-fold predictions of a comparison (all rows).
    classes : sequence of str
    rows : sequence of (feature_set, classifier), optional
        Which rows, in which order (default: every pair in the frame).
    n_bins : int
    positive : str, optional
        Passed to :func:`row_calibration`.

    Returns
    -------
    DataFrame
        ``Feature Set, Model, Scores, ECE, n_bins, n``; ``ECE`` is NaN for a
        row whose scores are not probabilities.
    """
    import pandas as pd

    n_bins = _check_bins(n_bins)
    if rows is None:
        pairs = (predictions[["feature_set", "classifier"]].astype(str).drop_duplicates()
                 if not predictions.empty else pd.DataFrame(columns=["feature_set", "classifier"]))
        rows = list(pairs.itertuples(index=False, name=None))
    by_row = ({} if predictions.empty else
              {key: g for key, g in predictions.groupby(
                  [predictions["feature_set"].astype(str), predictions["classifier"].astype(str)],
                  sort=False)})
    out: List[Dict[str, Any]] = []
    for fs, clf in rows:
        p = by_row.get((str(fs), str(clf)), predictions.iloc[0:0])
        c = row_calibration(p, classes, model=str(clf), positive=positive, n_bins=n_bins)
        out.append({"Feature Set": str(fs), "Model": str(clf), "Scores": c["scores"], "ECE": c["ece"],
                    "n_bins": n_bins, "n": c["n"]})
    return pd.DataFrame(out, columns=list(CALIBRATION_COLUMNS))
