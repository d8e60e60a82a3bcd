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
import os
import shutil
import tempfile
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .._mapped import PREFIX, mapped_file, remove_orphans
from .fits import PreparedSet

__all__ = ["SHARE_BYTES", "mapped_file", "remove_orphans", "shared_matrices"]

#: Matrices smaller than this go to the workers as they are (joblib's own threshold, 1 MiB).
SHARE_BYTES = 1 << 20


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
    folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
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
