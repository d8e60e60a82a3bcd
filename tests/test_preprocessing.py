"""Segmentation and grayscale helpers on synthetic and real cells."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench.datasets import load_sample
from leukbench.images import load_image
from leukbench.preprocessing import crop_to_cell, grayscale_rgb, segment_cell, to_grayscale

from .conftest import CNMC_SUBSET, PBC_SUBSET, needs_cnmc, needs_pbc


def scene(background, cell, size=300, box=(80, 120, 180, 240)):
    """A textured elliptic cell inside ``box`` (r0, c0, r1, c1) on a flat background."""
    rng = np.random.default_rng(0)
    img = np.full((size, size, 3), background, np.float64)
    r0, c0, r1, c1 = box
    yy, xx = np.mgrid[:size, :size]
    cy, cx, ry, rx = (r0 + r1) / 2, (c0 + c1) / 2, (r1 - r0) / 2, (c1 - c0) / 2
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[inside] = np.asarray(cell) + rng.normal(0, 8, (inside.sum(), 1))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("background,cell", [((0, 0, 0), (170, 120, 200)),          # C-NMC: bright on black
                                             ((230, 215, 200), (110, 60, 150))])   # smear: dark on light
def test_segment_cell_finds_the_cell(background, cell):
    img = scene(background, cell)
    seg = segment_cell(img, margin=0.0)
    assert seg.found
    r0, c0, r1, c1 = seg.bbox
    assert abs(r0 - 80) <= 4 and abs(c0 - 120) <= 4 and abs(r1 - 180) <= 4 and abs(c1 - 240) <= 4
    assert seg.crop.shape[:2] == seg.mask.shape == (r1 - r0, c1 - c0)
    np.testing.assert_array_equal(seg.crop, img[r0:r1, c0:c1])
    assert 0.6 < seg.mask.mean() < 0.9  # an ellipse fills ~79% of its box
    wide = segment_cell(img, margin=0.1)
    assert wide.bbox[0] < r0 and wide.bbox[3] > c1


def test_blank_image_falls_back_to_the_whole_image():
    blank = np.zeros((50, 60, 3), np.uint8)
    seg = segment_cell(blank)
    assert not seg.found and seg.bbox == (0, 0, 50, 60) and seg.mask.all()
    crop, found = crop_to_cell(blank)
    assert crop.shape == blank.shape and not found


def test_grayscale():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (255, 255, 255)
    g = to_grayscale(rgb)
    assert g.dtype == np.uint8 and g.shape == (2, 2)
    assert g[0, 0] == 76 and g[1, 1] == 255 and g[0, 1] == 0  # ITU-R 601 luma
    g3 = grayscale_rgb(rgb)
    assert g3.shape == (2, 2, 3) and (g3[..., 0] == g3[..., 2]).all() and (g3[..., 0] == g).all()


def test_bundled_cells_are_found_and_cropped():
    for path in load_sample()["path"][::20]:
        img = load_image(path)
        seg = segment_cell(img)
        assert seg.found, path
        assert seg.crop.shape[0] * seg.crop.shape[1] < 0.8 * img.shape[0] * img.shape[1]


@needs_cnmc
def test_real_cnmc_cells():
    paths = sorted(CNMC_SUBSET.glob("*/*.png"))[::100]
    assert sum(segment_cell(load_image(p)).found for p in paths) >= 0.95 * len(paths)


@needs_pbc
def test_real_pbc_cells():
    paths = sorted(PBC_SUBSET.glob("*/*.jpg"))[::160]
    assert sum(segment_cell(load_image(p)).found for p in paths) >= 0.9 * len(paths)
