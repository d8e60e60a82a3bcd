"""The extraction pipeline and its cache: incremental, resumable, corrupt files skipped."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukbench import cli
from leukbench.cache import FeatureCache
from leukbench.extraction import ExtractionError, extract, parse_feature_spec
from leukbench.features.base import ExtractorConfig, register_extractor

from .conftest import ChannelStats, chanstats_factory, make_cnmc_folders


class AlternatingChannelStats(ChannelStats):
    """The same features fed like a CPU network: batches decoded by threads, in turn."""

    feed = "alternate"


@register_extractor("chanstats_alt")
def _chanstats_alt(*, segment=False, grayscale=False, **_):
    ex = AlternatingChannelStats(segment=segment, grayscale=grayscale)
    ex.config = ExtractorConfig(name="chanstats_alt", kind="deep", segment=segment, grayscale=grayscale)
    return ex


def run(data, cache, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("num_workers", 0)
    return extract(data, "chanstats", cache_dir=cache, return_summaries=True, **kw)


def test_parse_feature_spec():
    assert parse_feature_spec("a,b,a+b") == [["a"], ["b"], ["a", "b"]]
    assert parse_feature_spec(None) == [["efficientnet_lite0"]]
    assert parse_feature_spec(["a", "a"]) == [["a"]]
    assert parse_feature_spec("a, b ,") == [["a"], ["b"]]
    with pytest.raises(ValueError, match=r"'handcrafted\+' has an empty name"):
        parse_feature_spec("handcrafted+")
    with pytest.raises(ValueError, match=r"'handcrafted\+handcrafted' names handcrafted twice"):
        parse_feature_spec("handcrafted+handcrafted")
    with pytest.raises(ValueError, match=r"'morphology\+handcrafted' has the morphology columns twice"):
        parse_feature_spec("efficientnet_lite0,morphology+handcrafted")
    assert parse_feature_spec("morphology+texture,handcrafted") == [["morphology", "texture"], ["handcrafted"]]


def test_combine_refuses_repeated_columns(cnmc_folders, tmp_path):
    from leukbench.featureset import FeatureSet

    fs, _ = run(cnmc_folders, tmp_path / "cache")
    with pytest.raises(ValueError, match="would appear twice"):
        FeatureSet.combine([fs, fs])


def test_featureset_from_folder(cnmc_folders, tmp_path):
    fs, (summary,) = run(cnmc_folders, tmp_path / "cache")
    assert len(fs) == 18 and fs.X.shape == (18, 9) and fs.X.dtype == np.float32
    assert summary.n_found == 18 and summary.n_extracted == 18 and summary.n_cached == 0
    assert list(fs.ids) == sorted(fs.ids)
    assert set(fs.subjects) == {"1", "2", "3", "H1", "H2", "H3"}
    assert set(fs.y) == {"all", "hem"}
    assert all(len(h) > 8 for h in fs.pixel_hashes) and all(len(h) > 8 for h in fs.dhashes)
    # the numbers are the image's own: recompute one by hand
    from leukbench.images import load_image

    img = load_image(fs.paths[0]).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(fs.X[0, 0], img[:, 0].mean(), rtol=1e-5)
    assert fs.provenance["extractor"]["name"] == "chanstats"


def test_second_run_comes_from_cache(cnmc_folders, tmp_path):
    fs1, _ = run(cnmc_folders, tmp_path / "c")
    fs2, (s2,) = run(cnmc_folders, tmp_path / "c")
    assert s2.n_extracted == 0 and s2.n_cached == 18
    np.testing.assert_array_equal(fs1.X, fs2.X)


def test_rerun_reads_the_cache_index_and_stats_the_files_once(cnmc_folders, tmp_path, monkeypatch):
    """A run that finds everything cached reads each chunk's metadata once, stats each image once."""
    import leukbench.cache as cache_module
    from leukbench.extraction import (
        _api as extraction_module,  # where extract_all stats the files
    )

    run(cnmc_folders, tmp_path / "c", chunk_size=8)  # 18 images: 3 chunks
    meta_reads, stats = [], []
    real_read, real_stat = pd.read_parquet, cache_module.stat_images

    def spy_read(path, *a, columns=None, **kw):
        meta_reads.append(os.path.basename(path))
        return real_read(path, *a, columns=columns, **kw)

    def spy_stat(paths):
        stats.append(len(paths))
        return real_stat(paths)

    monkeypatch.setattr("leukbench.cache.pd.read_parquet", spy_read)
    monkeypatch.setattr(extraction_module, "stat_images", spy_stat)
    fs, (s,) = run(cnmc_folders, tmp_path / "c")
    assert s.n_cached == 18 and len(fs) == 18
    assert sorted(meta_reads) == sorted(p.name for p in (tmp_path / "c").rglob("chunk-*.parquet"))
    assert stats == [18]


