"""The cache's background chunk writer (issue 15): order, completeness, errors, interruptions, bound."""

from __future__ import annotations

import errno
import threading
import time

import numpy as np
import pandas as pd
import pytest

import leukbench
from leukbench.cache import FeatureCache
from leukbench.cli import main
from leukbench.extraction import _run
from leukbench.extraction._writer import ChunkWriter
from leukbench.features.base import ExtractorConfig

from .conftest import make_cnmc_folders


def _cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path, "/data", ExtractorConfig("demo", "handcrafted"), ["demo.a", "demo.b"])


def _chunk(k: int, n: int = 3):
    ids = [f"{k}-{i}.png" for i in range(n)]
    return (ids, [1] * n, [2] * n, ["p"] * n, ["d"] * n, [False] * n,
            np.full((n, 2), float(k), dtype=np.float32))


def _file_order(cache: FeatureCache):
    """The first id of each chunk file, oldest file first."""
    return [pd.read_parquet(f, columns=["id"])["id"].iloc[0] for f in cache.chunk_files()]


def test_chunks_are_written_in_order_and_completely(tmp_path):
    cache = _cache(tmp_path)
    with ChunkWriter(cache) as writer:
        for k in range(12):
            writer.submit(*_chunk(k), ctimes=[3] * 3, inodes=[4] * 3)
    assert writer.written == 12
    assert _file_order(cache) == [f"{k}-0.png" for k in range(12)]  # the order handed over
    ids = [f"{k}-{i}.png" for k in range(12) for i in range(3)]
    assert cache.cached_mask(ids, np.ones(36, int), np.full(36, 2), np.full(36, 3), np.full(36, 4)).all()
    np.testing.assert_array_equal(cache.matrix(ids)[:, 0], np.repeat(np.arange(12.0), 3))
    assert not list(cache.path.glob(".tmp-*"))
    assert not [t for t in threading.enumerate() if t.name == "leukbench-cache-writer"]


def test_a_failed_write_is_raised_in_the_caller_and_nothing_more_is_written(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    real = FeatureCache.write_chunk

    def full_after_two(self, ids, *a, **k):
        if ids[0].startswith("2-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, ids, *a, **k)

    monkeypatch.setattr(FeatureCache, "write_chunk", full_after_two)
    writer = ChunkWriter(cache)
    with pytest.raises(OSError) as info:
        for k in range(50):
            writer.submit(*_chunk(k))
        writer.close()
    assert info.value.errno == errno.ENOSPC and threading.current_thread() is threading.main_thread()
    writer.close()  # the error is raised once; close after it waits and stays quiet
    assert _file_order(cache) == ["0-0.png", "1-0.png"]  # in order, and none after the failed one


def test_a_failed_last_write_is_raised_by_close(tmp_path, monkeypatch):
    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(FeatureCache, "write_chunk", read_only)
    writer = ChunkWriter(_cache(tmp_path))
    writer.submit(*_chunk(0))
    with pytest.raises(OSError, match="Read-only file system"):
        writer.close()


def test_the_queue_bound_holds(tmp_path, monkeypatch):
    """With the disk stuck, the caller blocks once ``max_pending`` chunks wait (plus the one being written)."""
    cache = _cache(tmp_path)
    release, started = threading.Event(), threading.Event()
    real = FeatureCache.write_chunk

    def slow(self, *a, **k):
        started.set()
        release.wait(10)
        return real(self, *a, **k)

    monkeypatch.setattr(FeatureCache, "write_chunk", slow)
    writer = ChunkWriter(cache, max_pending=2)
    handed = []

    def producer():
        for k in range(6):
            writer.submit(*_chunk(k))
            handed.append(k)

    thread = threading.Thread(target=producer)
    thread.start()
    assert started.wait(10)
    thread.join(0.5)
    assert thread.is_alive() and len(handed) == 3  # one being written, two waiting, the fourth blocked
    assert writer._queue.qsize() == 2
    release.set()
    thread.join(10)
    writer.close()
    assert handed == list(range(6)) and writer.written == 6 and len(cache.chunk_files()) == 6


def test_an_interrupted_extraction_keeps_every_chunk_handed_over(tmp_path, monkeypatch):
    """Ctrl-C after three chunks: the three are on disk when the exception leaves ``extract``,
    and a rerun takes exactly them from the cache and gives the uninterrupted matrix."""
    data = make_cnmc_folders(tmp_path / "d")  # 18 images
    options = dict(progress=False, num_workers=0, chunk_size=2, return_summaries=True)
    reference, _ = leukbench.extract(data, "chanstats", cache_dir=tmp_path / "ref", **options)
    real_add, real_write, calls = _run._ChunkBuffer.add, FeatureCache.write_chunk, []

    def slow_write(self, *a, **k):  # a slow disk: the chunks are still queued when Ctrl-C comes
        time.sleep(0.2)
        return real_write(self, *a, **k)

    def add_then_interrupt(self, rows, X):
        real_add(self, rows, X)
        calls.append(len(rows))
        if sum(calls) >= 6:  # rows of three chunks handed to the writer
            raise KeyboardInterrupt

    monkeypatch.setattr(_run._ChunkBuffer, "add", add_then_interrupt)
    monkeypatch.setattr(FeatureCache, "write_chunk", slow_write)
    with pytest.raises(KeyboardInterrupt):
        leukbench.extract(data, "chanstats", cache_dir=tmp_path / "c", **options)
    assert len(list((tmp_path / "c").rglob("chunk-*.parquet"))) == 3  # written before the exception left
    assert not [t for t in threading.enumerate() if t.name == "leukbench-cache-writer"]
    monkeypatch.undo()
    fs, (summary,) = leukbench.extract(data, "chanstats", cache_dir=tmp_path / "c", **options)
    assert (summary.n_cached, summary.n_extracted) == (6, 12)
    np.testing.assert_array_equal(fs.X, reference.X)
    assert list(fs.ids) == list(reference.ids)


def test_a_full_disk_during_extraction_is_one_line_of_the_command_as_before(tmp_path, monkeypatch, capsys):
    """The writer thread's OSError reaches the command line, which names the folder and the fix."""
    data = make_cnmc_folders(tmp_path / "d")

    def full_disk(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(FeatureCache, "write_chunk", full_disk)
    status = main(["extract", str(data), "--features", "chanstats", "--cache-dir", str(tmp_path / "c"), "-q",
                   "--num-workers", "0", "--chunk-size", "4"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "No space left on device; free some disk space" in err and str(tmp_path / "c") in err
