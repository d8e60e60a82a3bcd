"""The PNG files of a results folder: which plots, their titles, and drawing them safely.

A plot that fails is noted and left out; it never stops the rest of the
report from being written.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Dict, List

import pandas as pd

from .._atomic import write_atomically
from ._result import ok_rows, result_frame, result_table
from .calibration_plot import plot_calibration
from .plots import (
    plot_class_balance,
    plot_confusion_matrices,
    plot_metric_bars,
    plot_roc_curves,
    plot_sample_grid,
)
from .ranking_plot import plot_rankings, rankings_of

__all__ = ["PLOT_TITLES", "PLOT_FILES", "clear_plots", "write_plots"]

#: File under ``plots/`` -> its title in the report, in report order.
PLOT_TITLES: Dict[str, str] = {
    "class_balance.png": "Class balance",
    "sample_grid.png": "Sample images per class",
    "metric_bars.png": "Balanced accuracy per model",
    "roc_curves.png": "ROC curves of the best models",
    "confusion_matrices.png": "Confusion matrices of the best models",
    "calibration.png": "Reliability diagram of the best models",
    "critical_difference.png": "Ranks of the classifiers and of the feature sets (Friedman, Nemenyi)",
    "training_curves.png": "Training curves of the fine-tuned networks (one line per fold, * the kept epoch)",
}
PLOT_FILES = tuple(PLOT_TITLES)


def clear_plots(plots_dir: Path) -> None:
    """Remove the plots of an earlier report, so that none is left stale."""
    for name in PLOT_FILES:
        (plots_dir / name).unlink(missing_ok=True)


def _save_png(fig, path: Path) -> None:
    """Save ``fig`` to a temporary file, then rename it: a full disk or a kill never leaves
    a half-written PNG under its real name (an earlier report's plot was removed first)."""
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    except OSError as exc:  # named by the PNG, not its temporary file
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _attempt(name: str, make: Callable, plots_dir: Path, made: List[str], notes: List[str]) -> None:
    """Draw one plot and save it; a failure becomes a warning and a note."""
    try:
        fig = make()
    except Exception as exc:  # a plot must never lose the rest of the report
        warnings.warn(f"leukbench report: plot {name} failed: {exc!r}", RuntimeWarning, stacklevel=2)
        notes.append(f"plot {name} could not be drawn: {exc.__class__.__name__}: {exc}")
        return
    if fig is not None:
        _save_png(fig, plots_dir / name)
        made.append(name)


def write_plots(result, images: pd.DataFrame, plots_dir: Path, notes: List[str], *,
                with_samples: bool, seed: int) -> List[str]:
    """Write the PNGs of a report; return the file names written (failures go to ``notes``).

    ``images`` is the report's :func:`~leukbench.reporting.dataset.image_frame`;
    the sample grid is drawn only ``with_samples`` (feature sets were given)
    and when the images have paths, picked with ``seed``.
    """
    made: List[str] = []
    labeled = images[images["label"].notna()]
    subjects = labeled["subject"].tolist() if len(labeled) else None
    if len(labeled):
        _attempt("class_balance.png",
                 lambda: plot_class_balance(labeled["label"].tolist(), subjects=subjects),
                 plots_dir, made, notes)
    with_paths = labeled[labeled["path"].notna() & (labeled["path"].astype(str) != "")]
    if with_samples and len(with_paths):
        _attempt("sample_grid.png",
                 lambda: plot_sample_grid(with_paths["path"].tolist(), with_paths["label"].tolist(),
                                          seed=seed),
                 plots_dir, made, notes)
    table = result_table(result)
    if len(table) and "Balanced Accuracy" in table.columns:
        _attempt("metric_bars.png", lambda: plot_metric_bars(result, "Balanced Accuracy"),
                 plots_dir, made, notes)
    if not result_frame(result, "predictions").empty and len(ok_rows(result)):
        _attempt("roc_curves.png", lambda: plot_roc_curves(result, top=3), plots_dir, made, notes)
        _attempt("confusion_matrices.png", lambda: plot_confusion_matrices(result, top=3),
                 plots_dir, made, notes)
        _attempt("calibration.png", lambda: plot_calibration(result, top=3), plots_dir, made, notes)
    if len(table):
        _attempt("critical_difference.png", lambda: _ranking_figure(result), plots_dir, made, notes)
    training = getattr(result, "training", None)
    if training is not None and len(training):
        from .training_plot import plot_training_curves

        _attempt("training_curves.png", lambda: plot_training_curves(training), plots_dir, made, notes)
    return made


def _ranking_figure(result):
    """The critical-difference diagrams, or ``None`` for a table of one feature set."""
    from ..evaluation.uncertainty import tie_metric

    params = getattr(result, "params", None) or {}
    metric = tie_metric(params.get("sort") or "Balanced Accuracy")
    if metric not in result_table(result).columns:
        return None
    rankings = rankings_of(result, metric, params.get("alpha") or 0.05)
    return plot_rankings(rankings, metric) if rankings else None
