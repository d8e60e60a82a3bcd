"""Handcrafted descriptors: names, values that follow the cell, speed, extraction."""

from __future__ import annotations

import time

import numpy as np
import pytest

from leukbench import extract
from leukbench.datasets import load_sample
from leukbench.features import create_extractor
from leukbench.features.handcrafted import GROUPS, morphology_features
from leukbench.images import load_image

from .conftest import PBC_SUBSET, make_cnmc_folders, needs_pbc


def disk_image(radius, size=200, value=200, ellipse=1.0):
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) / ellipse) ** 2 + (xx - size / 2) ** 2 <= radius ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[inside] = (value, value - 60, value - 20)
    return img


def vec(ex, image):
    return dict(zip(ex.feature_names, ex.prepare(image)["features"]))


def test_names_are_stable_unique_and_namespaced():
    ex = create_extractor("handcrafted")
    names = ex.feature_names
    assert len(names) == len(set(names)) == 12 + 18 + 10 + 36
    assert names[:2] == ["morph.area", "morph.perimeter"]
    assert "glcm.contrast.d1" in names and "lbp.bin07" in names and "color.h.mean" in names
    for group in GROUPS:
        sub = create_extractor(group)
        assert sub.feature_names == GROUPS[group]
        assert set(sub.feature_names) <= set(names)
        assert sub.config.cache_key() != ex.config.cache_key()
    assert ex.config.kind == "handcrafted" and "no learned weights" in ex.describe()


def test_morphology_follows_the_shape():
    ex = create_extractor("morphology")
    small, big = vec(ex, disk_image(30)), vec(ex, disk_image(60))
    assert big["morph.area"] > 3 * small["morph.area"]
    assert big["morph.equivalent_diameter"] == pytest.approx(2 * small["morph.equivalent_diameter"], rel=0.1)
    assert small["morph.circularity"] == pytest.approx(1.0, abs=0.12)
    ellipse = vec(ex, disk_image(40, ellipse=2.2))
    assert ellipse["morph.circularity"] < small["morph.circularity"] - 0.1
    assert ellipse["morph.eccentricity"] > 0.8 > small["morph.eccentricity"]
    assert ellipse["morph.aspect_ratio"] == pytest.approx(2.2, rel=0.15)


def test_morphology_of_an_empty_mask_is_zero():
    assert not morphology_features(np.zeros((10, 10), bool)).any()


def test_morphology_agrees_with_regionprops():
    from skimage.measure import regionprops

    mask = disk_image(30, size=100, ellipse=1.6)[..., 0] > 0
    mask[20:30, 45:48] = True  # a protrusion, so the cell is not convex
    got = dict(zip(GROUPS["morphology"], morphology_features(mask)))
    p = regionprops(mask.astype(np.uint8))[0]
    assert got["morph.area"] == pytest.approx(p.area / mask.size)
    assert got["morph.perimeter"] == pytest.approx(p.perimeter, rel=1e-5)
    for ours, theirs in [("eccentricity", "eccentricity"), ("major_axis", "axis_major_length"),
                         ("minor_axis", "axis_minor_length"), ("extent", "extent")]:
        assert got[f"morph.{ours}"] == pytest.approx(getattr(p, theirs), rel=1e-4)
    assert got["morph.orientation_abs"] == pytest.approx(abs(p.orientation), abs=1e-4)
    assert got["morph.solidity"] == pytest.approx(p.solidity, abs=0.05)  # hull of pixel squares


def test_lbp_and_glcm_match_scikit_image():
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    from leukbench.features.handcrafted import GLCM_PROPS, _glcm_props, _uniform_lbp

    rng = np.random.default_rng(0)
    gray = load_image(load_sample()["path"][0])[::4, ::4, 1]
    for g in (gray, rng.integers(0, 256, (23, 31)).astype(np.uint8), np.full((8, 9), 5, np.uint8)):
        np.testing.assert_array_equal(_uniform_lbp(g), local_binary_pattern(g, 8, 1, method="uniform"))
        glcm = graycomatrix(g // 8, [1, 2], [0, np.pi / 2], levels=32, symmetric=True, normed=True)
        want = np.stack([graycoprops(glcm, p).mean(axis=1) for p in GLCM_PROPS])
        np.testing.assert_allclose(_glcm_props(glcm), want, atol=1e-9)


def test_colour_and_texture_follow_the_pixels():
    ex = create_extractor("handcrafted")
    flat, noisy = disk_image(50), disk_image(50)
    rng = np.random.default_rng(0)
    inside = noisy[..., 0] > 0
    noisy[inside] = np.clip(noisy[inside].astype(int) + rng.integers(-40, 40, (inside.sum(), 1)), 1, 255)
    a, b = vec(ex, flat), vec(ex, noisy)
    assert a["color.r.mean"] == pytest.approx(200 / 255, abs=0.02)  # measured inside the cell only
    assert b["color.r.std"] > a["color.r.std"] + 0.01
    assert b["glcm.contrast.d1"] > a["glcm.contrast.d1"]
    assert b["glcm.homogeneity.d1"] < a["glcm.homogeneity.d1"]
    lbp = [k for k in a if k.startswith("lbp.")]
    assert sum(a[k] for k in lbp) == pytest.approx(1.0, abs=1e-5)


def test_real_cells_finite_deterministic_and_fast():
    ex = create_extractor("handcrafted")
    images = [load_image(p) for p in load_sample()["path"][:24]]
    ex.prepare(images[0])  # warm-up (imports)
    t0 = time.perf_counter()
    items = [ex.prepare(im) for im in images]
    per_image = (time.perf_counter() - t0) / len(images)
    X = ex.compute(items)
    assert X.shape == (24, len(ex.feature_names)) and X.dtype == np.float32
    assert np.isfinite(X).all()
    assert not any(it["segmentation_fallback"] for it in items)  # every C-NMC cell found
    np.testing.assert_array_equal(ex.compute([ex.prepare(im) for im in images]), X)
    assert per_image < 0.15, f"{per_image * 1000:.0f} ms per image"  # ~25 ms on 2 cores


def test_blank_image_falls_back_and_is_reported(tmp_path):
    ex = create_extractor("handcrafted")
    out = ex.prepare(np.zeros((64, 64, 3), np.uint8))
    assert out["segmentation_fallback"] is True
    assert np.isfinite(out["features"]).all()


def test_extract_handcrafted_end_to_end(tmp_path):
    data = make_cnmc_folders(tmp_path / "d", per_subject=2)
    fs = extract(data, "morphology,color,morphology+color", cache_dir=tmp_path / "c", progress=False)
    assert fs["morphology+color"].X.shape == (12, 12 + 36)
    np.testing.assert_array_equal(fs["morphology+color"].X[:, :12], fs["morphology"].X)
    assert fs["morphology"].provenance["extractor"]["kind"] == "handcrafted"
    # ALL cells of the fixture are drawn larger than HEM cells
    area = fs["morphology"].X[:, 0]
    y = fs["morphology"].y
    assert area[y == "all"].mean() > area[y == "hem"].mean()


@needs_pbc
def test_real_pbc_cells_are_segmented():
    paths = sorted(PBC_SUBSET.glob("*/*.jpg"))[::200]
    ex = create_extractor("handcrafted")
    items = [ex.prepare(load_image(p)) for p in paths]
    found = sum(not it["segmentation_fallback"] for it in items)
    assert found >= 0.9 * len(items)
    assert np.isfinite(ex.compute(items)).all()
