"""Honest comparison of classifiers over feature sets: the ``compare`` step.

:func:`compare` runs every (feature set, classifier, repeat, fold) task of a
subject-aware cross-validation (or of the dataset's predefined train/test
split) and returns a :class:`ComparisonResult` with the results table, the
per-fold scores and the out-of-fold predictions. See ``docs/evaluation.md``.

Rules it enforces:

* folds are built by subject (``StratifiedGroupKFold``) when subjects are
  known, after the leakage audit has merged subjects that share identical or
  near-identical images;
* when a class has fewer subjects (groups) than folds, the number of folds is
  reduced to what the data allows and the run says so; under 2 it stops;
* ROC AUC is computed from scores (``predict_proba`` or
  ``decision_function``), never from hard labels;
* a classifier that raises or exceeds ``timeout`` (killed) is recorded with
  its reason and leaves the rest of the table untouched;
* finished tasks are cached on disk, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .featureset import FeatureSet

__all__ = ["ComparisonResult", "EvaluationError", "compare", "plan_splits", "score_fold"]

METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "mcc")
_TABLE_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced Accuracy",
    "roc_auc": "ROC AUC",
    "f1": "F1 Score",
    "precision": "Precision",
    "recall": "Recall",
    "mcc": "MCC",
}


class EvaluationError(ValueError):
    """The requested evaluation cannot be honest or cannot run (message says why)."""


# ---------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Split:
    """One train/test split: indices into the labelled images."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def plan_splits(
    y: np.ndarray,
    groups: Optional[np.ndarray],
    splits: Optional[np.ndarray] = None,
    *,
    scheme: str = "cv",
    cv: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> Tuple[List[Split], str, List[str]]:
    """Plan the train/test splits of an evaluation.

    Parameters
    ----------
    y : ndarray
        Class labels of the labelled images.
    groups : ndarray or None
        Group (merged subject) of each image; ``None`` when subjects are unknown.
    splits : ndarray, optional
        ``"train"``/``"test"`` per image, for ``scheme="predefined"``.
    scheme : {"cv", "predefined"}
    cv, repeats, seed
        Folds, repetitions (each with seed ``seed + r``) and base seed.

    Returns
    -------
    splits : list of Split
    description : str
        One or two sentences saying which scheme was used and why.
    notes : list of str
        Warnings (fewer folds than asked...).

    Raises
    ------
    EvaluationError
        When fewer than 2 folds are possible, or the predefined split lacks
        a train or test part.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y, dtype=object)
    notes: List[str] = []
    if scheme == "predefined":
        if splits is None:
            raise EvaluationError("split='predefined' needs the dataset's train/test split")
        splits = np.asarray(splits, dtype=object)
        train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
        if len(train) == 0 or len(test) == 0:
            raise EvaluationError(
                "split='predefined' needs labelled images in both the train and the test split "
                f"(found {len(train)} train, {len(test)} test); use --split cv"
            )
        desc = (f"Predefined split: trained on the {len(train)} labelled images of the train split, "
                f"scored on the {len(test)} of the test split (one fold).")
        if groups is not None:
            shared = sorted(set(groups[train]) & set(groups[test]))
            if shared:
                notes.append(f"{len(shared)} subject group(s) are in both the train and the test split: "
                             f"{', '.join(map(str, shared[:5]))}")
                desc += f" Warning: {notes[-1]}."
        return [Split(0, 0, train, test)], desc, notes
    if scheme != "cv":
        raise EvaluationError(f"unknown split {scheme!r}; use 'cv' or 'predefined'")
    if cv < 2:
        raise EvaluationError(f"cv must be at least 2 (got {cv})")
    if repeats < 1:
        raise EvaluationError(f"repeats must be at least 1 (got {repeats})")

    classes = sorted(set(y))
    if len(classes) < 2:
        raise EvaluationError(f"need at least two classes to compare classifiers, found {classes}")
    if groups is not None:
        per_class = {c: len(set(groups[y == c])) for c in classes}
        unit = "subject group"
    else:
        per_class = {c: int((y == c).sum()) for c in classes}
        unit = "image"
    k = min(cv, min(per_class.values()))
    if k < cv:
        poor = ", ".join(f"{c}: {n}" for c, n in per_class.items() if n < cv)
        notes.append(
            f"asked for {cv} folds, but some class has fewer {unit}s than that ({poor}); "
            f"folds without that class would make balanced accuracy and ROC AUC meaningless, "
            f"so {k} folds are used"
        )
    if k < 2:
        raise EvaluationError(
            f"cannot cross-validate honestly: a class has fewer than 2 {unit}s "
            f"({', '.join(f'{c}: {n}' for c, n in per_class.items())}); add data for that class "
            "or use --split predefined"
        )
    out: List[Split] = []
    idx = np.arange(len(y))
    for r in range(repeats):
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = splitter.split(idx, y.astype(str), groups.astype(str))
        else:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = splitter.split(idx, y.astype(str))
        for f, (tr, te) in enumerate(folds):
            out.append(Split(r, f, np.asarray(tr), np.asarray(te)))
    rep = f", repeated {repeats} times (seeds {seed}..{seed + repeats - 1})" if repeats > 1 else f" (seed {seed})"
    if groups is not None:
        n_groups = len(set(groups))
        desc = (f"StratifiedGroupKFold({k}){rep}: subjects are known, so no subject (and no group of "
                f"subjects sharing duplicate images) is ever in both the train and the test part of a "
                f"fold; {n_groups} groups.")
    else:
        desc = (f"StratifiedKFold({k}){rep}: subject ids are unknown, so folds are split by image; "
                "cells of one patient may be on both sides, which makes the scores optimistic.")
    if notes:
        desc += " Note: " + "; ".join(notes) + "."
    return out, desc, notes


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------


def _binary_auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y_bin.min() == y_bin.max() or not np.all(np.isfinite(score)):
        return float("nan")
    return float(roc_auc_score(y_bin, score))


def score_fold(
    y_true: np.ndarray, y_pred: np.ndarray, scores: Optional[np.ndarray], n_classes: int,
    positive: Optional[int],
) -> Dict[str, float]:
    """Metrics of one test fold from integer-encoded labels and scores.

    Parameters
    ----------
    y_true, y_pred : ndarray of int
        Encoded true and predicted classes.
    scores : ndarray of shape (n, n_classes) or None
        Probability or decision score per class.
    n_classes : int
    positive : int or None
        Encoded positive class for binary problems.

    Returns
    -------
    dict
        ``accuracy, balanced_accuracy, roc_auc, f1, precision, recall, mcc``.
        ROC AUC comes from ``scores`` only: the positive column for two
        classes, the macro mean of one-vs-rest AUCs over the classes present
        in the fold otherwise; NaN when the fold has a single class or no
        scores exist.
    """
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score,
                                 matthews_corrcoef, precision_score, recall_score)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
        }
        if n_classes == 2:
            kw = dict(average="binary", pos_label=positive, zero_division=0)
        else:
            kw = dict(average="weighted", labels=np.arange(n_classes), zero_division=0)
        out["f1"] = float(f1_score(y_true, y_pred, **kw))
        out["precision"] = float(precision_score(y_true, y_pred, **kw))
        out["recall"] = float(recall_score(y_true, y_pred, **kw))
    auc = float("nan")
    if scores is not None:
        if n_classes == 2:
            auc = _binary_auc((y_true == positive).astype(int), scores[:, positive])
        else:
            aucs = [_binary_auc((y_true == c).astype(int), scores[:, c]) for c in np.unique(y_true)]
            aucs = [a for a in aucs if not math.isnan(a)]
            auc = float(np.mean(aucs)) if aucs else float("nan")
    out["roc_auc"] = auc
    return {m: out[m] for m in METRICS}


def _scores_of(est, X: np.ndarray, n_classes: int) -> Optional[np.ndarray]:
    """Probabilities, else decision scores, as an ``(n, n_classes)`` array."""
    if hasattr(est, "predict_proba"):
        try:
            return np.asarray(est.predict_proba(X), dtype=np.float64)
        except Exception:  # noqa: BLE001 - some models advertise it but cannot
            pass
    if hasattr(est, "decision_function"):
        d = np.asarray(est.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            return np.column_stack([-d, d])
        return d
    return None


# ---------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Task:
    set_index: int
    classifier: str
    split: Split
    key: str


def _run_task(X: np.ndarray, y: np.ndarray, task: _Task, seed: int, n_classes: int) -> Dict[str, Any]:
    """Fit and predict one task; never raises."""
    from .classifiers import make_classifier

    out: Dict[str, Any] = {"status": "ok", "error": "", "fit_time": float("nan"),
                           "predict_time": float("nan"), "y_pred": None, "scores": None}
    try:
        est = make_classifier(task.classifier, seed)
        tr, te = task.split.train, task.split.test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(X[tr], y[tr])
            t1 = time.perf_counter()
            y_pred = np.asarray(est.predict(X[te])).astype(np.int64)
            scores = _scores_of(est, X[te], n_classes)
            t2 = time.perf_counter()
        if scores is not None and scores.shape != (len(te), n_classes):
            scores = None  # e.g. a model that saw fewer classes in training
        out.update(fit_time=t1 - t0, predict_time=t2 - t1, y_pred=y_pred, scores=scores)
    except BaseException as exc:  # noqa: BLE001 - isolate any failure of one model
        if isinstance(exc, KeyboardInterrupt):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        out.update(status="failed", error=f"{type(exc).__name__}: {msg}"[:300])
    return out


def _child(conn, X, y, task, seed, n_classes):  # pragma: no cover - runs in a child process
    try:
        conn.send(_run_task(X, y, task, seed, n_classes))
    finally:
        conn.close()


def _run_killable(jobs, n_jobs: int, timeout: float, on_done):
    """Run ``jobs`` (X, y, task, seed, n_classes) in child processes killed after ``timeout``."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pending = list(jobs)
    running: Dict[Any, Tuple[Any, Any, float, _Task]] = {}
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                X, y, task, seed, n_classes = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, X, y, task, seed, n_classes), daemon=True)
                proc.start()
                send.close()
                running[recv] = (proc, recv, time.monotonic() + timeout, task)
            now = time.monotonic()
            wait_for = max(0.0, min(d for _, _, d, _ in running.values()) - now)
            ready = wait(list(running), timeout=min(wait_for, 1.0) + 0.01)
            for conn in ready:
                proc, _, _, task = running.pop(conn)
                try:
                    res = conn.recv()
                except (EOFError, OSError):
                    res = {"status": "failed", "error": f"worker process died (exit code {proc.exitcode})",
                           "fit_time": float("nan"), "predict_time": float("nan"), "y_pred": None,
                           "scores": None}
                conn.close()
                proc.join(timeout=5)
                on_done(task, res)
            now = time.monotonic()
            for conn in [c for c, v in running.items() if v[2] <= now]:
                proc, _, _, task = running.pop(conn)
                proc.kill()
                proc.join(timeout=5)
                conn.close()
                on_done(task, {"status": "timeout", "error": f"fit exceeded the {timeout:g} s timeout "
                               "and was stopped", "fit_time": float("nan"),
                               "predict_time": float("nan"), "y_pred": None, "scores": None})
    finally:
        for proc, conn, _, _ in running.values():
            proc.kill()
            conn.close()


