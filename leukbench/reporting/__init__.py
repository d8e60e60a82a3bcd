"""Results tables, plots and the self-contained results folder of a comparison.

Everything here works on a *comparison result*: any object with the attributes
of :class:`leukbench.evaluation.ComparisonResult` (``table``, ``folds``,
``predictions``, ``audit``, ``cv_description``, ``classes``,
``positive_label``, ``params``, ``feature_sets_info``), so fakes work as well
as real results. The numbers drawn here come from :mod:`leukbench.evaluation`
(``metrics`` for ROC and confusion counts, ``ranking`` for the rank tests),
imported on use.

Modules, in the order they build on each other:

``tables``
    :func:`format_table` (markdown, CSV, HTML) and :func:`markdown_summary`.
``curves``
    :func:`roc_points` and :func:`confusion_counts` of one table row.
``plots``
    The five plots, drawn without touching ``pyplot``'s global state.
``provenance``
    :class:`Provenance`: versions, command, seeds, feature sets and their
    extractors, :func:`data_fingerprint`.
``data_checks``
    Leakage-audit pairs and summaries, :func:`skipped_images`.
``ranking_plot``, ``summarize``
    Critical-difference diagrams; :func:`summarize` ranks several results folders together.
``dataset``, ``figures``, ``html``, ``report``
    The dataset summary, the report's PNGs, ``report.html`` and
    :func:`write_report`, which writes the folder (see ``docs/reports.md``).
"""

from __future__ import annotations

from ..schema import METRIC_COLUMNS, SKIPPED_COLUMNS, TIME_COLUMNS
from .calibration_plot import plot_calibration
from .curves import confusion_counts, roc_points
from .data_checks import skipped_images
from .fingerprints import data_fingerprint
from .plots import (
    UnknownMetricError,
    plot_class_balance,
    plot_confusion_matrices,
    plot_metric_bars,
    plot_roc_curves,
    plot_sample_grid,
)
from .provenance import Provenance
from .ranking_plot import plot_critical_difference, rankings_of
from .report import write_report
from .summarize import Summary, summarize
from .tables import format_table, markdown_summary

__all__ = [
    "METRIC_COLUMNS",
    "TIME_COLUMNS",
    "format_table",
    "markdown_summary",
    "plot_class_balance",
    "plot_sample_grid",
    "plot_metric_bars",
    "plot_roc_curves",
    "plot_confusion_matrices",
    "roc_points",
    "confusion_counts",
    "data_fingerprint",
    "write_report",
    "plot_critical_difference",
    "plot_calibration",
    "rankings_of",
    "Summary",
    "summarize",
    # importable from here before the split, and new in it
    "SKIPPED_COLUMNS",
    "skipped_images",
    "Provenance",
    "UnknownMetricError",
]
