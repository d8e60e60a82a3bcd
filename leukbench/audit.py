"""Leakage audit: identical and near-identical images across subjects or splits.

Two fingerprints are taken of every decoded image during extraction:

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
import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

__all__ = ["AuditReport", "audit_leakage", "difference_hash", "pixel_hash", "NEAR_THRESHOLD"]

#: Default largest Hamming distance (of 256 bits) for a near-identical pair.
NEAR_THRESHOLD = 4

PAIR_COLUMNS = ["id_a", "id_b", "subject_a", "subject_b", "split_a", "split_b", "kind", "distance"]


def pixel_hash(image: np.ndarray) -> str:
    """Hex digest of an image's pixels and shape (exact-duplicate fingerprint)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype.str}".encode())
    h.update(arr.data)
    return h.hexdigest()


def difference_hash(image: np.ndarray, size: int = 16) -> str:
    """Perceptual difference hash of the image content: ``size * size`` bits, hex.

    The image is turned to grayscale and cropped to the box of pixels that
    differ from the background (the median of the border) by more than 24
    grey levels, so a small cell on a large black or light background is
    hashed by the cell, not by the background. The crop is resized to
    ``(size + 1) x size`` and each bit says whether a pixel is brighter than
    its right neighbour.
    """
    from PIL import Image

    arr = np.asarray(image)
    gray = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) \
        if arr.ndim == 3 else arr.astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    fg = np.abs(gray - np.median(border)) > 24
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    if len(rows) > 4 and len(cols) > 4:
        gray = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    small = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8), "L").resize((size + 1, size), Image.BILINEAR)
    small = np.asarray(small, dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return np.packbits(bits).tobytes().hex()


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
        cross = self.pairs["split_a"] != self.pairs["split_b"]
        text = (f"{self.n_identical} identical and {self.n_near} near-identical image pair(s) "
                f"across subjects or splits ({int(cross.sum())} across train/test)")
        if self.merged_subjects:
            shown = ", ".join("~".join(g) for g in self.merged_subjects[:5])
            more = f" and {len(self.merged_subjects) - 5} more" if len(self.merged_subjects) > 5 else ""
            text += (f"; subjects {shown}{more} merged into {len(self.merged_subjects)} "
                     "group(s) for cross-validation")
        return text + "; see audit_pairs.csv"


def _hex_to_bits(hashes: Sequence[str]) -> np.ndarray:
    """Packed hash bytes, shape ``(n, n_bytes)`` ``uint8``."""
    n_bytes = len(hashes[0]) // 2 if len(hashes) else 0
    buf = bytes.fromhex("".join(hashes))
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(hashes), n_bytes)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _near_pairs(bits: np.ndarray, threshold: int) -> List[Tuple[int, int, int]]:
    """Pairs within ``threshold`` bits, by multi-index hashing.

    The hash is cut into ``threshold + 1`` bands; by the pigeonhole principle
    two hashes within ``threshold`` bits agree exactly on at least one band,
    so only images sharing a band value are compared. Expected cost is close
    to linear in the number of images for distinct images.
    """
    n, n_bytes = bits.shape
    if n < 2 or threshold < 0:
        return []
    n_bands = min(threshold + 1, n_bytes)
    edges = np.linspace(0, n_bytes, n_bands + 1).astype(int)
    seen = set()
    for b in range(n_bands):
        band = bits[:, edges[b]:edges[b + 1]]
        keys = np.ascontiguousarray(band).view(np.dtype((np.void, band.shape[1]))).ravel()
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = order[s:e]
            sub = bits[members]
            dist = _POPCOUNT[sub[:, None, :] ^ sub[None, :, :]].sum(axis=2)
            ii, jj = np.nonzero(np.triu(dist <= threshold, k=1))
            for i, j in zip(members[ii], members[jj]):
                seen.add((int(min(i, j)), int(max(i, j))))
    if not seen:
        return []
    pairs = np.array(sorted(seen))
    dist = _POPCOUNT[bits[pairs[:, 0]] ^ bits[pairs[:, 1]]].sum(axis=1)
    return [(int(i), int(j), int(d)) for (i, j), d in zip(pairs, dist)]


