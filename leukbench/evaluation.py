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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .exceptions import EvaluationError

if TYPE_CHECKING:  # pandas and the FeatureSet load on use: worker processes start faster
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
    n_without_subject: int = 0,
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
    n_without_subject : int
        Images without a subject id among ``groups`` (each its own group,
        unless the audit linked it to others); only used in the description.

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

    _check_scheme(scheme, cv, repeats)
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
                f"(found {len(train)} train, {len(test)} test); use split='cv' (--split cv)"
            )
        missing = sorted(set(y) - set(y[train]))
        if missing:
            raise EvaluationError(f"split='predefined': the train split has no image of class(es) "
                                  f"{', '.join(map(str, missing))}; use split='cv' (--split cv)")
        desc = (f"Predefined split: trained on the {len(train)} labelled images of the train split, "
                f"scored on the {len(test)} of the test split (one fold).")
        absent = sorted(set(y) - set(y[test]))
        if absent:
            notes.append(f"the test split has no image of class(es) {', '.join(map(str, absent))}, "
                         "so balanced accuracy and ROC AUC cover the other classes only")
            desc += f" Warning: {notes[-1]}."
        if groups is not None:
            shared = sorted(set(groups[train]) & set(groups[test]))
            if shared:
                notes.append(f"{len(shared)} subject group(s) are in both the train and the test split: "
                             f"{', '.join(map(str, shared[:5]))}")
                desc += f" Warning: {notes[-1]}."
        return [Split(0, 0, train, test)], desc, notes

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
            f"({', '.join(f'{c}: {n}' for c, n in per_class.items())}); add data for that class"
            + (" or use split='predefined' (--split predefined), since the data has a test split"
               if splits is not None and "test" in set(np.asarray(splits, dtype=object)) else "")
        )
    out: List[Split] = []
    idx = np.arange(len(y))
    seen: Dict[frozenset, int] = {}  # partition (its test folds) -> the repeat that made it first
    for r in range(repeats):
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = list(splitter.split(idx, y.astype(str), groups.astype(str)))
        else:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = list(splitter.split(idx, y.astype(str)))
        partition = frozenset(tuple(np.sort(te)) for _, te in folds)
        if partition in seen:  # the same folds again: no new evidence, so not counted twice
            continue
        seen[partition] = r
        for f, (tr, te) in enumerate(folds):  # repeat r keeps its number: it used seed + r
            out.append(Split(r, f, np.asarray(tr), np.asarray(te)))
    if len(seen) < repeats:
        notes.append(
            f"{repeats - len(seen)} of the {repeats} repeats gave folds identical to an earlier repeat and "
            f"were dropped, leaving {len(seen)} distinct partition(s)"
            + (" (StratifiedGroupKFold's shuffle only reorders subject groups of equal size, and "
               "few groups here have equal sizes)" if groups is not None else "")
        )
    n_rep = len(seen)
    rep = (f", repeated {n_rep} times (seeds {', '.join(str(seed + r) for r in sorted(seen.values()))})"
           if n_rep > 1 else f" (seed {seed})")
    n_groups = len(set(groups)) if groups is not None else 0
    if groups is not None and n_without_subject >= len(y):
        desc = (f"StratifiedGroupKFold({k}){rep}: subject ids are unknown, so folds are split by image, "
                f"except that images the leakage audit found duplicated are kept together ({n_groups} "
                "groups); cells of one patient may be on both sides, which makes the scores optimistic.")
    elif groups is not None:
        desc = (f"StratifiedGroupKFold({k}){rep}: subjects are known, so no subject (group) is ever in "
                f"both the train and the test part of a fold; {n_groups} groups.")
        if n_without_subject:
            desc = desc[:-1] + (f"; {n_without_subject} image(s) have no subject id and form groups of their "
                                "own (with their copies, when the audit found any), so they may share a "
                                "patient with others.")
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


