"""Nucleus descriptors (leukbench.features.nucleus)."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench.features import column_groups, create_extractor, list_extractors
from leukbench.features.nucleus import NUCLEUS_NAMES, nucleus_features, segment_nucleus

from .conftest import CNMC_SUBSET, needs_cnmc


def _synthetic_cell(side: int = 64, r_cell: int = 26, r_nucleus: int = 15):
    """A pale bluish cell with a purple round nucleus on a black background (C-NMC-like)."""
    yy, xx = np.mgrid[:side, :side]
    d2 = (yy - side // 2) ** 2 + (xx - side // 2) ** 2
    rgb = np.zeros((side, side, 3), np.uint8)
    cell = d2 < r_cell ** 2
    nucleus = d2 < r_nucleus ** 2
    rgb[cell] = (150, 130, 190)
    rgb[nucleus] = (110, 40, 120)
    noise = np.random.default_rng(0).integers(-6, 7, rgb.shape)
    rgb = np.where(cell[..., None], np.clip(rgb.astype(int) + noise, 0, 255), 0).astype(np.uint8)
    return rgb, cell, nucleus


def test_synthetic_cell_nucleus_is_found():
    rgb, cell, truth = _synthetic_cell()
    nucleus, _ = segment_nucleus(rgb, cell)
    assert (nucleus <= cell).all()
    iou = (nucleus & truth).sum() / (nucleus | truth).sum()
    assert iou > 0.85, iou
    f = dict(zip(NUCLEUS_NAMES, nucleus_features(rgb, cell)))
    assert f["nucleus.area_ratio"] == pytest.approx(truth.sum() / cell.sum(), abs=0.05)
    assert f["nucleus.circularity"] > 0.8 and f["nucleus.solidity"] > 0.9 and f["nucleus.n_lobes"] == 1
    assert f["nucleus.lobularity"] == pytest.approx(1.0, abs=0.1)
    assert f["nucleus.stain_mean"] > f["nucleus.cyto_stain_mean"]


def test_two_lobed_nucleus_is_less_solid():
    rgb, cell, _ = _synthetic_cell()
    yy, xx = np.mgrid[:64, :64]
    lobes = (((yy - 32) ** 2 + (xx - 22) ** 2) < 8 ** 2) | (((yy - 32) ** 2 + (xx - 42) ** 2) < 8 ** 2)
    rgb[cell] = (150, 130, 190)
    rgb[lobes] = (110, 40, 120)
    f = dict(zip(NUCLEUS_NAMES, nucleus_features(rgb, cell)))
    assert f["nucleus.n_lobes"] == 2 and f["nucleus.solidity"] < 0.8


def test_names_registry_and_groups():
    assert "nucleus" in list_extractors() and column_groups("nucleus") == frozenset({"nucleus"})
    ex = create_extractor("nucleus")
    assert ex.feature_names == NUCLEUS_NAMES and len(set(NUCLEUS_NAMES)) == len(NUCLEUS_NAMES)
    assert all(n.startswith("nucleus.") for n in NUCLEUS_NAMES)
    assert ex.config.cache_key() != create_extractor("nucleus", stain_norm="reinhard").config.cache_key()
    from leukbench.extraction import parse_feature_spec

    assert parse_feature_spec("handcrafted+nucleus") == [["handcrafted", "nucleus"]]
    empty = nucleus_features(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool))
    assert empty.shape == (len(NUCLEUS_NAMES),) and not empty.any()


def test_handcrafted_plus_nucleus_on_the_sample(tmp_path):
    from leukbench import datasets, extract

    table = datasets.discover(datasets.sample_root())
    table = table.groupby("label").head(2)  # 4 cells: 2 ALL, 2 healthy
    fs = extract(table, features="handcrafted+nucleus", cache_dir=tmp_path, num_workers=0, progress=False)
    n_handcrafted = len(create_extractor("handcrafted").feature_names)
    assert fs.X.shape == (4, n_handcrafted + len(NUCLEUS_NAMES)) and np.isfinite(fs.X).all()
    assert fs.feature_names[n_handcrafted:] == NUCLEUS_NAMES
    ratio = fs.X[:, fs.feature_names.index("nucleus.area_ratio")]
    assert ((ratio > 0) & (ratio < 1)).all()


@pytest.mark.shared_data
@needs_cnmc
def test_real_cnmc_nucleus_lies_inside_the_cell():
    from leukbench.features.handcrafted import _cell_mask, _working_copy
    from leukbench.images import load_image

    paths = sorted((CNMC_SUBSET / "all").iterdir())[:3] + sorted((CNMC_SUBSET / "hem").iterdir())[:3]
    for path in paths:
        rgb = _working_copy(load_image(str(path)))
        cell, found = _cell_mask(rgb)
        assert found
        nucleus, _ = segment_nucleus(rgb, cell)
        assert nucleus.any() and (nucleus <= cell).all()
        ratio = nucleus.sum() / cell.sum()
        assert 0 < ratio < 1, (path.name, ratio)
