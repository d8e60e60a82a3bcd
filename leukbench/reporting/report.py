"""The results folder of a comparison: :func:`write_report` puts the other modules' parts together.

See ``docs/reports.md`` for the layout of a results folder and every column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from .._atomic import write_atomically
from ..exceptions import ReportError
from ..schema import STATUS_OK
from ._result import (
    as_feature_set_list,
    fit_counts,
    is_ok,
    ok_rows,
    result_frame,
    result_table,
    short_status,
)
from .curves import positive_class, row_classes
from .data_checks import (
    audit_items,
    audit_pairs,
    audit_summary_text,
    skipped_images,
    skipped_summary,
)
from .dataset import dataset_summary, image_frame
from .figures import clear_plots, write_plots
from .html import report_html
from .provenance import Provenance, jsonable
from .tables import format_table

__all__ = ["write_report", "per_class_frame", "calibration_frame", "REPORT_FILES"]

#: The files of every results folder (the PNGs under ``plots/`` come on top).
REPORT_FILES = ("table.md", "table.csv", "folds.csv", "predictions.csv", "per_class.csv",
                "calibration.csv", "audit_pairs.csv", "skipped_images.csv", "run.json",
                "report.html")


def _ok_pairs(result) -> List[tuple]:
    """``(feature set, model)`` of the successful rows, best first."""
    return [(str(r["Feature Set"]), str(r["Model"])) for _, r in ok_rows(result).iterrows()]


def per_class_frame(result) -> pd.DataFrame:
    """``per_class.csv``: per-class precision, recall and F1 of every successful row.

    :func:`leukbench.evaluation.per_class.per_class_table` of the result's
    predictions, rows in table order (mean ± std over the test folds).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "fold": [0, 0, 1, 1],
    ...                       "y_true": ["a", "b", "a", "b"], "y_pred": ["a", "b", "b", "b"]})
    >>> table = pd.DataFrame({"Feature Set": ["f"], "Model": ["c"], "Status": ["ok"]})
    >>> r = SimpleNamespace(table=table, predictions=preds, classes=["a", "b"])
    >>> per_class_frame(r)[["Class", "Recall", "Support"]].values.tolist()
    [['a', 0.5, 2], ['b', 1.0, 2]]
    """
    from ..evaluation.per_class import per_class_table

    preds = result_frame(result, "predictions")
    rows = _ok_pairs(result) if not preds.empty else []  # no predictions: header only
    return per_class_table(preds, row_classes(result, preds), rows=rows)


def calibration_frame(result, n_bins: int = 10) -> pd.DataFrame:
    """``calibration.csv``: the expected calibration error of every successful row.

    :func:`leukbench.evaluation.calibration.calibration_table` of the result's
    predictions, rows in table order; ``ECE`` is empty for a row whose scores
    are not probabilities (``Scores`` says what they are).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> preds = pd.DataFrame({"feature_set": "f", "classifier": "c", "y_true": ["a", "b"],
    ...                       "y_pred": ["a", "b"], "score_a": [0.9, 0.2], "score_b": [0.1, 0.8]})
    >>> table = pd.DataFrame({"Feature Set": ["f"], "Model": ["c"], "Status": ["ok"]})
    >>> r = SimpleNamespace(table=table, predictions=preds, classes=["a", "b"])
    >>> calibration_frame(r)[["Scores", "ECE", "n"]].round(3).values.tolist()
    [['probabilities', 0.15, 2]]
    """
    from ..evaluation.calibration import calibration_table

    preds = result_frame(result, "predictions")
    classes = row_classes(result, preds)
    pos = positive_class(result, classes) if len(classes) == 2 else None
    rows = _ok_pairs(result) if not preds.empty else []  # no predictions: header only
    return calibration_table(preds, classes, rows=rows, n_bins=n_bins, positive=pos)


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


#: What to do when a results file cannot be written, by errno name (the rest: the generic fix).
_WRITE_FIXES = {
    "ENOSPC": "the disk is full: free some space, or save to a folder on another disk (out_dir, --out)",
    "EDQUOT": "the disk quota is used up: free some space, or save to a folder elsewhere (out_dir, --out)",
    "EROFS": "the file system is read-only: save to a folder on a writable one (out_dir, --out)",
}


def _cannot_write(path: Path, exc: OSError) -> ReportError:
    import errno

    fix = next((f for name, f in _WRITE_FIXES.items() if getattr(errno, name, None) == exc.errno),
               "save to a writable folder with free space (out_dir, --out)")
    return ReportError(f"{path.parent}: cannot write {path.name} ({exc.strerror or exc}); {fix}")


def _write_atomically(path: Path, write) -> None:
    """``write(temporary path)``, then rename it to ``path``: a failure (a full disk) leaves
    ``path`` as it was, never half-written; raises :class:`ReportError` naming the folder."""
    try:
        write_atomically(path, write)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc


def _write_text(path: Path, text: str, newline: Optional[str] = "\n") -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=newline))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    _write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def _write_tables(result, table: pd.DataFrame, feature_sets: List[Any], out: Path) -> pd.DataFrame:
    """Write the tables and CSV files; return the skipped-images table written."""
    _write_text(out / "table.md", format_table(table, "markdown", include_times=False))
    _write_text(out / "table.csv", format_table(table, "csv"))
    _write_csv(_to_csv_cells(result_frame(result, "folds")), out / "folds.csv")
    _write_csv(result_frame(result, "predictions"), out / "predictions.csv")
    _write_csv(audit_pairs(getattr(result, "audit", None)), out / "audit_pairs.csv")
    skipped = skipped_images(feature_sets)
    _write_csv(skipped, out / "skipped_images.csv")
    return skipped


def _status_counts(table: pd.DataFrame) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for s in table.get("Status", pd.Series([STATUS_OK] * len(table))):
        key = STATUS_OK if is_ok(s) else short_status(s)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _run_record(result, provenance: Provenance, table: pd.DataFrame, dataset: Dict[str, Any],
                skipped: Dict[str, Any], plots: List[str], notes: List[str]) -> Dict[str, Any]:
    """The content of ``run.json`` (keys in their documented order)."""
    return {
        "created_utc": provenance.created_utc,
        "versions": provenance.versions,
        "platform": provenance.platform,
        "command": provenance.command,
        "working_directory": provenance.working_directory,
        "params": provenance.params,
        "seeds": provenance.seeds,
        "cv_description": getattr(result, "cv_description", None),
        "classes": list(getattr(result, "classes", None) or []),
        "positive_label": getattr(result, "positive_label", None),
        "dataset": dataset,
        "skipped_images": skipped,
        "feature_sets": [info.record() for info in provenance.feature_sets],
        "data_fingerprints": list(provenance.data_fingerprints),
        "audit": [{"feature_set": n, "summary": audit_summary_text(o)}
                  for n, o in audit_items(getattr(result, "audit", None))],
        "status_counts": _status_counts(table),
        "fits": fit_counts(result),
        "files": sorted(list(REPORT_FILES) + [f"plots/{p}" for p in plots]),
        "notes": notes,
    }


def _write_training(result, out: Path) -> None:
    """``training.csv`` and ``finetune_ids.csv`` of fine-tuned networks (removed when the run had none)."""
    for name, frame in (("training.csv", getattr(result, "training", None)),
                        ("finetune_ids.csv", getattr(result, "finetune_ids", None))):
        if frame is not None and len(frame):
            _write_csv(frame, out / name)
        else:
            (out / name).unlink(missing_ok=True)


def _results_folder(out_dir) -> Path:
    """``out_dir/plots`` created, with no stale plots of an earlier report."""
    out = Path(out_dir)
    try:
        (out / "plots").mkdir(parents=True, exist_ok=True)
        clear_plots(out / "plots")
    except OSError as exc:
        raise ReportError(f"{out}: cannot write a results folder here ({exc.strerror or exc}); "
                          "give out_dir a writable folder") from exc
    return out


def write_report(result, out_dir, feature_sets=None, *, plots: bool = True) -> Path:
    """Write a complete results folder for a comparison.

    Files: ``table.md``, ``table.csv``, ``folds.csv``, ``predictions.csv``,
    ``per_class.csv``, ``calibration.csv``, ``audit_pairs.csv``,
    ``skipped_images.csv``, ``run.json``, ``report.html`` and ``plots/*.png``
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

    Raises
    ------
    ReportError
        When `out_dir` cannot be created or written.
    """
    out = _results_folder(out_dir)
    fsets = as_feature_set_list(feature_sets)
    table = result_table(result)
    skipped = skipped_summary(_write_tables(result, table, fsets, out))
    _write_training(result, out)
    per_class, calibration = per_class_frame(result), calibration_frame(result)
    _write_csv(per_class, out / "per_class.csv")
    _write_csv(calibration, out / "calibration.csv")
    provenance = Provenance.collect(result, fsets)
    images = image_frame(result, fsets)
    dataset = dataset_summary(images)
    notes: List[str] = []
    try:
        made = (write_plots(result, images, out / "plots", notes, with_samples=bool(fsets),
                            seed=provenance.sample_seed) if plots else [])
    except OSError as exc:  # a full disk while saving a PNG: the folder and the fix, as for the tables
        raise _cannot_write(Path(exc.filename or out / "plots" / "plot.png"), exc) from exc
    record = _run_record(result, provenance, table, dataset, skipped, made, notes)
    _write_text(out / "run.json", json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n",
                newline=None)
    _write_text(out / "report.html", report_html(result, table, dataset, provenance, made,
                                                 out / "plots", notes, skipped,
                                                 per_class=per_class, calibration=calibration),
                newline=None)
    return out
