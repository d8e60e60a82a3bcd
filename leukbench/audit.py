"""Leakage audit: identical and near-identical images across subjects or splits.

Two fingerprints are taken of every decoded image during extraction (both
defined in :mod:`leukbench.images`, and importable from here too):

* :func:`pixel_hash` — a digest of the pixels and the shape: equal for the
  same image saved twice, under another name or in another lossless format;
* :func:`difference_hash` — a 256-bit perceptual hash (dHash) that moves by a
  few bits under re-compression, small brightness changes or resizing.

:func:`audit_leakage` reports every pair of images that are identical or
within ``near_threshold`` bits of each other **and** belong to different
subjects or to different splits (train vs test), and returns the cross-
validation groups in which such subjects are merged, so that one image can
never be on both sides of a fold.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .exceptions import InvalidParameterError
from .images import difference_hash, pixel_hash
from .schema import PAIR_COLUMNS

__all__ = ["AuditReport", "audit_leakage", "difference_hash", "pixel_hash", "NEAR_THRESHOLD"]

#: Default largest Hamming distance (of 256 bits) for a near-identical pair.
NEAR_THRESHOLD = 16

@dataclasses.dataclass
class AuditReport:
    """Result of :func:`audit_leakage`.

    Attributes
    ----------
    pairs : DataFrame
        One row per flagged pair: ``id_a, id_b, subject_a, subject_b,
        split_a, split_b, kind ("identical" | "near-identical"), distance``.
    groups : ndarray of str
        Cross-validation group of every image, in input order: its subject,
        with subjects linked by a flagged pair merged (``"H2+H4"``) when
        ``merge`` was on; images without a subject form their own group
        unless a pair links them to others.
    merged_subjects : list of tuple of str
        The subjects merged into one group.
    n_images : int
        Images audited (those with fingerprints).
    near_threshold : int
        Hamming distance used for near-identical pairs.
    """

    pairs: pd.DataFrame
    groups: np.ndarray
    merged_subjects: List[Tuple[str, ...]]
    n_images: int
    near_threshold: int

    @property
    def n_identical(self) -> int:
        return int((self.pairs["kind"] == "identical").sum())

    @property
    def n_near(self) -> int:
        return int((self.pairs["kind"] == "near-identical").sum())

    def summary(self) -> str:
        """One human sentence about what was found and done."""
        if self.pairs.empty:
            return (f"no identical or near-identical images across subjects or splits "
                    f"({self.n_images} images audited)")
        cross = int((self.pairs["split_a"] != self.pairs["split_b"]).sum())
        no_subject = int(((self.pairs["subject_a"] == "") | (self.pairs["subject_b"] == "")).sum())
        detail = f"{cross} across train/test"
        if no_subject:
            detail += f", {no_subject} involving images without a subject id"
        text = (f"{self.n_identical} identical and {self.n_near} near-identical image pair(s) "
                f"across subjects or splits ({detail})")
        if self.merged_subjects:
            shown = ", ".join("~".join(g) for g in self.merged_subjects[:5])
            more = f" and {len(self.merged_subjects) - 5} more" if len(self.merged_subjects) > 5 else ""
            text += (f"; subjects {shown}{more} merged into {len(self.merged_subjects)} "
                     "group(s) for cross-validation")
        return text + "; see audit_pairs.csv"


def _hex_to_bits(hashes: Sequence[str]) -> np.ndarray:
    """Packed hash bytes, shape ``(n, n_bytes)`` ``uint8`` (all hashes one length)."""
    n_bytes = len(hashes[0]) // 2 if len(hashes) else 0
    buf = bytes.fromhex("".join(hashes))
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(hashes), n_bytes)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """Number of set bits in each row of an unsigned integer array, shape ``(n,)``."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    return _POPCOUNT[np.ascontiguousarray(x).view(np.uint8)].sum(axis=1, dtype=np.int64)


