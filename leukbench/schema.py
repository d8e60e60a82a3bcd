"""Names shared by evaluation and reporting, defined once.

The column names of the results table, the fold statuses, the audit and
skipped-image columns, the default positive class and the default seed live
here so that the part that computes a number and the part that shows it cannot
drift apart. Nothing here imports anything heavy.

Example
-------
>>> from leukbench import schema
>>> schema.TABLE_NAMES["balanced_accuracy"]
'Balanced Accuracy'
>>> schema.default_positive_label(["all", "hem"])
'all'
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = [
    "METRICS",
    "TABLE_NAMES",
    "METRIC_COLUMNS",
    "TIME_COLUMNS",
    "ID_COLUMNS",
    "TAIL_COLUMNS",
    "STATUS_OK",
    "STATUS_TIMEOUT",
    "STATUS_FAILED",
    "PAIR_COLUMNS",
    "SKIPPED_COLUMNS",
    "DEFAULT_SEED",
    "DEFAULT_SORT",
    "std_name",
    "ci_names",
    "TIED_WITH_BEST",
    "P_VALUE_VS_BEST",
    "DIFFERENCE_VS_BEST",
    "STATISTIC_COLUMNS",
    "TIE_BEST",
    "TIE_YES",
    "TIE_NO",
    "TIE_UNKNOWN",
    "default_positive_label",
]

#: Metric keys, in table order (``score_fold`` returns them).
METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "mcc")

#: Metric key -> results-table column.
TABLE_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced Accuracy",
    "roc_auc": "ROC AUC",
    "f1": "F1 Score",
    "precision": "Precision",
    "recall": "Recall",
    "mcc": "MCC",
}

#: Score columns of the results table, each with a ``"<name> Std"`` partner.
METRIC_COLUMNS = tuple(TABLE_NAMES[m] for m in METRICS)

#: Timing columns (seconds); ``Fit Time`` has a ``Fit Time Std`` partner.
TIME_COLUMNS = ("Fit Time", "Time Taken")

#: The columns that name a row, and the ones that close it.
ID_COLUMNS = ("Feature Set", "Model")
TAIL_COLUMNS = ("Folds", "Status")

#: Columns of the paired comparison with the best row (issue: is the best row really better?).
TIED_WITH_BEST = "Tied With Best"
P_VALUE_VS_BEST = "P Value vs Best"
DIFFERENCE_VS_BEST = "Difference vs Best"

#: Values of ``Tied With Best``: the best row itself, statistically tied, worse, not testable.
TIE_BEST, TIE_YES, TIE_NO, TIE_UNKNOWN = "best", "yes", "no", "n/a"

#: Status of a fit, a fold and a table row (a failed row reads ``"failed: <reason>"``).
STATUS_OK = "ok"
STATUS_TIMEOUT = "timeout"
STATUS_FAILED = "failed"

#: Columns of the leakage audit's pairs (``audit_pairs.csv``).
PAIR_COLUMNS = ("id_a", "id_b", "subject_a", "subject_b", "split_a", "split_b", "kind", "distance")

#: Columns of the images an extraction could not read (``skipped_images.csv``).
SKIPPED_COLUMNS = ("id", "kind", "reason")

#: Seed of the folds and of the classifiers, for the library and the command line alike.
DEFAULT_SEED = 42

#: The column the results table is sorted by.
DEFAULT_SORT = "Balanced Accuracy"


def std_name(column: str) -> str:
    """The spread column of ``column``: ``"Accuracy"`` -> ``"Accuracy Std"``."""
    return f"{column} Std"


def ci_names(column: str):
    """The two columns of the confidence interval of ``column``.

    Example
    -------
    >>> ci_names("Balanced Accuracy")
    ('Balanced Accuracy CI Low', 'Balanced Accuracy CI High')
    """
    return f"{column} CI Low", f"{column} CI High"


#: Columns of the statistics of a row beside its scores, in ``table.csv`` order.
STATISTIC_COLUMNS = (TIED_WITH_BEST, P_VALUE_VS_BEST, DIFFERENCE_VS_BEST, *ci_names(DIFFERENCE_VS_BEST))


def default_positive_label(classes: Sequence[str]) -> Optional[str]:
    """The positive class of binary F1/precision/recall when none is given.

    ``"all"`` (leukemic) for the C-NMC classes ``all``/``hem`` in any case,
    otherwise the second of the two sorted classes; ``None`` unless there are
    exactly two classes.

    Example
    -------
    >>> default_positive_label(["benign", "malignant"])
    'malignant'
    >>> default_positive_label(["a", "b", "c"]) is None
    True
    """
    classes = [str(c) for c in classes]
    if len(classes) != 2:
        return None
    if {c.lower() for c in classes} == {"all", "hem"}:
        return next(c for c in classes if c.lower() == "all")
    return classes[1]