def test_incremental_extraction_equals_one_run(tmp_path):
    data = make_cnmc_folders(tmp_path / "d", {"all": ["1", "2"], "hem": ["H1", "H2"]})
    run(data, tmp_path / "inc")
    make_cnmc_folders(data, {"all": ["3"], "hem": ["H3"]}, seed=1)  # new subjects arrive
    fs_inc, (s,) = run(data, tmp_path / "inc")
    assert s.n_extracted == 6 and s.n_cached == 12
    fs_once, _ = run(data, tmp_path / "once")
    assert list(fs_inc.ids) == list(fs_once.ids)
    np.testing.assert_array_equal(fs_inc.X, fs_once.X)


def test_changed_image_is_extracted_again(cnmc_folders, tmp_path):
    fs1, _ = run(cnmc_folders, tmp_path / "c")
    p = cnmc_folders / "all" / "UID_1_1_1_all.bmp"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(p)
    os.utime(p, ns=(1, 10**18))
    fs2, (s,) = run(cnmc_folders, tmp_path / "c")
    assert s.n_extracted == 1 and s.n_cached == 17
    i = list(fs2.ids).index("all/UID_1_1_1_all.bmp")
    assert fs2.X[i, 0] == pytest.approx(255.0)
    assert fs1.X[i, 0] != fs2.X[i, 0]


@pytest.mark.parametrize("kind", [ChannelStats, AlternatingChannelStats], ids=["overlap", "alternate"])
def test_interrupted_extraction_resumes(tmp_path, monkeypatch, kind):
    data = make_cnmc_folders(tmp_path / "d", per_subject=5)  # 30 images
    from leukbench.features import override_extractor

    with override_extractor("chanstats", lambda **kw: kind(fail_after=3)):  # dies during batch 4
        with pytest.raises(KeyboardInterrupt):
            run(data, tmp_path / "c", chunk_size=4, num_workers=2)
    cache = FeatureCache(tmp_path / "c", data, ChannelStats().config, ChannelStats().feature_names)
    assert len(cache.table()) == 12  # 3 batches of 4 were flushed, nothing half-written
    assert not list(cache.path.glob(".tmp-*"))
    with override_extractor("chanstats", lambda **kw: kind()):
        fs, (s,) = run(data, tmp_path / "c", chunk_size=4)
        assert s.n_cached == 12 and s.n_extracted == 18
        fs_once, _ = run(data, tmp_path / "fresh")
    np.testing.assert_array_equal(fs.X, fs_once.X)


