"""Writing a file whole or not at all: write a temporary file beside it, then rename it.

One rename (:func:`os.replace`) is atomic on POSIX and Windows, so a reader sees
the earlier file or the new one, never half of one, whatever stops the writer
(a full disk, a kill). The temporary file is removed when the write fails.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "notes.txt"
>>> write_atomically(path, lambda tmp: tmp.write_text("done"))
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('done', ['notes.txt'])
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["write_atomically"]


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary path)`` beside ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and the exception goes on
    (a failure to remove it, when its folder is gone, does not hide that
    exception); ``path`` is left as it was.
    """
    path = Path(path)
    # unique per call: two threads of one process may write the same file (never matches ``chunk-*``)
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
