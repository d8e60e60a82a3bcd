"""Fingerprints of the data a comparison ran on: hashes of its labels and of its features.

Two runs on the same images with the same labels and subjects have the same
``labels_sha256``, whatever the order of the images; the same feature matrix
has the same ``X_sha256``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Tuple

import numpy as np

from ._result import is_missing, result_frame

__all__ = ["data_fingerprint", "prediction_fingerprints"]


def _fingerprint_rows(ids, labels, subjects) -> Tuple[np.ndarray, str]:
    """Row order (sorted by id, label, subject) and the SHA-256 of the label lines."""
    ids = np.array([str(i) for i in ids], dtype=object)
    labels = ["" if is_missing(v) else str(v) for v in labels]
    subjects = ["" if is_missing(v) else str(v) for v in subjects]
    order = sorted(range(len(ids)), key=lambda i: (ids[i], labels[i], subjects[i]))
    digest = hashlib.sha256()
    for i in order:
        digest.update(f"{ids[i]}\t{labels[i]}\t{subjects[i]}\n".encode())
    return np.asarray(order, dtype=int), digest.hexdigest()


def data_fingerprint(feature_set) -> Dict[str, Any]:
    """Fingerprints of the labelled images of a FeatureSet.

    ``labels_sha256`` hashes the lines ``"<id>\\t<label>\\t<subject>\\n"``
    sorted by id (UTF-8); ``X_sha256`` hashes ``"<rows>x<cols>\\n"`` followed
    by the float32 little-endian bytes of X with rows in that same order.

    Returns
    -------
    dict
        ``name``, ``source`` ("feature_set"), ``n_images``, ``n_labeled``,
        ``n_features``, ``labels_sha256``, ``X_sha256``.

    Example
    -------
    >>> import numpy as np
    >>> from leukbench.featureset import FeatureSet
    >>> fs = FeatureSet(name="f", X=np.zeros((2, 3)), y=["a", "b"], ids=["i0", "i1"],
    ...                 subjects=["s0", "s1"], splits=["train", "train"],
    ...                 feature_names=["x0", "x1", "x2"])
    >>> fp = data_fingerprint(fs)
    >>> fp["n_labeled"], fp["n_features"], len(fp["X_sha256"])
    (2, 3, 64)
    """
    mask = np.array([not is_missing(v) and v != "" for v in feature_set.y], dtype=bool)
    ids = np.asarray(feature_set.ids)[mask]
    order, labels_sha = _fingerprint_rows(ids, np.asarray(feature_set.y)[mask],
                                          np.asarray(feature_set.subjects)[mask])
    X, rows = np.asarray(feature_set.X), np.flatnonzero(mask)[order]
    digest = hashlib.sha256(f"{len(rows)}x{X.shape[1]}\n".encode())
    for start in range(0, len(rows), 4096):  # the same bytes, a slice at a time: no copy of the matrix
        digest.update(np.ascontiguousarray(X[rows[start:start + 4096]], dtype="<f4").tobytes())
    return {
        "name": str(feature_set.name),
        "source": "feature_set",
        "n_images": len(feature_set.ids),
        "n_labeled": int(mask.sum()),
        "n_features": int(X.shape[1]),
        "labels_sha256": labels_sha,
        "X_sha256": digest.hexdigest(),
    }


def prediction_fingerprints(result) -> List[Dict[str, Any]]:
    """Label fingerprints per feature set from the predictions, when no FeatureSet is at hand.

    ``labels_sha256`` equals :func:`data_fingerprint`'s for the same images;
    the counts and ``X_sha256`` that need X are ``None``.
    """
    predictions = result_frame(result, "predictions")
    out: List[Dict[str, Any]] = []
    if predictions.empty:
        return out
    subject = "subject" if "subject" in predictions.columns else None
    for name, group in predictions.groupby("feature_set", sort=True):
        cols = ["id", "y_true"] + ([subject] if subject else [])
        images = group[cols].astype(str).drop_duplicates()
        _, labels_sha = _fingerprint_rows(images["id"], images["y_true"],
                                          images[subject] if subject else [""] * len(images))
        out.append({
            "name": str(name),
            "source": "predictions",
            "n_images": None,
            "n_labeled": len(images),
            "n_features": None,
            "labels_sha256": labels_sha,
            "X_sha256": None,
        })
    return out
