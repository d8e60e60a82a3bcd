"""The on-disk feature cache: incremental, resumable, keyed by the extractor config.

Layout (all open formats)::

    <cache_dir>/features/<dataset name>-<hash of its root>/<extractor cache key>/
        config.json                 extractor config, feature names, dataset root
        chunk-<time>-<rand>.parquet one row per image: id, size, mtime_ns, ctime_ns,
                                    inode, pixel_hash, dhash, seg_fallback, features...
        chunk-...-merged.parquet    64 consecutive chunks merged (see compact)
        skipped.csv                 images skipped by the latest run, with reasons

An image is taken from the cache when its ``id`` (path relative to the dataset
root), file size, modification time, status-change time (ctime) and inode all
match a cached row; the newest chunk wins when an image was extracted twice.
Rows without ctime and inode (caches written before they were recorded) have
an unknown identity and are extracted again.  Chunks are written to a
temporary name and atomically renamed, so an interrupted run loses at most the
chunk in flight and the next run continues where it stopped.

Example
-------
>>> import tempfile
>>> import numpy as np
>>> from leukbench.features.base import ExtractorConfig
>>> cache = FeatureCache(tempfile.mkdtemp(), "/data/cells", ExtractorConfig("demo", "handcrafted"), ["demo.a"])
>>> _ = cache.write_chunk(["x.png"], [10], [7], ["p"], ["d"], [False], np.ones((1, 1)))
>>> cache.cached_mask(["x.png", "y.png"], np.array([10, 10]), np.array([7, 7])).tolist()
[True, False]
>>> cache.matrix(["x.png"]).tolist()
[[1.0]]
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd

from ._atomic import write_atomically
from .exceptions import CacheError
from .features.base import ExtractorConfig

META_COLUMNS = ["id", "size", "mtime_ns", "ctime_ns", "inode", "pixel_hash", "dhash", "seg_fallback"]
#: Identity columns older caches lack; their rows read as -1 ("unknown"), which no file matches.
_IDENTITY_COLUMNS = ["ctime_ns", "inode"]
#: Errors that mean "this cache cannot be written" (a read-only, shared cache), not a failure.
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
#: Age after which a ``.tmp-*`` file is left over from a killed run (no write takes that long).
STALE_TEMP_SECONDS = 3600
#: Times a read starts over when another run's compaction removed a chunk under it.
_CONCURRENT_RETRIES = 5


def default_cache_dir() -> Path:
    """``$LEUKBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/leukbench``, else ``~/.cache/leukbench``."""
    env = os.environ.get("LEUKBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "leukbench"


def dataset_key(root) -> str:
    """Folder name for a dataset: its base name plus a hash of its absolute root."""
    root = os.path.abspath(os.fspath(root))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(root) or "root")
    return f"{name}-{hashlib.sha1(root.encode()).hexdigest()[:8]}"


def stat_images(paths: Sequence[str]) -> tuple:
    """The identity of each file of ``paths``: ``(sizes, mtimes, ctimes, inodes)``, int64 arrays.

    Times are in ns; everything is -1 for a missing file. The status-change
    time (ctime) cannot be set back by ``touch -r`` or ``os.utime``, so an
    image rewritten in place with the same size and restored mtime still
    changes identity. Costs one ``os.stat`` per file, as size and mtime alone.

    Example
    -------
    >>> sizes, mtimes, ctimes, inodes = stat_images(["/no/such/file.png"])
    >>> sizes.tolist(), inodes.tolist()
    ([-1], [-1])
    """
    out = np.full((4, len(paths)), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        ino = st.st_ino & 0xFFFFFFFFFFFFFFFF  # unsigned on some file systems: keep the 64 bits as int64
        out[:, i] = st.st_size, st.st_mtime_ns, st.st_ctime_ns, ino - (1 << 64) if ino >> 63 else ino
    return out[0], out[1], out[2], out[3]


class FeatureCache:
    """Cached features of one extractor configuration on one dataset.

    Parameters
    ----------
    cache_dir : path
        Root of all leukbench caches.
    dataset_root : path
        Root folder of the dataset (image ids are relative to it).
    config : ExtractorConfig
    feature_names : list of str
    """

    def __init__(self, cache_dir, dataset_root, config: ExtractorConfig, feature_names: List[str]):
        self.cache_dir = Path(cache_dir)
        self.dataset_root = os.path.abspath(os.fspath(dataset_root))
        self.config = config
        self.feature_names = list(feature_names)
        self.path = self.cache_dir / "features" / dataset_key(self.dataset_root) / config.cache_key()
        self._index: Optional[pd.DataFrame] = None
        self._files: List[Path] = []
        #: set when a write was refused because the cache is read-only (see :meth:`write_skipped`)
        self.read_only_note: Optional[str] = None

    # ------------------------------------------------------------------
    def _ensure_dir(self) -> None:
        if self.path.exists():
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"{self.path}: cannot create the feature cache ({exc.strerror}); "
                "choose a writable folder with --cache-dir or LEUKBENCH_CACHE_DIR"
            ) from None
        meta = {
            "config": self.config.to_dict(),
            "cache_key": self.config.cache_key(),
            "dataset_root": self.dataset_root,
            "feature_names": self.feature_names,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _atomic_write_bytes(self.path / "config.json", json.dumps(meta, indent=2).encode())

    def chunk_files(self) -> List[Path]:
        """Chunk files, oldest first."""
        if not self.path.is_dir():
            return []
        return sorted(self.path.glob("chunk-*.parquet"))

    def index(self) -> pd.DataFrame:
        """Metadata of every cached image (newest per id), indexed by id.

        Only the metadata columns are read, never the features, so this stays
        cheap for large caches.  ``_chunk`` and ``_row`` locate each image's
        feature row (see :meth:`matrix`).
        """
        if self._index is not None:
            return self._index
        listing = _read_listing(self.chunk_files, lambda f: _read_chunk(f, META_COLUMNS))
        if listing is None:
            raise self._kept_changing()
        files, frames = listing
        # a damaged chunk (None) is ignored, its images redone
        frames = [m.assign(_chunk=c, _row=np.arange(len(m))) for c, m in enumerate(frames) if m is not None]
        if frames:
            t = pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last").set_index("id")
        else:
            t = pd.DataFrame(columns=META_COLUMNS + ["_chunk", "_row"]).set_index("id")
        self._files, self._index = files, t
        return self._index

    def cached_mask(self, ids: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray,
                    ctimes: Optional[np.ndarray] = None, inodes: Optional[np.ndarray] = None) -> np.ndarray:
        """Boolean mask: which images are cached with the same identity (:func:`stat_images`).

        ``ctimes`` and ``inodes`` left out mean "unknown", which matches only
        rows written without them.
        """
        t = self.index()
        if not len(t):
            return np.zeros(len(ids), dtype=bool)
        pos = t.index.get_indexer(pd.Index(ids))
        hit = pos >= 0
        safe = np.where(hit, pos, 0)
        same = hit
        for column, values in zip(META_COLUMNS[1:5], (sizes, mtimes, ctimes, inodes)):
            values = np.full(len(ids), -1, dtype=np.int64) if values is None else values
            same = same & (t[column].to_numpy()[safe] == values)
        return same

    def rows(self, ids: Sequence[str]) -> pd.DataFrame:
        """Cached metadata rows for ``ids`` in that order (all must be cached)."""
        return self.index().loc[list(ids), META_COLUMNS[1:]]

    def matrix(self, ids: Sequence[str], out: Optional[np.ndarray] = None) -> np.ndarray:
        """Feature matrix (float32) of ``ids`` in that order (all must be cached).

        Reads one chunk, :data:`READ_COLUMNS` columns at a time, straight into
        one preallocated array: the peak is the matrix plus a few copies of one
        column group of one chunk (8 MB for 128 columns of a merged chunk).
        ``out`` is that array when given (e.g. a writable memory map,
        :func:`leukbench._mapped.mapped_matrix`), of shape ``(len(ids), n_features)``.
        """
        shape = (len(ids), len(self.feature_names))
        if out is not None and out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, the matrix {shape}")
        for _attempt in range(_CONCURRENT_RETRIES):
            idx = self.index().loc[list(ids), ["_chunk", "_row"]]
            out = np.empty(shape, dtype=np.float32) if out is None else out
            chunk = idx["_chunk"].to_numpy(dtype=np.int64)
            row = idx["_row"].to_numpy(dtype=np.int64)
            try:
                for c in np.unique(chunk):
                    where = np.flatnonzero(chunk == c)
                    _read_features_into(self._files[c], self.feature_names, out, where, row[where])
                return out
            except FileNotFoundError:  # merged away by another run meanwhile: read the index again
                self._index = None
        raise self._kept_changing()

    def _kept_changing(self) -> CacheError:
        return CacheError(f"{self.path}: the cache kept changing while it was read (another leukbench "
                       "run compacting it?); run the command again")

    def table(self) -> pd.DataFrame:
        """All cached rows (metadata and features, newest per id), indexed by id.

        Loads the whole cache; :meth:`index` and :meth:`matrix` do not.
        """
        t = self.index()
        feats = pd.DataFrame(self.matrix(t.index), index=t.index, columns=self.feature_names)
        return pd.concat([t[META_COLUMNS[1:]], feats], axis=1)

    def write_chunk(
        self,
        ids: Sequence[str],
        sizes: Iterable[int],
        mtimes: Iterable[int],
        pixel_hashes: Sequence[str],
        dhashes: Sequence[str],
        seg_fallback: Sequence[bool],
        X: np.ndarray,
        ctimes: Optional[Iterable[int]] = None,
        inodes: Optional[Iterable[int]] = None,
    ) -> Path:
        """Atomically add one chunk of extracted rows.

        ``sizes``, ``mtimes``, ``ctimes`` and ``inodes`` are the images'
        :func:`stat_images`; ``ctimes``/``inodes`` left out are stored as -1
        (unknown).
        """
        self._ensure_dir()
        X = np.asarray(X, dtype=np.float32)
        if X.shape != (len(ids), len(self.feature_names)):
            raise ValueError(f"chunk has shape {X.shape}, expected ({len(ids)}, {len(self.feature_names)})")
        table = arrow_table({
            "id": string_column(ids),
            "size": np.asarray(list(sizes), dtype=np.int64),
            "mtime_ns": np.asarray(list(mtimes), dtype=np.int64),
            "ctime_ns": _int_column(ctimes, len(ids)),
            "inode": _int_column(inodes, len(ids)),
            "pixel_hash": string_column(pixel_hashes),
            "dhash": string_column(dhashes),
            "seg_fallback": np.asarray(list(seg_fallback), dtype=bool),
        }, X, self.feature_names)
        final = self.path / f"chunk-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        write_table_atomically(table, final)
        self._index = None
        return final

    def write_skipped(self, skipped: pd.DataFrame) -> Optional[Path]:
        """Record the images the latest run skipped (``id, path, kind, reason``).

        In a cache folder that cannot be written (read-only or shared), nothing
        is written: returns ``None`` and sets :attr:`read_only_note`.
        """
        self._ensure_dir()
        out = self.path / "skipped.csv"
        try:
            _atomic_write_bytes(out, skipped.to_csv(index=False).encode())
        except OSError as exc:
            if exc.errno not in _READ_ONLY_ERRNOS:
                raise
            self._note_read_only(exc)
            return None
        return out

    def _note_read_only(self, exc: OSError) -> None:
        self.read_only_note = (f"the cache folder {self.path} cannot be written ({exc.strerror}): "
                               "features were read from it, nothing was written")

    def remove_stale_temporaries(self, max_age: float = STALE_TEMP_SECONDS) -> int:
        """Remove ``.tmp-*`` files older than ``max_age`` seconds (left by a killed run).

        A live run's temporary file is younger: one chunk is written in well
        under a second, so concurrent runs never lose theirs. Files that cannot
        be removed are left. Returns the number removed.
        """
        removed, now = 0, time.time()
        for f in self.path.glob(".tmp-*") if self.path.is_dir() else []:
            try:
                if now - f.stat().st_mtime > max_age:
                    f.unlink()
                    removed += 1
            except OSError:  # gone meanwhile, or a read-only cache
                continue
        return removed

    def compact(self, group: int = 64) -> int:
        """Merge every full run of ``group`` consecutive chunks into one file.

        A large cache otherwise holds one file per ``chunk_size`` images (about
        3,900 files for a million images), all opened at every run. Merging
        keeps the newest row of each image, and the merged file takes the
        place of the group's newest chunk in the order, so "newest chunk wins"
        still holds. Merged files are never merged again, so one merge never
        holds more than ``group`` chunks in memory. The merged file is written
        (atomically) before the group's chunks are removed; an interruption in
        between leaves duplicates that the newest-wins rule resolves. A group
        that cannot be read is left as it is. Returns the number of chunk files
        removed.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups, run = [], []
        for f in self.chunk_files():  # runs of consecutive chunks that are not merged yet
            if f.name.endswith("-merged.parquet"):
                run = []
                continue
            run.append(f)
            if len(run) == group:
                groups.append(run)
                run = []
        removed = 0
        for members in groups:
            try:  # chunks of older caches lack the identity columns: null there, read as unknown
                table = pa.concat_tables([pq.read_table(f) for f in members], promote_options="default")
            except Exception:  # noqa: BLE001 - damaged or mismatched chunks stay as they are
                continue
            ids = table.column("id").to_pylist()
            last = {id_: i for i, id_ in enumerate(ids)}
            table = table.take(pa.array(sorted(last.values()), type=pa.int64()))
            final = members[-1].with_name(members[-1].name[: -len(".parquet")] + "-merged.parquet")
            try:
                write_table_atomically(table, final)
            except OSError as exc:
                if exc.errno not in _READ_ONLY_ERRNOS:
                    raise
                self._note_read_only(exc)
                break
            for f in members:
                f.unlink(missing_ok=True)
            removed += len(members)
        if removed:
            self._index = None
        return removed

    def size_bytes(self) -> int:
        """Bytes of all chunk files on disk."""
        return sum(f.stat().st_size for f in self.chunk_files())

    def describe(self) -> Dict[str, object]:
        """``{"path", "chunks", "bytes"}`` of this cache, for reports."""
        return {"path": str(self.path), "chunks": len(self.chunk_files()), "bytes": self.size_bytes()}


