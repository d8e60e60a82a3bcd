"""One task of an evaluation -- fit a classifier on a train part, predict its test part -- and
what came of it.

A :class:`Task` names the feature set, the classifier and the :class:`Split`;
:func:`run_task` fits and predicts and never raises (bar Ctrl-C): whatever
goes wrong becomes a :class:`FitOutcome` with status ``failed`` and the reason,
so one broken model leaves the rest of the table untouched.

Every fit and prediction runs with the BLAS and OpenMP pools of the process
limited to one thread (:func:`one_thread`), wherever it runs (this process,
joblib, a killable worker, a Dask worker): a sum split over two threads can
differ from the same sum on one in the last digits (measured: LDA's and
RidgeClassifier's scores, through BLAS; OpenMP sums can do the same), so without
the limit a table would depend on ``n_jobs`` and on the machine's core count.
Parallelism is across tasks; the limit costs ~10 ms per fit.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from ..schema import STATUS_FAILED, STATUS_OK, STATUS_TIMEOUT
from .metrics import scores_of
from .splits import Split

__all__ = ["FitOutcome", "PreparedSet", "Task", "one_thread", "run_task", "search_record"]


@dataclasses.dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not outcomes
class FitOutcome:
    """The result of one task: its status, times, predictions and scores.

    ``y_pred`` (encoded classes) and ``scores`` (``(n_test, n_classes)`` or
    ``None`` when the model gives none) are set when ``status`` is ``"ok"``;
    ``cached`` says the outcome came from the fold cache. For a search
    (a tuned row), ``params`` is the JSON of the parameters it chose and
    ``n_candidates`` how many it tried; ``""`` and 0 for any other model.
    """

    status: str
    error: str = ""
    fit_time: float = float("nan")
    predict_time: float = float("nan")
    y_pred: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    cached: bool = False
    params: str = ""
    n_candidates: int = 0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @classmethod
    def failed(cls, error: str) -> "FitOutcome":
        return cls(STATUS_FAILED, error)

    @classmethod
    def timed_out(cls, timeout: float) -> "FitOutcome":
        """A fit killed after ``timeout`` seconds (what it cost is its fit time)."""
        return cls(STATUS_TIMEOUT, f"fit exceeded the {timeout:g} s timeout and was stopped",
                   fit_time=float(timeout))


class PreparedSet(NamedTuple):
    """A feature set ready for fitting: float32 features, encoded labels, and their digest."""

    X: np.ndarray
    y: np.ndarray
    digest: str


@dataclasses.dataclass
class Task:
    """One (feature set, classifier, repeat, fold) fit of a run.

    ``index`` is the task's place in the run (and its id between the run and
    a worker process); ``key`` its fold-cache key; ``estimator`` the fresh,
    unfitted model, set only while the task waits to be run; ``tuning`` the
    :class:`~leukbench.evaluation.tuning.TunedFit` that builds the search of
    a tuned row (``None`` for the classifier's own defaults).
    """

    index: int
    set_index: int
    classifier: str
    split: Split
    key: str = ""
    estimator: Any = None
    tuning: Any = None


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <first line of its message>"``, at most 300 characters."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    msg = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def _json_value(value):
    """numpy scalars as Python numbers; anything else as its repr."""
    return value.item() if isinstance(value, np.generic) else repr(value)


def search_record(est) -> Tuple[str, int]:
    """The parameters a fitted search chose (sorted JSON) and the candidates it tried; ``("", 0)``
    for an estimator that is no search.

    Example
    -------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = np.arange(12.0).reshape(-1, 1), np.repeat([0, 1], 6)
    >>> search_record(GridSearchCV(GaussianNB(), {"var_smoothing": [1e-9, 1e-3]}, cv=2).fit(X, y))
    ('{"var_smoothing": 1e-09}', 2)
    >>> search_record(GaussianNB().fit(X, y))
    ('', 0)
    """
    try:
        best = getattr(est, "best_params_", None)
        tried = len(getattr(est, "cv_results_", {}).get("params", ()))
    except Exception:  # noqa: BLE001 - an estimator with odd attributes is no search
        return "", 0
    if not isinstance(best, dict):
        return "", 0
    return json.dumps(best, sort_keys=True, default=_json_value), tried


def one_thread():
    """A context in which every BLAS and OpenMP pool of this process uses one thread (threadpoolctl).

    Example
    -------
    >>> from threadpoolctl import threadpool_info
    >>> with one_thread():
    ...     all(pool["num_threads"] == 1 for pool in threadpool_info())
    True
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def run_task(X: np.ndarray, y: np.ndarray, est, train: np.ndarray, test: np.ndarray,
             n_classes: int) -> FitOutcome:
    """Fit ``est`` on ``train`` and predict ``test`` on one thread (:func:`one_thread`); never
    raises (bar Ctrl-C).

    Example
    -------
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X = np.array([[0.0], [0.1], [1.0], [1.1], [0.05], [1.05]])
    >>> y = np.array([0, 0, 1, 1, 0, 1])
    >>> out = run_task(X, y, GaussianNB(), np.arange(4), np.array([4, 5]), n_classes=2)
    >>> out.status, out.y_pred.tolist(), out.scores.shape
    ('ok', [0, 1], (2, 2))
    """
    try:
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            if getattr(est, "learns_from_rows", False):  # leukbench.batch_learning: no copy of the fold
                est.fit(X, y, rows=train)
                t1 = time.perf_counter()
                y_pred, scores = _predict_in_blocks(est, X, test, n_classes)
            else:
                est.fit(X[train], y[train])
                t1 = time.perf_counter()
                y_pred = np.asarray(est.predict(X[test])).astype(np.int64)
                scores = scores_of(est, X[test], n_classes)
            t2 = time.perf_counter()
            params, n_candidates = search_record(est)
    except BaseException as exc:  # noqa: BLE001 - isolate any failure of one model
        if isinstance(exc, KeyboardInterrupt):
            raise
        return FitOutcome.failed(error_text(exc))
    if scores is not None and scores.shape != (len(test), n_classes):
        scores = None  # e.g. a model that saw fewer classes in training
    return FitOutcome(STATUS_OK, "", fit_time=t1 - t0, predict_time=t2 - t1, y_pred=y_pred, scores=scores,
                      params=params, n_candidates=n_candidates)


#: Test rows predicted at a time by a classifier that learns from batches.
PREDICT_BLOCK_ROWS = 4096


def _predict_in_blocks(est, X: np.ndarray, test: np.ndarray, n_classes: int):
    """Predictions and scores of ``X[test]``, the model's ``batch_rows_`` (else :data:`PREDICT_BLOCK_ROWS`)
    rows at a time (no copy of the fold)."""
    predicted, scores = [], []
    step = int(getattr(est, "batch_rows_", None) or PREDICT_BLOCK_ROWS)
    for start in range(0, len(test), step):
        block = X[test[start:start + step]]
        predicted.append(np.asarray(est.predict(block)).astype(np.int64))
        scores.append(scores_of(est, block, n_classes))
    if not predicted:
        return np.zeros(0, np.int64), None
    return np.concatenate(predicted), None if any(s is None for s in scores) else np.concatenate(scores)
