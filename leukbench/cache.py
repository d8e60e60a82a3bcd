"""The on-disk feature cache: incremental, resumable, keyed by the extractor config.

Layout (all open formats)::

    <cache_dir>/features/<dataset name>-<hash of its root>/<extractor cache key>/
        config.json                 extractor config, feature names, dataset root
        chunk-<time>-<rand>.parquet one row per image: id, size, mtime_ns,
                                    pixel_hash, dhash, seg_fallback, features...
        chunk-...-merged.parquet    64 consecutive chunks merged (see compact)
        skipped.csv                 images skipped by the latest run, with reasons

An image is taken from the cache when its ``id`` (path relative to the dataset
root), file size and modification time all match a cached row; the newest
chunk wins when an image was extracted twice.  Chunks are written to a
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

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd

from .exceptions import CacheError
from .features.base import ExtractorConfig

META_COLUMNS = ["id", "size", "mtime_ns", "pixel_hash", "dhash", "seg_fallback"]
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
    """File sizes and modification times (ns) of ``paths``; -1 for missing files."""
    sizes = np.empty(len(paths), dtype=np.int64)
    mtimes = np.empty(len(paths), dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            sizes[i] = mtimes[i] = -1
            continue
        sizes[i] = st.st_size
        mtimes[i] = st.st_mtime_ns
    return sizes, mtimes


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
        for _attempt in range(_CONCURRENT_RETRIES):
            if self._index is not None:
                break
            files = self.chunk_files()
            frames = []
            try:
                for c, f in enumerate(files):
                    try:
                        m = pd.read_parquet(f, columns=META_COLUMNS)
                    except FileNotFoundError:
                        raise
                    except Exception:  # noqa: BLE001 - a damaged chunk is ignored, its images redone
                        continue
                    m["_chunk"] = c
                    m["_row"] = np.arange(len(m))
                    frames.append(m)
            except FileNotFoundError:
                # another run merged chunks (compact) between the listing and the
                # reading: its merged file holds the rows, so list the files again
                continue
            if frames:
                t = pd.concat(frames, ignore_index=True)
                t = t.drop_duplicates("id", keep="last").set_index("id")
            else:
                t = pd.DataFrame(columns=META_COLUMNS + ["_chunk", "_row"]).set_index("id")
            self._files, self._index = files, t
        if self._index is None:
            raise self._kept_changing()
        return self._index

    def cached_mask(self, ids: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray) -> np.ndarray:
        """Boolean mask: which images are cached with the same size and mtime."""
        t = self.index()
        if not len(t):
            return np.zeros(len(ids), dtype=bool)
        pos = t.index.get_indexer(pd.Index(ids))
        hit = pos >= 0
        safe = np.where(hit, pos, 0)
        same = (t["size"].to_numpy()[safe] == sizes) & (t["mtime_ns"].to_numpy()[safe] == mtimes)
        return hit & same

    def rows(self, ids: Sequence[str]) -> pd.DataFrame:
        """Cached metadata rows for ``ids`` in that order (all must be cached)."""
        return self.index().loc[list(ids), META_COLUMNS[1:]]

    def matrix(self, ids: Sequence[str]) -> np.ndarray:
        """Feature matrix (float32) of ``ids`` in that order (all must be cached).

        Reads one chunk at a time into a preallocated array, so the peak memory
        is the matrix itself plus one chunk.
        """
        for _attempt in range(_CONCURRENT_RETRIES):
            idx = self.index().loc[list(ids), ["_chunk", "_row"]]
            out = np.empty((len(idx), len(self.feature_names)), dtype=np.float32)
            chunk = idx["_chunk"].to_numpy(dtype=np.int64)
            row = idx["_row"].to_numpy(dtype=np.int64)
            try:
                for c in np.unique(chunk):
                    where = np.flatnonzero(chunk == c)
                    out[where] = _read_features(self._files[c], self.feature_names)[row[where]]
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
    ) -> Path:
        """Atomically add one chunk of extracted rows."""
        self._ensure_dir()
        X = np.asarray(X, dtype=np.float32)
        if X.shape != (len(ids), len(self.feature_names)):
            raise ValueError(f"chunk has shape {X.shape}, expected ({len(ids)}, {len(self.feature_names)})")
        table = arrow_table({
            "id": string_column(ids),
            "size": np.asarray(list(sizes), dtype=np.int64),
            "mtime_ns": np.asarray(list(mtimes), dtype=np.int64),
            "pixel_hash": string_column(pixel_hashes),
            "dhash": string_column(dhashes),
            "seg_fallback": np.asarray(list(seg_fallback), dtype=bool),
        }, X, self.feature_names)
        final = self.path / f"chunk-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        write_table_atomically(table, final)
        self._index = None
        return final

    def write_skipped(self, skipped: pd.DataFrame) -> Optional[Path]:
        """Record the images the latest run skipped (``id, path, kind, reason``)."""
        self._ensure_dir()
        out = self.path / "skipped.csv"
        _atomic_write_bytes(out, skipped.to_csv(index=False).encode())
        return out

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
            try:
                table = pa.concat_tables([pq.read_table(f) for f in members])
            except Exception:  # noqa: BLE001 - damaged or mismatched chunks stay as they are
                continue
            ids = table.column("id").to_pylist()
            last = {id_: i for i, id_ in enumerate(ids)}
            table = table.take(pa.array(sorted(last.values()), type=pa.int64()))
            final = members[-1].with_name(members[-1].name[: -len(".parquet")] + "-merged.parquet")
            write_table_atomically(table, final)
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


def copy_columns(source: FeatureCache, target: FeatureCache, ids: Sequence[str], stats: tuple,
                 chunk_size: int = 256) -> int:
    """Write into ``target`` the rows ``source`` has and ``target`` lacks, restricted to
    ``target``'s feature columns (all of which ``source`` must hold).

    ``stats`` is :func:`stat_images` of the images ``ids``. Used when another
    extractor computes all of an extractor's columns (a handcrafted group and
    ``handcrafted``). Returns the number of images copied.
    """
    sizes, mtimes = stats
    want = source.cached_mask(ids, sizes, mtimes) & ~target.cached_mask(ids, sizes, mtimes)
    take = [i for i, ok in zip(ids, want) if ok]
    pos = {n: k for k, n in enumerate(source.feature_names)}
    cols = [pos[n] for n in target.feature_names]
    for start in range(0, len(take), chunk_size):
        part = take[start:start + chunk_size]
        meta = source.rows(part)
        target.write_chunk(part, meta["size"], meta["mtime_ns"], meta["pixel_hash"].tolist(),
                           meta["dhash"].tolist(), meta["seg_fallback"], source.matrix(part)[:, cols])
    return len(take)


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


def _read_features(path: Path, names: List[str]) -> np.ndarray:
    """The feature columns of one chunk as a float32 ``(rows, features)`` array."""
    import pyarrow.parquet as pq

    return feature_matrix(pq.read_table(path, columns=names), names)


def _tmp_beside(path: Path) -> Path:
    """A hidden temporary name in ``path``'s folder (never matches ``chunk-*``)."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


def write_table_atomically(table, path: Path) -> None:
    """Write an Arrow table to ``path`` as Parquet: whole, or not at all."""
    import pyarrow.parquet as pq

    tmp = _tmp_beside(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_beside(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