def _as_words(packed: np.ndarray) -> np.ndarray:
    """Packed bytes viewed as ``uint64`` words when the width allows it (faster XOR)."""
    packed = np.ascontiguousarray(packed)
    return packed.view(np.uint64) if packed.shape[1] % 8 == 0 else packed


def _run_pairs(order: np.ndarray, keys_sorted: np.ndarray, max_pairs: int = 2_000_000):
    """All pairs of items that share a key, in chunks of about ``max_pairs``.

    ``order`` sorts the items by key and ``keys_sorted`` is ``keys[order]``.
    Yields ``(a, b)`` arrays of item indices. Vectorised over runs of equal
    keys; a run with more than ``max_pairs`` pairs is cut into row blocks, so
    memory stays bounded whatever the data.
    """
    n = len(order)
    if n < 2:
        return
    starts = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])
    lengths = np.diff(np.r_[starts, n])
    keep = lengths > 1
    starts, lengths = starts[keep], lengths[keep]
    n_pairs = lengths * (lengths - 1) // 2
    big = n_pairs > max_pairs
    for s, length in zip(starts[big], lengths[big]):
        block = max(1, max_pairs // int(length))
        for p0 in range(0, int(length) - 1, block):
            p = np.arange(p0, min(p0 + block, int(length) - 1))
            after = int(length) - 1 - p
            a = np.repeat(p, after)
            b = a + 1 + _ranges(after)
            yield order[s + a], order[s + b]
    starts, lengths, n_pairs = starts[~big], lengths[~big], n_pairs[~big]
    cum = np.cumsum(n_pairs)
    lo = 0
    while lo < len(starts):
        base = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, base + max_pairs, side="right")), lo + 1)
        s, L = starts[lo:hi], lengths[lo:hi]
        # position p of a run pairs with every later position of the same run
        pos = np.repeat(s, L) + _ranges(L)
        after = np.repeat(L, L) - 1 - _ranges(L)
        a = np.repeat(pos, after)
        b = a + 1 + _ranges(after)
        yield order[a], order[b]
        lo = hi


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(k)`` for every ``k`` in ``lengths``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets


def _empty_pairs():
    z = np.zeros(0, np.int64)
    return z, z.copy(), z.copy()


