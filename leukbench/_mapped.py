"""Feature matrices that live in a file on disk, memory-mapped, instead of in RAM.

A memory-mapped matrix (``memory_map=True`` in :func:`leukbench.extract`,
``leukbench compare --memory-map``) is a read-only ``np.memmap`` of a
``.npy`` file: NumPy reads its pages from disk when they are used and the
operating system may drop them again under memory pressure, so a matrix larger
than the machine's memory can be assembled, hashed and cross-validated by
classifiers that learn from batches (:mod:`leukbench.batch_learning`). Worker
processes map the same file (:mod:`leukbench.evaluation.matrix_files`).

The files are in one folder per process, ``leukbench-matrices-<pid>-<random>``
in ``$TMPDIR`` (else the system's temporary folder): a file is removed when
its array is garbage-collected or the process exits, and the folder of a
process killed outright (``kill -9``) by the next run (:func:`remove_orphans`).
Keep ``$TMPDIR`` on a disk: on a ``tmpfs`` the file is itself in RAM.

Example
-------
>>> import numpy as np
>>> def fill(out):
...     out[:] = np.arange(6, dtype=np.float32).reshape(3, 2)
>>> X = mapped_matrix((3, 2), fill)
>>> mapped_file(X) is not None, X.flags.writeable, X[2].tolist()
(True, False, [4.0, 5.0])
>>> take_rows(X, [2, 0]).tolist(), mapped_file(take_rows(X, [2, 0])) is not None
([[4.0, 5.0], [0.0, 1.0]], True)
"""

from __future__ import annotations

import atexit
import mmap
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

__all__ = ["BLOCK_ROWS", "PREFIX", "hstack_rows", "is_mapped", "mapped_file", "mapped_matrix", "remove_orphans",
           "run_folder", "take_rows"]

#: Name of a process's folder: ``leukbench-matrices-<pid>-<random>``.
PREFIX = "leukbench-matrices-"
#: Rows copied at a time between mapped matrices (4,096 rows of 1,280 float32: 20 MB).
BLOCK_ROWS = 4096

_lock = threading.Lock()
_folder: Optional[Tuple[int, str]] = None  # (pid, path): a forked child makes its own


def run_folder() -> str:
    """This process's folder of matrix files (created on first use, removed at exit).

    Example
    -------
    >>> os.path.basename(run_folder()).startswith(PREFIX + str(os.getpid()))
    True
    """
    global _folder
    with _lock:
        if _folder is None or _folder[0] != os.getpid():
            remove_orphans()
            path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
            atexit.register(shutil.rmtree, path, True)  # ignore_errors
            _folder = (os.getpid(), path)
        return _folder[1]


def mapped_matrix(shape: Tuple[int, int], fill: Callable[[np.ndarray], None], dtype=np.float32,
                  folder: Optional[str] = None) -> np.memmap:
    """A read-only memory map of a new ``.npy`` file of ``shape``, written by ``fill(out)``.

    ``fill`` gets a writable map and writes every value; the file is removed
    when the returned array (and every view of it) is garbage-collected.
    ``folder`` defaults to :func:`run_folder`.
    """
    fd, path = tempfile.mkstemp(suffix=".npy", prefix="features-", dir=folder or run_folder())
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        fill(out)
        out.flush()
        del out
        X = np.load(path, mmap_mode="r")
    except BaseException:
        _unlink(path)
        raise
    weakref.finalize(X, _unlink, path)
    return X


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def mapped_file(X) -> Optional[str]:
    """The ``.npy`` file ``X`` is a whole read-only memory map of (``np.load(..., mmap_mode="r")``), else ``None``.

    Example
    -------
    >>> mapped_file(np.zeros(3)) is None
    True
    """
    if not isinstance(X, np.memmap) or not isinstance(X.base, mmap.mmap) or X.mode != "r":
        return None  # a slice of a map has the map, not the mmap, as its base
    name = os.fspath(X.filename) if X.filename else ""
    return name if name.endswith(".npy") else None


def is_mapped(X) -> bool:
    """Whether ``X`` (or the array it is a view of) is memory-mapped from a file.

    Example
    -------
    >>> is_mapped(np.zeros(3))
    False
    """
    while isinstance(X, np.ndarray):
        if isinstance(X, np.memmap) and getattr(X, "filename", None):
            return True
        X = X.base
    return False


def take_rows(X: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """``X[rows]``: in RAM for an array in RAM, a new mapped matrix (copied in blocks) for a mapped one."""
    rows = np.asarray(rows, dtype=np.int64)
    if not is_mapped(X) or X.ndim != 2:
        return X[rows]

    def fill(out):
        for start in range(0, len(rows), BLOCK_ROWS):
            out[start:start + BLOCK_ROWS] = X[rows[start:start + BLOCK_ROWS]]

    return mapped_matrix((len(rows), X.shape[1]), fill, dtype=X.dtype)


def hstack_rows(blocks: Sequence[np.ndarray], rows: Sequence[np.ndarray]) -> np.ndarray:
    """``np.hstack([b[r] for b, r in zip(blocks, rows)])`` without the intermediate copies.

    The result is a new mapped matrix when any block is mapped, else an array in RAM.

    Example
    -------
    >>> hstack_rows([np.eye(2), np.ones((3, 1))], [np.array([1, 0]), np.array([2, 0])]).tolist()
    [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    """
    n = len(rows[0])
    widths = [b.shape[1] for b in blocks]
    dtype = np.result_type(*blocks)

    def fill(out):
        j = 0
        for block, take, width in zip(blocks, rows, widths):
            for start in range(0, n, BLOCK_ROWS):
                out[start:start + BLOCK_ROWS, j:j + width] = block[take[start:start + BLOCK_ROWS]]
            j += width

    if any(is_mapped(b) for b in blocks):
        return mapped_matrix((n, sum(widths)), fill, dtype=dtype)
    out = np.empty((n, sum(widths)), dtype=dtype)
    fill(out)
    return out


def remove_orphans(folder: Optional[str] = None) -> int:
    """Remove the matrix folders of processes that were killed outright (their process is gone).

    A process removes its folders when it ends, even on Ctrl-C or SIGTERM; a
    ``kill -9`` leaves them. Folders of live processes are kept. Returns the number removed.

    Example
    -------
    >>> remove_orphans(tempfile.mkdtemp())
    0
    """
    removed = 0
    for entry in Path(folder or tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = entry.name[len(PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += not entry.exists()
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to ask: keep its folder
        return True
    return True
