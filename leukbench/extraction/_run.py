"""Running one extractor on the images of a dataset that are not cached yet."""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..cache import FeatureCache, stat_images
from ..features.base import Extractor
from ._feed import (
    _alternating_batches,
    _ImageDataset,
    _overlapped_batches,
    decoded_on_device,
    default_num_workers,
)
from ._summary import SKIPPED_IMAGE_COLUMNS, ExtractionSummary
from ._writer import ChunkWriter


class _ChunkBuffer:
    """Extracted rows waiting for the cache, handed to ``write`` in chunks of exactly ``chunk_size`` rows.

    ``write`` takes the arguments of :meth:`FeatureCache.write_chunk`: that
    method itself, or :meth:`ChunkWriter.submit` (written on a background thread).
    """

    _META = ("ids", "sizes", "mtimes", "ctimes", "inodes", "ph", "dh", "fb")

    def __init__(self, write: Callable[..., object], chunk_size: int):
        self.write, self.chunk_size = write, chunk_size
        self.meta: Dict[str, list] = {k: [] for k in self._META}
        self.X: List[np.ndarray] = []

    def add(self, rows: Sequence[tuple], X: np.ndarray) -> None:
        """Buffer ``rows`` (``(id, size, mtime, ctime, inode, pixel hash, dhash, fallback)`` each) and features."""
        for row in rows:
            for key, value in zip(self._META, row):
                self.meta[key].append(value)
        self.X.append(np.asarray(X, dtype=np.float32))
        while len(self.meta["ids"]) >= self.chunk_size:
            self.flush(self.chunk_size)

    def flush(self, limit: Optional[int] = None) -> None:
        """Hand the first ``limit`` buffered rows (all by default) to ``write`` as one chunk."""
        m = self.meta
        n = len(m["ids"]) if limit is None else min(limit, len(m["ids"]))
        if n == 0:
            return
        X = np.concatenate(self.X, axis=0)
        self.write(m["ids"][:n], m["sizes"][:n], m["mtimes"][:n], m["ph"][:n], m["dh"][:n], m["fb"][:n],
                   X[:n], ctimes=m["ctimes"][:n], inodes=m["inodes"][:n])
        for key in self._META:
            del m[key][:n]
        self.X[:] = [X[n:]] if n < len(X) else []


def run_extractor(
    table: pd.DataFrame,
    root: str,
    extractor: Extractor,
    cache_dir,
    *,
    num_workers: Optional[int] = None,
    chunk_size: int = 256,
    progress: bool = True,
    cache: Optional[FeatureCache] = None,
    stats: Optional[tuple] = None,
    client=None,
) -> ExtractionSummary:
    """Extract the images of ``table`` that are not cached yet.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`leukbench.datasets.discover`.
    root : str
        Dataset root (image ids are relative to it).
    extractor : Extractor
    cache_dir : path
    num_workers : int, optional
        Decoding workers: threads for an extractor whose ``feed`` is
        ``"alternate"`` (a network on the CPU), processes otherwise; 0 decodes
        in the main thread.
    chunk_size : int
        Images per cache chunk (what an interruption may lose at most).
    progress : bool
        Show a progress bar on stderr.
    cache, stats : optional
        The extractor's :class:`FeatureCache` and ``stat_images`` of the
        table's paths, when the caller already has them (``extract`` shares
        them with :func:`load_feature_set`, so the cache index is read and
        the files are stat'ed once).
    client : distributed.Client, optional
        Run the extraction on this Dask cluster (:mod:`._dask`): one task per
        partition of about ``chunk_size`` images; ``num_workers`` is unused.
    """
    t0 = time.perf_counter()
    if cache is None:
        cache = FeatureCache(cache_dir, root, extractor.config, extractor.feature_names)
    ids, paths = table["id"].tolist(), table["path"].tolist()
    stats = stat_images(paths) if stats is None else stats
    cached = cache.cached_mask(ids, *stats)
    todo = np.flatnonzero(~cached)
    skipped: List[tuple] = []
    engine_note = None
    if len(todo) and client is not None:
        from ._dask import extract_on_cluster

        run = extract_on_cluster(extractor, cache, todo, ids, paths, stats, chunk_size=chunk_size,
                                 progress=progress, client=client)
        skipped, engine_note = run.skipped, run.note(len(todo))
    elif len(todo):
        skipped = _extract_images(extractor, cache, todo, ids, paths, stats, num_workers=num_workers,
                                  chunk_size=chunk_size, progress=progress)
    cache.compact()  # bounded number of chunk files, whatever the number of images
    cache.remove_stale_temporaries()  # left by a run killed while writing a chunk
    summary = _summarize(extractor, cache, ids, stats, n_cached=int(cached.sum()),
                         n_tried=len(todo), skipped=skipped, t0=t0)
    summary.engine_note = engine_note
    return summary