def _run_parallel(jobs, n_jobs: int, on_done):
    """Run ``jobs`` through joblib (no timeout)."""
    if n_jobs == 1 or len(jobs) <= 1:
        for X, y, task, seed, n_classes in jobs:
            on_done(task, _run_task(X, y, task, seed, n_classes))
        return
    from joblib import Parallel, delayed

    gen = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_task)(X, y, task, seed, n_classes) for X, y, task, seed, n_classes in jobs
    )
    for (_, _, task, _, _), res in zip(jobs, gen):
        on_done(task, res)


# ---------------------------------------------------------------------------
# fold cache
# ---------------------------------------------------------------------------


def _digest(*parts) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


class _FoldCache:
    """One small file per finished task under ``<cache_dir>/folds/``."""

    def __init__(self, cache_dir):
        self.root = Path(cache_dir) / "folds" if cache_dir else None

    def _path(self, key: str) -> Optional[Path]:
        return self.root / key[:2] / f"{key}.npz" if self.root else None

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                scores = z["scores"] if z["has_scores"] else None
                return {"status": "ok", "error": "", "fit_time": float(z["fit_time"]),
                        "predict_time": float(z["predict_time"]), "y_pred": z["y_pred"],
                        "scores": scores}
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed
            return None

    def put(self, key: str, res: Dict[str, Any]) -> None:
        path = self._path(key)
        if path is None or res["status"] != "ok":
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        scores = res["scores"]
        with open(tmp, "wb") as fh:
            np.savez(fh, y_pred=res["y_pred"], fit_time=res["fit_time"], predict_time=res["predict_time"],
                     has_scores=scores is not None,
                     scores=scores if scores is not None else np.zeros((0, 0)))
        os.replace(tmp, path)


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------


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

    def __repr__(self) -> str:
        ok = int((self.table["Status"] == "ok").sum()) if len(self.table) else 0
        return (f"ComparisonResult({len(self.table)} rows, {ok} ok, classes={self.classes}, "
                f"cv={self.cv_description.split(':')[0]!r})")

    def best(self, metric: Optional[str] = None) -> pd.Series:
        """The best successful row by ``metric`` (default: the sort metric)."""
        metric = metric or self.params.get("sort", "Balanced Accuracy")
        ok = self.table[self.table["Status"] == "ok"]
        if ok.empty:
            raise EvaluationError("no classifier finished successfully")
        return ok.sort_values(metric, ascending=False, kind="stable").iloc[0]

    def save(self, out_dir, feature_sets=None, plots: bool = True) -> Path:
        """Write the results folder (see ``docs/reports.md``); returns its path."""
        from .reporting import write_report

        return write_report(self, out_dir, feature_sets=feature_sets, plots=plots)

    def plot_metric_bars(self, metric: str = "Balanced Accuracy", **kw):
        from .reporting import plot_metric_bars

        return plot_metric_bars(self, metric, **kw)

    def plot_roc_curves(self, top: int = 3, **kw):
        from .reporting import plot_roc_curves

        return plot_roc_curves(self, top=top, **kw)

    def plot_confusion_matrices(self, top: int = 3, **kw):
        from .reporting import plot_confusion_matrices

        return plot_confusion_matrices(self, top=top, **kw)


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------


