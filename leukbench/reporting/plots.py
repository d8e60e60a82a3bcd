"""The plots of a comparison: class balance, sample images, metric bars, ROC, confusion matrices.

Plots are drawn on :class:`matplotlib.figure.Figure` objects with an Agg
canvas attached; this module never calls ``matplotlib.use`` and never touches
``pyplot``'s global state, so importing it (or calling it) leaves the user's
backend alone. matplotlib is imported on first use.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..exceptions import InvalidParameterError, UnknownMetricError
from ..schema import STATUS_OK, TIME_COLUMNS, std_name
from ._result import (
    is_missing,
    is_ok,
    ok_rows,
    result_frame,
    result_table,
    row_label,
    short_status,
)
from .curves import confusion_counts, roc_points, row_classes
from .tables import mean_std

__all__ = [
    "plot_class_balance",
    "plot_sample_grid",
    "plot_metric_bars",
    "plot_roc_curves",
    "plot_confusion_matrices",
    "UnknownMetricError",
]

_UNLABELED = "(unlabeled)"


def _new_figure(figsize, layout="constrained"):
    """A pyplot-free Figure with an Agg canvas (no global state touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _slant_tick_labels(axes) -> None:
    """Slanted x labels, so that many or long class names do not run into each other."""
    for ax in axes:
        if ax is not None:
            ax.tick_params(axis="x", labelrotation=40, labelsize=8)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
                t.set_rotation_mode("anchor")


# --------------------------------------------------------------------------
# the data
# --------------------------------------------------------------------------


def _labels_and_subjects(feature_set_or_labels, subjects):
    if hasattr(feature_set_or_labels, "y"):
        labels = list(feature_set_or_labels.y)
        if subjects is None:
            s = getattr(feature_set_or_labels, "subjects", None)
            subjects = None if s is None else list(s)
    else:
        labels = list(feature_set_or_labels)
    labels = [_UNLABELED if is_missing(v) or v == "" else str(v) for v in labels]
    has_subjects = (
        subjects is not None
        and len(subjects) == len(labels)
        and len(labels) > 0
        and all(not is_missing(s) and str(s) != "" for s in subjects)
    )
    frame = pd.DataFrame({"label": labels})
    if has_subjects:
        frame["subject"] = [str(s) for s in subjects]
    return frame, has_subjects


def plot_class_balance(feature_set_or_labels, ax=None, subjects=None):
    """Bar chart of images per class, and subjects per class when known.

    Parameters
    ----------
    feature_set_or_labels : FeatureSet or sequence of labels
        A FeatureSet (``y`` and ``subjects`` are used) or plain labels.
    ax : matplotlib Axes, optional
        Draw into this axes (subjects are then written on the bars);
        otherwise a new figure is made, with a second panel for subjects.
    subjects : sequence, optional
        Subject per image when plain labels are given.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> fig = plot_class_balance(["all", "all", "hem"])
    >>> sorted(int(p.get_height()) for p in fig.axes[0].patches)
    [1, 2]
    """
    df, has_subj = _labels_and_subjects(feature_set_or_labels, subjects)
    order = sorted(c for c in set(df["label"]) if c != _UNLABELED)
    if _UNLABELED in set(df["label"]):
        order.append(_UNLABELED)
    n_img = df["label"].value_counts().reindex(order, fill_value=0)
    n_sub = (df.groupby("label")["subject"].nunique().reindex(order, fill_value=0)
             if has_subj else None)

    colors = [f"C{i % 10}" for i in range(len(order))]
    if ax is None:
        ncols = 2 if has_subj else 1
        fig = _new_figure((3.2 * ncols + max(0, len(order) - 3) * 0.5, 3.4))
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        ax_img, ax_sub = axes[0], (axes[1] if has_subj else None)
    else:
        fig, ax_img, ax_sub = ax.figure, ax, None

    bars = ax_img.bar(order, n_img.values, color=colors)
    if ax_sub is None and has_subj:
        texts = [f"{i}\n({s} subj.)" for i, s in zip(n_img.values, n_sub.values)]
    else:
        texts = [str(i) for i in n_img.values]
    ax_img.bar_label(bars, labels=texts, fontsize=8, padding=2)
    ax_img.set_ylabel("images")
    ax_img.set_title(f"Images per class (n={len(df)})", fontsize=10)
    ax_img.margins(y=0.2)
    if ax_sub is not None:
        sub_bars = ax_sub.bar(order, n_sub.values, color=colors)
        ax_sub.bar_label(sub_bars, fontsize=8, padding=2)
        ax_sub.set_ylabel("subjects")
        ax_sub.set_title(f"Subjects per class (n={df['subject'].nunique()})", fontsize=10)
        ax_sub.margins(y=0.2)
    if len(order) > 4 or max((len(c) for c in order if c != _UNLABELED), default=0) > 10:
        _slant_tick_labels((ax_img, ax_sub))
    return fig


def _thumbnail(path, max_side: int = 160) -> Optional[np.ndarray]:
    """The image at ``path``, shrunk to ``max_side`` pixels; ``None`` when unreadable."""
    from PIL import Image

    from leukbench.images import load_image

    try:
        arr = load_image(path)
    except Exception:  # unreadable images are skipped, whatever the reason
        return None
    h, w = arr.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        im = Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))))
        arr = np.asarray(im)
    return arr


