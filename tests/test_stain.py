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


@pytest.fixture(scope="module")
def sample_reference():
    from leukbench import datasets
    from leukbench.stain import dataset_reference

    return dataset_reference(datasets.discover(datasets.sample_root())["path"], 48)


def test_reinhard_matches_a_dataset_reference(cells, sample_reference):
    ref = sample_reference
    assert ref["source"] == "dataset(48/159)"
    # the bundled sample's own statistics lie near the fixed reference, which was taken from it
    np.testing.assert_allclose(ref["mean"], REINHARD_REFERENCE["mean"], atol=1.5)
    moved = {**ref, "mean": (ref["mean"][0] + 6, ref["mean"][1] - 4, ref["mean"][2] + 3)}  # away from the fixed one
    for r in (ref, moved):
        for rgb in cells:
            mask = stained_mask(rgb)
            out = normalize_stain(rgb, "reinhard", r)
            mean, std = lab_stats(out, mask)
            np.testing.assert_allclose(mean, r["mean"], atol=0.6)
            np.testing.assert_allclose(std, r["std"], rtol=0.08, atol=0.3)
            assert np.array_equal(out[~mask], rgb[~mask])
    # the default reference is the fixed one, and its key is unchanged
    np.testing.assert_array_equal(normalize_stain(cells[0], "reinhard"), reinhard(cells[0], REINHARD_REFERENCE))
    assert stain_key("reinhard", ref) != stain_key("reinhard") and "[dataset(48/159)]" in stain_key("reinhard", ref)
    assert stain_key("reinhard", ref) != stain_key("reinhard", moved)


def test_dataset_reference_is_seeded_and_order_free():
    from leukbench import datasets
    from leukbench.stain import dataset_reference

    paths = datasets.discover(datasets.sample_root())["path"].tolist()
    assert dataset_reference(paths, 12) == dataset_reference(paths[::-1], 12)
    assert dataset_reference(paths, 12) != dataset_reference(paths, 13)


def test_stain_reference_changes_the_key_of_every_extractor(sample_reference, tmp_path):
    from leukbench.features import create_extractor

    for name in ("handcrafted", "nucleus", "efficientnet_lite0"):
        plain = create_extractor(name, stain_norm="reinhard")
        other = create_extractor(name, stain_norm="reinhard", stain_reference=sample_reference)
        if hasattr(other, "check"):
            plain.check(), other.check()
        assert dict(plain.config.options)["stain_norm"] == stain_key("reinhard")  # the fixed key is unchanged
        assert dict(other.config.options)["stain_norm"] == stain_key("reinhard", sample_reference)
        assert other.config.cache_key() != plain.config.cache_key()


def test_resolve_reference_values_and_errors(cells, tmp_path):
    from PIL import Image

    from leukbench.stain import reinhard_reference, resolve_reference

    assert resolve_reference("fixed", "reinhard") is None and resolve_reference("fixed", "none") is None
    path = tmp_path / "ref.png"
    Image.fromarray(cells[1]).save(path)
    ref = resolve_reference(str(path), "reinhard")
    assert ref == reinhard_reference([cells[1]], "image ref.png")
    with pytest.raises(InvalidParameterError, match="^stain_reference .*reinhard"):
        resolve_reference("dataset", "macenko", [path])
    with pytest.raises(InvalidParameterError, match="^stain_reference .*no-such.png"):
        resolve_reference(str(tmp_path / "no-such.png"), "reinhard")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InvalidParameterError, match="^stain_reference could not read"):
        resolve_reference(str(tmp_path / "bad.png"), "reinhard")
    with pytest.raises(InvalidParameterError, match="^stain_reference .*no stained pixels"):
        reinhard_reference([np.zeros((8, 8, 3), np.uint8)])


def test_extract_with_a_dataset_reference_records_it(tmp_path):
    from leukbench import datasets
    from leukbench.extraction import extract_all

    table = datasets.discover(datasets.sample_root()).groupby("label").head(3)
    fixed = extract_all(table, "color", stain_norm="reinhard", cache_dir=tmp_path, progress=False)
    own = extract_all(table, "color", stain_norm="reinhard", stain_reference="dataset", cache_dir=tmp_path,
                      progress=False)
    a, b = fixed.feature_sets["color"], own.feature_sets["color"]
    assert not np.allclose(a.X, b.X)
    recorded = b.provenance["extractor"]["options"]["stain_norm"]  # what run.json and the report show
    assert recorded.startswith("reinhard[dataset(6/6)]:mean=")
    assert b.provenance["cache_key"] != a.provenance["cache_key"]
    assert "(reference: dataset(6/6))" in b.provenance["description"]
    with pytest.raises(InvalidParameterError, match="^stain_reference "):
        extract_all(table, "color", stain_reference="dataset", cache_dir=tmp_path, progress=False)
