"""The feature matrices of a run as memory-mapped ``.npy`` files, shared by its worker processes.

When the fits run in processes of their own (``n_jobs > 1`` through joblib,
or killable workers with a ``timeout``), each matrix of at least
:data:`SHARE_BYTES` is written once to a ``.npy`` file in a temporary folder
and the workers get a read-only memory map of that file: joblib forwards a
memory-mapped array by its file name, the killable workers are sent the path
(:mod:`.workers`). No worker receives a pickled copy; the pages are shared
through the operating system's page cache, which can evict them. The folder
(in ``$TMPDIR``, else the system's temporary folder) is removed when the run
ends, and a folder left by a run killed outright is removed by the next one.
Each fit still copies its own training and test rows (see docs/scaling.md,
"Memory of compare on one machine").

Example
-------
>>> import numpy as np
>>> from leukbench.evaluation.fits import PreparedSet
>>> big = PreparedSet(np.ones((512, 1024), np.float32), np.zeros(512, np.int64), "d")
>>> with shared_matrices([big]) as data:
...     type(data[0].X).__name__, bool(np.array_equal(data[0].X, big.X))
('memmap', True)
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .fits import PreparedSet

__all__ = ["SHARE_BYTES", "mapped_file", "remove_orphans", "shared_matrices"]

#: Matrices smaller than this go to the workers as they are (joblib's own threshold, 1 MiB).
SHARE_BYTES = 1 << 20
#: Name of a run's folder: ``leukbench-matrices-<pid>-<random>``.
_PREFIX = "leukbench-matrices-"


@contextlib.contextmanager
def shared_matrices(prepared: Sequence[PreparedSet],
                    share: Optional[Iterable[int]] = None) -> Iterator[List[PreparedSet]]:
    """``prepared`` with each large matrix replaced by a read-only memory map of a copy on disk.

    ``share``: the indices of the sets the workers use (default: all). Small
    matrices, and those already mapped from a whole ``.npy`` file, are left
    as they are; one that cannot be written (a full disk) stays in memory, as
    before. The values are the same bytes, so the fits give the same results.
    """
    out = list(prepared)
    share = range(len(out)) if share is None else sorted(set(share))
    big = [i for i in share if out[i].X.nbytes >= SHARE_BYTES and mapped_file(out[i].X) is None]
    if not big:
        yield out
        return
    remove_orphans()
    folder = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    try:
        for i in big:
            path = os.path.join(folder, f"features-{i}.npy")
            try:
                np.save(path, np.ascontiguousarray(out[i].X))
            except OSError:  # no room in the temporary folder: pickled to each worker instead
                continue
            out[i] = out[i]._replace(X=np.load(path, mmap_mode="r"))
        yield out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphans(folder: Optional[str] = None) -> int:
    """Remove the matrix folders of runs that were killed outright (their process is gone).

    A run removes its folder when it ends, even on Ctrl-C or SIGTERM; a ``kill -9``
    leaves it. Folders of live processes are kept. Returns the number removed.

    Example
    -------
    >>> remove_orphans(tempfile.mkdtemp())
    0
    """
    removed = 0
    for entry in Path(folder or tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = entry.name[len(_PREFIX):].split("-", 1)[0]
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