def _as_sets(feature_sets) -> List[FeatureSet]:
    if isinstance(feature_sets, FeatureSet):
        return [feature_sets]
    if isinstance(feature_sets, Mapping):
        sets = []
        for name, fs in feature_sets.items():
            if fs.name != name:
                fs = dataclasses.replace(fs, name=str(name))
            sets.append(fs)
        return sets
    sets = list(feature_sets)
    if not sets or not all(isinstance(fs, FeatureSet) for fs in sets):
        raise TypeError("feature_sets must be a FeatureSet, a list of them or a dict name -> FeatureSet")
    names = [fs.name for fs in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"feature set names must be unique, got {names}")
    return sets


def _default_positive(classes: List[str]) -> Optional[str]:
    if len(classes) != 2:
        return None
    if set(c.lower() for c in classes) == {"all", "hem"}:
        return next(c for c in classes if c.lower() == "all")
    return classes[1]


def compare(
    feature_sets,
    *,
    classifiers: Union[str, Sequence[str], None] = None,
    battery: str = "default",
    cv: int = 5,
    repeats: int = 1,
    split: str = "cv",
    seed: int = 0,
    sort: str = "Balanced Accuracy",
    positive_label: Optional[str] = None,
    timeout: Optional[float] = None,
    n_jobs: int = 1,
    audit: bool = True,
    merge_duplicates: bool = True,
    cache_dir=None,
    progress: bool = True,
) -> ComparisonResult:
    """Compare classifiers over one or more feature sets, honestly.

    Parameters
    ----------
    feature_sets : FeatureSet, list of FeatureSet or dict name -> FeatureSet
        Unlabelled images are ignored.
    classifiers : str or list of str, optional
        Names to run or ``-names`` to exclude; see
        :func:`leukbench.classifiers.select_classifiers`.
    battery : {"default", "all"}
        leukbench's 12 classifiers, or lazypredict's list.
    cv, repeats, seed
        Folds, repetitions and seed of the cross-validation.
    split : {"cv", "predefined"}
        Cross-validation, or train on the ``train`` split and score ``test``.
    sort : str
        Table column to sort by, descending (e.g. ``"ROC AUC"``).
    positive_label : str, optional
        Positive class of binary F1/precision/recall/ROC; default ``"all"``
        for C-NMC labels, else the second class in sorted order.
    timeout : float, optional
        Seconds after which one fit is killed and recorded as ``timeout``.
    n_jobs : int
        Tasks run in parallel (``-1``: all cores).
    audit, merge_duplicates : bool
        Run the leakage audit; merge the subjects of flagged images into one
        cross-validation group.
    cache_dir : path, optional
        Fold cache root (``<cache_dir>/folds``); ``None`` uses
        :func:`leukbench.cache.default_cache_dir`, ``False`` disables it.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    ComparisonResult
    """
    from .classifiers import BATTERY_VERSION, select_classifiers

    sets = [fs.labeled() for fs in _as_sets(feature_sets)]
    for fs in sets:
        if len(fs) == 0:
            raise EvaluationError(f"feature set {fs.name!r} has no labelled image")
    names = select_classifiers(classifiers, battery)
    if not names:
        raise EvaluationError("no classifier left to run")
    table_sort = sort if sort in _TABLE_NAMES.values() or sort in ("Fit Time", "Time Taken") else None
    if table_sort is None:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(_TABLE_NAMES.values())}")
    classes = sorted({str(c) for fs in sets for c in fs.y})
    if positive_label is None:
        positive_label = _default_positive(classes)
    elif len(classes) == 2 and positive_label not in classes:
        raise ValueError(f"positive label {positive_label!r} is not a class; classes are {classes}")
    if n_jobs is None or n_jobs == 0:
        n_jobs = 1
    if n_jobs < 0:
        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if cache_dir is None:
        from .cache import default_cache_dir

        cache_dir = default_cache_dir()
    fold_cache = _FoldCache(cache_dir if cache_dir is not False else None)

    # audit and splits, once per distinct image set (feature sets of one dataset share them)
    audits: Dict[str, Any] = {}
    plans: Dict[str, Tuple[List[Split], str, List[str]]] = {}
    set_plan: List[str] = []
    for fs in sets:
        ids_key = _digest(np.asarray(fs.ids, dtype=str).astype("U"), np.asarray(fs.y, dtype=str).astype("U"))
        set_plan.append(ids_key)
        if ids_key in plans:
            continue
        report = None
        if audit and (fs.pixel_hashes is not None or fs.dhashes is not None):
            from .audit import audit_leakage

            report = audit_leakage(fs, merge=merge_duplicates)
        audits[ids_key] = report
        groups = None
        if fs.has_subjects:
            groups = np.asarray(report.groups if report is not None else fs.subjects, dtype=object)
        plans[ids_key] = plan_splits(np.asarray(fs.y, dtype=object), groups, fs.splits, scheme=split,
                                     cv=cv, repeats=repeats, seed=seed)
    cv_description = " | ".join(dict.fromkeys(p[1] for p in plans.values()))
    notes = list(dict.fromkeys(n for p in plans.values() for n in p[2]))

    # tasks
    enc = {c: i for i, c in enumerate(classes)}
    pos_index = enc.get(positive_label) if positive_label is not None else None
    data = []
    for fs in sets:
        X = np.ascontiguousarray(fs.X, dtype=np.float32)
        y = np.array([enc[str(c)] for c in fs.y], dtype=np.int64)
        data.append((X, y, _digest(X, y, np.asarray(fs.ids, dtype=str).astype("U"))))
    tasks: List[_Task] = []
    for si, fs in enumerate(sets):
        for name in names:
            for sp in plans[set_plan[si]][0]:
                key = _digest("fold-v1", data[si][2], name, BATTERY_VERSION, seed, len(classes),
                              sp.train, sp.test)
                tasks.append(_Task(si, name, sp, key))

    results: Dict[int, Dict[str, Any]] = {}
    todo = []
    for ti, task in enumerate(tasks):
        hit = fold_cache.get(task.key)
        if hit is not None:
            results[ti] = hit
        else:
            todo.append(ti)
    n_cached = len(results)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), initial=n_cached, desc="compare", unit="fit", disable=not progress,
               dynamic_ncols=True, leave=False)
    index_of = {id(tasks[ti]): ti for ti in todo}

    def on_done(task: _Task, res: Dict[str, Any]) -> None:
        results[index_of[id(task)]] = res
        fold_cache.put(task.key, res)
        bar.update(1)

    jobs = [(data[tasks[ti].set_index][0], data[tasks[ti].set_index][1], tasks[ti], seed, len(classes))
            for ti in todo]
    try:
        if timeout:
            _run_killable(jobs, n_jobs, float(timeout), on_done)
        else:
            _run_parallel(jobs, n_jobs, on_done)
    finally:
        bar.close()

    folds, preds = _collect(sets, data, tasks, results, classes, pos_index)
    table = _summarise(folds, sets, names, table_sort)
    params = {
        "classifiers": names, "battery": battery, "battery_version": BATTERY_VERSION,
        "split": split, "cv": cv, "repeats": repeats, "seed": seed, "sort": sort,
        "positive_label": positive_label, "timeout": timeout, "n_jobs": n_jobs, "audit": audit,
        "merge_duplicates": merge_duplicates, "feature_sets": [fs.name for fs in sets],
    }
    audit_out: Any = None
    reports = [audits[k] for k in dict.fromkeys(set_plan)]
    if len(reports) == 1:
        audit_out = reports[0]
    elif any(r is not None for r in reports):
        audit_out = {sets[set_plan.index(k)].name: audits[k] for k in dict.fromkeys(set_plan)}
    info = [{"name": fs.name, "n_images": len(fs), "n_features": int(fs.X.shape[1]),
             "provenance": fs.provenance} for fs in sets]
    return ComparisonResult(
        table=table, folds=folds, predictions=preds, audit=audit_out, cv_description=cv_description,
        classes=classes, positive_label=positive_label, params=params, feature_sets_info=info,
        n_cached=n_cached, n_computed=len(todo), notes=notes,
    )