def _softmax(d: np.ndarray) -> np.ndarray:
    d = d - d.max(axis=1, keepdims=True)
    e = np.exp(d)
    return e / e.sum(axis=1, keepdims=True)


def _scores_of(est, X: np.ndarray, n_classes: int) -> Optional[np.ndarray]:
    """Probabilities, else decision scores, as an ``(n, n_classes)`` array.

    Binary decision scores ``d`` become ``[-d, d]``; multiclass decision
    scores are softmax-normalised so that one-vs-rest AUCs compare like
    probabilities.
    """
    if hasattr(est, "predict_proba"):
        try:
            return np.asarray(est.predict_proba(X), dtype=np.float64)
        except Exception:  # noqa: BLE001 - some models advertise it but cannot
            pass
    if hasattr(est, "decision_function"):
        d = np.asarray(est.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            return np.column_stack([-d, d])
        return _softmax(d)
    return None


# ---------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Task:
    set_index: int
    classifier: str
    split: Split
    key: str = ""
    estimator: Any = None


def _failure(status: str, error: str) -> Dict[str, Any]:
    return {"status": status, "error": error, "fit_time": float("nan"), "predict_time": float("nan"),
            "y_pred": None, "scores": None}


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    msg = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def _run_task(X: np.ndarray, y: np.ndarray, est, train: np.ndarray, test: np.ndarray,
              n_classes: int) -> Dict[str, Any]:
    """Fit ``est`` on ``train`` and predict ``test``; never raises (bar Ctrl-C)."""
    out = _failure("ok", "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(X[train], y[train])
            t1 = time.perf_counter()
            y_pred = np.asarray(est.predict(X[test])).astype(np.int64)
            scores = _scores_of(est, X[test], n_classes)
            t2 = time.perf_counter()
        if scores is not None and scores.shape != (len(test), n_classes):
            scores = None  # e.g. a model that saw fewer classes in training
        out.update(fit_time=t1 - t0, predict_time=t2 - t1, y_pred=y_pred, scores=scores)
    except BaseException as exc:  # noqa: BLE001 - isolate any failure of one model
        if isinstance(exc, KeyboardInterrupt):
            raise
        out = _failure("failed", _error_text(exc))
    return out


def _run_parallel(jobs, data, n_jobs: int, n_classes: int, on_done) -> None:
    """Run tasks in this process (``n_jobs=1``) or through joblib (no timeout)."""
    if n_jobs == 1 or len(jobs) <= 1:
        for task in jobs:
            X, y = data[task.set_index][:2]
            on_done(task, _run_task(X, y, task.estimator, task.split.train, task.split.test, n_classes))
        return
    from joblib import Parallel, delayed

    # batch_size=1: joblib's automatic batching would hand several long fits
    # to one worker after a series of short ones
    gen = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)(
        delayed(_run_task)(data[t.set_index][0], data[t.set_index][1], t.estimator, t.split.train,
                           t.split.test, n_classes)
        for t in jobs
    )
    for task, res in zip(jobs, gen):
        on_done(task, res)


# -- killable workers (timeout) ---------------------------------------------
#
# With a timeout, tasks run in worker processes started as fresh interpreters
# (``python -c ...``): never forked from this process, whose OpenMP/BLAS
# thread pools would deadlock a forked child, and never re-importing the
# user's ``__main__``. A worker serves tasks one at a time over its
# stdin/stdout (length-prefixed pickles; the estimators are cloudpickled, so
# classifiers registered at run time work), reports when a fit starts, and is
# killed -- and replaced -- when that fit runs past the timeout.

_WORKER_BOOT = "from leukbench.evaluation import _worker_main; _worker_main()"
_START_GRACE = 300.0  # seconds a worker may take to start and receive its data


def _dumps(obj) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with joblib
        import pickle as cloudpickle
    return cloudpickle.dumps(obj)


def _write_frame(fh, payload: bytes) -> None:
    fh.write(len(payload).to_bytes(8, "little"))
    fh.write(payload)
    fh.flush()


def _read_frame(fh) -> Optional[bytes]:
    head = fh.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "little")
    payload = fh.read(size)
    return payload if len(payload) == size else None