def test_corrupt_images_are_skipped_and_reported(cnmc_folders, tmp_path):
    (cnmc_folders / "all" / "UID_1_9_1_all.bmp").write_bytes(b"")
    (cnmc_folders / "hem" / "UID_H1_9_1_hem.png").write_text("not a png")
    good = cnmc_folders / "all" / "UID_2_1_1_all.bmp"
    (cnmc_folders / "all" / "UID_2_9_1_all.bmp").write_bytes(good.read_bytes()[:200])
    fs, (s,) = run(cnmc_folders, tmp_path / "c", num_workers=2)
    assert len(fs) == 18
    assert len(s.skipped) == 3
    assert set(s.skipped["id"]) == {"all/UID_1_9_1_all.bmp", "hem/UID_H1_9_1_hem.png", "all/UID_2_9_1_all.bmp"}
    assert all(p in r for p, r in zip(s.skipped["path"], s.skipped["reason"]))
    listed = pd.read_csv(s.skipped_csv)
    assert set(listed["id"]) == set(s.skipped["id"])
    assert dict(zip(s.skipped["id"], s.skipped["kind"])) == {
        "all/UID_1_9_1_all.bmp": "empty file",                         # 0 bytes
        "hem/UID_H1_9_1_hem.png": "not a recognised image format",     # text named .png
        "all/UID_2_9_1_all.bmp": "truncated or damaged image file",    # cut after 200 bytes
    }
    text = "\n".join(s.lines())
    assert "skipped 3" in text and s.skipped_csv in text
    assert "  skipped 1: empty file (e.g. all/UID_1_9_1_all.bmp)" in text
    assert "  skipped 1: not a recognised image format (e.g. hem/UID_H1_9_1_hem.png)" in text
    assert "  skipped 1: truncated or damaged image file (e.g. all/UID_2_9_1_all.bmp)" in text
    # the results folder of a comparison says what is missing, and why
    import json

    from leukbench.evaluation import compare

    result = compare(fs, classifiers="GaussianNB", cv=2, progress=False, cache_dir=tmp_path / "fc")
    out = result.save(tmp_path / "results", feature_sets=[fs], plots=False)
    listed = pd.read_csv(out / "skipped_images.csv")
    assert list(listed.columns) == ["id", "kind", "reason"] and sorted(listed["id"]) == sorted(s.skipped["id"])
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["skipped_images"] == {"n": 3, "by_kind": {"empty file": 1, "not a recognised image format": 1,
                                                              "truncated or damaged image file": 1}}
    assert "3 image(s) of the dataset could not be read" in (out / "report.html").read_text()
    again = fs.load(fs.save(tmp_path / "fs.parquet"))  # the record survives save/load
    assert len(again.provenance["skipped"]) == 3


def test_nothing_readable_is_an_error(tmp_path):
    d = tmp_path / "d"
    for cls in ("all", "hem"):
        (d / cls).mkdir(parents=True)
        (d / cls / f"UID_1_1_1_{cls}.bmp").write_bytes(b"garbage")
    with pytest.raises(ExtractionError, match="no image could be read") as info:
        run(d, tmp_path / "c")
    assert [s.n_found for s in info.value.summaries] == [2]
    # the command line says the same: tests/test_cli.py::test_extract_of_nothing_readable_exits_1_with_the_summary


def test_config_is_part_of_the_key(cnmc_folders, tmp_path):
    plain, (s1,) = run(cnmc_folders, tmp_path / "c")
    gray, (s2,) = run(cnmc_folders, tmp_path / "c", grayscale=True)
    assert s1.cache_path != s2.cache_path and s2.n_extracted == 18
    assert not np.allclose(plain.X, gray.X)
    g = gray.X.reshape(len(gray), 3, 3)
    np.testing.assert_allclose(g[:, 0, :], g[:, 1, :], rtol=1e-5)  # gray: r == g


