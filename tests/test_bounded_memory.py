"""Bounded memory at real scale (issue 9 items 8 and 10).

Item 8: the handcrafted descriptors decode a large image downscaled (the cap is
in their cache key) and measure it as they measure the full-size image.
Item 10: ``compare`` holds the feature matrix once -- no copy for the labelled
subset or the fold-cache digest -- and hands it to worker processes as one
memory-mapped ``.npy`` file instead of a pickle per worker; the results do
not change.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

import leukbench.images
from leukbench.extraction._feed import _ImageDataset
from leukbench.features import handcrafted
from leukbench.images import load_image

SIDE = 4000  # a "large" image once the thresholds are lowered below


def _cell_picture(side: int, seed: int = 0) -> np.ndarray:
    """A dark background and a textured purple disc off-centre: a single-cell image, scaled up."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 60, (side // 50, side // 50, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR)).copy()
    yy, xx = np.ogrid[0:side, 0:side]
    cy, cx, r = 0.45 * side, 0.55 * side, 0.28 * side
    disc = (yy - cy) ** 2 + ((xx - cx) / 1.2) ** 2 < r ** 2
    stripes = (40 * np.sin(xx / (side / 60)) * np.cos(yy / (side / 45))).astype(np.int16)
    cell = np.clip(np.array([150, 70, 180], np.int16) + stripes[..., None], 0, 255).astype(np.uint8)
    img[disc] = np.broadcast_to(cell, img.shape)[disc]
    return img


@pytest.fixture(scope="module")
def big_cell(tmp_path_factory):
    path = tmp_path_factory.mktemp("bounded") / "cell.png"
    Image.fromarray(_cell_picture(SIDE)).save(path, compress_level=1)
    return path


@pytest.fixture
def low_caps(monkeypatch):
    """Large means over 1,000 px; handcrafted decodes those at a shorter side of 512 px."""
    monkeypatch.setattr(leukbench.images, "LARGE_IMAGE_SIDE", 1000)
    monkeypatch.setattr(handcrafted, "DECODE_SIDE", 512)