def _sample_thumbnails(paths, labels, classes, per_class: int,
                       seed: int) -> Dict[str, List[np.ndarray]]:
    """Up to ``per_class`` readable random thumbnails per class (50 spare tries each)."""
    rng = np.random.default_rng(seed)
    chosen: Dict[str, List[np.ndarray]] = {}
    for c in classes:
        idx = np.array([i for i, v in enumerate(labels) if v == c])
        imgs: List[np.ndarray] = []
        for i in rng.permutation(idx)[: per_class + 50]:
            if is_missing(paths[i]) or paths[i] == "":
                continue
            t = _thumbnail(paths[i])
            if t is not None:
                imgs.append(t)
            if len(imgs) >= per_class:
                break
        chosen[c] = imgs
    return chosen


def plot_sample_grid(paths, labels, per_class: int = 6, seed: int = 0):
    """Grid of randomly chosen sample images, one row per class.

    Unreadable files are skipped (the next random image of the class is
    tried instead).  Images are loaded with :func:`leukbench.images.load_image`.

    Parameters
    ----------
    paths, labels : sequences of the same length
    per_class : int
        Images per row.
    seed : int
        Seed of the random choice (same seed, same grid).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidParameterError
        When `paths` and `labels` differ in length.
    """
    paths = list(paths)
    labels = ["" if is_missing(v) else str(v) for v in labels]
    if len(paths) != len(labels):
        raise InvalidParameterError(f"{len(paths)} paths but {len(labels)} labels",
                                    parameter="labels")
    classes = sorted({c for c in labels if c})
    chosen = _sample_thumbnails(paths, labels, classes, per_class, seed)
    nrows = max(1, len(classes))
    w, h = 1.45 * per_class + 0.6, 1.55 * nrows + 0.45
    fig = _new_figure((w, h), layout=None)  # fixed layout: constrained is slow on many axes
    fig.subplots_adjust(left=0.9 / w, right=1 - 0.05 / w, bottom=0.05 / h, top=1 - 0.4 / h,
                        wspace=0.05, hspace=0.08)
    axes = fig.subplots(nrows, per_class, squeeze=False)
    for r in range(nrows):
        for k in range(per_class):
            ax = axes[r][k]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if classes and k < len(chosen[classes[r]]):
                ax.imshow(chosen[classes[r]][k])
            if k == 0 and classes:
                ax.set_ylabel(f"{classes[r]}\n({len(chosen[classes[r]])} shown)", fontsize=9)
    if not classes or not any(chosen.values()):
        axes[0][0].text(0, 0.5, "no readable images", fontsize=10, transform=axes[0][0].transAxes)
    fig.suptitle("Random sample images per class", fontsize=10)
    return fig


# --------------------------------------------------------------------------
# the scores
# --------------------------------------------------------------------------


def _bar_range(vals: np.ndarray, stds: np.ndarray, unit: bool):
    """x range of the bars (with their error bars); at least [0, 1] for unit-scale metrics."""
    finite = np.isfinite(vals)
    if not finite.any():
        return 0.0, 1.0
    lo = min(0.0, float(np.nanmin(vals[finite] - np.nan_to_num(stds[finite]))))
    hi = float(np.nanmax(vals[finite] + np.nan_to_num(stds[finite])))
    return lo, (max(1.0, hi) if unit else hi)