def read_features(folder) -> pd.DataFrame:
    """Every cached row of one extractor's cache folder (newest per id), indexed by id.

    Safe while another run writes or compacts the folder: a chunk merged away
    between the listing and the reading makes it list the folder again.
    Damaged chunks are left out.

    Example
    -------
    >>> import tempfile
    >>> read_features(tempfile.mkdtemp()).shape
    (0, 0)
    """
    folder = Path(folder)
    listing = _read_listing(lambda: sorted(folder.glob("chunk-*.parquet")), _read_chunk)
    if listing is None:
        raise CacheError(f"{folder}: the cache kept changing while it was read (another leukbench run "
                         "compacting it?); read it again")
    frames = [m for m in listing[1] if m is not None]  # damaged chunks left out
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last").set_index("id")


def _read_listing(list_files, read) -> Optional[tuple]:
    """``(files, [read(f) for f in files])``, listing again when a listed chunk disappears.

    Another run's compaction may merge chunks away between the listing and
    the reading; its merged file holds the rows. ``None`` if it kept changing.
    """
    for _attempt in range(_CONCURRENT_RETRIES):
        files = list_files()
        try:
            return files, [read(f) for f in files]
        except FileNotFoundError:
            continue
    return None


def _read_chunk(path: Path, columns: Optional[List[str]] = None) -> Optional[pd.DataFrame]:
    """Columns of one chunk (all by default), ``None`` if damaged; raises ``FileNotFoundError`` if gone.

    Identity columns that older chunks lack, or hold as nulls after a merge
    with newer ones, read as -1 ("unknown").
    """
    tries = [columns] if columns is None else [columns, [c for c in columns if c not in _IDENTITY_COLUMNS]]
    for cols in tries:
        try:
            m = pd.read_parquet(path, columns=cols)
        except FileNotFoundError:
            raise
        except Exception:  # noqa: BLE001 - an older chunk without the identity columns, or damaged
            continue
        for column in _IDENTITY_COLUMNS:
            m[column] = m[column].fillna(-1).astype(np.int64) if column in m else np.int64(-1)
        return m
    return None