def _extract_images(extractor: Extractor, cache: FeatureCache, todo: np.ndarray, ids: List[str],
                    paths: List[str], stats: tuple, *, num_workers: Optional[int], chunk_size: int,
                    progress: bool) -> List[tuple]:
    """Prepare, compute and cache the images ``todo`` (indices into ``ids``); returns the skipped rows."""
    from tqdm.auto import tqdm

    sizes, mtimes, ctimes, inodes = stats
    if num_workers is None:
        num_workers = default_num_workers(extractor)
    num_workers = min(num_workers, max(0, len(todo) // 8))
    ds = _ImageDataset([paths[i] for i in todo], extractor, extractor.config.segment, extractor.config.grayscale)
    # no batch larger than a chunk, and chunks of exactly chunk_size rows (the last one
    # smaller): a crash loses at most a chunk and a batch, Ctrl-C only the batch in flight
    batch_size = max(1, min(extractor.batch_size, chunk_size))
    feed = _alternating_batches if extractor.feed == "alternate" else _overlapped_batches
    batches = feed(ds, batch_size, num_workers)
    writer = ChunkWriter(cache)  # chunks reach the disk on its thread while the next batches compute
    buffer = _ChunkBuffer(writer.submit, chunk_size)
    skipped = []
    bar = tqdm(total=len(todo), desc=extractor.name, unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for batch in batches:
            good, failed = decoded_on_device(extractor, [b for b in batch if b.error is None])
            failed = sorted(failed + [b for b in batch if b.error is not None], key=lambda b: b.index)
            skipped += [(ids[todo[b.index]], paths[todo[b.index]], *b.error) for b in failed]
            if good:
                X = extractor.compute([b.item for b in good])
                rows = []
                for b in good:
                    j = todo[b.index]
                    rows.append((ids[j], sizes[j], mtimes[j], ctimes[j], inodes[j], *b.hashes,
                                 b.segmentation_fallback))
                buffer.add(rows, X)
            bar.update(len(batch))
    finally:
        # Keep whatever was computed, also on Ctrl-C or an unexpected error: every
        # chunk handed over is on disk when close returns (a failed write raises
        # here, in this thread); and stop the decoding workers (threads or
        # processes) now, not at garbage collection.
        try:
            buffer.flush()
        finally:
            try:
                writer.close()
            finally:
                batches.close()
                bar.close()
    return skipped


def _summarize(extractor: Extractor, cache: FeatureCache, ids: List[str], stats: tuple, *, n_cached: int,
               n_tried: int, skipped: List[tuple], t0: float) -> ExtractionSummary:
    """The summary of one run: counts, skipped images (also written to the cache) and fallbacks."""
    skipped_df = pd.DataFrame(skipped, columns=SKIPPED_IMAGE_COLUMNS)
    skipped_csv = cache.write_skipped(skipped_df) if len(skipped_df) or cache.path.exists() else None
    present = cache.cached_mask(ids, *stats)
    fallback = cache.rows([i for i, ok in zip(ids, present) if ok])["seg_fallback"] if present.any() else None
    fallback_ids = [] if fallback is None else fallback.index[fallback.astype(bool)].tolist()
    return ExtractionSummary(
        extractor=extractor.name,
        description=extractor.describe(),
        n_found=len(ids),
        n_extracted=n_tried - len(skipped),
        n_cached=n_cached,
        skipped=skipped_df,
        n_segmentation_fallback=len(fallback_ids),
        seconds=time.perf_counter() - t0,
        cache_path=str(cache.path),
        skipped_csv=str(skipped_csv) if skipped_csv and len(skipped_df) else None,
        segmentation_fallback_ids=fallback_ids,
        read_only_note=cache.read_only_note,
    )