def _collect(sets, data, tasks, results, classes, pos_index):
    fold_rows, pred_frames = [], []
    n_classes = len(classes)
    for ti, task in enumerate(tasks):
        fs = sets[task.set_index]
        y = data[task.set_index][1]
        sp = task.split
        res = results[ti]
        subj = np.asarray(fs.subjects, dtype=object)
        row = {
            "feature_set": fs.name, "classifier": task.classifier, "repeat": sp.repeat, "fold": sp.fold,
            "n_train": len(sp.train), "n_test": len(sp.test),
            "train_subjects": sorted({s for s in subj[sp.train] if s}),
            "test_subjects": sorted({s for s in subj[sp.test] if s}),
        }
        if res["status"] == "ok":
            row.update(score_fold(y[sp.test], res["y_pred"], res["scores"], n_classes, pos_index))
            p = pd.DataFrame({
                "feature_set": fs.name, "classifier": task.classifier, "repeat": sp.repeat,
                "fold": sp.fold, "id": np.asarray(fs.ids, dtype=object)[sp.test],
                "subject": subj[sp.test], "y_true": [classes[i] for i in y[sp.test]],
                "y_pred": [classes[i] if 0 <= i < n_classes else str(i) for i in res["y_pred"]],
            })
            for ci, c in enumerate(classes):
                p[f"score_{c}"] = res["scores"][:, ci] if res["scores"] is not None else np.nan
            pred_frames.append(p)
        else:
            row.update({m: float("nan") for m in METRICS})
        row.update(fit_time=res["fit_time"], predict_time=res["predict_time"],
                   status=res["status"], error=res["error"])
        fold_rows.append(row)
    folds = pd.DataFrame(fold_rows)
    score_cols = [f"score_{c}" for c in classes]
    preds = (pd.concat(pred_frames, ignore_index=True) if pred_frames else
             pd.DataFrame(columns=["feature_set", "classifier", "repeat", "fold", "id", "subject",
                                   "y_true", "y_pred", *score_cols]))
    return folds, preds


