"""Walking dataset folders: image files, sub-folders and CSV files, symlink loops skipped.

Names that are not valid UTF-8 (Python decodes them with surrogate escapes)
cannot be ids in the cache, CSVs and reports: the walk leaves them out and
records them, escaped, in a :class:`WalkLog`, with the number of images
reached through symbolic links that lead outside the dataset root.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Set, Tuple

from ..exceptions import DatasetError
from ..images import is_image_file


def is_text(name: str) -> bool:
    """Whether ``name`` is valid Unicode (no surrogate escapes of undecodable bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escape_name(name: str) -> str:
    r"""``name`` with undecodable bytes written ``\xNN`` (valid UTF-8, for messages and lists).

    Example
    -------
    >>> import os
    >>> escape_name(os.fsdecode(b"cell_\xff.png"))
    'cell_\\xff.png'
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass
class WalkLog:
    """What a walk below ``root`` left out or followed outside it (see the module docstring)."""

    root: str
    undecodable: List[str] = field(default_factory=list)  # escaped ids, relative to root
    outside_links: int = 0  # images reached through a symbolic link leading outside root

    def __post_init__(self):
        self._real_root = os.path.realpath(self.root)

    def outside(self, path: str) -> bool:
        """Whether the symbolic link ``path`` resolves outside the root."""
        real = os.path.realpath(path)
        return real != self._real_root and not real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def skip_name(self, path: str) -> bool:
        """Record and return True when ``path`` is not valid Unicode below the root."""
        if is_text(path):
            return False
        self.undecodable.append(escape_name(relative_id(path, self.root)))
        return True


def dir_key(path) -> Optional[Tuple[int, int]]:
    """``(st_dev, st_ino)`` of the directory at ``path`` (symlinks followed); None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()`` following symlinks; False for broken or looping links."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def subdirs(root: str) -> List[os.DirEntry]:
    """Non-hidden sub-folders of ``root`` (symlinks to folders included), sorted by name."""
    with os.scandir(root) as it:
        return sorted((e for e in it if not e.name.startswith(".") and _is_dir(e)), key=lambda e: e.name)


def walk_images(top: str, seen: Optional[Set[Tuple[int, int]]] = None,
                log: Optional[WalkLog] = None) -> Iterator[str]:
    """Yield absolute paths of image files below ``top`` (skips hidden entries).

    Parameters
    ----------
    top : str
        Folder to walk; it is walked even when already in ``seen``.
    seen : set, optional
        ``(st_dev, st_ino)`` of folders already walked or to be walked by the
        caller; shared between calls so a symlink back up the tree (a loop) or
        to another walked folder is skipped. A symlinked folder seen for the
        first time is followed.
    log : WalkLog, optional
        Records files and folders whose names are not valid UTF-8 (they are
        not yielded) and counts images reached through links outside its root.
    """
    seen = set() if seen is None else seen
    key = dir_key(top)
    if key is not None:
        seen.add(key)
    stack = [(top, False)]
    while stack:
        d, via_outside = stack.pop()
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        key = dir_key(entry.path)  # one stat per folder, none per file
                        if key is None or key in seen:
                            continue
                        seen.add(key)
                        if log is None or not log.skip_name(entry.path):
                            outside = via_outside or (log is not None and entry.is_symlink()
                                                      and log.outside(entry.path))
                            stack.append((entry.path, outside))
                    elif is_image_file(entry.name) and (log is None or not log.skip_name(entry.path)):
                        if log is not None and (via_outside or (entry.is_symlink() and log.outside(entry.path))):
                            log.outside_links += 1
                        yield entry.path
        except PermissionError:
            raise DatasetError(f"{escape_name(d)}: permission denied; make the folder readable") from None
        except OSError as exc:
            raise DatasetError(f"{escape_name(d)}: cannot list the folder ({exc.strerror}); "
                               "check the path and its links") from None


def relative_id(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def check_root(root) -> str:
    root = os.path.abspath(os.fsdecode(root))
    if not is_text(root):
        raise DatasetError(f"{escape_name(root)}: the folder's path is not valid UTF-8; rename it "
                           "(e.g. convmv -f latin1 -t utf8) so image ids can be written to the cache and CSVs")
    if not os.path.exists(root):
        raise DatasetError(f"{root}: no such folder; give the folder that holds the class sub-folders")
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder; pass a folder, or a .csv manifest")
    return root


def short_names(paths, k: int = 4) -> str:
    """Comma-separated base names, the first ``k`` and a count of the rest."""
    names = [os.path.basename(p) for p in paths]
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def root_csvs(root: str) -> List[str]:
    """Non-hidden ``.csv`` files directly in ``root``, sorted."""
    with os.scandir(root) as it:
        named = [e for e in it if not e.name.startswith(".") and e.name.lower().endswith(".csv")]
    return sorted(e.path for e in named if os.path.isfile(e.path))  # isfile: False for looping links


def _csv_header(path: str) -> List[str]:
    """Lower-cased column names of a CSV's first line; ``[]`` when unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            first = next(csv.reader(fh), [])
    except (OSError, csv.Error):
        return []
    return [c.strip().lower() for c in first]


def manifests_in(root: str) -> List[str]:
    """CSV files directly in ``root`` whose header has ``path`` and ``label`` columns."""
    return [c for c in root_csvs(root) if {"path", "label"} <= set(_csv_header(c))]
