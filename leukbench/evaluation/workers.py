"""Running the tasks of an evaluation: in this process, through joblib, or in killable workers.

Without a timeout, tasks run in this process (``n_jobs=1``) or through joblib.
With a timeout, tasks run in worker processes started as fresh interpreters
(``python -c ...``): never forked from this process, whose OpenMP/BLAS thread
pools would deadlock a forked child, and never re-importing the user's
``__main__``. A worker serves tasks one at a time over its stdin/stdout
(length-prefixed pickles; the estimators are cloudpickled, so classifiers
registered at run time work), reports when a fit starts, and is killed -- and
replaced -- when that fit runs past the timeout.

Worker start-up stays light: this module imports numpy and leukbench's own
small modules only; the model's libraries load with the model.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .fits import FitOutcome, PreparedSet, Task, error_text, run_task

__all__ = ["run_in_process", "run_killable"]

#: Called with each task and its outcome as soon as the task finishes.
OnDone = Callable[[Task, FitOutcome], None]

_WORKER_BOOT = "from leukbench.evaluation.workers import _worker_main; _worker_main()"
_START_GRACE = 300.0  # seconds a worker may take to start and receive its data


def run_in_process(jobs: Sequence[Task], data: Sequence[PreparedSet], n_jobs: int, n_classes: int,
                   on_done: OnDone) -> None:
    """Run tasks in this process (``n_jobs=1``) or through joblib (no timeout).

    Either way each fit runs on one thread (:func:`.fits.run_task`), so the outcomes do not
    depend on ``n_jobs``.
    """
    if n_jobs == 1 or len(jobs) <= 1:
        for task in jobs:
            X, y = data[task.set_index].X, data[task.set_index].y
            on_done(task, run_task(X, y, task.estimator, task.split.train, task.split.test, n_classes))
        return
    from joblib import Parallel, delayed

    # batch_size=1: joblib's automatic batching would hand several long fits
    # to one worker after a series of short ones
    gen = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)(
        delayed(run_task)(data[t.set_index].X, data[t.set_index].y, t.estimator, t.split.train,
                          t.split.test, n_classes)
        for t in jobs
    )
    for task, outcome in zip(jobs, gen):
        on_done(task, outcome)


# ---------------------------------------------------------------------------
# the wire: length-prefixed pickles of these messages over a pipe
# ---------------------------------------------------------------------------


class _DataMessage(NamedTuple):
    """Run -> worker: the feature set of the tasks that follow (it replaces the previous one).

    ``X`` is the matrix, or the path of the ``.npy`` file it is memory-mapped
    from (:mod:`.matrix_files`): the worker maps the same file, no copy is sent.
    """

    set_key: int
    X: Any  # np.ndarray or str
    y: np.ndarray


class _TaskMessage(NamedTuple):
    """Run -> worker: fit the (cloudpickled) estimator on ``train``, predict ``test``."""

    task_id: int
    set_key: int
    estimator: bytes
    train: np.ndarray
    test: np.ndarray
    n_classes: int


class _Started(NamedTuple):
    """Worker -> run: the fit of task ``task_id`` starts now (its timeout runs from here)."""

    task_id: int


class _Finished(NamedTuple):
    """Worker -> run: what came of task ``task_id``."""

    task_id: int
    outcome: FitOutcome


class _Closed(NamedTuple):
    """Reader thread -> run: the worker's output ended (it exited or was killed)."""


class _Event(NamedTuple):
    """A message of a worker, as the run receives it."""

    worker: Any  # _Worker
    message: Any  # _Started, _Finished or _Closed
    at: float  # time.monotonic() when it arrived


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
    """Serve tasks from stdin until it closes (see :func:`run_killable`).

    Reads :class:`_DataMessage` and :class:`_TaskMessage`; writes
    :class:`_Started` when a fit starts and :class:`_Finished` when it is done.
    """
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills us
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever a model prints goes to stderr
    data: Dict[object, Tuple[np.ndarray, np.ndarray]] = {}
    while True:
        frame = _read_frame(inp)
        if frame is None:
            return
        msg = pickle.loads(frame)
        if isinstance(msg, _DataMessage):
            data.clear()
            X = np.load(msg.X, mmap_mode="r") if isinstance(msg.X, str) else msg.X
            data[msg.set_key] = (X, msg.y)
            continue
        try:  # loading imports the model's modules: not part of the timed fit
            with warnings.catch_warnings():  # e.g. a deprecated class warns in __new__
                warnings.simplefilter("ignore")
                est = pickle.loads(msg.estimator)
        except Exception as exc:  # noqa: BLE001 - e.g. a class the worker cannot import
            outcome = FitOutcome.failed("cannot load the classifier in a worker process: " + error_text(exc))
        else:
            _write_frame(out, pickle.dumps(_Started(msg.task_id)))
            X, y = data[msg.set_key]
            outcome = run_task(X, y, est, msg.train, msg.test, msg.n_classes)
        _write_frame(out, pickle.dumps(_Finished(msg.task_id, outcome), protocol=pickle.HIGHEST_PROTOCOL))


# ---------------------------------------------------------------------------
# killable workers
# ---------------------------------------------------------------------------