def _feature_set_legend(fig, ax, fsets, color_of) -> None:
    from matplotlib.patches import Patch

    # below the plot: beside it the legend would squeeze the bars between long labels
    handles = [Patch(color=color_of[f], label=f) for f in fsets]
    kw = {"fontsize": 7, "ncol": min(len(fsets), 3), "title": "feature set", "title_fontsize": 7,
          "frameon": False}
    if fig.get_layout_engine() is not None and ax is fig.axes[0] and len(fig.axes) == 1:
        fig.legend(handles=handles, loc="outside lower center", **kw)
    else:  # a caller's axes: keep the legend inside them
        ax.legend(handles=handles, loc="lower right", **kw)


def plot_metric_bars(result, metric: str = "Balanced Accuracy", ax=None):
    """Horizontal bars of `metric` per model, coloured by feature set.

    Rows are sorted best first (top), with ``<metric> Std`` as error bars;
    rows without a value (failed, timeout) are listed at the bottom with
    their status written instead of a bar.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    UnknownMetricError
        (a ``KeyError``) when `metric` is not a column of the table.
    """
    t = result_table(result)
    if metric not in t.columns:
        raise UnknownMetricError(
            f"metric {metric!r} not in the results table; have {list(t.columns)}",
            parameter="metric")
    vals = t[metric].astype(float)
    stds = t[std_name(metric)].astype(float) if std_name(metric) in t.columns else vals * np.nan
    order = np.argsort(-vals.fillna(-np.inf).to_numpy(), kind="stable")
    t, vals, stds = t.iloc[order], vals.iloc[order].to_numpy(), stds.iloc[order].to_numpy()
    fsets = list(dict.fromkeys(t["Feature Set"].astype(str))) if len(t) else []
    color_of = {f: f"C{i % 10}" for i, f in enumerate(fsets)}
    n = len(t)
    if ax is None:
        fig = _new_figure((9.0, max(2.8, 0.32 * n + 1.6)))
        ax = fig.subplots()
    else:
        fig = ax.figure
    y = np.arange(n)[::-1]
    unit = metric not in TIME_COLUMNS
    lo, hi = _bar_range(vals, stds, unit)
    span = hi - lo if hi > lo else 1.0
    statuses = t["Status"].tolist() if "Status" in t.columns else [STATUS_OK] * n
    for yi, v, s, f, st in zip(y, vals, stds, t["Feature Set"].astype(str), statuses):
        if np.isfinite(v):
            ax.barh(yi, v, xerr=None if is_missing(s) else s, color=color_of[f],
                    error_kw={"capsize": 3, "elinewidth": 1}, height=0.7)
            ax.text(v + (0 if is_missing(s) else s) + 0.015 * span, yi,
                    mean_std(v, s, 2 if not unit else 3), va="center", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
        else:
            ax.text(lo + 0.01 * span, yi, "n/a" if is_ok(st) else short_status(st), va="center",
                    fontsize=7, color="0.4", style="italic")
    ax.set_yticks(y)
    ax.set_yticklabels([row_label(f, m) for f, m in zip(t["Feature Set"], t["Model"])], fontsize=8)
    ax.set_xlim(lo, hi + 0.3 * span)
    ax.set_xticks([x for x in ax.get_xticks() if lo - 1e-9 <= x <= hi + 1e-9])
    ax.set_xlabel(f"{metric} (s)" if not unit else metric)
    ax.set_title(f"{metric}: mean ± std over folds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(fsets) > 1:
        _feature_set_legend(fig, ax, fsets, color_of)
    return fig


def _auc_label(pts, row=None) -> str:
    """Legend text: the table's ROC AUC (mean ± std over folds) when the row has it,
    so that the plot and the table agree, then the AUC of the pooled curve drawn."""
    mean, std = pts["auc_mean"], pts["auc_std"]
    if row is not None and "ROC AUC" in row:  # the table's number, n/a included
        mean = float(row["ROC AUC"])
        std = float(row.get("ROC AUC Std", math.nan))
    single = pts["n_splits"] <= 1
    macro = "macro " if pts["kind"] != "binary" else ""
    if is_missing(mean):
        text = "AUC n/a"
    elif is_missing(std) or single:
        text = f"{macro}AUC {mean:.3f}"
    else:
        text = f"{macro}AUC {mean:.3f} ± {std:.3f}"
    if not is_missing(pts["auc"]) and (not single or pts["kind"] != "binary"):
        text += f" ({'micro, ' if pts['kind'] != 'binary' else ''}pooled {pts['auc']:.3f})"
    return text


def _roc_title(kind, pos, single: bool) -> str:
    how = ("(one test split)" if single else
           "(pooled over folds; AUC mean ± std over folds, as in the table)")
    if kind == "binary":
        return f"ROC, positive class = {pos}\n{how}"
    return f"ROC, micro-average one-vs-rest curves\n{how}"


def _one_test_split(result) -> bool:
    p_all = result_frame(result, "predictions")
    split_cols = [c for c in ("repeat", "fold") if c in p_all.columns]
    return p_all.empty or not split_cols or len(p_all.groupby(split_cols)) <= 1


def plot_roc_curves(result, top: int = 3, ax=None):
    """ROC curves of the best `top` successful rows of the table.

    Curves pool the scores of all folds (see :func:`roc_points`); the
    legend gives the table's ROC AUC (mean ± std over folds; macro
    one-vs-rest for more than two classes) and the AUC of the pooled curve.
    With one test split (``--split predefined``) there is no spread to show.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = ok_rows(result, top)
    if ax is None:
        fig = _new_figure((5.2, 4.8))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    kind, pos = None, None
    drawn = 0
    one_class = False  # scores exist, but the test data hold a single class
    for i, (_, r) in enumerate(rows.iterrows()):
        pts = roc_points(result, r)
        kind, pos = pts["kind"], pts["positive_label"] or pos
        if len(pts["fpr"]) == 0:
            one_class = one_class or pts["n"] > 0
            continue
        ax.plot(pts["fpr"], pts["tpr"], lw=1.6, color=f"C{i % 10}",
                label=f"{row_label(pts['feature_set'], pts['model'])}: {_auc_label(pts, r)}")
        drawn += 1
    if drawn == 0:
        why = ("the test data hold one class only: no ROC curve" if one_class
               else "no scores to plot")
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(_roc_title(kind, pos, _one_test_split(result)), fontsize=9)
    if fig.get_layout_engine() is not None and len(fig.axes) == 1:
        # below the plot: inside, long labels would hide the curves' steep start
        fig.set_size_inches(5.6, 5.0 + 0.18 * (drawn + 1))
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center",
                   frameon=False)
    else:  # a caller's axes
        ax.legend(fontsize=7, loc="lower right")
    return fig


def _draw_confusion(ax, m: pd.DataFrame, title: str, n_classes: int):
    """One confusion matrix, coloured by the fraction of the true class; returns the image."""
    counts = m.to_numpy()
    tot = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, tot, out=np.zeros(counts.shape, float), where=tot > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for a in range(counts.shape[0]):
        for b in range(counts.shape[1]):
            ax.text(b, a, f"{counts[a, b]}\n{100 * frac[a, b]:.1f}%", ha="center",
                    va="center", fontsize=8, color="white" if frac[a, b] > 0.6 else "black")
    ax.set_xticks(range(len(m.columns)))
    ax.set_xticklabels(m.columns, fontsize=8, rotation=45 if n_classes > 3 else 0)
    ax.set_yticks(range(len(m.index)))
    ax.set_yticklabels(m.index, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    return im


def plot_confusion_matrices(result, top: int = 3):
    """Confusion matrices of the best `top` successful rows.

    Cells are coloured by the row-normalised fraction (recall per true class)
    and annotated with the pooled count and that percentage.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = ok_rows(result, top)
    n = max(1, len(rows))
    k = len(row_classes(result, result_frame(result, "predictions")))
    side = max(2.6, 0.55 * k + 1.6)
    fig = _new_figure((side * n + 0.4, side + 0.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (_, r) in zip(axes, rows.iterrows()):
        title = row_label(r["Feature Set"], r["Model"])
        im = _draw_confusion(ax, confusion_counts(result, r), title, k)
    if len(rows) == 0:
        axes[0].text(0.5, 0.5, "no successful models", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    elif im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="fraction of true class")
    fig.suptitle("Confusion matrices (counts pooled over folds and repeats; % of true class)",
                 fontsize=9)
    return fig
