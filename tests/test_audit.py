"""Leakage audit: fingerprints, flagged pairs and merged cross-validation groups."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from leukbench.audit import audit_leakage, difference_hash, pixel_hash
from leukbench.datasets import load_sample
from leukbench.images import load_image

from .conftest import CNMC_SUBSET, needs_cnmc


def _cells(n, seed=0):
    """``n`` distinct real cells of the bundled sample (subjects 11 and 14)."""
    table = load_sample()
    paths = table[table["subject"].isin(["11", "14"])]["path"].tolist()
    rng = np.random.default_rng(seed)
    return [load_image(p) for p in rng.choice(paths, size=n, replace=False)]


def _audit(images, subjects, splits=None, **kw):
    ids = [f"img{i}.png" for i in range(len(images))]
    return audit_leakage(ids=ids, subjects=subjects, splits=splits or ["train"] * len(images),
                         pixel_hashes=[pixel_hash(im) for im in images],
                         dhashes=[difference_hash(im) for im in images], **kw)


def test_pixel_hash_sees_pixels_and_shape():
    a = _cells(1)[0]
    assert pixel_hash(a) == pixel_hash(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert pixel_hash(b) != pixel_hash(a)
    flat = a.reshape(-1, a.shape[1] * 3)
    assert pixel_hash(flat) != pixel_hash(a)  # same bytes, other shape


def test_difference_hash_is_robust_to_recompression_but_not_to_content():
    a, other = _cells(2, seed=3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(a.astype(int) + 2, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
    recompressed = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    bits = lambda h: np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8))  # noqa: E731
    assert len(difference_hash(a)) == 64  # 256 bits
    assert (bits(difference_hash(a)) != bits(difference_hash(recompressed))).sum() <= 4
    assert (bits(difference_hash(a)) != bits(difference_hash(other))).sum() > 20


def test_identical_image_across_subjects_is_flagged_and_merged():
    ims = _cells(6)
    ims[5] = ims[0].copy()  # subject C holds a copy of subject A's cell
    subjects = ["A", "A", "B", "B", "C", "C"]
    rep = _audit(ims, subjects)
    assert len(rep.pairs) == 1
    row = rep.pairs.iloc[0]
    assert (row.id_a, row.id_b, row.kind, row.distance) == ("img0.png", "img5.png", "identical", 0)
    assert rep.merged_subjects == [("A", "C")]
    assert list(rep.groups) == ["A+C", "A+C", "B", "B", "A+C", "A+C"]
    assert "1 identical" in rep.summary() and "A~C" in rep.summary()
    plain = _audit(ims, subjects, merge=False)
    assert list(plain.groups) == subjects and plain.merged_subjects == []


def test_duplicates_inside_one_subject_are_not_leakage():
    ims = _cells(4)
    ims[1] = ims[0].copy()
    rep = _audit(ims, ["A", "A", "B", "B"])
    assert rep.pairs.empty and rep.merged_subjects == []
    assert rep.summary().startswith("no identical")


def test_duplicate_across_train_and_test_is_flagged():
    ims = _cells(4)
    ims[3] = ims[0].copy()
    rep = _audit(ims, ["", "", "", ""], splits=["train", "train", "test", "test"])
    assert list(rep.pairs[["split_a", "split_b"]].iloc[0]) == ["train", "test"]
    assert "1 across train/test" in rep.summary()
    # images without subject: own group each, except the linked pair
    assert rep.groups[0] == rep.groups[3] and len(set(rep.groups)) == 3


def test_near_identical_copy_is_flagged_distinct_cells_are_not():
    ims = _cells(8, seed=1)
    buf = io.BytesIO()
    Image.fromarray(ims[2]).save(buf, "JPEG", quality=90)
    ims[7] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    rep = _audit(ims, list("AABBCCDD"))
    assert len(rep.pairs) == 1
    row = rep.pairs.iloc[0]
    assert (row.id_a, row.id_b, row.kind) == ("img2.png", "img7.png", "near-identical")
    assert 0 <= row.distance <= rep.near_threshold
    assert rep.merged_subjects == [("B", "D")]
    assert _audit(ims, list("AABBCCDD"), near_threshold=-1).pairs.empty  # exact only


def test_bundled_sample_duplicates_are_found():
    table = load_sample()
    ims = [load_image(p) for p in table["path"]]
    rep = audit_leakage(ids=table["id"], subjects=table["subject"], splits=table["split"],
                        pixel_hashes=[pixel_hash(i) for i in ims],
                        dhashes=[difference_hash(i) for i in ims])
    pairs = {(a.split("/")[-1], b.split("/")[-1]) for a, b in zip(rep.pairs.id_a, rep.pairs.id_b)}
    assert pairs == {("UID_H2_26_1_hem.png", "UID_H4_7_1_hem.png"),
                     ("UID_H2_26_2_hem.png", "UID_H4_7_2_hem.png")}
    assert rep.merged_subjects == [("H2", "H4")]


def near_pairs(packed, threshold):
    """``(i, j, distance)`` of the difference hashes (rows of ``packed``) within ``threshold`` bits,
    as :func:`audit_leakage` reports them: no subjects, so every image is a group of its own and
    every close pair is leakage."""
    rep = audit_leakage(dhashes=[row.tobytes().hex() for row in packed], near_threshold=threshold)
    assert set(rep.pairs.kind) <= {"near-identical"}  # no pixel hashes given
    return sorted(zip(rep.pairs.id_a.astype(int).tolist(), rep.pairs.id_b.astype(int).tolist(),
                      rep.pairs.distance.tolist()))


def test_near_pair_search_matches_brute_force(monkeypatch):
    from leukbench import audit

    rng = np.random.default_rng(0)
    bits = (rng.random((600, 256)) < rng.uniform(0.1, 0.9, 256)).astype(np.uint8)
    bits[100:150] = bits[:50] ^ (rng.random((50, 256)) < 0.03)  # planted near copies
    bits[150:160] = bits[0]  # a run of exact copies
    packed = np.packbits(bits, axis=1)

    def brute(t):
        d = np.unpackbits(packed[:, None] ^ packed[None], axis=2).sum(axis=2)
        i, j = np.nonzero(np.triu(d <= t, k=1))
        return sorted(zip(i.tolist(), j.tolist(), d[i, j].tolist()))

    for t in (0, 3, 10, 16):
        assert near_pairs(packed, t) == brute(t), t
    # tiny chunks and the pre-NumPy-2 popcount give the same answer
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    # no public function takes the chunk size (2,000,000 pairs): the pair generator itself, in chunks of 4
    chunks = list(audit._run_pairs(np.arange(7), np.zeros(7, int), max_pairs=4))
    assert sorted((int(a), int(b)) for x, y in chunks for a, b in zip(x, y)) == \
        [(a, b) for a in range(7) for b in range(a + 1, 7)]
    assert near_pairs(packed, 16) == brute(16)


def test_missing_hashes_and_bad_input():
    ims = _cells(3)
    ph = [pixel_hash(ims[0]), None, pixel_hash(ims[0])]
    rep = audit_leakage(ids=["a", "b", "c"], subjects=["A", None, "B"], pixel_hashes=ph,
                        dhashes=[difference_hash(ims[0]), None, difference_hash(ims[0])])
    assert rep.n_images == 2 and len(rep.pairs) == 1 and rep.merged_subjects == [("A", "B")]
    assert list(rep.groups) == ["A+B", "image-1", "A+B"]
    with pytest.raises(ValueError, match="subjects has 2 entries"):
        audit_leakage(ids=["a", "b", "c"], subjects=["A", "B"], pixel_hashes=ph)
    with pytest.raises(ValueError, match="FeatureSet or ids"):
        audit_leakage()


def test_large_audit_is_fast():
    import time

    rng = np.random.default_rng(1)
    n = 20000
    packed = np.packbits(rng.random((n, 256)) < 0.5, axis=1)
    packed[-5:] = packed[:5]
    hexes = [r.tobytes().hex() for r in packed]
    t0 = time.perf_counter()
    rep = audit_leakage(ids=[str(i) for i in range(n)], subjects=[str(i % 300) for i in range(n)],
                        dhashes=hexes)
    assert time.perf_counter() - t0 < 10
    assert len(rep.pairs) == 5 and set(rep.pairs.distance) == {0}


@needs_cnmc
@pytest.mark.slow
def test_real_cnmc_subset_duplicates():
    paths = sorted((CNMC_SUBSET / "hem").glob("UID_H[24567]_*.png"))
    ims = [load_image(p) for p in paths]
    subjects = [p.name.split("_")[1] for p in paths]
    rep = audit_leakage(ids=[p.name for p in paths], subjects=subjects, splits=["train"] * len(paths),
                        pixel_hashes=[pixel_hash(i) for i in ims],
                        dhashes=[difference_hash(i) for i in ims])
    identical = rep.pairs[rep.pairs.kind == "identical"]
    assert len(identical) == 5  # the 5 known exact copies across H2/H4/H5
    assert set(identical.subject_a) | set(identical.subject_b) == {"H2", "H4", "H5"}
    assert (rep.pairs.kind == "near-identical").sum() >= 20
    assert rep.merged_subjects == [("H2", "H4", "H5", "H6", "H7")]
    # every flagged pair is the same cell: < 10% of the cell's pixels differ by > 20 levels
    by_name = dict(zip([p.name for p in paths], ims))
    for a, b in zip(rep.pairs.id_a, rep.pairs.id_b):
        A, B = by_name[a].astype(int), by_name[b].astype(int)
        cell = (A.max(axis=2) > 20) | (B.max(axis=2) > 20)
        changed = (np.abs(A - B).max(axis=2)[cell] > 20).mean()
        assert changed < 0.1, (a, b, changed)


def test_bad_arguments_are_invalid_parameter_errors():
    from leukbench.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="FeatureSet or ids"):
        audit_leakage()
    with pytest.raises(InvalidParameterError, match="ids has 1 entries, expected 2|subjects has 1 entries"):
        audit_leakage(ids=["a", "b"], subjects=["x"], pixel_hashes=["p", "q"])
    with pytest.raises(InvalidParameterError, match="dhashes must be hex strings"):
        audit_leakage(ids=["a", "b"], dhashes=["zz", "yy"])
