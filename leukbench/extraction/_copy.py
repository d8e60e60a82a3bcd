"""Copying an extractor's columns from another extractor's cache (a handcrafted group from
``handcrafted``) instead of computing them again."""

from __future__ import annotations

from typing import Sequence

from ..cache import FeatureCache


def copy_columns(source: FeatureCache, target: FeatureCache, ids: Sequence[str], stats: tuple,
                 chunk_size: int = 256) -> int:
    """Write into ``target`` the rows ``source`` has and ``target`` lacks, restricted to
    ``target``'s feature columns (all of which ``source`` must hold).

    ``stats`` is :func:`stat_images` of the images ``ids``. Used when another
    extractor computes all of an extractor's columns (a handcrafted group and
    ``handcrafted``). Returns the number of images copied.
    """
    want = source.cached_mask(ids, *stats) & ~target.cached_mask(ids, *stats)
    take = [i for i, ok in zip(ids, want) if ok]
    pos = {n: k for k, n in enumerate(source.feature_names)}
    cols = [pos[n] for n in target.feature_names]
    for start in range(0, len(take), chunk_size):
        part = take[start:start + chunk_size]
        meta = source.rows(part)
        target.write_chunk(part, meta["size"], meta["mtime_ns"], meta["pixel_hash"].tolist(),
                           meta["dhash"].tolist(), meta["seg_fallback"], source.matrix(part)[:, cols],
                           ctimes=meta["ctime_ns"], inodes=meta["inode"])
    return len(take)
