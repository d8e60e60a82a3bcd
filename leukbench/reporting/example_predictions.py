"""A grid of example predictions: each image with its predicted label and confidence.

Drawn for every prediction run (``Predictions.save`` writes it), the most
confident first. With labels, wrong predictions come first, the most
confident first (the errors worth looking at), marked red; right ones
follow, marked green.
Drawn on a pyplot-free Figure with its own Agg canvas, as the report's plots.

Example
-------
>>> import numpy as np, pandas as pd
>>> table = pd.DataFrame({"path": ["a.png", "b.png"], "predicted_label": ["all", "hem"],
...                       "score_all": [0.9, 0.4], "score_hem": [0.1, 0.6], "true_label": ["hem", "hem"]})
>>> example_order(table).tolist()  # the confident error first
[0, 1]
"""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pandas as pd

__all__ = ["example_order", "plot_example_predictions", "EXAMPLE_PREDICTIONS_FILE"]

#: Where ``leukbench predict`` writes the grid, beside its CSV.
EXAMPLE_PREDICTIONS_FILE = "plots/example_predictions.png"


def _classes(table: pd.DataFrame) -> List[str]:
    return [c[len("score_"):] for c in table.columns if c.startswith("score_")]


def confidence(table: pd.DataFrame) -> np.ndarray:
    """The score of each row's predicted class (NaN without scores).

    Example
    -------
    >>> confidence(pd.DataFrame({'predicted_label': ['hem'], 'score_all': [0.3], 'score_hem': [0.7]}))
    array([0.7])
    """
    classes = _classes(table)
    if not classes:
        return np.full(len(table), np.nan)
    scores = table[[f"score_{c}" for c in classes]].to_numpy(dtype=float)
    col = {c: k for k, c in enumerate(classes)}
    idx = np.array([col.get(str(p), -1) for p in table["predicted_label"]])
    out = np.full(len(table), np.nan)
    ok = idx >= 0
    out[ok] = scores[np.flatnonzero(ok), idx[ok]]
    return out


def example_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions in grid order: errors by falling confidence, then right ones by falling confidence.

    Without a ``true_label`` column, every row by falling confidence.

    Example
    -------
    >>> table = pd.DataFrame({'predicted_label': ['all', 'all'], 'score_all': [0.6, 0.9],
    ...                       'score_hem': [0.4, 0.1]})
    >>> example_order(table).tolist()  # no labels: by confidence
    [1, 0]
    """
    conf = np.nan_to_num(confidence(table), nan=-np.inf)
    if "true_label" in table.columns:
        true = table["true_label"].astype(str).to_numpy()
        wrong = (true != table["predicted_label"].astype(str).to_numpy()) & (true != "")
    else:
        wrong = np.zeros(len(table), dtype=bool)
    return np.lexsort((-conf, ~wrong))


def plot_example_predictions(table: pd.DataFrame, n: int = 16, ncols: int = 4, thumb: int = 160,
                             ax_size: float = 2.2):
    """The grid of the first ``n`` images of :func:`example_order` (a table of ``leukbench predict``).

    Parameters
    ----------
    table : DataFrame
        ``path``, ``predicted_label``, ``score_<class>`` columns, ``true_label`` when known.
    n, ncols : int
        Images shown and columns of the grid.
    thumb : int
        Images are decoded shrunk to about this short side.
    ax_size : float
        Inches per image.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> fig = plot_example_predictions(model.predictions("new_cells/").table)  # doctest: +SKIP
    >>> fig.savefig("example_predictions.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..exceptions import ImageReadError
    from ..images import load_image

    order = example_order(table)[:max(1, int(n))]
    conf = confidence(table)
    ncols = max(1, min(int(ncols), len(order) or 1))
    nrows = max(1, math.ceil(len(order) / ncols))
    fig = Figure(figsize=(ncols * ax_size, nrows * (ax_size + 0.4)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    labelled = "true_label" in table.columns
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, order):
        row = table.iloc[int(i)]
        try:
            ax.imshow(load_image(row["path"], reduce_to=thumb))
        except (ImageReadError, OSError):
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
        score = f" {conf[i]:.2f}" if np.isfinite(conf[i]) else ""
        title = f"{row['predicted_label']}{score}"
        color = "black"
        if labelled and str(row["true_label"]):
            right = str(row["true_label"]) == str(row["predicted_label"])
            color = "tab:green" if right else "tab:red"
            title += "  right" if right else f"  wrong (true {row['true_label']})"
        ax.set_title(title, fontsize=8, color=color)
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(color)
            spine.set_linewidth(3)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
    order_note = " (errors first, most confident first)" if labelled else " (most confident first)"
    fig.suptitle("Example predictions" + order_note, fontsize=10)
    return fig
