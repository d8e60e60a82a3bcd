"""What :func:`~leukbench.evaluation.compare` returns: the :class:`ComparisonResult`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..exceptions import EvaluationError
from ..schema import DEFAULT_SORT, STATUS_OK, TIME_COLUMNS
from .options import sort_column

if TYPE_CHECKING:  # pandas loads on use: worker processes start faster
    import pandas as pd

__all__ = ["ComparisonResult"]


@dataclasses.dataclass
class ComparisonResult:
    """What :func:`compare` found.

    Attributes
    ----------
    table : DataFrame
        One row per feature set × classifier: mean and std over folds of every
        metric, ``Fit Time``, ``Time Taken``, ``Folds`` and ``Status``; best first.
    folds : DataFrame
        One row per feature set × classifier × repeat × fold.
    predictions : DataFrame
        Out-of-fold predictions: one row per test image per fold.
    audit : AuditReport, dict of them, or None
        The leakage audit (one per distinct image set).
    cv_description : str
        Which scheme was used and why.
    classes : list of str
    positive_label : str or None
    params : dict
        Every parameter of the run.
    feature_sets_info : list of dict
    n_cached, n_computed : int
        Tasks taken from the fold cache / computed in this run.
    notes : list of str
        Warnings raised by the evaluation.
    training : DataFrame or None
        Fine-tuned networks only (``compare(finetune=...)``): one row per feature set x repeat x
        fold x epoch (losses, validation balanced accuracy and accuracy, learning rate, seconds,
        ``best``); ``training.csv``.
    finetune_ids : DataFrame or None
        The images each fold's fine-tuning used: ``feature_set, repeat, fold, role, id`` with
        ``role`` one of ``train``, ``val`` (early stopping, checkpoint selection) and ``test``.
    """

    table: pd.DataFrame
    folds: pd.DataFrame
    predictions: pd.DataFrame
    audit: Any
    cv_description: str
    classes: List[str]
    positive_label: Optional[str]
    params: Dict[str, Any]
    feature_sets_info: List[Dict[str, Any]]
    n_cached: int = 0
    n_computed: int = 0
    notes: List[str] = dataclasses.field(default_factory=list)
    training: Optional[pd.DataFrame] = None
    finetune_ids: Optional[pd.DataFrame] = None

    def __repr__(self) -> str:
        ok = int((self.table["Status"] == STATUS_OK).sum()) if len(self.table) else 0
        return (f"ComparisonResult({len(self.table)} rows, {ok} ok, classes={self.classes}, "
                f"cv={self.cv_description.split(':')[0]!r})")

    def best(self, metric: Optional[str] = None) -> pd.Series:
        """The best successful row by ``metric`` (default: the sort metric).

        Scores are best when highest, times (``Fit Time``, ``Time Taken``) when
        lowest; ties go to the earlier row of the table.
        """
        metric = sort_column(metric or self.params.get("sort", DEFAULT_SORT))
        ok = self.table[(self.table["Status"] == STATUS_OK) & self.table[metric].notna()]
        if ok.empty:
            raise EvaluationError(f"no classifier finished successfully with a {metric} score")
        return ok.sort_values(metric, ascending=metric in TIME_COLUMNS, kind="stable").iloc[0]

    def save(self, out_dir, feature_sets=None, plots: bool = True) -> Path:
        """Write the results folder (see ``docs/reports.md``); returns its path."""
        from ..reporting import write_report

        return write_report(self, out_dir, feature_sets=feature_sets, plots=plots)

    def plot_metric_bars(self, metric: str = DEFAULT_SORT, **kw):
        """Bars of ``metric`` per row, best first, std over folds as error bars.

        Parameters
        ----------
        metric : str
            A column of :attr:`table` (``"ROC AUC"``, ``"F1 Score"`` ...).
        **kw
            ``ax``: a matplotlib Axes to draw into.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..reporting import plot_metric_bars

        return plot_metric_bars(self, metric, **kw)

    def plot_roc_curves(self, top: int = 3, **kw):
        """ROC curves (scores pooled over folds) of the best ``top`` successful rows.

        Parameters
        ----------
        top : int
        **kw
            ``ax``: a matplotlib Axes to draw into.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..reporting import plot_roc_curves

        return plot_roc_curves(self, top=top, **kw)

    def plot_confusion_matrices(self, top: int = 3, **kw):
        """Pooled out-of-fold confusion matrices of the best ``top`` successful rows.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..reporting import plot_confusion_matrices

        return plot_confusion_matrices(self, top=top, **kw)

    def per_class(self) -> pd.DataFrame:
        """Per-class precision, recall, F1 and support of every successful row (``per_class.csv``).

        Each class's scores are computed per test fold and given as mean and
        std over the folds that hold the class, as the table's are; see
        :func:`leukbench.evaluation.per_class.per_class_table`.

        Returns
        -------
        DataFrame
            One row per feature set × model × class, best rows first.
        """
        from ..reporting.report import per_class_frame

        return per_class_frame(self)

    def calibration(self, n_bins: int = 10) -> pd.DataFrame:
        """Expected calibration error of every successful row (``calibration.csv``).

        See :func:`leukbench.evaluation.calibration.calibration_table`; ``ECE``
        is NaN for a row whose scores are not probabilities.

        Returns
        -------
        DataFrame
            ``Feature Set, Model, Scores, ECE, n_bins, n``, best rows first.
        """
        from ..reporting.report import calibration_frame

        return calibration_frame(self, n_bins=n_bins)

    def plot_calibration(self, top: int = 3, n_bins: int = 10, **kw):
        """Reliability diagram of the best ``top`` successful rows, with their ECE.

        Parameters
        ----------
        top : int
        n_bins : int
            Equal-width probability bins.
        **kw
            ``ax``: a matplotlib Axes to draw into.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..reporting.calibration_plot import plot_calibration

        return plot_calibration(self, top=top, n_bins=n_bins, **kw)
