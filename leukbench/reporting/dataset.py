"""The images behind a comparison and their per-class summary (the report's "Dataset")."""

from __future__ import annotations

from typing import Any, Dict, Sequence

import pandas as pd

from ._result import is_missing, result_frame

__all__ = ["image_frame", "dataset_summary"]


def image_frame(result, feature_sets: Sequence[Any]) -> pd.DataFrame:
    """One row per distinct image: ``id, label, subject, path`` (union over the feature sets).

    Without feature sets the images of the predictions are used (no paths).
    A missing label is ``None``, a missing subject ``""``.
    """
    rows = {}
    for fs in feature_sets:
        paths = fs.paths if fs.paths is not None else [None] * len(fs)
        for i, y, s, p in zip(fs.ids, fs.y, fs.subjects, paths):
            rows.setdefault(str(i), (None if is_missing(y) or y == "" else str(y),
                                     "" if is_missing(s) else str(s), p))
    if not rows:
        predictions = result_frame(result, "predictions")
        if not predictions.empty:
            subjects = (predictions["subject"] if "subject" in predictions.columns
                        else [""] * len(predictions))
            for i, y, s in zip(predictions["id"], predictions["y_true"], subjects):
                rows.setdefault(str(i), (str(y), "" if is_missing(s) else str(s), None))
    return pd.DataFrame(
        [(k,) + v for k, v in sorted(rows.items())], columns=["id", "label", "subject", "path"]
    )


def dataset_summary(images: pd.DataFrame) -> Dict[str, Any]:
    """Images, labelled images, subjects and per-class counts of an :func:`image_frame`.

    Subjects count as known when every labelled image has one: the unlabelled
    images (C-NMC's final test set) never take part in the comparison.

    Example
    -------
    >>> import pandas as pd
    >>> images = pd.DataFrame({"label": ["all", "all", "hem", None],
    ...                        "subject": ["1", "2", "H1", ""]})
    >>> d = dataset_summary(images)
    >>> d["n_images"], d["n_labeled"], d["n_subjects"], d["classes"]["hem"]
    (4, 3, 3, {'images': 1, 'subjects': 1})
    """
    labeled = images[images["label"].notna()]
    subjects_known = len(labeled) > 0 and bool((labeled["subject"] != "").all())
    per_class = {}
    for label, group in labeled.groupby("label", sort=True):
        per_class[str(label)] = {
            "images": len(group),
            "subjects": int(group["subject"].nunique()) if subjects_known else None,
        }
    return {
        "n_images": len(images),
        "n_labeled": len(labeled),
        "n_subjects": int(labeled["subject"].nunique()) if subjects_known else None,
        "classes": per_class,
    }
