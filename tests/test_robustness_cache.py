"""The feature cache's guarantees (issue 9): image identity, read-only caches, leftovers, readers."""

from __future__ import annotations

import errno
import os
import stat
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import leukbench.cache as cache_module
from leukbench.cache import FeatureCache, read_features
from leukbench.extraction import extract
from leukbench.features.base import ExtractorConfig

from .conftest import make_cnmc_folders


def run(data, cache, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("num_workers", 0)
    return extract(data, "chanstats", cache_dir=cache, return_summaries=True, **kw)


def _features(fs, image_id):
    return fs.X[list(fs.ids).index(image_id)]


def test_image_rewritten_with_same_size_and_mtime_is_extracted_again(cnmc_folders, tmp_path):
    fs, _ = run(cnmc_folders, tmp_path / "c")
    a, b = cnmc_folders / "all" / "UID_1_1_1_all.bmp", cnmc_folders / "hem" / "UID_H1_1_1_hem.bmp"
    assert a.stat().st_size == b.stat().st_size and not np.array_equal(
        _features(fs, "all/UID_1_1_1_all.bmp"), _features(fs, "hem/UID_H1_1_1_hem.bmp"))
    before = a.stat()
    time.sleep(0.02)  # past the file system's timestamp granularity
    a.write_bytes(b.read_bytes())  # `cat b > a`: same inode, same size
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))  # `touch -r`: same mtime
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    fs2, (s,) = run(cnmc_folders, tmp_path / "c")
    assert s.n_extracted == 1 and s.n_cached == len(fs) - 1
    np.testing.assert_array_equal(_features(fs2, "all/UID_1_1_1_all.bmp"), _features(fs2, "hem/UID_H1_1_1_hem.bmp"))


def test_rows_of_an_older_cache_without_identity_are_extracted_again(cnmc_folders, tmp_path):
    fs, _ = run(cnmc_folders, tmp_path / "c", chunk_size=4)
    for f in (tmp_path / "c").rglob("chunk-*.parquet"):  # as written before ctime and inode were kept
        pq.write_table(pq.read_table(f).drop_columns(["ctime_ns", "inode"]), f)
    fs2, (s,) = run(cnmc_folders, tmp_path / "c", chunk_size=4)
    assert s.n_cached == 0 and s.n_extracted == len(fs)
    np.testing.assert_array_equal(fs2.X, fs.X)
    fs3, (s3,) = run(cnmc_folders, tmp_path / "c")
    assert s3.n_cached == len(fs) and s3.n_extracted == 0


def test_compaction_merges_older_and_newer_chunks(tmp_path):
    cache = FeatureCache(tmp_path, "/data", ExtractorConfig("demo", "handcrafted"), ["demo.a"])
    cache.write_chunk(["old.png"], [1], [2], ["p"], ["d"], [False], np.ones((1, 1)))
    (old,) = cache.chunk_files()
    pq.write_table(pq.read_table(old).drop_columns(["ctime_ns", "inode"]), old)
    cache.write_chunk(["new.png"], [1], [2], ["p"], ["d"], [False], np.full((1, 1), 2.0), ctimes=[3], inodes=[4])
    assert cache.compact(group=2) == 2 and len(cache.chunk_files()) == 1
    mask = cache.cached_mask(["old.png", "new.png"], np.array([1, 1]), np.array([2, 2]), np.array([3, 3]),
                             np.array([4, 4]))
    assert mask.tolist() == [False, True]  # the older row stays "unknown"


def _make_read_only(folder, monkeypatch):
    """``chmod -R a-w``; as root (where that changes nothing) writes fail as on a read-only mount."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    if os.access(folder, os.W_OK):
        def refuse(path, *_a, **_k):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

        monkeypatch.setattr(cache_module, "_atomic_write_bytes", refuse)
        monkeypatch.setattr(cache_module, "write_table_atomically", refuse)


def test_complete_read_only_cache_is_read_and_nothing_written(tmp_path, monkeypatch):
    data = make_cnmc_folders(tmp_path / "d")
    bad = data / "all" / "UID_1_9_1_all.bmp"
    bad.write_bytes(b"not an image")  # a skipped image: the run wants to write skipped.csv
    fs, _ = run(data, tmp_path / "c", chunk_size=1)
    folder = next((tmp_path / "c" / "features").glob("*/*"))
    files = {p: p.read_bytes() for p in folder.iterdir()}
    _make_read_only(tmp_path / "c", monkeypatch)
    real_compact = FeatureCache.compact  # groups of 4: the run also tries to merge chunks
    monkeypatch.setattr(FeatureCache, "compact", lambda self, group=4: real_compact(self, 4))
    try:
        fs2, (s,) = run(data, tmp_path / "c", chunk_size=1)
    finally:
        for path in [tmp_path / "c", *(tmp_path / "c").rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    np.testing.assert_array_equal(fs2.X, fs.X)
    assert s.n_cached == len(fs) and len(s.skipped) == 1 and s.skipped_csv is None
    assert "cannot be written" in s.read_only_note and "nothing was written" in s.lines()[-1]
    assert {p: p.read_bytes() for p in folder.iterdir()} == files



def test_stale_temporary_files_are_removed_and_fresh_ones_kept(cnmc_folders, tmp_path):
    run(cnmc_folders, tmp_path / "c")
    folder = next((tmp_path / "c" / "features").glob("*/*"))
    stale, fresh = folder / ".tmp-0badf00d-chunk-1-x.parquet", folder / ".tmp-12345678-chunk-2-y.parquet"
    stale.write_bytes(b"half a chunk")
    fresh.write_bytes(b"a live run writing")
    old = time.time() - cache_module.STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    _, (s,) = run(cnmc_folders, tmp_path / "c")
    assert s.n_cached == 18
    assert not stale.exists() and fresh.exists()


def test_failed_chunk_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, "/data", ExtractorConfig("demo", "handcrafted"), ["demo.a"])

    def full_disk(table, where, *a, **k):
        open(where, "wb").write(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError):
        cache.write_chunk(["x.png"], [1], [2], ["p"], ["d"], [False], np.ones((1, 1)))
    assert list(cache.path.glob(".tmp-*")) == []


def test_read_features_survives_a_concurrent_compaction(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, "/data", ExtractorConfig("demo", "handcrafted"), ["demo.a"])
    for k in range(4):
        cache.write_chunk([f"{k}.png"], [1], [2], ["p"], ["d"], [False], np.full((1, 1), k))
    cache.write_chunk(["0.png"], [1], [2], ["p"], ["d"], [False], np.full((1, 1), 9.0))  # newer row of 0.png
    real_read, compacted = cache_module.pd.read_parquet, []

    def read_while_another_run_compacts(path, *a, **k):
        if not compacted:
            compacted.append(cache.compact(group=4))  # removes the listed chunks under the reader
        return real_read(path, *a, **k)

    monkeypatch.setattr(cache_module.pd, "read_parquet", read_while_another_run_compacts)
    df = read_features(cache.path)
    assert compacted == [4]
    assert df["demo.a"].to_dict() == {"0.png": 9.0, "1.png": 1.0, "2.png": 2.0, "3.png": 3.0}