def _int_column(values: Optional[Iterable[int]], n: int) -> np.ndarray:
    """``values`` as int64, or -1 ("unknown") for each of ``n`` rows when ``None``."""
    return np.full(n, -1, dtype=np.int64) if values is None else np.asarray(list(values), dtype=np.int64)


def string_column(values):
    """An Arrow string column; ``None`` and NaN become null, anything else ``str``."""
    import pyarrow as pa

    return pa.array([None if v is None or v != v else str(v) for v in values], type=pa.string())


def arrow_table(meta: Dict[str, object], X: np.ndarray, feature_names: Sequence[str]):
    """An Arrow table of metadata columns followed by one float32 column per feature.

    Built column by column: a pandas DataFrame of 2,048 feature columns costs
    more to convert than the features cost to compute.
    """
    import pyarrow as pa

    XT = np.ascontiguousarray(np.asarray(X, dtype=np.float32).T)
    columns = [c if isinstance(c, pa.Array) else pa.array(c) for c in meta.values()]
    columns += [pa.array(XT[j]) for j in range(XT.shape[0])]
    return pa.Table.from_arrays(columns, names=list(meta) + list(feature_names))


def feature_matrix(table, names: Sequence[str]) -> np.ndarray:
    """The ``names`` columns of an Arrow table as a float32 ``(rows, features)`` array."""
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = table.column(name).to_numpy()
    return out


#: Feature columns read from a chunk at once by :meth:`FeatureCache.matrix`.
READ_COLUMNS = 128


def _read_features_into(path: Path, names: List[str], out: np.ndarray, where: np.ndarray,
                        rows: np.ndarray) -> None:
    """``out[where] = <features of path>[rows]``, read :data:`READ_COLUMNS` columns at a time."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        for j in range(0, len(names), READ_COLUMNS):
            group = names[j:j + READ_COLUMNS]
            block = feature_matrix(pf.read(columns=group), group)
            out[where, j:j + len(group)] = block[rows]


def write_table_atomically(table, path: Path) -> None:
    """Write an Arrow table to ``path`` as Parquet: whole, or not at all."""
    import pyarrow.parquet as pq

    write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
