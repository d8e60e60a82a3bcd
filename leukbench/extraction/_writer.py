"""Cache chunks written by one background thread, so that the computation never waits for the disk.

:class:`ChunkWriter` takes finished chunks (the arguments of
:meth:`FeatureCache.write_chunk`) and writes them, in the order handed over,
on a single thread. At most ``max_pending`` chunks wait in its queue
(:data:`MAX_PENDING`): a caller that runs ahead of the disk blocks in
:meth:`ChunkWriter.submit`, so memory stays bounded. Each chunk is written
atomically as before (a temporary file, then a rename).

:meth:`ChunkWriter.close` (called in the extraction's ``finally``, on
Ctrl-C and SIGTERM too) writes every chunk handed over before it returns. A
write that fails (full disk, read-only cache) stops the writing and its
exception is raised in the caller's thread, by the next ``submit`` or by
``close``, with its own type and message. The thread is not a daemon: a
second Ctrl-C that cuts ``close`` short still lets the chunks already handed
over reach the disk before the interpreter exits.

Example
-------
>>> import tempfile
>>> import numpy as np
>>> from leukbench.cache import FeatureCache
>>> from leukbench.features.base import ExtractorConfig
>>> cache = FeatureCache(tempfile.mkdtemp(), "/data", ExtractorConfig("demo", "handcrafted"), ["demo.a"])
>>> with ChunkWriter(cache) as writer:
...     for k in range(3):
...         writer.submit([f"{k}.png"], [1], [2], ["p"], ["d"], [False], np.full((1, 1), k))
>>> writer.written, cache.matrix(["0.png", "2.png"]).ravel().tolist()
(3, [0.0, 2.0])
"""

from __future__ import annotations

import queue
import threading
from typing import Optional

from ..cache import FeatureCache

__all__ = ["MAX_PENDING", "ChunkWriter"]

#: Chunks waiting to be written at most (one more is being written).
MAX_PENDING = 2
#: Seconds between the writer thread's checks that it was closed (see ``_loop``).
_POLL_SECONDS = 0.1


class ChunkWriter:
    """Write :class:`FeatureCache` chunks in order on one background thread.

    Parameters
    ----------
    cache : FeatureCache
        Where the chunks go (:meth:`FeatureCache.write_chunk`).
    max_pending : int
        Chunks that may wait in the queue; ``submit`` blocks beyond.
    """

    def __init__(self, cache: FeatureCache, max_pending: int = MAX_PENDING):
        self.cache = cache
        self.max_pending = max(1, int(max_pending))
        #: Chunks written so far.
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=self.max_pending)
        self._closed = threading.Event()
        self._error: Optional[BaseException] = None
        self._reported = False
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "ChunkWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def submit(self, *args, **kwargs) -> None:
        """Hand over one chunk (the arguments of :meth:`FeatureCache.write_chunk`).

        Blocks while ``max_pending`` chunks wait. Raises the exception of an
        earlier write that failed (nothing more is written then).
        """
        self._raise_error()
        if self._closed.is_set():
            raise RuntimeError("ChunkWriter.submit after close")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="leukbench-cache-writer")
            self._thread.start()
        self._queue.put((args, kwargs))
        self._raise_error()

    def close(self) -> None:
        """Write every chunk handed over, stop the thread, and raise a write's exception if one failed."""
        self._closed.set()
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)  # wakes the thread at once; when full, it notices within a poll
            except queue.Full:
                pass
            self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        """Raise the failed write's exception here, once (``close`` after ``submit`` raised it stays quiet)."""
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error

    def _loop(self) -> None:
        """The thread: write what arrives, in order, until closed and empty.

        ``close`` queues ``None`` when there is room; else the thread notices
        within a poll, so that ``close`` never blocks on a full queue. It
        also ends once the queue is empty after the main thread has ended
        without closing it (so the interpreter can exit).
        """
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._closed.is_set() or not threading.main_thread().is_alive():
                    return
                continue
            if item is None:
                return
            args, kwargs = item
            if self._error is None:  # after a failed write the rest is dropped, as a synchronous run stops
                try:
                    self.cache.write_chunk(*args, **kwargs)
                    self.written += 1
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread instead
                    self._error = exc
