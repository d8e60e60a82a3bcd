"""Running the tasks of an evaluation on a Dask cluster: one Dask task per (feature set, classifier, fold).

Each feature matrix (with its labels) is scattered to every worker once
(``client.scatter(..., broadcast=True)``); a task carries only its
cloudpickled estimator and its train/test indices. Outcomes reach the caller's
``on_done`` -- which writes the fold cache -- as tasks finish
(``distributed.as_completed``), so an interrupted run resumes where it stopped.

Without a timeout a worker fits in its own process (:func:`.fits.run_task`,
which turns any failure of the model into a ``failed`` outcome). With one,
the worker hands the fit to a child process of its own -- the killable pool
of :mod:`.workers`, the same mechanism as a local run, kept between tasks so
that its interpreter starts once per worker -- which is killed (and replaced
for the next task) when the fit runs past the timeout. A fit that kills its Dask worker outright (a crash
in native code) is retried by Dask on other workers and then recorded as
``failed``; the other tasks carry on.
"""

from __future__ import annotations

import pickle
from typing import Dict, List, Optional, Sequence

import numpy as np

from .fits import FitOutcome, PreparedSet, Task, error_text, run_task
from .workers import OnDone, _Pool

__all__ = ["fit_on_worker", "run_on_cluster"]


def fit_on_worker(data, data_key: str, est_bytes: bytes, train: np.ndarray, test: np.ndarray, n_classes: int,
                  timeout: Optional[float]) -> FitOutcome:
    """One fit on a Dask worker: ``data`` is the scattered ``(X, y)`` (``data_key`` its digest); never
    raises for the model's faults.

    Example
    -------
    >>> import cloudpickle
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = np.array([[0.0], [0.1], [1.0], [1.1], [0.05], [1.05]]), np.array([0, 0, 1, 1, 0, 1])
    >>> out = fit_on_worker((X, y), "demo", cloudpickle.dumps(GaussianNB()), np.arange(4), np.array([4, 5]), 2,
    ...                     None)
    >>> out.status, out.y_pred.tolist()
    ('ok', [0, 1])
    """
    X, y = data
    if timeout:  # in a killable child process, as in a local run with a timeout
        return _killable_fit(PreparedSet(X, y, data_key), est_bytes, train, test, n_classes, float(timeout))
    try:
        est = pickle.loads(est_bytes)
    except Exception as exc:  # noqa: BLE001 - e.g. a class this worker cannot import
        return FitOutcome.failed("cannot load the classifier on a Dask worker: " + error_text(exc))
    return run_task(X, y, est, train, test, n_classes)


#: Per thread of a Dask worker process: the pool of one killable child process serving its fits.
_POOLS: Dict[int, _Pool] = {}


def _killable_fit(data: PreparedSet, est_bytes: bytes, train: np.ndarray, test: np.ndarray, n_classes: int,
                  timeout: float) -> FitOutcome:
    """Fit in this worker's child process (:class:`.workers._Pool`, kept between tasks so that
    its interpreter starts once); a fit past ``timeout`` kills the child, the next task starts
    a new one. The child receives each feature matrix once."""
    import threading

    from .splits import Split

    pool = _POOLS.get(threading.get_ident())
    if pool is None:
        pool = _POOLS[threading.get_ident()] = _Pool([], {}, 1, n_classes, timeout, None)
    outcomes: List[FitOutcome] = []
    pool.data = {data.digest: data}
    pool.n_classes, pool.timeout, pool.on_done = n_classes, timeout, lambda _task, o: outcomes.append(o)
    pool.pending.append(Task(0, data.digest, "", Split(0, 0, train, test), estimator=_Pickled(est_bytes)))
    while pool.pending or pool.busy():
        pool.dispatch()
        if pool.busy():
            pool.wait_for_event()
            pool.kill_overdue()
    return outcomes[0]


class _Pickled:
    """An estimator already cloudpickled: it reaches the killable child process as those bytes."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return pickle.loads, (self.payload,)


def run_on_cluster(jobs: Sequence[Task], data: Sequence[PreparedSet], n_classes: int,
                   timeout: Optional[float], on_done: OnDone, client) -> None:
    """Run ``jobs`` on the Dask cluster of ``client``; ``on_done`` gets each outcome as it finishes.

    ``jobs`` come in the order they should start (slowest first); a task
    whose worker died on every try (``KilledWorker``) is ``failed``.
    """
    import cloudpickle
    from distributed import KilledWorker, as_completed

    if not jobs:
        return
    used = sorted({t.set_index for t in jobs})
    scattered = dict(zip(used, client.scatter([(data[i].X, data[i].y) for i in used], broadcast=True)))
    pending, task_of = set(), {}
    for rank, task in enumerate(jobs):
        try:
            est_bytes = cloudpickle.dumps(task.estimator)
        except Exception as exc:  # noqa: BLE001 - as in a local run with workers
            on_done(task, FitOutcome.failed("cannot send the classifier to a Dask worker: " + error_text(exc)))
            continue
        future = client.submit(fit_on_worker, scattered[task.set_index], data[task.set_index].digest, est_bytes,
                               task.split.train, task.split.test, n_classes, timeout,
                               priority=len(jobs) - rank, pure=False)
        pending.add(future)
        task_of[future.key] = task
    try:
        for future in as_completed(pending):
            pending.discard(future)
            task = task_of.pop(future.key)
            if future.status == "error" and isinstance(future.exception(), KilledWorker):
                outcome = FitOutcome.failed("the Dask worker died during the fit on every try: "
                                            + error_text(future.exception()))
            else:
                outcome = future.result()  # anything else a task raised is a bug: shown as it is
            on_done(task, outcome)
    finally:  # Ctrl-C or an error: finished fits are cached, nothing more is computed
        client.cancel(list(pending) + list(scattered.values()))