def _traced(fn):
    """``(fn(), peak bytes NumPy and Python allocated meanwhile)``."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_handcrafted_records_its_decode_cap():
    ex = handcrafted.create_handcrafted()
    assert ex.decode_side == handcrafted.DECODE_SIDE == 2048
    assert dict(ex.config.options)["decode_side"] == 2048
    assert dict(ex.config.options)["implementation"] == handcrafted.IMPLEMENTATION >= 4
    # the groups share handcrafted's settings, so their columns are still copied from it
    assert handcrafted.create_color().column_source([ex]) is ex


def test_large_image_gives_features_close_to_full_size_with_bounded_allocation(big_cell, low_caps):
    ex = handcrafted.create_handcrafted()
    assert ex.decode_side == 512
    ex.features(_cell_picture(200))  # imports its modules (their allocations are not the image's)
    capped, capped_peak = _traced(lambda: _ImageDataset([str(big_cell)], ex, False, False)[0])
    assert capped.error is None and not capped.segmentation_fallback
    full_image = load_image(big_cell)  # decoded at its own size, as before the cap
    full, full_peak = _traced(lambda: ex.features(full_image))
    # the whole decode-fingerprint-measure step stays far below one full-size copy (48 MB of uint8)
    assert capped_peak < 8 * 2**20, capped_peak
    assert full_image.nbytes == SIDE * SIDE * 3 and full_peak + full_image.nbytes > 6 * capped_peak
    a, b = capped.item["features"], full["features"]
    names = ex.feature_names
    close = np.isclose(a, b, rtol=0.05, atol=0.02)
    assert close.mean() > 0.95, [(n, x, y) for n, x, y, c in zip(names, a, b, close) if not c]
    area = names.index("morph.area")  # a fraction of the working copy: the same at any decode size
    assert abs(a[area] - b[area]) < 0.01 and 0.1 < a[area] < 0.5


def test_large_image_features_match_its_downscaled_file(big_cell, low_caps, tmp_path):
    small = tmp_path / "small.png"
    with Image.open(big_cell) as im:
        im.resize((512, 512), Image.Resampling.LANCZOS, reducing_gap=2.0).save(small)
    ex = handcrafted.create_handcrafted()
    got = [_ImageDataset([str(p)], ex, False, False)[0] for p in (big_cell, small)]
    assert np.allclose(got[0].item["features"], got[1].item["features"], rtol=1e-3, atol=1e-3)


def test_nucleus_descriptors_decode_large_images_downscaled_too(big_cell, low_caps):
    from leukbench.features.nucleus import IMPLEMENTATION, NucleusExtractor

    ex = NucleusExtractor()
    assert ex.decode_side == 512 and dict(ex.config.options)["decode_side"] == 512 and IMPLEMENTATION >= 2
    ex.prepare(_cell_picture(200))  # imports its modules
    item, peak = _traced(lambda: _ImageDataset([str(big_cell)], ex, False, False)[0])
    assert item.error is None and peak < 8 * 2**20, peak  # one full-size copy would be 48 MB
    ratio = ex.feature_names.index("nucleus.area_ratio")
    assert 0 < item.item["features"][ratio] < 1


def test_images_under_the_threshold_are_measured_as_before(tmp_path):
    path = tmp_path / "cell.png"
    Image.fromarray(_cell_picture(450)).save(path)  # a C-NMC-sized cell: never resampled
    ex = handcrafted.create_handcrafted()
    item = _ImageDataset([str(path)], ex, False, False)[0].item
    assert np.array_equal(item["features"], ex.features(load_image(path))["features"])


# ---------------------------------------------------------------------------
# item 10: compare holds the matrix once and shares it with its workers
# ---------------------------------------------------------------------------


def _feature_set(n: int = 600, d: int = 512, unlabelled: int = 0, seed: int = 0):
    """Two classes of Gaussian features over 12 subjects (1.2 MB of float32 by default)."""
    from leukbench.featureset import FeatureSet

    rng = np.random.default_rng(seed)
    y = np.array(["all", "hem"] * (n // 2), dtype=object)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[y == "all", :8] += 0.8
    subjects = np.array([f"{'P' if c == 'all' else 'H'}{i % 6}" for i, c in enumerate(y)], dtype=object)
    y[:unlabelled] = None
    splits = np.where([v is None for v in y], "unlabeled", "train")
    return FeatureSet("synthetic", X, y, [f"img{i:04d}.png" for i in range(n)], subjects, splits,
                      [f"f{j}" for j in range(d)])


def test_labelled_subset_shares_the_matrix_unless_rows_are_dropped():
    full = _feature_set(60, 4)
    assert full.labeled().X is full.X  # every image labelled: no copy
    part = _feature_set(60, 4, unlabelled=6)
    lab = part.labeled()
    assert len(lab) == 54 and not np.shares_memory(lab.X, part.X)
    assert np.array_equal(lab.X, part.X[6:])


def test_cache_matrix_reads_column_groups_in_any_row_order(tmp_path, monkeypatch):
    import leukbench.cache as cache_mod
    from leukbench.cache import FeatureCache
    from leukbench.features.base import ExtractorConfig

    monkeypatch.setattr(cache_mod, "READ_COLUMNS", 3)  # 7 columns: groups of 3, 3 and 1
    names = [f"demo.c{j}" for j in range(7)]
    cache = FeatureCache(tmp_path, "/data/cells", ExtractorConfig("demo", "handcrafted"), names)
    X = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    ids = [f"x{i}.png" for i in range(10)]
    for part in (slice(0, 4), slice(4, 10)):  # two chunks
        k = len(ids[part])
        cache.write_chunk(ids[part], [1] * k, [1] * k, ["p"] * k, ["d"] * k, [False] * k, X[part])
    order = [7, 2, 9, 0, 5, 4, 1]
    assert np.array_equal(cache.matrix([ids[i] for i in order]), X[order])


@pytest.fixture
def shared_log(monkeypatch):
    """Records, for each run's fits, the file each matrix went to the workers as (``None``: the
    array itself), then whether that file is still there after the run."""
    from leukbench.evaluation import comparison
    from leukbench.evaluation.matrix_files import mapped_file, shared_matrices

    log = []

    def spy(prepared, share=None):
        with shared_matrices(prepared, share) as data:
            paths = [mapped_file(d.X) for d in data]
            log.append(paths)
            yield data
        log.append([p is not None and Path(p).exists() for p in paths])  # removed at the end?

    import contextlib
    from pathlib import Path

    monkeypatch.setattr(comparison, "shared_matrices", contextlib.contextmanager(spy))
    return log


def test_workers_get_one_memory_mapped_matrix_and_the_same_results(shared_log):
    import leukbench

    fs = _feature_set()
    assert fs.X.nbytes > 2**20
    kw = dict(classifiers="GaussianNB,RidgeClassifier", cv=3, cache_dir=False, progress=False, n_bootstrap=0)
    runs = {"in process": leukbench.compare(fs, n_jobs=1, **kw),
            "joblib": leukbench.compare(fs, n_jobs=2, **kw),
            "killable": leukbench.compare(fs, n_jobs=2, timeout=300, **kw)}
    in_process, _, joblib_paths, joblib_gone, killable_paths, killable_gone = shared_log
    assert in_process == [None]  # fits in this process: nothing written
    assert joblib_paths[0] and killable_paths[0] and joblib_gone == killable_gone == [False]
    base = runs.pop("in process")
    cols = ["Feature Set", "Model", "Balanced Accuracy", "ROC AUC", "Accuracy", "F1 Score", "MCC"]
    for name, res in runs.items():
        assert res.table[cols].equals(base.table[cols]), name
        p, q = res.predictions, base.predictions
        assert p.drop(columns=[c for c in p if "time" in c.lower()]).equals(
            q.drop(columns=[c for c in q if "time" in c.lower()])), name


def test_matrix_folders_of_killed_runs_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from leukbench.evaluation.matrix_files import remove_orphans

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    orphan = tmp_path / f"leukbench-matrices-{gone}-abc"
    live = tmp_path / f"leukbench-matrices-{os.getpid()}-def"
    for d in (orphan, live):
        d.mkdir()
        (d / "features-0.npy").write_bytes(b"x")
    assert remove_orphans(str(tmp_path)) == 1
    assert not orphan.exists() and live.exists()
