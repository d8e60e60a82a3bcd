"""The tables of a comparison: per-fold scores, out-of-fold predictions, and the results table.

:func:`fold_tables` turns the outcome of every task into one row of
``folds`` (scores, times, status; for a tuned row the chosen ``params`` as JSON
and the ``n_candidates`` tried) and the rows of ``predictions`` (one per
test image); :func:`summarise` makes the results table from ``folds``: one
row per feature set x classifier, the mean and spread over folds, best first.
A row with a failed or timed-out fold shows no scores (scores over fewer
folds are not comparable) and says why in ``Status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..schema import (
    METRICS,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_TIMEOUT,
    TABLE_NAMES,
    TIME_COLUMNS,
    std_name,
)
from .fits import FitOutcome, PreparedSet, Task
from .metrics import score_fold

if TYPE_CHECKING:
    import pandas as pd

    from ..featureset import FeatureSet

__all__ = ["fold_tables", "summarise"]

FIT_TIME, TIME_TAKEN = TIME_COLUMNS


def fold_tables(sets: Sequence[FeatureSet], data: Sequence[PreparedSet], tasks: Sequence[Task],
                outcomes: Dict[int, FitOutcome], classes: List[str],
                positive: Optional[int]) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """The ``folds`` and ``predictions`` frames of a run (``outcomes`` by task index)."""
    import pandas as pd

    fold_rows, pred_frames = [], []
    for task in tasks:
        fs, y, outcome = sets[task.set_index], data[task.set_index].y, outcomes[task.index]
        fold_rows.append(_fold_row(fs, task, outcome, y, len(classes), positive))
        if outcome.ok:
            pred_frames.append(_prediction_frame(fs, task, outcome, y, classes))
    score_cols = [f"score_{c}" for c in classes]
    preds = (pd.concat(pred_frames, ignore_index=True) if pred_frames else
             pd.DataFrame(columns=["feature_set", "classifier", "repeat", "fold", "id", "subject",
                                   "y_true", "y_pred", *score_cols]))
    return pd.DataFrame(fold_rows), preds


def _fold_row(fs: FeatureSet, task: Task, outcome: FitOutcome, y: np.ndarray, n_classes: int,
              positive: Optional[int]) -> Dict[str, Any]:
    sp = task.split
    subj = np.asarray(fs.subjects, dtype=object)
    row: Dict[str, Any] = {
        "feature_set": fs.name, "classifier": task.classifier, "repeat": sp.repeat, "fold": sp.fold,
        "n_train": len(sp.train), "n_test": len(sp.test),
        "train_subjects": sorted({s for s in subj[sp.train] if s}),
        "test_subjects": sorted({s for s in subj[sp.test] if s}),
    }
    if outcome.ok:
        row.update(score_fold(y[sp.test], outcome.y_pred, outcome.scores, n_classes, positive))
    else:
        row.update({m: float("nan") for m in METRICS})
    row.update(fit_time=outcome.fit_time, predict_time=outcome.predict_time, status=outcome.status,
               error=outcome.error, params=outcome.params, n_candidates=outcome.n_candidates)
    return row


def _prediction_frame(fs: FeatureSet, task: Task, outcome: FitOutcome, y: np.ndarray,
                      classes: List[str]) -> pd.DataFrame:
    import pandas as pd

    sp, n_classes = task.split, len(classes)
    p = pd.DataFrame({
        "feature_set": fs.name, "classifier": task.classifier, "repeat": sp.repeat,
        "fold": sp.fold, "id": np.asarray(fs.ids, dtype=object)[sp.test],
        "subject": np.asarray(fs.subjects, dtype=object)[sp.test], "y_true": [classes[i] for i in y[sp.test]],
        "y_pred": [classes[i] if 0 <= i < n_classes else str(i) for i in outcome.y_pred],
    })
    for ci, c in enumerate(classes):
        p[f"score_{c}"] = outcome.scores[:, ci] if outcome.scores is not None else np.nan
    return p


def summarise(folds: pd.DataFrame, sets: Sequence[FeatureSet], names: Sequence[str],
              sort: str) -> pd.DataFrame:
    """The results table: one row per feature set x classifier, sorted by ``sort``, best first.

    ``Fit Time`` and ``Time Taken`` sort ascending, every other column
    descending; rows that did not finish every fold come last.
    """
    import pandas as pd

    rows = []
    for fs in sets:
        for name in names:
            f = folds[(folds.feature_set == fs.name) & (folds.classifier == name)]
            if len(f):  # a row only for the pairs that ran (end-to-end is a fine-tuned set's alone)
                rows.append(_summary_row(f, fs.name, name))
    table = pd.DataFrame(rows)
    ok = table["Status"] == STATUS_OK
    key = table[sort].where(ok, -np.inf).fillna(-np.inf)
    if sort in TIME_COLUMNS:
        key = -table[sort].where(ok, np.inf).fillna(np.inf)
    table = table.assign(_k=-key).sort_values(["_k", "Model", "Feature Set"], kind="stable")
    return table.drop(columns="_k").reset_index(drop=True)


def _mean_and_std(values: np.ndarray) -> Tuple[float, float]:
    """Mean and spread of the finite values; one value has no spread (NaN, not 0)."""
    values = values[np.isfinite(values)]
    return (float(values.mean()) if len(values) else float("nan"),
            float(values.std()) if len(values) > 1 else float("nan"))


def _summary_row(f: pd.DataFrame, feature_set: str, model: str) -> Dict[str, Any]:
    """One table row from the folds ``f`` of one feature set and classifier."""
    ok = f[f.status == STATUS_OK]
    row: Dict[str, Any] = {"Feature Set": feature_set, "Model": model}
    for m, col in TABLE_NAMES.items():
        row[col], row[std_name(col)] = _mean_and_std(ok[m].to_numpy(dtype=float))
    row[FIT_TIME], row[std_name(FIT_TIME)] = _mean_and_std(f["fit_time"].to_numpy(dtype=float))
    row[TIME_TAKEN] = float(np.nansum(f["fit_time"].to_numpy(float))
                              + np.nansum(f["predict_time"].to_numpy(float)))
    row["Folds"] = int(len(ok))
    if len(ok) == len(f):
        row["Status"] = STATUS_OK
        return row
    bad = f[f.status != STATUS_OK]
    if (bad.status == STATUS_TIMEOUT).all():
        row["Status"] = STATUS_TIMEOUT
    else:
        err = bad[bad.status == STATUS_FAILED]["error"].iloc[0]
        row["Status"] = f"{STATUS_FAILED}: {err}"
    if len(ok):  # partial: scores over fewer folds are not comparable
        for col in TABLE_NAMES.values():
            row[col] = row[std_name(col)] = float("nan")
        row["Folds"] = 0
    # a fit time over the folds that finished would flatter the row;
    # Time Taken still says how long the row cost (timeouts included)
    row[FIT_TIME] = row[std_name(FIT_TIME)] = float("nan")
    return row
