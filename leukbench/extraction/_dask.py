"""Extraction on a Dask cluster: one task per partition of the uncached images, chunks written here.

The images still missing from the cache are cut into partitions of about
``chunk_size`` images (fewer when that leaves a worker without two of them; a
multiple of the extractor's batch size, so that the network sees the same
batches as in a local run). Each partition is one task:
on a worker it reads, fingerprints, prepares and computes its images, and
returns their features and hashes (an image it cannot read, or a JPEG the
device decoder of ``decode="gpu"`` refuses, is skipped alone with its reason,
as in a local run). The client writes each finished partition as one cache
chunk (:meth:`FeatureCache.write_chunk`: atomic, the same keys and index, on
the background thread of :class:`~._writer.ChunkWriter`) as soon as it arrives
(``distributed.as_completed``): the cache has a
single writer, workers need no write access to it, and an interrupted run
keeps every partition that came back. A task that Dask retries because its
worker died is written once, when it finally returns; a rerun extracts only
what is still missing.

The extractor travels as its pickled settings (a deep backbone never ships its
network: ``DeepExtractor.__getstate__``); each worker process builds the model
once, on first use, and keeps it for the following partitions.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from ..cache import FeatureCache
from ..exceptions import ClusterError
from ..features.base import Extractor
from ._feed import _alternating_batches, _ImageDataset, decoded_on_device
from ._writer import ChunkWriter

__all__ = ["ClusterRun", "extract_on_cluster", "partition_size"]

#: The extractor each worker process built last, by the hash of its pickled settings.
_WORKER_EXTRACTOR: Dict[str, Extractor] = {}


class _Partition(NamedTuple):
    """What one task returns: features and hashes of the images it read, and those it skipped."""

    index: np.ndarray  # positions in the partition of the images with features, in order
    X: np.ndarray  # float32 (len(index), n_features)
    hashes: List[tuple]  # (pixel hash, difference hash) per row of X
    fallback: List[bool]  # segmentation found no cell, per row of X
    skipped: List[tuple]  # (position, kind, reason) of the images that could not be read
    worker: str  # address of the worker that ran it


class ClusterRun(NamedTuple):
    """What an extraction on a cluster did: tasks, workers and the images it skipped."""

    skipped: List[tuple]
    n_tasks: int
    workers: int
    seconds: float

    def note(self, n_images: int) -> str:
        rate = n_images / self.seconds if self.seconds > 0 else float("nan")
        return (f"Dask: {self.n_tasks} task(s) on {self.workers} worker(s), {rate:.1f} images/s "
                "including the scheduling")


def partition_size(chunk_size: int, batch_size: int) -> int:
    """Images per task: ``chunk_size`` rounded down to a multiple of ``batch_size`` (at least one batch).

    Example
    -------
    >>> partition_size(256, 16), partition_size(100, 16), partition_size(8, 16)
    (256, 96, 16)
    """
    batch_size = max(1, int(batch_size))
    return max(batch_size, (int(chunk_size) // batch_size) * batch_size)


def _extractor_on_worker(blob: bytes, token: str) -> Extractor:
    """The extractor of ``blob``, unpickled once per worker process (its model is built once too)."""
    extractor = _WORKER_EXTRACTOR.get(token)
    if extractor is None:
        _WORKER_EXTRACTOR.clear()  # one run's extractor at a time: never several networks in memory
        extractor = _WORKER_EXTRACTOR[token] = pickle.loads(blob)
    return extractor


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # called outside a worker (tests, a local check)
        return "local"


def extract_partition(blob: bytes, token: str, paths: Sequence[str], seen: Sequence[bool],
                      batch_size: int) -> _Partition:
    """The task of one partition: read, prepare and compute ``paths`` (run on a worker).

    ``seen`` says which files the client could stat: one of those that this
    worker cannot see means the images are not on a filesystem it mounts.

    Raises
    ------
    ClusterError
        Naming the first such path and the worker.
    """
    where = _worker_address()
    for path, ok in zip(paths, seen):
        if ok and not os.path.exists(path):
            raise ClusterError(f"{path}: the Dask worker {where} cannot see this image (the client can); "
                               "the images must be on a filesystem every worker mounts at the same path")
    extractor = _extractor_on_worker(blob, token)
    config = extractor.config
    ds = _ImageDataset(list(paths), extractor, config.segment, config.grayscale)
    index, parts, hashes, fallback, skipped = [], [], [], [], []
    for batch in _alternating_batches(ds, batch_size, 1):  # parallelism comes from the workers
        # decode="gpu": a JPEG the device decoder refuses is skipped alone, as in a local run
        good, failed = decoded_on_device(extractor, [b for b in batch if b.error is None])
        failed = sorted(failed + [b for b in batch if b.error is not None], key=lambda b: b.index)
        skipped += [(b.index, *b.error) for b in failed]
        if good:
            parts.append(np.asarray(extractor.compute([b.item for b in good]), dtype=np.float32))
            index += [b.index for b in good]
            hashes += [b.hashes for b in good]
            fallback += [b.segmentation_fallback for b in good]
    X = np.concatenate(parts) if parts else np.zeros((0, len(extractor.feature_names)), dtype=np.float32)
    return _Partition(np.asarray(index, dtype=np.int64), X, hashes, fallback, skipped, where)


def _gpu_resources(extractor: Extractor, client) -> Optional[Dict[str, Any]]:
    """``{"GPU": 1}`` when the extractor runs on CUDA: its tasks go to workers started with
    ``--resources GPU=1`` only (one task per GPU at a time); ``None`` otherwise."""
    if not str(getattr(extractor, "device", "cpu")).startswith("cuda"):
        return None
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
        raise ClusterError(f"{extractor.name} runs on CUDA, but no worker of the Dask scheduler at "
                           f"{client.scheduler.address} has a GPU resource; start the workers with "
                           "--resources GPU=1, or extract with --device cpu")
    return {"GPU": 1}


def extract_on_cluster(extractor: Extractor, cache: FeatureCache, todo: np.ndarray, ids: List[str],
                       paths: List[str], stats: tuple, *, chunk_size: int, progress: bool,
                       client) -> ClusterRun:
    """Extract the images ``todo`` (indices into ``ids``) on the cluster of ``client``; the client
    writes one cache chunk per finished task. Returns the skipped rows and the run's counts."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    sizes, mtimes, ctimes, inodes = stats
    import cloudpickle  # comes with distributed: extractors defined in __main__ travel by value

    blob = cloudpickle.dumps(extractor, protocol=pickle.HIGHEST_PROTOCOL)
    token = hashlib.sha1(blob).hexdigest()
    batch_size = max(1, min(int(extractor.batch_size), chunk_size))
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # at least two partitions per worker when there are few images, so that none waits on another
    size = partition_size(min(chunk_size, -(-len(todo) // (2 * n_workers))), batch_size)
    parts = [todo[s:s + size] for s in range(0, len(todo), size)]
    resources = _gpu_resources(extractor, client)
    pending, part_of = set(), {}
    for part in parts:
        future = client.submit(extract_partition, blob, token, [paths[j] for j in part],
                               [bool(sizes[j] >= 0) for j in part], batch_size, resources=resources, pure=False)
        pending.add(future)
        part_of[future.key] = part
    skipped: List[tuple] = []
    workers = set()
    bar = tqdm(total=len(todo), desc=f"{extractor.name} (dask)", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    writer = ChunkWriter(cache)  # the next results are collected while a chunk is written
    try:
        for future in as_completed(pending):
            pending.discard(future)  # dropped once written: the workers free its result
            part = part_of.pop(future.key)
            result: _Partition = future.result()  # a task's own error (ClusterError ...) is raised here
            rows = part[result.index]
            if len(rows):
                writer.submit([ids[j] for j in rows], sizes[rows], mtimes[rows], [h[0] for h in result.hashes],
                              [h[1] for h in result.hashes], result.fallback, result.X, ctimes=ctimes[rows],
                              inodes=inodes[rows])
            skipped += [(ids[part[i]], paths[part[i]], kind, reason) for i, kind, reason in result.skipped]
            workers.add(result.worker)
            bar.update(len(part))
    finally:  # Ctrl-C or an error: what came back is in the cache; nothing more is computed
        client.cancel(list(pending))
        try:
            writer.close()  # every chunk handed over is on disk; a failed write raises here
        finally:
            bar.close()
    return ClusterRun(skipped, len(parts), len(workers), time.perf_counter() - t0)

