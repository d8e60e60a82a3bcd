"""Classifiers that learn from batches of rows, for feature matrices larger than memory.

Every classifier of the default battery fits on its whole training fold at once:
scikit-learn needs ``X[train]`` in RAM (and often a float64 copy of it). A
:class:`BatchLearner` wraps an estimator with ``partial_fit`` (a linear model
trained by stochastic gradient descent, naive Bayes) and reads its training
rows :attr:`~BatchLearner.batch_rows` at a time, from any array -- in
particular a memory-mapped one (:mod:`leukbench._mapped`) -- so that a fit
holds one batch, not the fold. ``fit(X, y, rows=train)`` takes the rows of
``X`` to learn from, so the evaluation never copies the fold
(:func:`leukbench.evaluation.fits.run_task`); predictions are made a batch at
a time too.

A fit makes one pass to standardise the features (``StandardScaler.partial_fit``)
and then ``epochs`` passes over the rows in a seeded random order, each batch
weighted so that every class has the same total weight (the batch version of
``class_weight="balanced"``, which ``partial_fit`` does not take).

Example
-------
>>> import numpy as np
>>> from sklearn.linear_model import SGDClassifier
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(0, 1, (60, 4)), rng.normal(3, 1, (60, 4))]).astype(np.float32)
>>> y = np.repeat([0, 1], 60)
>>> model = BatchLearner(SGDClassifier(loss="log_loss", random_state=0), batch_rows=16).fit(X, y)
>>> float((model.predict(X) == y).mean()) > 0.95, model.predict_proba(X[:2]).shape
(True, (2, 2))
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if

__all__ = ["BATCH_BYTES", "BatchLearner"]

#: Default size of one batch in float64 (the batch size is chosen from the number of columns).
BATCH_BYTES = 32 << 20


class BatchLearner(ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` with ``partial_fit`` on batches of rows; predict a batch at a time.

    Parameters
    ----------
    estimator : estimator with ``partial_fit(X, y, classes=, sample_weight=)``
        E.g. ``SGDClassifier`` or ``GaussianNB``; cloned at each fit.
    batch_rows : int, optional
        Rows read and learnt from at a time (the memory of a fit is a few copies of one
        batch); default: as many as make :data:`BATCH_BYTES` in float64, 64 to 4,096
        (3,276 rows of 1,280 columns).
    epochs : int
        Passes over the training rows (1 suffices for naive Bayes: its statistics are exact).
    scale : bool
        Standardise each feature with statistics of the training rows (one extra pass).
    balanced : bool
        Weight the rows so that every class has the same total weight.
    random_state : int, optional
        Seed of the order of the rows in each epoch.

    Attributes
    ----------
    batch_rows_ : int
        The batch size used.
    classes_ : ndarray
    scaler_ : StandardScaler or None
    estimator_ : the fitted estimator
    """

    def __init__(self, estimator=None, *, batch_rows: Optional[int] = None, epochs: int = 5, scale: bool = True,
                 balanced: bool = True, random_state: Optional[int] = None):
        self.estimator = estimator
        self.batch_rows = batch_rows
        self.epochs = epochs
        self.scale = scale
        self.balanced = balanced
        self.random_state = random_state

    #: :func:`leukbench.evaluation.fits.run_task` passes ``rows=train`` instead of copying ``X[train]``.
    learns_from_rows = True

    def fit(self, X, y, rows=None):
        """Learn from the rows ``rows`` of ``X`` (default: all) and their labels ``y[rows]``; returns self."""
        from sklearn.preprocessing import StandardScaler

        if (self.batch_rows is not None and self.batch_rows < 1) or self.epochs < 1:
            raise ValueError(f"batch_rows and epochs must be >= 1, got {self.batch_rows} and {self.epochs}")
        width = X.shape[1] if len(X.shape) > 1 else 1
        self.batch_rows_ = int(self.batch_rows or min(4096, max(64, BATCH_BYTES // (8 * width))))
        y = np.asarray(y)
        rows = np.arange(len(y)) if rows is None else np.asarray(rows, dtype=np.int64)
        labels = y[rows]
        self.classes_, counts = np.unique(labels, return_counts=True)
        if len(self.classes_) < 2:
            raise ValueError(f"needs at least 2 classes in the training rows, got {len(self.classes_)}")
        class_weight = len(labels) / (len(self.classes_) * counts)  # by position in classes_
        self.scaler_ = None
        if self.scale:
            self.scaler_ = StandardScaler()
            for part in self._batches(rows):
                self.scaler_.partial_fit(np.asarray(X[part], dtype=np.float64))
        self.estimator_ = clone(self.estimator)
        rng = np.random.default_rng(self.random_state)
        for _epoch in range(self.epochs):
            order = rows[rng.permutation(len(rows))]
            for part in self._batches(order):
                part = np.sort(part)  # rows in file order: sequential reads of a memory map
                weights = class_weight[np.searchsorted(self.classes_, y[part])] if self.balanced else None
                self.estimator_.partial_fit(self._transform(X[part]), y[part], classes=self.classes_,
                                            sample_weight=weights)
        return self

    def _batches(self, rows):
        for start in range(0, len(rows), self.batch_rows_):
            yield rows[start:start + self.batch_rows_]

    def _transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def _each_batch(self, method: str, X):
        if not hasattr(self, "estimator_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this BatchLearner is not fitted yet; call fit first")
        step = self.batch_rows_
        parts = [getattr(self.estimator_, method)(self._transform(X[start:start + step]))
                 for start in range(0, len(X), step)]
        return np.concatenate(parts) if parts else getattr(self.estimator_, method)(self._transform(X[:0]))

    def predict(self, X):
        """Predicted classes, a batch of rows at a time."""
        return self._each_batch("predict", X)

    @available_if(lambda self: hasattr(self.estimator, "decision_function"))
    def decision_function(self, X):
        """The estimator's decision function, a batch of rows at a time."""
        return self._each_batch("decision_function", X)

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X):
        """Class probabilities (when the estimator gives them), a batch of rows at a time."""
        return self._each_batch("predict_proba", X)