def _summarise(folds: pd.DataFrame, sets, names, sort: str) -> pd.DataFrame:
    rows = []
    for fs in sets:
        for name in names:
            f = folds[(folds.feature_set == fs.name) & (folds.classifier == name)]
            ok = f[f.status == "ok"]
            row: Dict[str, Any] = {"Feature Set": fs.name, "Model": name}
            for m, col in _TABLE_NAMES.items():
                vals = ok[m].to_numpy(dtype=float)
                vals = vals[np.isfinite(vals)]
                row[col] = float(vals.mean()) if len(vals) else float("nan")
                row[f"{col} Std"] = float(vals.std()) if len(vals) > 1 else (0.0 if len(vals) else float("nan"))
            ft = f["fit_time"].to_numpy(dtype=float)
            ft = ft[np.isfinite(ft)]
            row["Fit Time"] = float(ft.mean()) if len(ft) else float("nan")
            row["Fit Time Std"] = float(ft.std()) if len(ft) > 1 else (0.0 if len(ft) else float("nan"))
            row["Time Taken"] = float(np.nansum(f["fit_time"].to_numpy(float) + f["predict_time"].to_numpy(float)))
            row["Folds"] = int(len(ok))
            if len(ok) == len(f):
                row["Status"] = "ok"
            else:
                bad = f[f.status != "ok"]
                if (bad.status == "timeout").all():
                    row["Status"] = "timeout"
                else:
                    err = bad[bad.status == "failed"]["error"].iloc[0]
                    row["Status"] = f"failed: {err}"
                if len(ok):  # partial: scores over fewer folds are not comparable
                    for col in _TABLE_NAMES.values():
                        row[col] = row[f"{col} Std"] = float("nan")
                    row["Folds"] = 0
            rows.append(row)
    table = pd.DataFrame(rows)
    ok = table["Status"] == "ok"
    key = table[sort].where(ok, -np.inf).fillna(-np.inf)
    if sort in ("Fit Time", "Time Taken"):
        key = -table[sort].where(ok, np.inf).fillna(np.inf)
    table = table.assign(_k=-key).sort_values(["_k", "Model", "Feature Set"], kind="stable")
    return table.drop(columns="_k").reset_index(drop=True)
