"""The reliability diagram of the best rows (``plots/calibration.png``).

The numbers come from :func:`leukbench.evaluation.calibration.row_calibration`
(imported on use), computed from the stored out-of-fold predictions only, so
the plot, ``calibration.csv`` and the report agree. Like the other plots it is
drawn on a pyplot-free Figure with its own Agg canvas.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ._result import ok_rows, result_frame, row_label
from .curves import positive_class, row_classes, row_predictions
from .plots import _new_figure

__all__ = ["row_calibrations", "plot_calibration"]


def row_calibrations(result, top: Optional[int] = 3, n_bins: int = 10) -> List[Dict[str, Any]]:
    """:func:`~leukbench.evaluation.calibration.row_calibration` of the best ``top`` successful rows.

    Each dict also has ``feature_set`` and ``model``; ``top=None`` takes every
    successful row.

    Example
    -------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "y_true": ["a", "b"],
    ...                       "y_pred": ["a", "b"], "score_a": [0.9, 0.2], "score_b": [0.1, 0.8]})
    >>> table = pd.DataFrame({"Feature Set": ["f"], "Model": ["c"], "Status": ["ok"]})
    >>> r = SimpleNamespace(table=table, predictions=preds, classes=["a", "b"], positive_label="b")
    >>> [(c["model"], c["scores"], round(c["ece"], 2)) for c in row_calibrations(r)]
    [('c', 'probabilities', 0.15)]
    """
    from ..evaluation.calibration import row_calibration

    classes = row_classes(result, result_frame(result, "predictions"))
    pos = positive_class(result, classes) if len(classes) == 2 else None
    out = []
    for _, r in ok_rows(result, top).iterrows():
        feature_set, model, p = row_predictions(result, r)
        c = row_calibration(p, classes, model=model, positive=pos, n_bins=n_bins)
        out.append({"feature_set": feature_set, "model": model, **c})
    return out


def _best_probabilistic(result, top: int, n_bins: int) -> List[Dict[str, Any]]:
    """The best ``top`` rows with probabilities, preceded by the better rows without (named only).

    The best rows of a table are often models without probabilities (ridge
    classifiers, linear SVMs); a reliability diagram of those alone would be
    empty, so the diagram shows the best rows that have probabilities.
    """
    chosen, n_probabilistic = [], 0
    for c in row_calibrations(result, None, n_bins):
        if n_probabilistic == top:
            break
        chosen.append(c)
        n_probabilistic += c["scores"] == "probabilities"
    return chosen


def _curve(c: Dict[str, Any]):
    """The bins drawn for one row: the positive class's for two classes, else the confidence's."""
    return c["positive"] if c["positive"] is not None else c["confidence"]


def _title(binary: bool, pos, n_bins: int) -> str:
    what = (f"Reliability, positive class = {pos}" if binary
            else "Reliability of the top-label confidence")
    return (f"{what}\n(out-of-fold probabilities pooled over folds; "
            f"ECE on the max probability, {n_bins} bins)")


def _draw_rows(ax, hist_ax, cals: List[Dict[str, Any]]) -> int:
    """Curves (and histogram steps) of the probabilistic rows; legend-only lines for the others."""
    drawn = 0
    for i, c in enumerate(cals):
        label = row_label(c["feature_set"], c["model"])
        if c["scores"] != "probabilities":
            ax.plot([], [], ls="none", label=f"{label}: {c['scores']}, not probabilities — no curve")
            continue
        bins = _curve(c)
        full = bins["count"] > 0
        ax.plot(bins["mean_prob"][full], bins["observed"][full], marker="o", ms=4, lw=1.6,
                color=f"C{i % 10}", label=f"{label}: ECE {c['ece']:.3f} (n={c['n']})")
        if hist_ax is not None:
            hist_ax.stairs(bins["count"], bins["edges"], color=f"C{i % 10}", lw=1.4)
        drawn += 1
    return drawn


def plot_calibration(result, top: int = 3, n_bins: int = 10, ax=None):
    """Reliability diagram of the best ``top`` successful rows that have probabilities, with each row's ECE.

    Two classes: the fraction of positive images against the mean predicted
    probability of the positive class, per equal-width bin (``sklearn.
    calibration.calibration_curve``). More classes: the accuracy against the
    mean top-label confidence per bin. The legend gives each row's expected
    calibration error (on the top-label confidence); a row whose scores are
    not probabilities (a model without ``predict_proba``) and that ranks
    above the rows drawn is named in the legend, not drawn. Without ``ax`` a second panel shows how many images
    fall into each bin.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cals = _best_probabilistic(result, top, n_bins)
    classes = row_classes(result, result_frame(result, "predictions"))
    binary = len(classes) == 2
    pos = positive_class(result, classes) if binary else None
    if ax is None:
        fig = _new_figure((5.6, 6.4))
        ax, hist_ax = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    else:
        fig, hist_ax = ax.figure, None
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    drawn = _draw_rows(ax, hist_ax, cals)
    if drawn == 0:
        why = "no successful models" if not cals else "no successful row has probabilities"
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("fraction of positives" if binary else "accuracy")
    ax.set_title(_title(binary, pos, n_bins), fontsize=8)
    if hist_ax is not None:
        hist_ax.set_xlabel(f"mean predicted probability of {pos}" if binary else "confidence")
        hist_ax.set_ylabel("images")
        hist_ax.set_xticks(np.linspace(0, 1, 6))
        fig.set_size_inches(5.6, 6.4 + 0.18 * (len(cals) + 1))
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center",
                   frameon=False)
    else:  # a caller's axes
        ax.set_xlabel("mean predicted probability" if binary else "confidence")
        ax.legend(fontsize=7, loc="upper left")
    return fig