class _Worker:
    """One worker process, its reader thread and its current task."""

    def __init__(self, events):
        import subprocess
        import sys
        import threading

        env = dict(os.environ)
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # a fit runs on one thread anyway (fits.one_thread)
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.sent: set = set()
        self.task: Optional[Task] = None
        self.deadline = math.inf
        self.alive = True
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def _read(self, events) -> None:
        import pickle

        while True:
            frame = _read_frame(self.proc.stdout)
            if frame is None:
                events.put(_Event(self, _Closed(), time.monotonic()))
                return
            events.put(_Event(self, pickle.loads(frame), time.monotonic()))

    def send(self, task: Task, data: PreparedSet, est_bytes: bytes, n_classes: int, timeout: float) -> None:
        import pickle

        set_key = task.set_index
        if set_key not in self.sent:  # tasks come grouped by feature set: keep only the latest one
            from .matrix_files import mapped_file

            X = mapped_file(data.X) or data.X  # a memory-mapped matrix goes as its file's path
            _write_frame(self.proc.stdin, pickle.dumps(_DataMessage(set_key, X, data.y),
                                                       protocol=pickle.HIGHEST_PROTOCOL))
            self.sent = {set_key}
        msg = _TaskMessage(task.index, set_key, est_bytes, task.split.train, task.split.test, n_classes)
        self.task = task
        self.deadline = time.monotonic() + timeout + _START_GRACE
        _write_frame(self.proc.stdin, pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def finish(self) -> Optional[Task]:
        """The task this worker was on (it is now idle)."""
        task, self.task, self.deadline = self.task, None, math.inf
        return task

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


class _Pool:
    """Up to ``n_workers`` killable workers serving a queue of tasks."""

    def __init__(self, jobs: Sequence[Task], data: Sequence[PreparedSet], n_jobs: int, n_classes: int,
                 timeout: float, on_done: OnDone):
        import queue
        from collections import deque

        self.events: "queue.Queue" = queue.Queue()
        self.pending = deque(jobs)
        self.data, self.n_classes, self.timeout, self.on_done = data, n_classes, timeout, on_done
        self.n_workers = max(1, min(n_jobs, len(jobs)))
        self.workers: List[_Worker] = []

    def busy(self) -> List[_Worker]:
        return [w for w in self.workers if w.task is not None]

    def dispatch(self) -> None:
        """Hand pending tasks to idle workers, starting new ones up to ``n_workers``."""
        self.workers = [w for w in self.workers if w.alive]
        while self.pending:
            idle = [w for w in self.workers if w.task is None]
            if not idle and len(self.workers) >= self.n_workers:
                return
            task = self.pending.popleft()
            try:
                est_bytes = _dumps(task.estimator)
            except Exception as exc:  # noqa: BLE001
                self.on_done(task, FitOutcome.failed("cannot send the classifier to a worker process: "
                                                     + error_text(exc)))
                continue
            w = idle[0] if idle else None
            if w is None:
                w = _Worker(self.events)
                self.workers.append(w)
            try:
                w.send(task, self.data[task.set_index], est_bytes, self.n_classes, self.timeout)
            except OSError:  # the worker is gone (it could not start?): next task gets a new one
                w.task = None
                w.kill()
                self.workers.remove(w)
                self.on_done(task, FitOutcome.failed("worker process died before the fit started"))

    def wait_for_event(self) -> None:
        """Handle the next message of a worker, or return at the nearest deadline (at most 1 s)."""
        import queue

        wait_s = max(0.0, min(w.deadline for w in self.busy()) - time.monotonic())
        try:
            w, msg, at = self.events.get(timeout=min(wait_s, 1.0) + 0.01)
        except queue.Empty:
            return
        if not w.alive:
            return
        if isinstance(msg, _Closed):
            task = w.finish()
            w.kill()
            if task is not None:
                self.on_done(task, FitOutcome.failed(f"worker process died (exit code {w.proc.returncode})"))
        elif w.task is not None and msg.task_id == w.task.index:
            if isinstance(msg, _Started):
                w.deadline = at + self.timeout
            elif isinstance(msg, _Finished):
                self.on_done(w.finish(), msg.outcome)

    def kill_overdue(self) -> None:
        """Kill the workers whose fit ran past the timeout; their tasks time out."""
        now = time.monotonic()
        for w in self.workers:
            if w.alive and w.task is not None and w.deadline <= now:
                task = w.finish()
                w.kill()
                self.on_done(task, FitOutcome.timed_out(self.timeout))

    def close(self) -> None:
        for w in self.workers:
            if w.alive:
                w.kill()


def run_killable(jobs: Sequence[Task], data: Sequence[PreparedSet], n_jobs: int, n_classes: int,
                 timeout: float, on_done: OnDone) -> None:
    """Run tasks in worker processes; a fit running past ``timeout`` s is killed."""
    pool = _Pool(jobs, data, n_jobs, n_classes, timeout, on_done)
    try:
        while pool.pending or pool.busy():
            pool.dispatch()
            if not pool.busy():
                continue
            pool.wait_for_event()
            pool.kill_overdue()
    finally:
        pool.close()
