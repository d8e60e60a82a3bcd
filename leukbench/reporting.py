"""Results tables, plots and the self-contained results folder of a comparison.

Everything here works on a *comparison result*: any object with the attributes
of :class:`leukbench.evaluation.ComparisonResult` (``table``, ``folds``,
``predictions``, ``audit``, ``cv_description``, ``classes``,
``positive_label``, ``params``, ``feature_sets_info``).  Nothing is imported
from :mod:`leukbench.evaluation`, so fakes work as well as real results.

Plots are drawn on :class:`matplotlib.figure.Figure` objects with an Agg
canvas attached; this module never calls ``matplotlib.use`` and never touches
``pyplot``'s global state, so importing it (or calling it) leaves the user's
backend alone.  See ``docs/reports.md`` for the layout of a results folder.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import math
import os
import platform
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

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
]

#: Score columns of the results table, each with a ``"<name> Std"`` partner.
METRIC_COLUMNS = (
    "Accuracy",
    "Balanced Accuracy",
    "ROC AUC",
    "F1 Score",
    "Precision",
    "Recall",
    "MCC",
)
#: Timing columns (seconds); ``Fit Time`` has a ``Fit Time Std`` partner.
TIME_COLUMNS = ("Fit Time", "Time Taken")

_ID_COLUMNS = ("Feature Set", "Model")
_TAIL_COLUMNS = ("Folds", "Status")
_STATUS_MAX_MD = 120
_PLOT_FILES = (
    "class_balance.png",
    "sample_grid.png",
    "metric_bars.png",
    "roc_curves.png",
    "confusion_matrices.png",
)
_PLOT_TITLES = {
    "class_balance.png": "Class balance",
    "sample_grid.png": "Sample images per class",
    "metric_bars.png": "Balanced accuracy per model",
    "roc_curves.png": "ROC curves of the best models",
    "confusion_matrices.png": "Confusion matrices of the best models",
}


# ==========================================================================
# small helpers
# ==========================================================================


def _isnan(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _is_ok(status) -> bool:
    if _isnan(status):
        return True
    return str(status).strip().lower() == "ok"


def _short_status(status) -> str:
    s = str(status).strip()
    return s.split(":", 1)[0].strip() or "failed"


def _fmt_num(v, digits: int) -> str:
    s = f"{float(v):.{digits}f}"
    if s.lstrip("-").strip("0.") == "":  # "-0.000" -> "0.000"
        s = s.lstrip("-")
    return s


def _mean_std(mean, std, digits: int) -> str:
    s = _fmt_num(mean, digits)
    if not _isnan(std):
        s += f" ± {_fmt_num(std, digits)}"
    return s


def _std_name(col: str) -> str:
    return f"{col} Std"


def _known_columns() -> set:
    known = set(_ID_COLUMNS) | set(_TAIL_COLUMNS) | set(METRIC_COLUMNS) | set(TIME_COLUMNS)
    known |= {_std_name(c) for c in METRIC_COLUMNS + TIME_COLUMNS}
    return known


def _extra_columns(table: pd.DataFrame) -> List[str]:
    known = _known_columns()
    return [c for c in table.columns if c not in known]


def _table(result_or_table) -> pd.DataFrame:
    t = getattr(result_or_table, "table", result_or_table)
    if t is None:
        return pd.DataFrame(columns=list(_ID_COLUMNS) + list(METRIC_COLUMNS) + list(_TAIL_COLUMNS))
    return pd.DataFrame(t).reset_index(drop=True)


def _frame(obj, attr: str) -> pd.DataFrame:
    df = getattr(obj, attr, None)
    if df is None:
        return pd.DataFrame()
    return pd.DataFrame(df).reset_index(drop=True)


def _new_figure(figsize, layout="constrained"):
    """A pyplot-free Figure with an Agg canvas (no global state touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _ok_rows(result, top: Optional[int] = None) -> pd.DataFrame:
    t = _table(result)
    if "Status" in t.columns:
        t = t[[_is_ok(s) for s in t["Status"]]]
    return t.head(top) if top is not None else t


def _row_label(fs, model) -> str:
    return f"{fs} · {model}"


# ==========================================================================
# tables
# ==========================================================================


def _display_columns(table: pd.DataFrame, include_times: bool) -> List[str]:
    cols = [c for c in _ID_COLUMNS if c in table.columns]
    cols += [c for c in METRIC_COLUMNS if c in table.columns]
    if include_times:
        cols += [c for c in TIME_COLUMNS if c in table.columns]
    cols += [c for c in _TAIL_COLUMNS if c in table.columns]
    cols += [c for c in _extra_columns(table) if include_times or "time" not in c.lower()]
    return cols


def _display_cells(table: pd.DataFrame, digits: int, include_times: bool, status_max=None):
    """Header names, alignments and string cells of the human-readable table."""
    cols = _display_columns(table, include_times)
    header, align = [], []
    for c in cols:
        header.append(f"{c} (s)" if c in TIME_COLUMNS else c)
        numeric = c in METRIC_COLUMNS or c in TIME_COLUMNS or c == "Folds"
        align.append("right" if numeric else "left")
    rows = []
    for _, r in table.iterrows():
        status = r.get("Status", "ok")
        ok = _is_ok(status)
        cells = []
        for c in cols:
            v = r[c]
            if c in METRIC_COLUMNS or c in TIME_COLUMNS:
                d = digits if c in METRIC_COLUMNS else 2
                std = r.get(_std_name(c), np.nan)
                if _isnan(v):
                    if c in TIME_COLUMNS:
                        cells.append("—")
                    else:
                        cells.append("n/a" if ok else _short_status(status))
                else:
                    cells.append(_mean_std(v, std, d))
            elif c == "Folds":
                cells.append("—" if _isnan(v) else str(int(v)))
            elif c == "Status":
                s = "ok" if _isnan(v) else " ".join(str(v).split())
                if status_max and len(s) > status_max:
                    s = s[: status_max - 1] + "…"
                cells.append(s)
            else:
                if _isnan(v):
                    cells.append("")
                elif isinstance(v, (float, np.floating)):
                    cells.append(_fmt_num(v, digits))
                else:
                    cells.append(" ".join(str(v).split()))
        rows.append(cells)
    return header, align, rows, cols


def _md_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|")


def format_table(table, fmt: str = "markdown", digits: int = 3, include_times: bool = True) -> str:
    """Render the results table.

    Parameters
    ----------
    table : DataFrame or comparison result
        The ``ComparisonResult.table`` (or the result itself), already sorted.
    fmt : {"markdown", "csv", "html"}
        ``markdown``: GitHub table, metrics as ``mean ± std`` rounded to
        `digits`, times in seconds with 2 decimals, failed rows showing their
        status instead of numbers.  ``html``: the same cells as a ``<table>``.
        ``csv``: machine-readable, separate numeric mean and ``<name> Std``
        columns at full precision (`digits` is ignored).
    digits : int
        Decimals of the metric values (markdown and html).
    include_times : bool
        Whether ``Fit Time`` / ``Time Taken`` (and extra columns whose name
        contains "time") are included.  ``table.md`` uses ``False`` so that it
        is byte-identical across runs with the same scores.

    Returns
    -------
    str
    """
    t = _table(table)
    fmt = fmt.lower()
    if fmt == "csv":
        cols = [c for c in _ID_COLUMNS if c in t.columns]
        for c in METRIC_COLUMNS + (TIME_COLUMNS if include_times else ()):
            if c in t.columns:
                cols.append(c)
                if _std_name(c) in t.columns:
                    cols.append(_std_name(c))
        cols += [c for c in _TAIL_COLUMNS if c in t.columns]
        cols += [c for c in _extra_columns(t) if include_times or "time" not in c.lower()]
        out = t[cols].copy()
        if "Folds" in out.columns:
            try:
                out["Folds"] = out["Folds"].astype("Int64")  # ints; empty when unknown
            except (TypeError, ValueError):
                pass
        return out.to_csv(index=False, lineterminator="\n")
    if fmt in ("markdown", "md"):
        header, align, rows, _ = _display_cells(t, digits, include_times, _STATUS_MAX_MD)
        lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
        lines.append("|" + "|".join(":---" if a == "left" else "---:" for a in align) + "|")
        for cells in rows:
            lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "html":
        header, align, rows, _ = _display_cells(t, digits, include_times)
        out = ['<table class="leukbench-results">', "<thead><tr>"]
        out += [f'<th class="{a}">{html.escape(h)}</th>' for h, a in zip(header, align)]
        out.append("</tr></thead>")
        out.append("<tbody>")
        statuses = t["Status"] if "Status" in t.columns else ["ok"] * len(t)
        for cells, status in zip(rows, statuses):
            cls = "ok" if _is_ok(status) else "failed"
            tds = "".join(
                f'<td class="{a}">{html.escape(c)}</td>' for c, a in zip(cells, align)
            )
            out.append(f'<tr class="{cls}">{tds}</tr>')
        out.append("</tbody></table>")
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown table format {fmt!r}; use 'markdown', 'csv' or 'html'")


# ==========================================================================
# ROC / confusion helpers
# ==========================================================================


def _resolve_row(result, row) -> Tuple[str, str]:
    if isinstance(row, (int, np.integer)):
        r = _table(result).iloc[int(row)]
        return str(r["Feature Set"]), str(r["Model"])
    if isinstance(row, tuple) and len(row) == 2:
        return str(row[0]), str(row[1])
    if isinstance(row, (pd.Series, dict)):
        return str(row["Feature Set"]), str(row["Model"])
    raise TypeError("row must be a table position, a table row or a (feature_set, model) tuple")


def _row_predictions(result, row) -> Tuple[str, str, pd.DataFrame]:
    fs, model = _resolve_row(result, row)
    p = _frame(result, "predictions")
    if p.empty:
        return fs, model, p
    p = p[(p["feature_set"].astype(str) == fs) & (p["classifier"].astype(str) == model)]
    return fs, model, p.reset_index(drop=True)


def _classes(result, preds: Optional[pd.DataFrame] = None) -> List[str]:
    classes = [str(c) for c in (getattr(result, "classes", None) or [])]
    if preds is not None and not preds.empty:
        seen = sorted(set(preds["y_true"].astype(str)) | set(preds["y_pred"].astype(str)))
        classes += [c for c in seen if c not in classes and c not in ("nan", "None")]
    return classes


def _positive(result, classes: Sequence[str]) -> Optional[str]:
    pos = getattr(result, "positive_label", None)
    if pos is not None and str(pos) in classes:
        return str(pos)
    return classes[-1] if len(classes) == 2 else None


def _binary_scores(p: pd.DataFrame, classes: Sequence[str], pos: str) -> Optional[np.ndarray]:
    col = f"score_{pos}"
    if col in p.columns:
        return p[col].to_numpy(dtype=float)
    others = [c for c in classes if c != pos]
    if len(others) == 1 and f"score_{others[0]}" in p.columns:
        return -p[f"score_{others[0]}"].to_numpy(dtype=float)
    return None


def roc_points(result, row) -> Dict[str, Any]:
    """ROC curve and AUCs of one table row, computed from the stored scores.

    Binary problems use the score of the positive class (``result.
    positive_label``, else the second of two sorted classes); multiclass
    problems the micro-average one-vs-rest curve over all ``score_<class>``
    columns.  The curve pools the predictions of all folds (and repeats);
    the AUC is also computed per fold.

    Parameters
    ----------
    result : comparison result
    row : int, table row (Series/dict) or (feature_set, model) tuple

    Returns
    -------
    dict
        ``feature_set``, ``model``, ``kind`` ("binary" or "micro-ovr"),
        ``positive_label``, ``fpr``, ``tpr`` (arrays), ``auc`` (pooled),
        ``fold_aucs`` (array, one per repeat × fold with both classes),
        ``auc_mean``, ``auc_std`` (over folds), ``n``.  Arrays are empty and
        AUCs NaN when no usable scores exist.
    """
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.preprocessing import label_binarize

    fs, model, p = _row_predictions(result, row)
    classes = _classes(result, p)
    out: Dict[str, Any] = {
        "feature_set": fs,
        "model": model,
        "kind": "binary" if len(classes) == 2 else "micro-ovr",
        "positive_label": None,
        "fpr": np.array([]),
        "tpr": np.array([]),
        "auc": math.nan,
        "fold_aucs": np.array([]),
        "auc_mean": math.nan,
        "auc_std": math.nan,
        "n": 0,
    }
    if p.empty or len(classes) < 2:
        return out
    y_true = p["y_true"].astype(str).to_numpy()
    if len(classes) == 2:
        pos = _positive(result, classes)
        out["positive_label"] = pos
        s = _binary_scores(p, classes, pos)
        if s is None:
            return out
        keep = np.isfinite(s)
        truth = (y_true == pos).astype(int)
        flat_t, flat_s = truth[keep], s[keep]

        def fold_auc(idx):
            idx = idx[keep[idx]]
            t = truth[idx]
            return roc_auc_score(t, s[idx]) if 0 < t.sum() < len(t) else None

    else:
        cols = [f"score_{c}" for c in classes]
        if not all(c in p.columns for c in cols):
            return out
        S = p[cols].to_numpy(dtype=float)
        Y = label_binarize(y_true, classes=list(classes))
        keep = np.isfinite(S).all(axis=1)
        flat_t, flat_s = Y[keep].ravel(), S[keep].ravel()

        def fold_auc(idx):
            idx = idx[keep[idx]]
            if len(set(y_true[idx])) < 2:  # one class in the fold: no AUC, as in the table
                return None
            return roc_auc_score(Y[idx].ravel(), S[idx].ravel())

    out["n"] = int(keep.sum())
    if len(set(y_true[keep])) < 2:  # no images, or a single class: no curve
        return out
    fpr, tpr, _ = roc_curve(flat_t, flat_s)
    out["fpr"], out["tpr"] = fpr, tpr
    out["auc"] = float(roc_auc_score(flat_t, flat_s))
    group_cols = [c for c in ("repeat", "fold") if c in p.columns]
    aucs = []
    if group_cols:
        for _, idx in p.groupby(group_cols, sort=True).indices.items():
            a = fold_auc(np.asarray(idx))
            if a is not None:
                aucs.append(float(a))
    else:
        aucs = [out["auc"]]
    out["fold_aucs"] = np.asarray(aucs, dtype=float)
    if aucs:
        out["auc_mean"] = float(np.mean(aucs))
        out["auc_std"] = float(np.std(aucs, ddof=0)) if len(aucs) > 1 else 0.0
    return out


def confusion_counts(result, row) -> pd.DataFrame:
    """Confusion matrix counts of one table row, pooled over folds and repeats.

    Returns
    -------
    DataFrame
        Index: true class, columns: predicted class, in ``result.classes``
        order (other labels seen in the predictions appended).
    """
    _, _, p = _row_predictions(result, row)
    classes = _classes(result, p)
    m = pd.DataFrame(0, index=pd.Index(classes, name="true"),
                     columns=pd.Index(classes, name="predicted"), dtype=int)
    if p.empty:
        return m
    p = p.dropna(subset=["y_true", "y_pred"])
    counts = pd.crosstab(p["y_true"].astype(str), p["y_pred"].astype(str))
    for t in counts.index:
        for q in counts.columns:
            if t in m.index and q in m.columns:
                m.loc[t, q] = int(counts.loc[t, q])
    return m


# ==========================================================================
# plots
# ==========================================================================


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
    """
    if hasattr(feature_set_or_labels, "y"):
        labels = list(feature_set_or_labels.y)
        if subjects is None:
            s = getattr(feature_set_or_labels, "subjects", None)
            subjects = None if s is None else list(s)
    else:
        labels = list(feature_set_or_labels)
    labels = ["(unlabeled)" if _isnan(v) or v == "" else str(v) for v in labels]
    has_subj = (
        subjects is not None
        and len(subjects) == len(labels)
        and len(labels) > 0
        and all(not _isnan(s) and str(s) != "" for s in subjects)
    )
    df = pd.DataFrame({"label": labels})
    if has_subj:
        df["subject"] = [str(s) for s in subjects]
    order = sorted(c for c in set(labels) if c != "(unlabeled)")
    if "(unlabeled)" in set(labels):
        order.append("(unlabeled)")
    n_img = df["label"].value_counts().reindex(order, fill_value=0)
    n_sub = (
        df.groupby("label")["subject"].nunique().reindex(order, fill_value=0) if has_subj else None
    )

    colors = [f"C{i % 10}" for i in range(len(order))]
    if ax is None:
        ncols = 2 if has_subj else 1
        fig = _new_figure((3.2 * ncols + max(0, len(order) - 3) * 0.5, 3.4))
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        ax_img, ax_sub = axes[0], (axes[1] if has_subj else None)
    else:
        fig, ax_img, ax_sub = ax.figure, ax, None

    bars = ax_img.bar(order, n_img.values, color=colors)
    crowded = len(order) > 4 or max((len(c) for c in order if c != "(unlabeled)"), default=0) > 10
    if ax_sub is None and has_subj:
        texts = [f"{i}\n({s} subj.)" for i, s in zip(n_img.values, n_sub.values)]
    else:
        texts = [str(i) for i in n_img.values]
    ax_img.bar_label(bars, labels=texts, fontsize=8, padding=2)
    ax_img.set_ylabel("images")
    ax_img.set_title(f"Images per class (n={len(labels)})", fontsize=10)
    ax_img.margins(y=0.2)
    if ax_sub is not None:
        b2 = ax_sub.bar(order, n_sub.values, color=colors)
        ax_sub.bar_label(b2, fontsize=8, padding=2)
        ax_sub.set_ylabel("subjects")
        ax_sub.set_title(f"Subjects per class (n={df['subject'].nunique()})", fontsize=10)
        ax_sub.margins(y=0.2)
    if crowded:  # many or long class names: slanted, so that they do not run into each other
        for a in (ax_img, ax_sub):
            if a is not None:
                a.tick_params(axis="x", labelrotation=40, labelsize=8)
                for t in a.get_xticklabels():
                    t.set_horizontalalignment("right")
                    t.set_rotation_mode("anchor")
    return fig


def _thumbnail(path, max_side: int = 160) -> Optional[np.ndarray]:
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
    """
    paths = list(paths)
    labels = ["" if _isnan(v) else str(v) for v in labels]
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    classes = sorted({c for c in labels if c})
    rng = np.random.default_rng(seed)
    chosen: Dict[str, List[np.ndarray]] = {}
    for c in classes:
        idx = np.array([i for i, v in enumerate(labels) if v == c])
        imgs: List[np.ndarray] = []
        for i in rng.permutation(idx)[: per_class + 50]:
            if _isnan(paths[i]) or paths[i] == "":
                continue
            t = _thumbnail(paths[i])
            if t is not None:
                imgs.append(t)
            if len(imgs) >= per_class:
                break
        chosen[c] = imgs
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


def plot_metric_bars(result, metric: str = "Balanced Accuracy", ax=None):
    """Horizontal bars of `metric` per model, coloured by feature set.

    Rows are sorted best first (top), with ``<metric> Std`` as error bars;
    rows without a value (failed, timeout) are listed at the bottom with
    their status written instead of a bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = _table(result)
    if metric not in t.columns:
        raise KeyError(f"metric {metric!r} not in the results table; have {list(t.columns)}")
    vals = t[metric].astype(float)
    stds = t[_std_name(metric)].astype(float) if _std_name(metric) in t.columns else vals * np.nan
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
    labels = [_row_label(f, m) for f, m in zip(t["Feature Set"], t["Model"])]
    finite = np.isfinite(vals)
    unit = metric not in TIME_COLUMNS
    if finite.any():
        lo = min(0.0, float(np.nanmin(vals[finite] - np.nan_to_num(stds[finite]))))
        hi = float(np.nanmax(vals[finite] + np.nan_to_num(stds[finite])))
        hi = max(1.0, hi) if unit else hi
    else:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    statuses = t["Status"].tolist() if "Status" in t.columns else ["ok"] * n
    for yi, v, s, f, st in zip(y, vals, stds, t["Feature Set"].astype(str), statuses):
        if np.isfinite(v):
            ax.barh(yi, v, xerr=None if _isnan(s) else s, color=color_of[f],
                    error_kw={"capsize": 3, "elinewidth": 1}, height=0.7)
            txt = _mean_std(v, s, 2 if not unit else 3)
            ax.text(v + (0 if _isnan(s) else s) + 0.015 * span, yi, txt, va="center", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
        else:
            label = "n/a" if _is_ok(st) else _short_status(st)
            ax.text(lo + 0.01 * span, yi, label, va="center", fontsize=7, color="0.4",
                    style="italic")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(lo, hi + 0.3 * span)
    ax.set_xticks([x for x in ax.get_xticks() if lo - 1e-9 <= x <= hi + 1e-9])
    ax.set_xlabel(f"{metric} (s)" if not unit else metric)
    ax.set_title(f"{metric}: mean ± std over folds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(fsets) > 1:
        from matplotlib.patches import Patch

        # below the plot: beside it the legend would squeeze the bars between long labels
        handles = [Patch(color=color_of[f], label=f) for f in fsets]
        kw = {"fontsize": 7, "ncol": min(len(fsets), 3), "title": "feature set", "title_fontsize": 7,
              "frameon": False}
        if fig.get_layout_engine() is not None and ax is fig.axes[0] and len(fig.axes) == 1:
            fig.legend(handles=handles, loc="outside lower center", **kw)
        else:  # a caller's axes: keep the legend inside them
            ax.legend(handles=handles, loc="lower right", **kw)
    return fig


def _auc_label(pts, row=None) -> str:
    """Legend text: the table's ROC AUC (mean ± std over folds) when the row has it,
    so that the plot and the table agree, then the AUC of the pooled curve drawn."""
    mean, std = pts["auc_mean"], pts["auc_std"]
    if row is not None and "ROC AUC" in row:  # the table's number, n/a included
        mean = float(row["ROC AUC"])
        std = float(row.get("ROC AUC Std", math.nan))
    single = len(pts["fold_aucs"]) <= 1
    macro = "macro " if pts["kind"] != "binary" else ""
    if _isnan(mean):
        s = "AUC n/a"
    elif _isnan(std) or single:
        s = f"{macro}AUC {mean:.3f}"
    else:
        s = f"{macro}AUC {mean:.3f} ± {std:.3f}"
    if not _isnan(pts["auc"]) and (not single or pts["kind"] != "binary"):
        s += f" ({'micro, ' if pts['kind'] != 'binary' else ''}pooled {pts['auc']:.3f})"
    return s


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
    rows = _ok_rows(result, top)
    if ax is None:
        fig = _new_figure((5.2, 4.8))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    kind, pos = None, None
    drawn = 0
    p_all = _frame(result, "predictions")
    split_cols = [c for c in ("repeat", "fold") if c in p_all.columns]
    single = p_all.empty or not split_cols or len(p_all.groupby(split_cols)) <= 1  # one test split
    one_class = False  # scores exist, but the test data hold a single class
    for i, (_, r) in enumerate(rows.iterrows()):
        pts = roc_points(result, r)
        kind, pos = pts["kind"], pts["positive_label"] or pos
        if len(pts["fpr"]) == 0:
            one_class = one_class or pts["n"] > 0
            continue
        ax.plot(pts["fpr"], pts["tpr"], lw=1.6, color=f"C{i % 10}",
                label=f"{_row_label(pts['feature_set'], pts['model'])}: {_auc_label(pts, r)}")
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
    how = ("(one test split)" if single else
           "(pooled over folds; AUC mean ± std over folds, as in the table)")
    if kind == "binary":
        title = f"ROC, positive class = {pos}\n{how}"
    else:
        title = f"ROC, micro-average one-vs-rest curves\n{how}"
    ax.set_title(title, fontsize=9)
    if fig.get_layout_engine() is not None and len(fig.axes) == 1:
        # below the plot: inside, long labels would hide the curves' steep start
        fig.set_size_inches(5.6, 5.0 + 0.18 * (drawn + 1))
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", frameon=False)
    else:  # a caller's axes
        ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_confusion_matrices(result, top: int = 3):
    """Confusion matrices of the best `top` successful rows.

    Cells are coloured by the row-normalised fraction (recall per true class)
    and annotated with the pooled count and that percentage.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _ok_rows(result, top)
    n = max(1, len(rows))
    k = len(_classes(result, _frame(result, "predictions")))
    side = max(2.6, 0.55 * k + 1.6)
    fig = _new_figure((side * n + 0.4, side + 0.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (_, r) in zip(axes, rows.iterrows()):
        m = confusion_counts(result, r)
        counts = m.to_numpy()
        tot = counts.sum(axis=1, keepdims=True)
        frac = np.divide(counts, tot, out=np.zeros(counts.shape, float), where=tot > 0)
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for a in range(counts.shape[0]):
            for b in range(counts.shape[1]):
                ax.text(b, a, f"{counts[a, b]}\n{100 * frac[a, b]:.1f}%", ha="center",
                        va="center", fontsize=8, color="white" if frac[a, b] > 0.6 else "black")
        ax.set_xticks(range(len(m.columns)))
        ax.set_xticklabels(m.columns, fontsize=8, rotation=45 if k > 3 else 0)
        ax.set_yticks(range(len(m.index)))
        ax.set_yticklabels(m.index, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(_row_label(r["Feature Set"], r["Model"]), fontsize=8)
    if len(rows) == 0:
        axes[0].text(0.5, 0.5, "no successful models", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    elif im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="fraction of true class")
    fig.suptitle("Confusion matrices (counts pooled over folds and repeats; % of true class)",
                 fontsize=9)
    return fig


# ==========================================================================
# provenance, fingerprints, versions
# ==========================================================================


def _versions() -> Dict[str, Optional[str]]:
    import importlib.metadata as md
    import importlib.util

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    try:
        from leukbench._version import __version__ as lb
    except Exception:  # pragma: no cover - packaging broken
        lb = None
    out["leukbench"] = lb
    for mod, dist in (
        ("numpy", "numpy"),
        ("pandas", "pandas"),
        ("sklearn", "scikit-learn"),
        ("scipy", "scipy"),
        ("matplotlib", "matplotlib"),
        ("xgboost", "xgboost"),
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("timm", "timm"),
        ("lazypredict", "lazypredict"),
    ):
        # Read versions without importing heavy packages (torch) when possible.
        m = sys.modules.get(mod)
        v = getattr(m, "__version__", None) if m is not None else None
        if v is None:
            try:
                v = md.version(dist) if importlib.util.find_spec(mod) is not None else None
            except (md.PackageNotFoundError, ValueError, ImportError):
                v = None
        out[mod] = None if v is None else str(v)
    return out


def _labeled_mask(y) -> np.ndarray:
    return np.array([not _isnan(v) and v != "" for v in y], dtype=bool)


def _fingerprint_rows(ids, labels, subjects) -> Tuple[np.ndarray, str]:
    ids = np.array([str(i) for i in ids], dtype=object)
    labels = ["" if _isnan(v) else str(v) for v in labels]
    subjects = ["" if _isnan(v) else str(v) for v in subjects]
    order = sorted(range(len(ids)), key=lambda i: (ids[i], labels[i], subjects[i]))
    h = hashlib.sha256()
    for i in order:
        h.update(f"{ids[i]}\t{labels[i]}\t{subjects[i]}\n".encode("utf-8"))
    return np.asarray(order, dtype=int), h.hexdigest()


def data_fingerprint(feature_set) -> Dict[str, Any]:
    """Fingerprints of the labelled images of a FeatureSet.

    ``labels_sha256`` hashes the lines ``"<id>\\t<label>\\t<subject>\\n"``
    sorted by id (UTF-8); ``X_sha256`` hashes ``"<rows>x<cols>\\n"`` followed
    by the float32 little-endian bytes of X with rows in that same order.

    Returns
    -------
    dict
        ``name``, ``source`` ("feature_set"), ``n_images``, ``n_labeled``,
        ``n_features``, ``labels_sha256``, ``X_sha256``.
    """
    mask = _labeled_mask(feature_set.y)
    ids = np.asarray(feature_set.ids)[mask]
    order, lab = _fingerprint_rows(ids, np.asarray(feature_set.y)[mask],
                                   np.asarray(feature_set.subjects)[mask])
    X = np.asarray(feature_set.X)[mask][order].astype("<f4", copy=False)
    h = hashlib.sha256(f"{X.shape[0]}x{X.shape[1]}\n".encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return {
        "name": str(feature_set.name),
        "source": "feature_set",
        "n_images": int(len(feature_set.ids)),
        "n_labeled": int(mask.sum()),
        "n_features": int(X.shape[1]),
        "labels_sha256": lab,
        "X_sha256": h.hexdigest(),
    }


def _prediction_fingerprints(result) -> List[Dict[str, Any]]:
    p = _frame(result, "predictions")
    out = []
    if p.empty:
        return out
    subj = "subject" if "subject" in p.columns else None
    for fs, g in p.groupby("feature_set", sort=True):
        cols = ["id", "y_true"] + ([subj] if subj else [])
        u = g[cols].astype(str).drop_duplicates()
        _, lab = _fingerprint_rows(u["id"], u["y_true"], u[subj] if subj else [""] * len(u))
        out.append({
            "name": str(fs),
            "source": "predictions",
            "n_images": None,
            "n_labeled": int(len(u)),
            "n_features": None,
            "labels_sha256": lab,
            "X_sha256": None,
        })
    return out


def _walk_extractors(obj, found: List[Dict[str, Any]]):
    if isinstance(obj, dict):
        if "name" in obj and (
            "weights" in obj or "weights_id" in obj or obj.get("kind") in ("deep", "handcrafted")
        ):
            if obj not in found:
                found.append(obj)
            return
        for v in obj.values():
            _walk_extractors(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _walk_extractors(v, found)


def _weights_text(cfg: Dict[str, Any]) -> Tuple[str, bool]:
    """Human text about the weights of one extractor config, and random-init flag."""
    kind = str(cfg.get("kind", ""))
    weights = str(cfg.get("weights", "") or "")
    wid = str(cfg.get("weights_id", "") or "")
    if kind == "handcrafted":
        return "handcrafted — no learned weights", False
    random = (
        weights.lower() in ("none", "random", "random-init", "random_init")
        or "random" in wid.lower()
    )
    if random:
        return "weights: random init — not pretrained" + (f" ({wid})" if wid else ""), True
    if not weights and not wid:
        return "weights: unknown", False
    return f"weights: {weights or '?'}" + (f" (id: {wid})" if wid else " (id: unknown)"), False


def _feature_sets_info(result, feature_sets) -> List[Dict[str, Any]]:
    info = [dict(d) for d in (getattr(result, "feature_sets_info", None) or [])]
    names = {str(d.get("name")) for d in info}
    for fs in feature_sets or []:
        if str(fs.name) not in names:
            info.append({"name": fs.name, "n_images": len(fs), "n_features": fs.X.shape[1],
                         "provenance": fs.provenance})
    for d in info:
        found: List[Dict[str, Any]] = []
        _walk_extractors(_jsonable(d.get("provenance") or {}), found)
        d["extractors"] = []
        for cfg in found:
            text, rnd = _weights_text(cfg)
            d["extractors"].append({
                "name": cfg.get("name"), "kind": cfg.get("kind"), "weights": cfg.get("weights"),
                "weights_id": cfg.get("weights_id"), "random_init": rnd, "weights_text": text,
                "config": cfg,
            })
    return info


def _audit_items(audit) -> List[Tuple[Optional[str], Any]]:
    if audit is None:
        return []
    if isinstance(audit, dict):
        return [(str(k), v) for k, v in audit.items() if v is not None]
    return [(None, audit)]


def _audit_summary_text(obj) -> str:
    s = getattr(obj, "summary", None)
    try:
        return str(s() if callable(s) else (s if s is not None else obj))
    except Exception as exc:  # a broken audit must not lose the report
        return f"(audit summary unavailable: {exc})"


SKIPPED_COLUMNS = ["id", "kind", "reason"]


def _collect_skipped(obj, found: List[Dict[str, Any]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "skipped" and isinstance(v, list):
                found.extend(r for r in v if isinstance(r, dict))
            else:
                _collect_skipped(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_skipped(v, found)


def skipped_images(feature_sets) -> pd.DataFrame:
    """Images the extraction could not read, from the feature sets' provenance.

    One row per image (``id, kind, reason``), sorted by id; empty when
    nothing was skipped or the feature sets do not record it.
    """
    found: List[Dict[str, Any]] = []
    for fs in _as_list(feature_sets):
        _collect_skipped(getattr(fs, "provenance", None) or {}, found)
    df = pd.DataFrame(found, columns=SKIPPED_COLUMNS).astype(str)
    return df.drop_duplicates("id").sort_values("id", kind="stable").reset_index(drop=True)


def _audit_pairs(audit) -> pd.DataFrame:
    frames = []
    for name, obj in _audit_items(audit):
        pairs = getattr(obj, "pairs", None)
        if pairs is None:
            continue
        df = pd.DataFrame(pairs).copy()
        if name is not None:
            df.insert(0, "feature_set", name)
        frames.append(df)
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(columns=["id_a", "id_b", "subject_a", "subject_b", "split_a", "split_b",
                                 "kind", "distance"])


def _audit_oneline(audit) -> str:
    items = _audit_items(audit)
    if not items:
        return "no leakage audit was run"
    parts = []
    for name, obj in items:
        lines = [" ".join(x.split()) for x in _audit_summary_text(obj).splitlines()]
        s = "; ".join(x for x in lines if x)
        parts.append(f"{name}: {s}" if name is not None else s)
    return " | ".join(parts)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        seq = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v) for v in seq]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        try:
            return _jsonable(obj.to_dict())
        except Exception:
            pass
    return str(obj)


def _seeds(params: Dict[str, Any]) -> Dict[str, Any]:
    out = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if "seed" in str(k).lower() or str(k).lower() == "random_state":
                out[key] = v
            elif isinstance(v, dict):
                walk(v, key + ".")

    walk(params or {})
    return out


def _command_text(params) -> Optional[str]:
    cmd = (params or {}).get("command")
    if cmd is None or cmd == "":
        return None
    if isinstance(cmd, (list, tuple)):
        return shlex.join(str(c) for c in cmd)
    return str(cmd)


# ==========================================================================
# dataset summary
# ==========================================================================


def _as_list(feature_sets) -> List[Any]:
    if feature_sets is None:
        return []
    if isinstance(feature_sets, dict):
        return list(feature_sets.values())
    if hasattr(feature_sets, "X") and hasattr(feature_sets, "ids"):
        return [feature_sets]
    return list(feature_sets)


def _image_frame(result, feature_sets) -> pd.DataFrame:
    """One row per distinct image: id, label, subject, path (union over sets)."""
    rows = {}
    for fs in feature_sets:
        paths = fs.paths if fs.paths is not None else [None] * len(fs)
        for i, y, s, p in zip(fs.ids, fs.y, fs.subjects, paths):
            rows.setdefault(str(i), (None if _isnan(y) or y == "" else str(y),
                                     "" if _isnan(s) else str(s), p))
    if not rows:
        p = _frame(result, "predictions")
        if not p.empty:
            subj = p["subject"] if "subject" in p.columns else [""] * len(p)
            for i, y, s in zip(p["id"], p["y_true"], subj):
                rows.setdefault(str(i), (str(y), "" if _isnan(s) else str(s), None))
    df = pd.DataFrame(
        [(k,) + v for k, v in sorted(rows.items())], columns=["id", "label", "subject", "path"]
    )
    return df


def _dataset_summary(images: pd.DataFrame) -> Dict[str, Any]:
    lab = images[images["label"].notna()]
    # subjects count as known when every labelled image has one: the unlabelled
    # images (C-NMC's final test set) never take part in the comparison
    subj_known = len(lab) > 0 and bool((lab["subject"] != "").all())
    per_class = {}
    for c, g in lab.groupby("label", sort=True):
        per_class[str(c)] = {"images": int(len(g)),
                             "subjects": int(g["subject"].nunique()) if subj_known else None}
    return {
        "n_images": int(len(images)),
        "n_labeled": int(len(lab)),
        "n_subjects": int(lab["subject"].nunique()) if subj_known else None,
        "classes": per_class,
    }


# ==========================================================================
# summary text and report
# ==========================================================================


def markdown_summary(result) -> str:
    """Text printed by the CLI at the end of a comparison.

    The markdown table (with timings), then one line with the
    cross-validation scheme and one with the leakage-audit summary.
    """
    lines = [format_table(result.table, "markdown", include_times=True).rstrip("\n"), ""]
    cv = getattr(result, "cv_description", None)
    lines.append(f"Cross-validation: {' '.join(str(cv).split())}" if cv else
                 "Cross-validation: (not described)")
    lines.append(f"Leakage audit: {_audit_oneline(getattr(result, 'audit', None))}")
    fits = _fit_counts(result)
    if fits["total"]:
        lines.append(f"Fits: {fits['computed']} computed, {fits['from_fold_cache']} taken from the fold "
                     f"cache ({fits['total']} in all)")
    return "\n".join(lines) + "\n"


def _fit_counts(result) -> Dict[str, int]:
    """How many fits a comparison computed and how many came from the fold cache."""
    cached = int(getattr(result, "n_cached", 0) or 0)
    computed = int(getattr(result, "n_computed", 0) or 0)
    return {"total": cached + computed, "from_fold_cache": cached, "computed": computed}


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0.1em} h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:0.2em;margin-top:1.8em}
.meta{color:#666;font-size:0.9em}
table{border-collapse:collapse;font-size:0.85em;margin:0.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px} th{background:#f3f3f3}
td.right,th.right{text-align:right;white-space:nowrap} td.left,th.left{text-align:left}
tr.failed td{color:#a33;background:#fff6f6}
table.leukbench-results tbody tr:first-child td{font-weight:600}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.85em;white-space:pre-wrap}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:0.6em 0.9em;border-radius:4px}
.random{color:#b00;font-weight:700}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:0.85em}
"""


def _html_escape(s) -> str:
    return html.escape(str(s))


def _save_png(fig, path: Path):
    fig.savefig(path, dpi=110, format="png")


def _make_plots(result, feature_sets, images, plots_dir: Path, notes: List[str]) -> List[str]:
    """Write the PNGs; return the file names written (failures go to notes)."""
    made = []
    labeled = images[images["label"].notna()]
    subj = labeled["subject"].tolist() if len(labeled) else None

    def attempt(name, make):
        try:
            fig = make()
        except Exception as exc:  # a plot must never lose the rest of the report
            warnings.warn(f"leukbench report: plot {name} failed: {exc!r}", RuntimeWarning)
            notes.append(f"plot {name} could not be drawn: {exc.__class__.__name__}: {exc}")
            return
        if fig is not None:
            _save_png(fig, plots_dir / name)
            made.append(name)

    if len(labeled):
        attempt("class_balance.png",
                lambda: plot_class_balance(labeled["label"].tolist(), subjects=subj))
    with_paths = labeled[labeled["path"].notna() & (labeled["path"].astype(str) != "")]
    if feature_sets and len(with_paths):
        seed = _seeds(getattr(result, "params", None) or {}).get("seed", 0)
        seed = seed if isinstance(seed, (int, np.integer)) else 0
        attempt("sample_grid.png",
                lambda: plot_sample_grid(with_paths["path"].tolist(), with_paths["label"].tolist(),
                                         seed=int(seed)))
    t = _table(result)
    if len(t) and "Balanced Accuracy" in t.columns:
        attempt("metric_bars.png", lambda: plot_metric_bars(result, "Balanced Accuracy"))
    has_preds = not _frame(result, "predictions").empty and len(_ok_rows(result))
    if has_preds:
        attempt("roc_curves.png", lambda: plot_roc_curves(result, top=3))
        attempt("confusion_matrices.png", lambda: plot_confusion_matrices(result, top=3))
    return made


def _to_csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Lists/arrays in cells become ';'-joined strings (CSV-friendly)."""
    seq = (list, tuple, set, frozenset, np.ndarray)

    def join(v):
        if not isinstance(v, seq):
            return v
        items = sorted(v, key=str) if isinstance(v, (set, frozenset)) else v
        return ";".join(str(x) for x in items)

    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object and df[c].map(lambda v: isinstance(v, seq)).any():
            df[c] = df[c].map(join)
    return df


def write_report(result, out_dir, feature_sets=None, *, plots: bool = True) -> Path:
    """Write a complete results folder for a comparison.

    Files: ``table.md``, ``table.csv``, ``folds.csv``, ``predictions.csv``,
    ``audit_pairs.csv``, ``skipped_images.csv``, ``run.json``, ``report.html``
    and ``plots/*.png``
    (see ``docs/reports.md`` for every file and column).

    Parameters
    ----------
    result : comparison result
    out_dir : str or Path
        Created if needed; files of a previous report there are replaced.
    feature_sets : sequence or dict of FeatureSet, optional
        When given: dataset summary, data fingerprints (including the X
        bytes), class-balance plot and sample-image grid come from them;
        otherwise fingerprints and summary are derived from the predictions.
    plots : bool
        Set to False to skip the PNGs (faster; the report then has no plots).

    Returns
    -------
    Path
        `out_dir`.
    """
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name in _PLOT_FILES:  # no stale plots from an earlier report
        (plots_dir / name).unlink(missing_ok=True)
    fsets = _as_list(feature_sets)
    params = dict(getattr(result, "params", None) or {})
    table = _table(result)
    notes: List[str] = []

    # tables -------------------------------------------------------------
    (out / "table.md").write_text(format_table(table, "markdown", include_times=False),
                                  encoding="utf-8", newline="\n")
    (out / "table.csv").write_text(format_table(table, "csv"), encoding="utf-8", newline="\n")
    _to_csv_cells(_frame(result, "folds")).to_csv(out / "folds.csv", index=False,
                                                  lineterminator="\n")
    _frame(result, "predictions").to_csv(out / "predictions.csv", index=False, lineterminator="\n")
    audit = getattr(result, "audit", None)
    _audit_pairs(audit).to_csv(out / "audit_pairs.csv", index=False, lineterminator="\n")
    skipped = skipped_images(fsets)
    skipped.to_csv(out / "skipped_images.csv", index=False, lineterminator="\n")
    skipped_summary = {"n": int(len(skipped)),
                       "by_kind": {str(k): int(v) for k, v in skipped["kind"].value_counts().sort_index().items()}}

    # provenance -----------------------------------------------------------
    images = _image_frame(result, fsets)
    dataset = _dataset_summary(images)
    fs_info = _feature_sets_info(result, fsets)
    fps = [data_fingerprint(fs) for fs in fsets] if fsets else _prediction_fingerprints(result)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    plots = _make_plots(result, fsets, images, plots_dir, notes) if plots else []

    status_counts: Dict[str, int] = {}
    for s in table.get("Status", pd.Series(["ok"] * len(table))):
        key = "ok" if _is_ok(s) else _short_status(s)
        status_counts[key] = status_counts.get(key, 0) + 1
    run = {
        "created_utc": created,
        "versions": _versions(),
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "python_implementation":
                     platform.python_implementation()},
        "command": _command_text(params),
        "working_directory": os.getcwd(),  # where a relative path in the command is resolved
        "params": params,
        "seeds": _seeds(params),
        "cv_description": getattr(result, "cv_description", None),
        "classes": list(getattr(result, "classes", None) or []),
        "positive_label": getattr(result, "positive_label", None),
        "dataset": dataset,
        "skipped_images": skipped_summary,
        "feature_sets": [
            {**d, "extractors": [{k: v for k, v in x.items() if k != "config"}
                                 for x in d.get("extractors", [])]}
            for d in fs_info
        ],
        "data_fingerprints": fps,
        "audit": [{"feature_set": n, "summary": _audit_summary_text(o)}
                  for n, o in _audit_items(audit)],
        "status_counts": status_counts,
        "fits": _fit_counts(result),
        "files": sorted(
            ["table.md", "table.csv", "folds.csv", "predictions.csv", "audit_pairs.csv",
             "skipped_images.csv", "run.json", "report.html"] + [f"plots/{p}" for p in plots]
        ),
        "notes": notes,
    }
    (out / "run.json").write_text(json.dumps(_jsonable(run), indent=2, allow_nan=False) + "\n",
                                  encoding="utf-8")

    (out / "report.html").write_text(
        _report_html(result, table, dataset, fs_info, plots, plots_dir, created, params, notes,
                     skipped_summary),
        encoding="utf-8",
    )
    return out


def _report_html(result, table, dataset, fs_info, plots, plots_dir, created, params, notes,
                 skipped: Optional[Dict[str, Any]] = None) -> str:
    e = _html_escape
    classes = list(getattr(result, "classes", None) or [])
    pos = getattr(result, "positive_label", None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>leukbench report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>leukbench report</h1>",
        f'<p class="meta">Generated {e(created)} by leukbench {e(_versions()["leukbench"])}.'
        " Plots are embedded in this file (base64 PNG) and also saved under"
        " <code>plots/</code>.</p>",
    ]
    random_used = [x["name"] for d in fs_info for x in d.get("extractors", []) if x["random_init"]]
    if random_used:
        parts.append(
            '<p class="warn"><span class="random">Warning:</span> feature extractor(s) '
            f"{e(', '.join(dict.fromkeys(str(n) for n in random_used)))} used "
            '<span class="random">random init — not pretrained</span> weights; their scores do '
            "not reflect pretrained features.</p>"
        )

    # dataset
    parts.append("<h2>Dataset</h2>")
    n_sub = dataset["n_subjects"]
    parts.append(
        f"<p>{dataset['n_images']} images ({dataset['n_labeled']} labelled), "
        f"{len(dataset['classes'])} classes, "
        + (f"{n_sub} subjects." if n_sub is not None else "subjects unknown.")
        + (f" Positive class: <b>{e(pos)}</b>." if pos is not None else "")
        + "</p>"
    )
    if skipped and skipped["n"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in skipped["by_kind"].items())
        parts.append(f'<p class="warn">{skipped["n"]} image(s) of the dataset could not be read and '
                     f"are missing from the feature sets ({e(kinds)}); each is listed with its "
                     "reason in <code>skipped_images.csv</code>.</p>")
    if dataset["classes"]:
        parts.append('<table><thead><tr><th class="left">class</th><th class="right">images</th>'
                     '<th class="right">subjects</th></tr></thead><tbody>')
        for c, v in dataset["classes"].items():
            s = "—" if v["subjects"] is None else v["subjects"]
            parts.append(f'<tr><td class="left">{e(c)}</td><td class="right">{v["images"]}</td>'
                         f'<td class="right">{s}</td></tr>')
        parts.append("</tbody></table>")
    elif classes:
        parts.append(f"<p>Classes: {e(', '.join(map(str, classes)))}</p>")

    # CV
    parts.append("<h2>Evaluation scheme</h2>")
    cv = getattr(result, "cv_description", None)
    parts.append(f"<p>{e(cv) if cv else 'The cross-validation scheme was not described.'}</p>")
    parts.append("<p>Scores are mean ± standard deviation over the test folds (and repeats). "
                 "Times are in seconds.</p>")

    # audit
    parts.append("<h2>Leakage audit</h2>")
    items = _audit_items(getattr(result, "audit", None))
    if not items:
        parts.append("<p>No leakage audit was run.</p>")
    for name, obj in items:
        if name is not None:
            parts.append(f"<h3>{e(name)}</h3>")
        parts.append(f"<pre>{e(_audit_summary_text(obj))}</pre>")
    if items:
        parts.append("<p>All flagged pairs: <code>audit_pairs.csv</code>.</p>")

    # table
    parts.append("<h2>Results</h2>")
    parts.append(format_table(table, "html", include_times=True))
    failed = table[[not _is_ok(s) for s in table["Status"]]] if "Status" in table.columns else []
    if len(failed):
        parts.append("<p>Rows that did not produce scores:</p><ul>")
        for _, r in failed.iterrows():
            parts.append(f"<li>{e(_row_label(r.get('Feature Set'), r.get('Model')))}: "
                         f"<code>{e(r['Status'])}</code></li>")
        parts.append("</ul>")

    # plots
    parts.append("<h2>Plots</h2>")
    if not plots:
        parts.append("<p>No plots.</p>")
    for name in plots:
        data = base64.b64encode((plots_dir / name).read_bytes()).decode("ascii")
        title = _PLOT_TITLES.get(name, name)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(title)}" '
            f'data-file="plots/{e(name)}"><figcaption>{e(title)} '
            f"(<code>plots/{e(name)}</code>)</figcaption></figure>"
        )
    for n in notes:
        parts.append(f'<p class="warn">{e(n)}</p>')

    # extractors
    parts.append("<h2>Feature sets and extractors</h2>")
    if not fs_info:
        parts.append("<p>No feature-set information.</p>")
    for d in fs_info:
        head = f"<b>{e(d.get('name'))}</b>"
        if d.get("n_images") is not None:
            head += f": {e(d.get('n_images'))} images"
        if d.get("n_features") is not None:
            head += f" × {e(d.get('n_features'))} features"
        parts.append(f"<p>{head}</p>")
        desc = (d.get("provenance") or {}).get("description") if isinstance(
            d.get("provenance"), dict) else None
        if desc:
            parts.append(f"<p>{e(desc)}</p>")
        parts.append("<ul>")
        if not d.get("extractors"):
            parts.append("<li>extractor configuration not recorded</li>")
        for x in d.get("extractors", []):
            cls = ' class="random"' if x["random_init"] else ""
            cfg = x["config"]
            extra = []
            if cfg.get("input_size"):
                extra.append(f"input {cfg['input_size']}px")
            if cfg.get("segment"):
                extra.append("segmented")
            if cfg.get("grayscale"):
                extra.append("grayscale")
            tail = f"; {', '.join(extra)}" if extra else ""
            parts.append(f"<li><code>{e(x['name'])}</code> — <span{cls}>{e(x['weights_text'])}"
                         f"</span>{e(tail)}</li>")
        parts.append("</ul>")

    # reproduction
    parts.append("<h2>Reproduction</h2>")
    cmd = _command_text(params)
    if cmd:
        parts.append(f"<pre>{e(cmd)}</pre>")
    else:
        parts.append("<p>No command recorded.</p>")
    parts.append("<p>Versions, parameters, seeds and data fingerprints: <code>run.json</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