class _UnionFind:
    def __init__(self):
        self.parent: Dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


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
        ``dhashes``; or pass those arrays as keywords.
    near_threshold : int
        Largest Hamming distance between difference hashes (of 256 bits) for
        a near-identical pair; a negative value checks identical pixels only.
    merge : bool
        Merge the subjects of flagged pairs into one cross-validation group.

    Returns
    -------
    AuditReport

    Notes
    -----
    Identical images are grouped by hash (linear time); near-identical ones
    by multi-index hashing (see ``_near_pairs``), so 100,000 images take
    seconds. Pairs inside one subject and one split are not leakage and are
    not reported.
    """
    if feature_set is not None:
        ids = feature_set.ids
        subjects = feature_set.subjects
        splits = feature_set.splits
        pixel_hashes = feature_set.pixel_hashes
        dhashes = feature_set.dhashes
    ids = np.asarray(ids, dtype=object)
    n = len(ids)
    subjects = np.array(["" if s is None else str(s) for s in (subjects if subjects is not None else [""] * n)],
                        dtype=object)
    splits = np.array(["" if s is None else str(s) for s in (splits if splits is not None else [""] * n)],
                      dtype=object)

    candidates: List[Tuple[int, int, str, int]] = []
    if pixel_hashes is not None:
        ph = pd.Series(list(pixel_hashes), dtype=object)
        valid = ph.notna() & (ph != "")
        for _, idx in ph[valid].groupby(ph[valid]).groups.items():
            idx = sorted(int(i) for i in idx)
            for a in range(len(idx)):
                for b in range(a + 1, len(idx)):
                    candidates.append((idx[a], idx[b], "identical", 0))
    identical = {(a, b) for a, b, _, _ in candidates}
    n_audited = n
    if dhashes is not None and near_threshold >= 0:
        dh = list(dhashes)
        valid = np.array([isinstance(h, str) and len(h) > 0 for h in dh])
        n_audited = int(valid.sum())
        vidx = np.flatnonzero(valid)
        if len(vidx) > 1:
            lengths = {len(dh[i]) for i in vidx}
            if len(lengths) == 1:
                bits = _hex_to_bits([dh[i] for i in vidx])
                for i, j, d in _near_pairs(bits, near_threshold):
                    a, b = int(vidx[i]), int(vidx[j])
                    if (a, b) not in identical:
                        candidates.append((a, b, "near-identical", d))

    rows = []
    uf = _UnionFind()
    for a, b, kind, d in candidates:
        sa, sb = subjects[a], subjects[b]
        cross_subject = sa != sb or (sa == "" and sb == "")
        cross_split = splits[a] != splits[b]
        if not (cross_subject or cross_split):
            continue
        rows.append((ids[a], ids[b], sa, sb, splits[a], splits[b], kind, d))
        uf.union(_node(a, sa), _node(b, sb))
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    pairs = pairs.sort_values(["kind", "id_a", "id_b"], kind="stable").reset_index(drop=True)

    nodes = [_node(i, s) for i, s in enumerate(subjects)]
    if merge and rows:
        members: Dict[str, set] = {}
        for node in nodes:
            members.setdefault(uf.find(node), set()).add(node)
        names = {}
        merged = []
        for root, group in members.items():
            labels = sorted({_label(g) for g in group})
            names[root] = "+".join(labels)
            subj = sorted({g[2:] for g in group if g.startswith("s:")})
            if len(labels) > 1 and len(subj) > 1:
                merged.append(tuple(subj))
        groups = np.array([names[uf.find(node)] for node in nodes], dtype=object)
        merged_subjects = sorted(merged)
    else:
        groups = np.array([_label(node) for node in nodes], dtype=object)
        merged_subjects = []
    return AuditReport(pairs, groups, merged_subjects, n_audited, int(near_threshold))


def _node(i: int, subject: str) -> str:
    """Union-find node: the subject, or the image itself when it has none."""
    return f"s:{subject}" if subject else f"i:{i}"


def _label(node: str) -> str:
    return node[2:] if node.startswith("s:") else f"image-{node[2:]}"
