"""How sure each row of the results table is, and which rows are tied with the best.

:func:`add_statistics` adds to the results table, for every row that ran:

* a 95 % interval (``<metric> CI Low`` / ``CI High``) of balanced accuracy,
  ROC AUC and F1 from a subject-level bootstrap. Each resample draws the
  cross-validation groups (subjects, merged by the leakage audit) with
  replacement, recomputes the metric on every test fold with the drawn
  images, and averages over the folds: the interval is that of the very
  number the table shows, the mean over folds;
* ``Tied With Best``, ``P Value vs Best`` and ``Difference vs Best`` (with its
  paired-bootstrap interval) against the best row of the table's metric. With
  two folds or more the tie is decided by the corrected resampled t-test on
  the per-fold differences (p-values not adjusted for the number of rows:
  docs/evaluation.md says why); with one test split (a predefined split) by whether the
  paired bootstrap interval of the difference holds 0.

The numbers come from :mod:`leukbench.evaluation.statistics`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..schema import (
    DIFFERENCE_VS_BEST,
    METRIC_COLUMNS,
    P_VALUE_VS_BEST,
    STATUS_OK,
    TABLE_NAMES,
    TIE_BEST,
    TIE_NO,
    TIE_UNKNOWN,
    TIE_YES,
    TIED_WITH_BEST,
    ci_names,
)
from .statistics import (
    BOOTSTRAP_METRICS,
    Resamples,
    bootstrap_metrics,
    corrected_resampled_ttest,
    percentile_interval,
    subject_resamples,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["add_statistics", "tie_metric"]

_METRIC_KEYS = {column: key for key, column in TABLE_NAMES.items()}


def tie_metric(sort_column: str) -> str:
    """The table column whose best row the others are compared with: the sort column, when it
    is a metric, else balanced accuracy (a table sorted by time still has a best classifier)."""
    return sort_column if sort_column in METRIC_COLUMNS else TABLE_NAMES["balanced_accuracy"]


@dataclasses.dataclass
class _RowPredictions:
    """The out-of-fold predictions of one table row, fold by fold, encoded."""

    ids: Tuple[str, ...]  # the distinct images of the row's test folds (sorted)
    folds: List[Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]]  # columns, y, pred, scores

    @classmethod
    def of(cls, predictions: pd.DataFrame, classes: Sequence[str]) -> "_RowPredictions":
        ids = tuple(sorted(set(predictions["id"].astype(str))))
        position = {image: i for i, image in enumerate(ids)}
        encode = {c: i for i, c in enumerate(classes)}
        score_cols = [f"score_{c}" for c in classes]
        folds = []
        for _, part in predictions.groupby(["repeat", "fold"], sort=True):
            cols = np.array([position[i] for i in part["id"].astype(str)])
            y = np.array([encode.get(str(v), -1) for v in part["y_true"]])
            pred = np.array([encode.get(str(v), -1) for v in part["y_pred"]])
            scores = part[score_cols].to_numpy(dtype=float) if all(c in part for c in score_cols) else None
            if scores is not None and not np.isfinite(scores).all():
                scores = None
            folds.append((cols, y, pred, scores))
        return cls(ids, folds)

    def bootstrap(self, metrics: Sequence[str], weights: Resamples, n_classes: int,
                  positive: Optional[int]) -> Dict[str, np.ndarray]:
        """The mean over folds of each metric in each resample (folds without a value left out)."""
        per_fold = [bootstrap_metrics(metrics, y, pred, scores, weights.take(cols), n_classes=n_classes,
                                      positive=positive)
                    for cols, y, pred, scores in self.folds]
        out = {}
        for metric in metrics:
            values = np.vstack([fold[metric] for fold in per_fold])
            finite = np.isfinite(values)
            with np.errstate(invalid="ignore"):
                out[metric] = np.where(finite.any(axis=0), np.nansum(values, axis=0) / finite.sum(axis=0), np.nan)
        return out


def _weights_for(row: _RowPredictions, groups: Mapping[str, str], n_bootstrap: int, seed: int,
                 memo: Dict[Tuple[str, ...], Resamples]) -> Resamples:
    """Resamples of the row's images; rows over the same images share them (paired)."""
    if row.ids not in memo:
        memo[row.ids] = subject_resamples([groups.get(i, "") for i in row.ids], n_bootstrap, seed=seed)
    return memo[row.ids]


def _by_row(frame: pd.DataFrame) -> Dict[Tuple[str, str], pd.DataFrame]:
    """The rows of ``frame`` (folds or predictions) of each (feature set, classifier), grouped once."""
    if frame.empty:
        return {}
    return {key: part for key, part in frame.groupby(["feature_set", "classifier"], sort=False)}