def _near_pairs(packed: np.ndarray, threshold: int):
    """Pairs of rows of ``packed`` within ``threshold`` differing bits.

    Parameters
    ----------
    packed : ndarray of uint8, shape (n, n_bytes)
        Packed hashes.
    threshold : int
        Largest Hamming distance.

    Returns
    -------
    i, j, d : ndarray of int64
        Row indices (``i < j``) and distances of every pair within the threshold.

    Notes
    -----
    Identical hashes are collapsed first (one sort). The ``m`` distinct hashes
    are then searched by multi-index hashing: the bits are cut into
    ``threshold + 1`` bands; by the pigeonhole principle two hashes within
    ``threshold`` bits agree exactly on at least one band, so only hashes that
    share a band value are compared. Each band costs a sort,
    ``O(m log m)``, plus one vectorised popcount per candidate pair; for
    distinct images (random-looking bands of ``256 / (threshold + 1)`` bits)
    the candidates are few, e.g. ~1e6 for 100,000 images at 16 bits. Memory is
    bounded by processing candidates in chunks. Large thresholds (bands under
    ~10 bits) make the candidate count grow towards ``m**2 / 2``.
    """
    n, n_bytes = packed.shape
    if n < 2 or threshold < 0:
        return _empty_pairs()
    uniq, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    m = len(uniq)
    words = _as_words(uniq)
    # 1. images with the very same hash (distance 0)
    order = np.argsort(inverse, kind="stable")
    parts_i, parts_j, parts_d = [], [], []
    for a, b in _run_pairs(order, inverse[order]):
        parts_i.append(a), parts_j.append(b), parts_d.append(np.zeros(len(a), np.int64))
    # 2. distinct hashes within the threshold, by multi-index hashing
    near_u = np.zeros(0, np.int64)
    if threshold > 0 and m > 1:
        n_bits = 8 * n_bytes
        bits = np.unpackbits(uniq, axis=1)
        edges = np.linspace(0, n_bits, min(threshold + 1, n_bits) + 1).astype(int)
        found = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            codes = _band_codes(bits[:, lo:hi])
            border = np.argsort(codes, kind="stable")
            for a, b in _run_pairs(border, codes[border]):
                d = _popcount_rows(words[a] ^ words[b])
                ok = d <= threshold
                a, b = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
                found.append(a.astype(np.int64) * m + b)
        if found:
            near_u = np.unique(np.concatenate(found))
    if len(near_u):
        ua, ub = near_u // m, near_u % m
        du = _popcount_rows(words[ua] ^ words[ub])
        # expand every pair of distinct hashes to all pairs of their images
        counts = np.bincount(inverse, minlength=m)
        first = np.r_[0, np.cumsum(counts)[:-1]]
        ca, cb = counts[ua], counts[ub]
        k = _ranges(ca * cb)
        rep = np.repeat(np.arange(len(ua)), ca * cb)
        a = order[first[ua][rep] + k // cb[rep]]
        b = order[first[ub][rep] + k % cb[rep]]
        parts_i.append(a), parts_j.append(b), parts_d.append(du[rep])
    if not parts_i:
        return _empty_pairs()
    i, j, d = (np.concatenate(p).astype(np.int64) for p in (parts_i, parts_j, parts_d))
    i, j = np.minimum(i, j), np.maximum(i, j)
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def _band_codes(bits: np.ndarray) -> np.ndarray:
    """One sortable integer (or row code) per row of a 0/1 ``uint8`` matrix."""
    packed = np.packbits(bits, axis=1)
    if packed.shape[1] <= 8:
        buf = np.zeros((len(packed), 8), np.uint8)
        buf[:, :packed.shape[1]] = packed
        return buf.view(">u8").ravel()
    _, codes = np.unique(packed, axis=0, return_inverse=True)
    return np.asarray(codes).ravel()


def _identical_pairs(hashes: Sequence[Optional[str]]):
    """Pairs ``(i, j)``, ``i < j``, of entries with the same non-empty hash."""
    codes = _hash_codes(hashes)
    valid = np.flatnonzero(codes >= 0)
    if len(valid) < 2:
        return _empty_pairs()[:2]
    c = codes[valid]
    order = np.argsort(c, kind="stable")
    parts = [(valid[a], valid[b]) for a, b in _run_pairs(order, c[order])]
    if not parts:
        return _empty_pairs()[:2]
    i = np.concatenate([p[0] for p in parts]).astype(np.int64)
    j = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return np.minimum(i, j), np.maximum(i, j)


def _hash_codes(hashes) -> np.ndarray:
    """Integer code per hash; -1 for a missing one (None, NaN or "")."""
    s = pd.Series(list(hashes), dtype=object)
    s = s.where(s.notna() & (s.astype(str) != ""), None)
    codes, _ = pd.factorize(s, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _as_str(values, n: int, what: str) -> np.ndarray:
    """``values`` as an object array of ``str`` (missing -> ``""``), length-checked."""
    if values is None:
        return np.full(n, "", dtype=object)
    s = pd.Series(list(values), dtype=object)
    if len(s) != n:
        raise InvalidParameterError(f"audit_leakage: {what} has {len(s)} entries, expected {n} (one per image)")
    return s.where(s.notna(), "").astype(str).str.strip().to_numpy(dtype=object)


def audit_leakage(
    feature_set=None,
    *,
    ids: Optional[Sequence[str]] = None,
    subjects: Optional[Sequence[str]] = None,
    splits: Optional[Sequence[str]] = None,
    pixel_hashes: Optional[Sequence[Optional[str]]] = None,
    dhashes: Optional[Sequence[Optional[str]]] = None,
    near_threshold: int = NEAR_THRESHOLD,
    merge: bool = True,
) -> AuditReport:
    """Find identical or near-identical images across subjects or splits.

    Parameters
    ----------
    feature_set : FeatureSet, optional
        Supplies ``ids``, ``subjects``, ``splits``, ``pixel_hashes`` and
        ``dhashes``; or pass those arrays (one entry per image) as keywords.
    ids, subjects, splits, pixel_hashes, dhashes : sequence, optional
        Image ids, subject ids (``""``/None: unknown), splits (``"train"``,
        ``"test"`` ...), :func:`pixel_hash` and :func:`difference_hash`
        values. Images without hashes (None) are left out of the audit.
    near_threshold : int
        Largest Hamming distance between difference hashes (of 256 bits) for
        a near-identical pair; a negative value checks identical pixels only.
    merge : bool
        Merge the subjects of flagged pairs into one cross-validation group.

    Returns
    -------
    AuditReport

    Example
    -------
    >>> report = audit_leakage(ids=["a.png", "b.png", "c.png"], subjects=["P1", "P2", "P3"],
    ...                        pixel_hashes=["x1", "x1", "y2"])
    >>> report.pairs[["id_a", "id_b", "kind"]].values.tolist()
    [['a.png', 'b.png', 'identical']]
    >>> report.merged_subjects, report.groups.tolist()
    ([('P1', 'P2')], ['P1+P2', 'P1+P2', 'P3'])

    Notes
    -----
    A pair is flagged when its two images are in different cross-validation
    groups (different subjects, or at least one image without a subject,
    which is a group of its own) or in different splits. Identical images are
    grouped by one sort of their pixel hashes and near-identical ones found by
    multi-index hashing (see ``_near_pairs``): ``O(n log n)`` time plus the
    candidate pairs, never the ``n**2 / 2`` comparisons of all pairs, so
    100,000 images take a few seconds.
    """
    if feature_set is not None:
        ids, subjects, splits = feature_set.ids, feature_set.subjects, feature_set.splits
        pixel_hashes, dhashes = feature_set.pixel_hashes, feature_set.dhashes
    if ids is None:
        given = next((v for v in (pixel_hashes, dhashes, subjects, splits) if v is not None), None)
        if given is None:
            raise InvalidParameterError(
                "audit_leakage needs a FeatureSet or ids= with pixel_hashes= and/or dhashes=")
        ids = [str(i) for i in range(len(given))]
    ids = _as_str(ids, len(ids), "ids")
    n = len(ids)
    subjects = _as_str(subjects, n, "subjects")
    splits = _as_str(splits, n, "splits")

    a, b, kind, dist, has_hash = _similar_pairs(n, pixel_hashes, dhashes, int(near_threshold))
    # leakage only: different groups (subjects, or no subject) or different splits
    sa, sb = subjects[a], subjects[b]
    keep = (sa != sb) | (sa == "") | (splits[a] != splits[b])
    a, b, kind, dist = a[keep], b[keep], kind[keep], dist[keep]
    pairs = pd.DataFrame({
        "id_a": ids[a], "id_b": ids[b], "subject_a": subjects[a], "subject_b": subjects[b],
        "split_a": splits[a], "split_b": splits[b], "kind": kind, "distance": dist.astype(int),
    }, columns=list(PAIR_COLUMNS))
    pairs = pairs.sort_values(["kind", "id_a", "id_b"], kind="stable").reset_index(drop=True)
    groups, merged = _groups(subjects, a, b, merge)
    return AuditReport(pairs, groups, merged, int(has_hash.sum()), int(near_threshold))


def _similar_pairs(n: int, pixel_hashes, dhashes, near_threshold: int):
    """Identical and near-identical pairs of ``n`` images, whatever their subjects.

    Returns ``(a, b, kind, distance, has_hash)``: the two image indices of
    each pair, ``"identical"`` (same pixel hash) or ``"near-identical"``
    (difference hashes within ``near_threshold`` bits), the Hamming distance
    (0 for identical pixels), and which images have a fingerprint at all.
    """
    has_hash = np.zeros(n, bool)
    ii, jj = _empty_pairs()[:2]
    if pixel_hashes is not None:
        _as_str(pixel_hashes, n, "pixel_hashes")  # length check
        has_hash |= _hash_codes(pixel_hashes) >= 0
        ii, jj = _identical_pairs(pixel_hashes)
    pairs_i, pairs_j = [ii], [jj]
    kinds, dists = [np.full(len(ii), "identical", dtype=object)], [np.zeros(len(ii), np.int64)]
    if dhashes is not None:
        dh = _as_str(dhashes, n, "dhashes")
        has_hash |= dh != ""
        if near_threshold >= 0:
            a, b, d = _near_identical_pairs(dh, ii * n + jj, near_threshold)
            pairs_i.append(a), pairs_j.append(b), dists.append(d)
            kinds.append(np.full(len(a), "near-identical", dtype=object))
    a, b = np.concatenate(pairs_i).astype(np.int64), np.concatenate(pairs_j).astype(np.int64)
    return a, b, np.concatenate(kinds), np.concatenate(dists), has_hash


def _near_identical_pairs(dh: np.ndarray, identical: np.ndarray, threshold: int):
    """Pairs ``(a, b, distance)`` of difference hashes within ``threshold`` bits.

    ``dh`` holds one hex hash per image (``""``: none); hashes are compared
    with those of the same length only, and the pairs whose code
    ``a * len(dh) + b`` is in ``identical`` (already found by their pixels)
    are left out.
    """
    n = len(dh)
    valid = dh != ""
    lengths = np.array([len(h) for h in dh])
    parts_a, parts_b, parts_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for length in np.unique(lengths[valid]):
        idx = np.flatnonzero(valid & (lengths == length))
        try:
            packed = _hex_to_bits(list(dh[idx]))
        except ValueError:
            raise InvalidParameterError("audit_leakage: dhashes must be hex strings "
                                        "(the output of difference_hash)") from None
        a, b, d = _near_pairs(packed, threshold)
        a, b = idx[a], idx[b]
        new = ~np.isin(a * n + b, identical)
        parts_a.append(a[new]), parts_b.append(b[new]), parts_d.append(d[new])
    return tuple(np.concatenate(p) for p in (parts_a, parts_b, parts_d))


def _groups(subjects: np.ndarray, a: np.ndarray, b: np.ndarray, merge: bool):
    """Cross-validation group of every image and the merged subject tuples.

    Nodes are the subjects plus one node per image without a subject (shown
    as ``image-<index>``); flagged pairs are edges, and connected components
    (union-find, done by :func:`scipy.sparse.csgraph.connected_components`)
    become groups named by their sorted subjects joined with ``+``.
    """
    n = len(subjects)
    no_subject = subjects == ""
    index = np.arange(n).astype(str).astype(object)
    shown = np.where(no_subject, "image-" + index, subjects).astype(object)
    if not merge or len(a) == 0:
        return shown, []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keys = np.where(no_subject, "i:" + index, "s:" + subjects).astype(str)
    node_keys, first_image, node = np.unique(keys, return_index=True, return_inverse=True)
    node = np.asarray(node).ravel()
    k = len(node_keys)
    graph = coo_matrix((np.ones(len(a)), (node[a], node[b])), shape=(k, k))
    _, comp = connected_components(graph, directed=False)
    label = shown[first_image]  # display name of every node
    is_subject = ~no_subject[first_image]
    sizes = np.bincount(comp)
    by_comp = np.argsort(comp, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    merged = []
    for c in np.flatnonzero(sizes > 1):  # only the components that pairs linked
        members = by_comp[starts[c]:starts[c] + sizes[c]]
        subj = sorted(str(label[m]) for m in members if is_subject[m])
        # linked images without a subject are named by their first image
        name = "+".join(subj) if subj else str(label[members[np.argmin(first_image[members])]])
        label[members] = name
        if len(subj) > 1:
            merged.append(tuple(subj))
    return label[node], sorted(merged)