def _worker_main() -> None:  # pragma: no cover - runs in a worker process
    """Serve tasks from stdin until it closes (see ``_run_killable``)."""
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills us
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever a model prints goes to stderr
    data: Dict[Any, Tuple[np.ndarray, np.ndarray]] = {}
    while True:
        frame = _read_frame(inp)
        if frame is None:
            return
        msg = pickle.loads(frame)
        if msg[0] == "data":
            data.clear()
            data[msg[1]] = (msg[2], msg[3])
            continue
        _, tid, set_key, est_bytes, train, test, n_classes = msg
        try:  # loading imports the model's modules: not part of the timed fit
            with warnings.catch_warnings():  # e.g. a deprecated class warns in __new__
                warnings.simplefilter("ignore")
                est = pickle.loads(est_bytes)
        except Exception as exc:  # noqa: BLE001 - e.g. a class the worker cannot import
            res = _failure("failed", "cannot load the classifier in a worker process: " + _error_text(exc))
        else:
            _write_frame(out, pickle.dumps(("started", tid)))
            X, y = data[set_key]
            res = _run_task(X, y, est, train, test, n_classes)
        _write_frame(out, pickle.dumps(("result", tid, res), protocol=pickle.HIGHEST_PROTOCOL))


class _Worker:
    """One worker process, its reader thread and its current task."""

    def __init__(self, events, threads: int):
        import subprocess
        import sys
        import threading

        env = dict(os.environ)
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(threads))
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.sent: set = set()
        self.task: Optional[_Task] = None
        self.deadline = math.inf
        self.alive = True
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def _read(self, events) -> None:
        import pickle

        while True:
            frame = _read_frame(self.proc.stdout)
            if frame is None:
                events.put((self, ("eof",), time.monotonic()))
                return
            events.put((self, pickle.loads(frame), time.monotonic()))

    def send(self, task: _Task, set_key, X, y, est_bytes: bytes, n_classes: int, timeout: float) -> None:
        import pickle

        if set_key not in self.sent:  # tasks come grouped by feature set: keep only the latest one
            _write_frame(self.proc.stdin, pickle.dumps(("data", set_key, X, y), protocol=pickle.HIGHEST_PROTOCOL))
            self.sent = {set_key}
        msg = ("task", id(task), set_key, est_bytes, task.split.train, task.split.test, n_classes)
        self.task = task
        self.deadline = time.monotonic() + timeout + _START_GRACE
        _write_frame(self.proc.stdin, pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def kill(self) -> None:
        self.alive = False
        try:
            self.proc.kill()
        except OSError:  # pragma: no cover - already gone
            pass
        for fh in (self.proc.stdin, self.proc.stdout):
            try:
                fh.close()
            except OSError:  # pragma: no cover
                pass
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - pragma: no cover
            pass


def _run_killable(jobs, data, n_jobs: int, n_classes: int, timeout: float, on_done) -> None:
    """Run tasks in worker processes; a fit running past ``timeout`` s is killed."""
    import queue
    from collections import deque

    events: "queue.Queue" = queue.Queue()
    pending = deque(jobs)
    n_workers = max(1, min(n_jobs, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    workers: List[_Worker] = []
    try:
        while pending or any(w.task is not None for w in workers):
            workers = [w for w in workers if w.alive]
            # hand tasks to idle workers (start new ones up to n_workers)
            while pending:
                idle = [w for w in workers if w.task is None]
                if not idle and len(workers) >= n_workers:
                    break
                task = pending.popleft()
                try:
                    est_bytes = _dumps(task.estimator)
                except Exception as exc:  # noqa: BLE001
                    on_done(task, _failure("failed", "cannot send the classifier to a worker process: "
                                           + _error_text(exc)))
                    continue
                w = idle[0] if idle else None
                if w is None:
                    w = _Worker(events, threads)
                    workers.append(w)
                X, y = data[task.set_index][:2]
                try:
                    w.send(task, task.set_index, X, y, est_bytes, n_classes, timeout)
                except OSError:  # the worker is gone (it could not start?): next task gets a new one
                    w.task = None
                    w.kill()
                    workers.remove(w)
                    on_done(task, _failure("failed", "worker process died before the fit started"))
            busy = [w for w in workers if w.task is not None]
            if not busy:
                continue
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            try:
                w, msg, at = events.get(timeout=min(wait_s, 1.0) + 0.01)
            except queue.Empty:
                w = None
            if w is not None and w.alive and msg[0] == "eof":
                task, w.task = w.task, None
                w.kill()
                if task is not None:
                    on_done(task, _failure("failed", f"worker process died (exit code {w.proc.returncode})"))
            elif w is not None and w.alive and w.task is not None:
                if msg[0] == "started" and msg[1] == id(w.task):
                    w.deadline = at + timeout
                elif msg[0] == "result" and msg[1] == id(w.task):
                    task, w.task, w.deadline = w.task, None, math.inf
                    on_done(task, msg[2])
            now = time.monotonic()
            for w in workers:
                if w.alive and w.task is not None and w.deadline <= now:
                    task, w.task = w.task, None
                    w.kill()
                    on_done(task, {**_failure("timeout", f"fit exceeded the {timeout:g} s timeout and was stopped"),
                                   "fit_time": float(timeout)})
    finally:
        for w in workers:
            if w.alive:
                w.kill()


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
                        "scores": scores, "cached": True}
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
        """The best successful row by ``metric`` (default: the sort metric).

        Scores are best when highest, times (``Fit Time``, ``Time Taken``) when
        lowest; ties go to the earlier row of the table.
        """
        metric = _sort_column(metric or self.params.get("sort", "Balanced Accuracy"))
        ok = self.table[(self.table["Status"] == "ok") & self.table[metric].notna()]
        if ok.empty:
            raise EvaluationError(f"no classifier finished successfully with a {metric} score")
        return ok.sort_values(metric, ascending=metric in _TIME_COLUMNS, kind="stable").iloc[0]

    def save(self, out_dir, feature_sets=None, plots: bool = True) -> Path:
        """Write the results folder (see ``docs/reports.md``); returns its path."""
        from .reporting import write_report

        return write_report(self, out_dir, feature_sets=feature_sets, plots=plots)

    def plot_metric_bars(self, metric: str = "Balanced Accuracy", **kw):
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
        from .reporting import plot_metric_bars

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
        from .reporting import plot_roc_curves

        return plot_roc_curves(self, top=top, **kw)

    def plot_confusion_matrices(self, top: int = 3, **kw):
        """Pooled out-of-fold confusion matrices of the best ``top`` successful rows.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .reporting import plot_confusion_matrices

        return plot_confusion_matrices(self, top=top, **kw)


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------


def _as_sets(feature_sets) -> List[FeatureSet]:
    from .featureset import FeatureSet

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


#: Version of the fold-cache entries and of their key (bump when either changes).
_CACHE_FORMAT = "fold-v2"

_TIME_COLUMNS = ("Fit Time", "Time Taken")


def check_options(*, classifiers=None, battery: str = "default", split: str = "cv", cv: int = 5,
                  repeats: int = 1, sort: str = "Balanced Accuracy",
                  timeout: Optional[float] = None) -> Tuple[List[str], str]:
    """Validate :func:`compare`'s options before any work.

    Returns
    -------
    names : list of str
        The classifiers to run.
    sort : str
        The table column to sort by.

    Raises
    ------
    KeyError, ValueError, EvaluationError
        With a one-line message saying what to pass instead.
    """
    from .classifiers import select_classifiers

    names = select_classifiers(classifiers, battery)
    if not names:
        raise EvaluationError("no classifier left to run; check the names asked for (--classifiers)")
    _check_scheme(split, cv, repeats)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None (got {timeout!r})")
    return names, _sort_column(sort)


def _check_scheme(scheme: str, cv: int, repeats: int) -> None:
    if scheme not in ("cv", "predefined"):
        raise EvaluationError(f"unknown split {scheme!r}; use 'cv' or 'predefined'")
    if scheme == "cv" and cv < 2:
        raise EvaluationError(f"cv must be at least 2 (got {cv})")
    if scheme == "cv" and repeats < 1:
        raise EvaluationError(f"repeats must be at least 1 (got {repeats})")


def _sort_column(sort: str) -> str:
    """The table column for ``sort`` (a column name or a metric key, any case)."""
    columns = list(_TABLE_NAMES.values()) + list(_TIME_COLUMNS)
    lookup = {c.lower(): c for c in columns}
    lookup.update({k: v for k, v in _TABLE_NAMES.items()})
    lookup.update({"fit_time": "Fit Time", "time_taken": "Time Taken"})
    key = str(sort).strip()
    found = lookup.get(key) or lookup.get(key.lower())
    if found is None:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(columns)}")
    return found


def _cv_groups(fs: FeatureSet, report) -> Tuple[Optional[np.ndarray], int]:
    """Cross-validation groups of a labelled feature set, and its images without subject.

    Subjects known (some or all): the audit's groups (duplicates merged), or
    the subjects with one group per image that has none. No subject at all:
    ``None`` (folds by image), unless the audit linked duplicate images, whose
    groups then keep each duplicate with its original.
    """
    subjects = np.array(["" if s is None else str(s) for s in fs.subjects], dtype=object)
    known = subjects != ""
    n_unknown = int((~known).sum())
    if report is not None:
        groups = np.asarray(report.groups, dtype=object)
        if known.any() or len(set(groups)) < len(groups):
            return groups, n_unknown
        return None, n_unknown
    if not known.any():
        return None, n_unknown
    fill = np.array([f"image-{i}" for i in range(len(fs))], dtype=object)
    return np.where(known, subjects, fill), n_unknown


def _param_text(value) -> Any:
    """A stable, JSON-able description of an estimator parameter."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        return f"<{type(value).__module__}.{type(value).__qualname__}>"  # its params are listed too
    if isinstance(value, (list, tuple)):
        return [_param_text(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _param_text(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def _estimator_signature(est) -> str:
    """Class, parameters and library versions of an estimator (part of the fold-cache key)."""
    import sys

    modules = set()
    parts: Dict[str, Any] = {"class": f"{type(est).__module__}.{type(est).__qualname__}"}
    modules.add(type(est).__module__.split(".")[0])
    if hasattr(est, "get_params"):
        try:
            params = est.get_params(deep=True)
        except Exception:  # noqa: BLE001 - an estimator without proper params: class only
            params = {}
        for v in params.values():
            if hasattr(v, "get_params"):
                modules.add(type(v).__module__.split(".")[0])
        parts["params"] = {k: _param_text(v) for k, v in sorted(params.items())}
    modules.add("sklearn")
    parts["versions"] = {m: str(getattr(sys.modules.get(m), "__version__", "")) for m in sorted(modules)}
    return json.dumps(parts, sort_keys=True, default=repr)


def _audit_sentence(report, merged: bool, scheme: str) -> str:
    """What the leakage audit found and did about the folds, as a sentence (or "")."""
    if report is None or report.pairs is None or len(report.pairs) == 0:
        return ""
    n = len(report.pairs)
    found = f"leakage audit found {n} identical or near-identical image pair(s) across subjects or splits"
    if scheme == "predefined":
        cross = int((report.pairs["split_a"] != report.pairs["split_b"]).sum())
        if cross:
            return f" Warning: the {found}, {cross} of them across the train and test splits."
        return f" Note: the {found}, none across the train and test splits."
    if merged:
        how = (f"the subjects involved were merged into {len(report.merged_subjects)} group(s)"
               if report.merged_subjects else "they were grouped together")
        return f" The {found}; {how}, so a cell and its copy are never on both sides of a fold."
    return (f" Warning: the {found} that were not merged (keep-duplicates); "
            "copies of a cell may be on both sides of a fold.")


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
        Table column to sort by, descending (e.g. ``"ROC AUC"`` or
        ``"roc_auc"``); ``"Fit Time"`` and ``"Time Taken"`` sort ascending.
    positive_label : str, optional
        Positive class of binary F1/precision/recall/ROC; default ``"all"``
        for C-NMC labels, else the second class in sorted order.
    timeout : float, optional
        Seconds after which one fit is killed and recorded as ``timeout``.
        With a timeout every task runs in a worker process (a fresh
        interpreter, reused across tasks) that is killed and replaced when
        its fit runs too long; without one, tasks run in this process
        (``n_jobs=1``) or through joblib.
    n_jobs : int
        Tasks run in parallel (``-1``: all cores). Estimators keep
        ``n_jobs=1``; OpenMP/BLAS threads are shared out between workers.
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
    from .classifiers import BATTERY_VERSION, make_classifier

    sets = [fs.labeled() for fs in _as_sets(feature_sets)]
    for fs in sets:
        if len(fs) == 0:
            raise EvaluationError(f"feature set {fs.name!r} has no labelled image")
    names, table_sort = check_options(classifiers=classifiers, battery=battery, split=split, cv=cv,
                                      repeats=repeats, sort=sort, timeout=timeout)
    classes = sorted({str(c) for fs in sets for c in fs.y})
    if len(classes) < 2:
        raise EvaluationError(f"need at least two classes to compare classifiers, found {classes}")
    if positive_label is None:
        positive_label = _default_positive(classes)
    elif len(classes) == 2 and positive_label not in classes:
        raise ValueError(f"positive label {positive_label!r} is not a class; classes are {classes}")
    elif len(classes) != 2:  # F1/precision/recall are weighted over the classes, ROC AUC one-vs-rest
        raise ValueError(f"positive label {positive_label!r}: there are {len(classes)} classes, and a "
                         "positive class applies to two; leave it out (F1, precision and recall are "
                         "then weighted over the classes)")
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
        ids_key = _digest(np.asarray(fs.ids, dtype=str).astype("U"), np.asarray(fs.y, dtype=str).astype("U"),
                          np.asarray(fs.subjects, dtype=str).astype("U"),
                          np.asarray(fs.splits, dtype=str).astype("U"))
        set_plan.append(ids_key)
        if ids_key in plans:
            continue
        report = None
        if audit and (fs.pixel_hashes is not None or fs.dhashes is not None):
            from .audit import audit_leakage

            # merging only shapes cross-validation folds; a predefined split is
            # fixed, so there the audit reports and does not merge
            report = audit_leakage(fs, merge=merge_duplicates and split == "cv")
        audits[ids_key] = report
        groups, n_unknown = _cv_groups(fs, report)
        sp, desc, set_notes = plan_splits(np.asarray(fs.y, dtype=object), groups, fs.splits, scheme=split,
                                          cv=cv, repeats=repeats, seed=seed, n_without_subject=n_unknown)
        plans[ids_key] = (sp, desc + _audit_sentence(report, merge_duplicates, split), set_notes)
    cv_description = " | ".join(dict.fromkeys(p[1] for p in plans.values()))
    notes = list(dict.fromkeys(n for p in plans.values() for n in p[2]))

    # tasks: one fresh estimator each, built here so that classifiers registered
    # at run time also work in worker processes
    enc = {c: i for i, c in enumerate(classes)}
    pos_index = enc.get(positive_label) if positive_label is not None else None
    data = []
    for fs in sets:
        X = np.ascontiguousarray(fs.X, dtype=np.float32)
        y = np.array([enc[str(c)] for c in fs.y], dtype=np.int64)
        data.append((X, y, _digest(X, y, np.asarray(fs.ids, dtype=str).astype("U"))))
    tasks: List[_Task] = []
    results: Dict[int, Dict[str, Any]] = {}
    for si, fs in enumerate(sets):
        for name in names:
            try:
                signature = _estimator_signature(make_classifier(name, seed))
                build_error = None
            except Exception as exc:  # noqa: BLE001 - a broken factory fails its own row only
                signature, build_error = "", _failure("failed", _error_text(exc))
            for sp in plans[set_plan[si]][0]:
                key = _digest(_CACHE_FORMAT, data[si][2], name, signature, BATTERY_VERSION, seed,
                              len(classes), sp.train, sp.test)
                tasks.append(_Task(si, name, sp, key))
                if build_error is not None:
                    results[len(tasks) - 1] = build_error

    todo = []
    for ti, task in enumerate(tasks):
        if ti in results:
            continue
        hit = fold_cache.get(task.key)
        if hit is not None:
            results[ti] = hit
        else:
            todo.append(ti)
    n_cached = sum(1 for r in results.values() if r.get("cached"))
    for ti in todo:
        tasks[ti].estimator = make_classifier(tasks[ti].classifier, seed)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="compare", unit="fit",
               disable=not progress, dynamic_ncols=True, leave=False)
    index_of = {id(tasks[ti]): ti for ti in todo}

    def on_done(task: _Task, res: Dict[str, Any]) -> None:
        results[index_of[id(task)]] = res
        fold_cache.put(task.key, res)
        task.estimator = None
        bar.update(1)

    from .classifiers import COST_HINTS

    # slowest fits first (stable within a classifier): a long fit started last
    # would leave the other workers idle at the end of the run
    jobs = sorted((tasks[ti] for ti in todo), key=lambda t: -COST_HINTS.get(t.classifier, 1.0))
    try:
        if timeout:
            _run_killable(jobs, data, n_jobs, len(classes), float(timeout), on_done)
        else:
            _run_parallel(jobs, data, n_jobs, len(classes), on_done)
    finally:
        bar.close()

    folds, preds = _collect(sets, data, tasks, results, classes, pos_index)
    table = _summarise(folds, sets, names, table_sort)
    params = {
        "classifiers": names, "battery": battery, "battery_version": BATTERY_VERSION,
        "split": split, "cv": cv, "repeats": repeats, "seed": seed, "sort": table_sort,
        "positive_label": positive_label, "timeout": timeout, "n_jobs": n_jobs, "audit": audit,
        "merge_duplicates": merge_duplicates, "feature_sets": [fs.name for fs in sets],
        "warnings": notes,
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
    import pandas as pd

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
    import pandas as pd

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
                row[f"{col} Std"] = float(vals.std()) if len(vals) > 1 else float("nan")  # one fold: no spread
            ft = f["fit_time"].to_numpy(dtype=float)
            ft = ft[np.isfinite(ft)]
            row["Fit Time"] = float(ft.mean()) if len(ft) else float("nan")
            row["Fit Time Std"] = float(ft.std()) if len(ft) > 1 else float("nan")
            row["Time Taken"] = float(np.nansum(f["fit_time"].to_numpy(float))
                                      + np.nansum(f["predict_time"].to_numpy(float)))
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
                # a fit time over the folds that finished would flatter the row;
                # Time Taken still says how long the row cost (timeouts included)
                row["Fit Time"] = row["Fit Time Std"] = float("nan")
            rows.append(row)
    table = pd.DataFrame(rows)
    ok = table["Status"] == "ok"
    key = table[sort].where(ok, -np.inf).fillna(-np.inf)
    if sort in ("Fit Time", "Time Taken"):
        key = -table[sort].where(ok, np.inf).fillna(np.inf)
    table = table.assign(_k=-key).sort_values(["_k", "Model", "Feature Set"], kind="stable")
    return table.drop(columns="_k").reset_index(drop=True)