def add_statistics(table: pd.DataFrame, folds: pd.DataFrame, predictions: pd.DataFrame, *,
                   classes: Sequence[str], positive_label: Optional[str], groups: Mapping[str, Mapping[str, str]],
                   alpha: float, n_bootstrap: int, seed: int, sort: str) -> pd.DataFrame:
    """The results table with the interval and tie columns (see the module docstring).

    Parameters
    ----------
    table, folds, predictions : DataFrame
        The frames of :func:`~leukbench.evaluation.tables.fold_tables` and
        :func:`~leukbench.evaluation.tables.summarise`.
    classes, positive_label
        The classes in encoding order and the positive class of two classes.
    groups : mapping feature-set name -> (image id -> group)
        The cross-validation group of each image; an image missing from it,
        or with group ``""``, is a resampling unit of its own.
    alpha : float
        ``1 - alpha`` intervals; rows whose test against the best gives
        ``p >= alpha`` are tied with it.
    n_bootstrap : int
        Resamples (0: no intervals, ties from the t-test alone).
    seed : int
        Seed of the resamples.
    sort : str
        The table's sort column; see :func:`tie_metric`.
    """
    table = table.copy()
    positive = list(classes).index(positive_label) if positive_label in classes else None
    memo: Dict[Tuple[str, ...], Resamples] = {}
    tie_column = tie_metric(sort)
    tie_key = _METRIC_KEYS[tie_column]
    boots: Dict[int, np.ndarray] = {}
    predictions_of = _by_row(predictions)
    for column in (TABLE_NAMES[m] for m in BOOTSTRAP_METRICS):
        for name in ci_names(column):
            table[name] = np.nan
    for index, row in table.iterrows():
        if row["Status"] != STATUS_OK or not n_bootstrap:
            continue
        mine = predictions_of.get((row["Feature Set"], row["Model"]))
        if mine is None:
            continue
        encoded = _RowPredictions.of(mine, classes)
        weights = _weights_for(encoded, groups.get(row["Feature Set"], {}), n_bootstrap, seed, memo)
        values = encoded.bootstrap(BOOTSTRAP_METRICS, weights, len(classes), positive)
        for metric in BOOTSTRAP_METRICS:
            table.loc[index, list(ci_names(TABLE_NAMES[metric]))] = percentile_interval(values[metric], alpha)
        if tie_key in values:
            boots[index] = values[tie_key]
    return _add_ties(table, _by_row(folds), predictions_of, tie_column, alpha, boots)


def _fold_signature(predictions_of: Mapping, row: Tuple[str, str]) -> frozenset:
    """The (repeat, fold, image) triples of a row's test folds: rows with equal ones are paired."""
    mine = predictions_of.get(row)
    if mine is None:
        return frozenset()
    return frozenset(zip(mine["repeat"], mine["fold"], mine["id"].astype(str)))


def _per_fold(folds_of: Mapping, row: Tuple[str, str], key: str) -> pd.DataFrame:
    mine = folds_of[row]
    return mine.sort_values(["repeat", "fold"])[["repeat", "fold", "n_train", "n_test", key]]


def _add_ties(table, folds_of, predictions_of, tie_column, alpha, boots) -> pd.DataFrame:
    """``Tied With Best``, ``P Value vs Best``, ``Difference vs Best`` and its interval."""
    key = _METRIC_KEYS[tie_column]
    low, high = ci_names(DIFFERENCE_VS_BEST)
    table[TIED_WITH_BEST] = TIE_UNKNOWN
    table[P_VALUE_VS_BEST] = table[DIFFERENCE_VS_BEST] = table[low] = table[high] = np.nan
    ok = table[(table["Status"] == STATUS_OK) & table[tie_column].notna()]
    if ok.empty:
        return table
    best = ok[tie_column].idxmax()
    best_row = (table.loc[best, "Feature Set"], table.loc[best, "Model"])
    table.loc[best, TIED_WITH_BEST] = TIE_BEST
    best_folds = _per_fold(folds_of, best_row, key)
    best_signature = _fold_signature(predictions_of, best_row)
    raw_p, single_split = {}, []
    for index in ok.index.drop(best):
        row = (table.loc[index, "Feature Set"], table.loc[index, "Model"])
        if _fold_signature(predictions_of, row) != best_signature:
            continue  # other images or other folds: no paired comparison
        mine = _per_fold(folds_of, row, key)
        differences = mine[key].to_numpy(float) - best_folds[key].to_numpy(float)
        table.loc[index, DIFFERENCE_VS_BEST] = float(np.nanmean(differences))
        if index in boots and best in boots:
            table.loc[index, [low, high]] = percentile_interval(boots[index] - boots[best], alpha)
        test = corrected_resampled_ttest(differences, float(mine["n_train"].mean()), float(mine["n_test"].mean()))
        if test.n_folds >= 2:
            raw_p[index] = test.p_value
        else:
            single_split.append(index)
    for index, p in raw_p.items():
        table.loc[index, P_VALUE_VS_BEST] = p
        if np.isfinite(p):
            table.loc[index, TIED_WITH_BEST] = TIE_YES if p >= alpha else TIE_NO
    for index in single_split:
        lo, hi = table.loc[index, low], table.loc[index, high]
        if np.isfinite(lo) and np.isfinite(hi):
            table.loc[index, TIED_WITH_BEST] = TIE_YES if lo <= 0.0 <= hi else TIE_NO
    return table