def test_cache_checks_and_assembles_without_loading_every_column(tmp_path, monkeypatch):
    """Checking what is cached reads only the metadata; the matrix is filled chunk by chunk."""
    config = ExtractorConfig(name="wide", kind="handcrafted")
    names = [f"wide.f{i:03d}" for i in range(40)]
    cache = FeatureCache(tmp_path / "cache", tmp_path / "data", config, names)
    rng = np.random.default_rng(0)
    truth = {}
    for c in range(3):  # three chunks; the third re-extracts two images of the first
        ids = [f"img{i}.png" for i in range(c * 5, c * 5 + 5)] if c < 2 else ["img1.png", "img3.png"]
        X = rng.normal(size=(len(ids), len(names))).astype(np.float32)
        cache.write_chunk(ids, [10] * len(ids), [7] * len(ids), ["p"] * len(ids), ["d"] * len(ids),
                          [False] * len(ids), X)
        truth.update(zip(ids, X))

    reads = []
    real_read = pd.read_parquet

    def spy(path, *a, columns=None, **kw):
        reads.append(columns)
        return real_read(path, *a, columns=columns, **kw)

    monkeypatch.setattr("leukbench.cache.pd.read_parquet", spy)
    fresh = FeatureCache(tmp_path / "cache", tmp_path / "data", config, names)
    want = ["img9.png", "img1.png", "img0.png", "img3.png"]
    mask = fresh.cached_mask(want + ["new.png"], np.array([10, 10, 10, 10, 10]), np.array([7, 7, 7, 7, 7]))
    assert mask.tolist() == [True, True, True, True, False]
    assert reads and all(cols is not None and not any(c.startswith("wide.") for c in cols) for cols in reads)

    import pyarrow.parquet as pq

    chunk_reads = []
    real_read = pq.ParquetFile.read

    def spy_features(self, *a, columns=None, **kw):
        chunk_reads.append(None if columns is None else list(columns))
        return real_read(self, *a, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read", spy_features)
    X = fresh.matrix(want)
    np.testing.assert_array_equal(X, np.stack([truth[i] for i in want]))  # newest chunk wins for img1, img3
    assert chunk_reads == [names] * 3  # one read per chunk touched (40 columns: one group), features only

    monkeypatch.setattr("leukbench.cache.READ_COLUMNS", 16)
    chunk_reads.clear()
    np.testing.assert_array_equal(fresh.matrix(want), X)  # read 16 columns at a time: the same matrix
    assert chunk_reads == [names[:16], names[16:32], names[32:]] * 3
    full = fresh.table()
    np.testing.assert_array_equal(full.loc[want, names].to_numpy(), X)
    assert full.loc["img1.png", "pixel_hash"] == "p" and full.loc["img1.png", "size"] == 10


def test_feature_set_save_and_load_round_trip(cnmc_folders, tmp_path, capsys):
    code = cli.main(["extract", str(cnmc_folders), "--features", "chanstats", "--cache-dir", str(tmp_path / "c"),
                     "-q", "--num-workers", "0", "--out", str(tmp_path / "out")])
    assert code == 0 and "written to" in capsys.readouterr().out
    fs, _ = run(cnmc_folders, tmp_path / "c")
    back = type(fs).load(tmp_path / "out" / "chanstats.parquet")
    np.testing.assert_array_equal(back.X, fs.X)
    for attr in ("y", "ids", "subjects", "splits", "paths", "pixel_hashes", "dhashes"):
        assert getattr(back, attr).tolist() == getattr(fs, attr).tolist(), attr
    assert back.feature_names == fs.feature_names and back.name == fs.name
    assert back.provenance["cache_key"] == fs.provenance["cache_key"]
    plain = pd.read_parquet(tmp_path / "out" / "chanstats.parquet")  # an open format
    assert list(plain.columns[:4]) == ["id", "label", "subject", "split"] and len(plain) == len(fs)
    (tmp_path / "other.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="other.parquet: not a readable Parquet file"):
        type(fs).load(tmp_path / "other.parquet")


@pytest.mark.parametrize("workers", [0, 2])
def test_alternating_feed_gives_the_same_matrix_and_skips(cnmc_folders, tmp_path, workers):
    """Threads between batches (CPU networks) give what worker processes give, skips included."""
    (cnmc_folders / "hem" / "UID_H1_9_1_hem.png").write_text("not a png")
    over, (s1,) = run(cnmc_folders, tmp_path / "a", num_workers=2)
    alt, (s2,) = extract(cnmc_folders, "chanstats_alt", cache_dir=tmp_path / "b", num_workers=workers,
                         progress=False, return_summaries=True)
    np.testing.assert_array_equal(alt.X, over.X)
    assert alt.ids.tolist() == over.ids.tolist() and alt.pixel_hashes.tolist() == over.pixel_hashes.tolist()
    assert s2.skipped[["id", "kind"]].values.tolist() == s1.skipped[["id", "kind"]].values.tolist()
    assert s2.n_extracted == 18


def test_cpu_networks_alternate_and_gpu_overlaps(monkeypatch):
    from leukbench.extraction import default_num_workers
    from leukbench.features import deep
    from leukbench.features.deep import _extractor as deep_extractor

    cpu = deep.DeepExtractor("resnet50", weights="none", device="cpu")
    assert cpu.feed == "alternate" and default_num_workers(cpu) == (os.cpu_count() or 1)
    monkeypatch.setattr(deep_extractor, "resolve_device", lambda device="auto": "cuda")
    gpu = deep.DeepExtractor("resnet50", weights="none")
    assert gpu.feed == "overlap" and default_num_workers(gpu) == max(1, min((os.cpu_count() or 1) - 1, 8))


def test_compaction_keeps_the_newest_rows_and_bounds_the_files(tmp_path):
    config = ExtractorConfig(name="small", kind="handcrafted")
    names = ["small.a", "small.b"]
    cache = FeatureCache(tmp_path / "cache", tmp_path / "data", config, names)
    rng = np.random.default_rng(1)
    truth = {}
    for c in range(10):  # 10 chunks of 3; chunks 4 and 8 re-extract img0 (newest must win)
        ids = [f"img{3 * c + k}.png" for k in range(3)] + (["img0.png"] if c in (4, 8) else [])
        X = rng.normal(size=(len(ids), 2)).astype(np.float32)
        cache.write_chunk(ids, [1] * len(ids), [2] * len(ids), ["p"] * len(ids), ["d"] * len(ids),
                          [False] * len(ids), X)
        truth.update(zip(ids, X))
    want = sorted(truth)
    before = cache.matrix(want)
    assert cache.compact(group=4) == 8  # two full groups merged, two chunks left
    files = [f.name for f in cache.chunk_files()]
    assert len(files) == 4 and sum(f.endswith("-merged.parquet") for f in files) == 2
    fresh = FeatureCache(tmp_path / "cache", tmp_path / "data", config, names)
    np.testing.assert_array_equal(fresh.matrix(want), before)
    np.testing.assert_array_equal(fresh.matrix(["img0.png"])[0], truth["img0.png"])  # chunk 8's row
    assert fresh.compact(group=4) == 0  # merged files are not merged again
    assert fresh.cached_mask(want, np.ones(len(want)), np.full(len(want), 2)).all()


def test_extraction_in_many_chunks_is_compacted_and_unchanged(tmp_path, monkeypatch):
    data = make_cnmc_folders(tmp_path / "d", per_subject=12)  # 72 images
    monkeypatch.setattr(ChannelStats, "batch_size", 1)
    fs, (s,) = run(data, tmp_path / "c", chunk_size=1)  # one chunk per image, then compaction
    cache = FeatureCache(tmp_path / "c", data, ChannelStats().config, ChannelStats().feature_names)
    assert len(cache.chunk_files()) == 1 + 72 - 64
    once, _ = run(data, tmp_path / "fresh")
    np.testing.assert_array_equal(fs.X, once.X)
    again, (s2,) = run(data, tmp_path / "c")
    assert s2.n_cached == 72 and s2.n_extracted == 0
    np.testing.assert_array_equal(again.X, once.X)


def test_handcrafted_groups_are_taken_from_handcrafted(cnmc_folders, tmp_path, monkeypatch):
    """Asked for next to `handcrafted`, a group is copied from its columns, not computed again."""
    from leukbench.features import handcrafted as hc

    calls = []
    real = hc.HandcraftedExtractor.features

    def counting(self, image):
        calls.append(self.name)
        return real(self, image)

    monkeypatch.setattr(hc.HandcraftedExtractor, "features", counting)
    sets, summaries = extract(cnmc_folders, "morphology,handcrafted,color", cache_dir=tmp_path / "c",
                              progress=False, num_workers=0, return_summaries=True)
    assert sorted(set(calls)) == ["handcrafted"] and len(calls) == 18  # one segmentation per cell
    by_name = {s.extractor: s for s in summaries}
    assert [s.extractor for s in summaries] == ["morphology", "handcrafted", "color"]  # asked order
    m = by_name["morphology"]
    assert (m.n_copied, m.n_extracted, m.n_cached) == (18, 0, 0)
    assert "from cache 0, copied from handcrafted's columns 18, skipped 0" in by_name["color"].lines()[1]
    full = sets["handcrafted"]
    for name in ("morphology", "color"):
        part = sets[name]
        assert list(part.ids) == list(full.ids)
        cols = [full.feature_names.index(n) for n in part.feature_names]
        np.testing.assert_array_equal(part.X, full.X[:, cols])
        np.testing.assert_array_equal(part.pixel_hashes, full.pixel_hashes)
    # the copies are ordinary cache entries: the same numbers as computing the group alone
    calls.clear()
    alone, (s,) = extract(cnmc_folders, "morphology", cache_dir=tmp_path / "fresh", progress=False,
                          num_workers=0, return_summaries=True)
    assert s.n_extracted == 18 and s.n_copied == 0 and len(calls) == 18
    np.testing.assert_array_equal(alone.X, sets["morphology"].X)
    calls.clear()
    again, (s,) = extract(cnmc_folders, "morphology", cache_dir=tmp_path / "c", progress=False,
                          num_workers=0, return_summaries=True)
    assert s.n_cached == 18 and not calls
    # asked for alone in a later run, a group is copied from `handcrafted`'s cache
    texture, (s,) = extract(cnmc_folders, "texture", cache_dir=tmp_path / "c", progress=False,
                            num_workers=0, return_summaries=True)
    assert (s.n_copied, s.copied_from, s.n_extracted, s.n_cached) == (18, "handcrafted", 0, 0) and not calls
    cols = [full.feature_names.index(n) for n in texture.feature_names]
    np.testing.assert_array_equal(texture.X, full.X[:, cols])
    # ... but only from a cache with the same settings: segmented cells are computed
    seg, (s,) = extract(cnmc_folders, "texture", segment=True, cache_dir=tmp_path / "c", progress=False,
                        num_workers=0, return_summaries=True)
    assert s.n_copied == 0 and s.n_extracted == 18 and len(calls) == 18
    np.testing.assert_array_equal(again.X, sets["morphology"].X)


def test_no_batch_is_larger_than_a_chunk(cnmc_folders, tmp_path, monkeypatch):
    """--chunk-size below the extractor's batch still bounds every chunk file."""
    from leukbench.cache import FeatureCache

    monkeypatch.setattr(ChannelStats, "batch_size", 64)
    fs, (s,) = run(cnmc_folders, tmp_path / "c", chunk_size=5)
    cache = FeatureCache(tmp_path / "c", cnmc_folders, ChannelStats().config, ChannelStats().feature_names)
    rows = sorted(len(pd.read_parquet(f, columns=["id"])) for f in cache.chunk_files())
    assert rows == [3, 5, 5, 5] and len(fs) == 18
    # a batch size that does not divide the chunk size, and an unreadable image that shortens a
    # batch: still chunks of exactly chunk_size rows, and the same numbers
    (cnmc_folders / "all" / "UID_1_9_1_all.bmp").write_bytes(b"")
    monkeypatch.setattr(ChannelStats, "batch_size", 4)
    again, (s,) = run(cnmc_folders, tmp_path / "d", chunk_size=6)
    cache = FeatureCache(tmp_path / "d", cnmc_folders, ChannelStats().config, ChannelStats().feature_names)
    rows = sorted(len(pd.read_parquet(f, columns=["id"])) for f in cache.chunk_files())
    assert rows == [6, 6, 6] and len(s.skipped) == 1
    np.testing.assert_array_equal(again.X, fs.X)


def test_summary_names_the_images_where_no_cell_was_found(cnmc_folders, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (0, 0, 0)).save(cnmc_folders / "hem" / "UID_H1_99_1_hem.png")  # nothing to find
    fs, (s,) = extract(cnmc_folders, "handcrafted", cache_dir=tmp_path / "c", progress=False, num_workers=0,
                       return_summaries=True)
    assert "hem/UID_H1_99_1_hem.png" in s.segmentation_fallback_ids
    assert s.n_segmentation_fallback == len(s.segmentation_fallback_ids)
    line = next(x for x in s.lines() if "segmentation found no cell" in x)
    assert f"in {s.n_segmentation_fallback} image(s) (e.g. " in line
    _, (again,) = extract(cnmc_folders, "handcrafted", cache_dir=tmp_path / "c", progress=False, num_workers=0,
                          return_summaries=True)  # from the cache: the same images named
    assert again.n_cached == len(fs) and again.segmentation_fallback_ids == s.segmentation_fallback_ids


def test_reading_while_another_run_compacts(cnmc_folders, tmp_path, monkeypatch):
    """A reader whose chunks are merged away by another run's compact() reads the merged file."""
    from leukbench.cache import FeatureCache

    fs, _ = run(cnmc_folders, tmp_path / "c", chunk_size=1)  # 18 chunks, fewer than a compaction group
    ex = ChannelStats()
    reader = FeatureCache(tmp_path / "c", cnmc_folders, ex.config, ex.feature_names)
    other = FeatureCache(tmp_path / "c", cnmc_folders, ex.config, ex.feature_names)
    ids = list(fs.ids)
    reader.index()
    assert other.compact(group=6) == 18  # the listing the reader holds is gone
    np.testing.assert_array_equal(reader.matrix(ids), fs.X)
    # ... and while the reader is listing: chunks vanish between the glob and the reads
    run(cnmc_folders, tmp_path / "a", chunk_size=1)  # fresh chunks to merge
    compactor = FeatureCache(tmp_path / "a", cnmc_folders, ex.config, ex.feature_names)
    lister = FeatureCache(tmp_path / "a", cnmc_folders, ex.config, ex.feature_names)
    real_read = pd.read_parquet
    state = {"done": False}

    def read_after_a_compaction(path, *a, **kw):
        if not state["done"]:
            state["done"] = True
            compactor.compact(group=6)
        return real_read(path, *a, **kw)

    monkeypatch.setattr(pd, "read_parquet", read_after_a_compaction)
    from leukbench.cache import stat_images

    mask = lister.cached_mask(ids, *stat_images(list(fs.paths)))
    assert mask.all() and len(lister.chunk_files()) == 3  # nothing looked uncached


# --------------------------------------------------------------------------
# the registry and the extractor interface
# --------------------------------------------------------------------------


def test_registry_refuses_to_overwrite_and_names_unknown_extractors():
    from leukbench.exceptions import InvalidParameterError, UnknownExtractorError
    from leukbench.features import (
        create_extractor,
        extractor_factory,
        list_extractors,
        override_extractor,
        unregister_extractor,
    )

    with pytest.raises(InvalidParameterError, match="'chanstats' is already a registered feature extractor; "
                                                    "pass replace=True"):
        register_extractor("chanstats", lambda **kw: ChannelStats())
    assert extractor_factory("chanstats") is chanstats_factory  # unchanged
    register_extractor("chanstats", chanstats_factory)  # the same factory again: nothing to refuse
    with pytest.raises(UnknownExtractorError, match=r"unknown feature extractor 'nope'; choose one of .*"
                                                    r"chanstats.*, or timm:<model>") as info:
        create_extractor("nope")
    assert isinstance(info.value, KeyError) and str(info.value).startswith("unknown feature extractor")
    with override_extractor("chanstats", lambda **kw: AlternatingChannelStats()):
        assert isinstance(create_extractor("chanstats"), AlternatingChannelStats)
    assert type(create_extractor("chanstats")) is ChannelStats  # restored
    register_extractor("tmp_extractor", chanstats_factory)
    assert "tmp_extractor" in list_extractors()
    unregister_extractor("tmp_extractor")
    assert "tmp_extractor" not in list_extractors()


def test_each_extractor_gets_the_options_it_takes(cnmc_folders, tmp_path):
    """weights/device/precision go to the deep backbones only; a factory says what it takes."""
    from leukbench.exceptions import InvalidParameterError
    from leukbench.features import (
        create_extractor,
        extractor_options,
        override_extractor,
    )

    assert extractor_options("handcrafted") == ("segment", "grayscale", "stain_norm", "stain_reference")
    assert set(extractor_options("resnet50")) == {"weights", "segment", "grayscale", "device", "batch_size",
                                                  "seed", "precision", "tta", "layers", "pooling", "stain_norm",
                                                  "stain_reference", "decode"}
    assert extractor_options("timm:test_resnet") == extractor_options("resnet50")
    assert extractor_options("chanstats") is None  # **kwargs: anything
    with pytest.raises(InvalidParameterError, match="weights is not an option of the morphology feature "
                                                    "extractor; its options are grayscale, segment, stain_norm, "
                                                    "stain_reference"):
        create_extractor("morphology", weights="none")
    seen = {}

    def strict(*, segment=False, grayscale=False):  # no **kwargs: takes these two only
        seen.update(segment=segment, grayscale=grayscale)
        return ChannelStats(segment=segment, grayscale=grayscale)

    with override_extractor("chanstats", strict):
        assert extractor_options("chanstats") == ("segment", "grayscale")
        fs, _ = run(cnmc_folders, tmp_path / "c", weights="none", device="cpu", grayscale=True)
    assert seen == {"segment": False, "grayscale": True} and len(fs) == 18


def test_extract_all_always_returns_an_extraction_result(cnmc_folders, tmp_path):
    from leukbench.extraction import ExtractionResult, extract_all

    one = extract_all(cnmc_folders, "chanstats", cache_dir=tmp_path / "c", progress=False, num_workers=0)
    assert isinstance(one, ExtractionResult) and list(one.feature_sets) == ["chanstats"]
    assert [s.extractor for s in one.summaries] == ["chanstats"]
    two = extract_all(cnmc_folders, "chanstats_alt,chanstats", cache_dir=tmp_path / "c",
                      progress=False, num_workers=0)
    assert list(two.feature_sets) == ["chanstats_alt", "chanstats"]
    assert [s.extractor for s in two.summaries] == ["chanstats_alt", "chanstats"]
    assert two.summaries[1].n_cached == 18  # the first call cached it
    np.testing.assert_array_equal(two.feature_sets["chanstats_alt"].X, one.feature_sets["chanstats"].X)
    # extract() is the shortcut: the FeatureSet itself for one, a dict for several
    fs = extract(cnmc_folders, "chanstats", cache_dir=tmp_path / "c", progress=False)
    np.testing.assert_array_equal(fs.X, one.feature_sets["chanstats"].X)


class NoCellStats(ChannelStats):
    """Says it found no cell in the darker half of the images (the interface, not a dict key)."""

    def prepare(self, image):
        return {"stats": super().prepare(image), "dark": float(image.mean()) < 100}

    def segmentation_fallback(self, item):
        return item["dark"]

    def compute(self, items):
        return super().compute([it["stats"] for it in items])


def test_segmentation_fallback_is_asked_of_the_extractor(cnmc_folders, tmp_path):
    from leukbench.features import override_extractor
    from leukbench.images import load_image

    with override_extractor("chanstats", lambda **kw: NoCellStats()):
        fs, (s,) = run(cnmc_folders, tmp_path / "c")
    dark = sorted(i for i, p in zip(fs.ids, fs.paths) if load_image(p).mean() < 100)
    assert sorted(s.segmentation_fallback_ids) == dark and s.n_segmentation_fallback == len(dark)


def test_feature_specs_ask_the_extractors_which_columns_they_share():
    from leukbench.features import column_groups

    assert column_groups("handcrafted") == {"morphology", "texture", "color"}
    assert column_groups("texture") == {"texture"} and column_groups("efficientnet_lite0") == {"efficientnet_lite0"}
    with pytest.raises(ValueError, match=r"'handcrafted\+color' has the color columns twice \(they are part "
                                         r"of handcrafted\); use handcrafted alone"):
        parse_feature_spec("handcrafted+color")


def test_extraction_and_the_registry_import_no_extractor_module():
    """The registry lists the built-ins without importing them; extraction never imports handcrafted."""
    import subprocess
    import sys

    code = ("import sys, leukbench.extraction as e; from leukbench.features import list_extractors; "
            "e.parse_feature_spec('resnet50,morphology+texture'); list_extractors(); "
            "print(sorted(m for m in ('torch', 'timm', 'skimage', 'leukbench.features.deep._builder') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unwritable_cache_is_a_cache_error(cnmc_folders, tmp_path):
    from leukbench.exceptions import CacheError, LeukbenchError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot create the feature cache.*--cache-dir") as info:
        run(cnmc_folders, blocker / "cache")
    assert isinstance(info.value, LeukbenchError) and isinstance(info.value, OSError)
