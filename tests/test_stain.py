"""Stain normalisation (leukbench.stain) and its use before the handcrafted descriptors."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench.exceptions import InvalidParameterError
from leukbench.stain import (
    REINHARD_REFERENCE,
    lab_stats,
    macenko,
    normalize_stain,
    reinhard,
    stain_key,
    stained_mask,
)


@pytest.fixture(scope="module")
def cells():
    from leukbench import datasets
    from leukbench.images import load_image

    table = datasets.discover(datasets.sample_root())
    paths = table["path"].tolist()
    return [load_image(p) for p in (paths[0], paths[len(paths) // 2], paths[-1])]


def test_reinhard_matches_the_reference_lab_statistics(cells):
    ref_mean, ref_std = np.array(REINHARD_REFERENCE["mean"]), np.array(REINHARD_REFERENCE["std"])
    for rgb in cells:
        mask = stained_mask(rgb)
        out = reinhard(rgb)
        mean, std = lab_stats(out, mask)
        np.testing.assert_allclose(mean, ref_mean, atol=0.6)
        np.testing.assert_allclose(std, ref_std, rtol=0.08, atol=0.3)
        assert np.array_equal(out[~mask], rgb[~mask])  # the background keeps its colour
    # a strongly shifted stain comes back to the reference too
    shifted = np.clip(cells[0].astype(int) * [1.3, 0.8, 1.1], 0, 255).astype(np.uint8)
    mean, _ = lab_stats(reinhard(shifted), stained_mask(shifted))
    np.testing.assert_allclose(mean, ref_mean, atol=0.6)


def test_macenko_recolours_stained_pixels_only(cells):
    rgb = cells[0]
    out = macenko(rgb)
    mask = stained_mask(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], rgb[~mask])
    assert np.abs(out[mask].astype(int) - rgb[mask]).mean() > 1  # it did something
    np.testing.assert_array_equal(macenko(rgb), out)  # deterministic
    flat = np.full((8, 8, 3), 128, np.uint8)
    assert np.array_equal(macenko(flat), flat)  # too few stained pixels to estimate stains


def test_bad_method_and_input_are_named():
    with pytest.raises(InvalidParameterError, match="^stain_norm "):
        normalize_stain(np.zeros((4, 4, 3), np.uint8), "vahadane")
    with pytest.raises(InvalidParameterError, match="^rgb "):
        reinhard(np.zeros((4, 4), np.uint8))
    assert stain_key("none") == "none" and stain_key("reinhard") != stain_key("macenko")


def test_handcrafted_stain_norm_keeps_the_mask_and_changes_the_colour(cells):
    from leukbench.features import create_extractor

    plain = create_extractor("handcrafted")
    normed = create_extractor("handcrafted", stain_norm="reinhard")
    assert plain.config == create_extractor("handcrafted", stain_norm="none").config  # default key unchanged
    assert dict(normed.config.options)["stain_norm"] == stain_key("reinhard")
    assert normed.config.cache_key() != plain.config.cache_key()
    a, b = plain.prepare(cells[1])["features"], normed.prepare(cells[1])["features"]
    names = plain.feature_names
    morph = [i for i, n in enumerate(names) if n.startswith("morph.")]
    color = [i for i, n in enumerate(names) if n.startswith("color.")]
    np.testing.assert_array_equal(a[morph], b[morph])  # the cell is located on the original colours
    assert not np.allclose(a[color], b[color])
    with pytest.raises(InvalidParameterError, match="^stain_norm "):
        create_extractor("color", stain_norm="bogus")
