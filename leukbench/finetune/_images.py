"""The images alone, as a feature set with no feature: what ``compare --features finetuned:<backbone>``
runs on when no ordinary feature set is named beside the network.

The fine-tuned rows need the images' paths, labels, subjects and the leakage audit's hashes (the
split plan the battery would use, with its merged groups); :func:`image_set` reads them from a
discovery table, decoding each image once (in threads) for its pixel and difference hashes and
leaving out, as extraction does, the images that cannot be read (listed in the provenance's
``skipped``). Its matrix has no column, so the battery makes no row of it.

Example
-------
>>> from leukbench import datasets
>>> from leukbench.finetune._images import image_set
>>> fs = image_set(datasets.discover(datasets.sample_root()))  # doctest: +SKIP
>>> fs.X.shape, fs.name  # doctest: +SKIP
((159, 0), 'images')
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

__all__ = ["IMAGES_ONLY", "image_set"]

#: The name of the feature set that holds the images alone.
IMAGES_ONLY = "images"


def _hashes(path: str):
    """``(pixel hash, difference hash, None)`` of one image, or ``(None, None, (kind, reason))``."""
    from ..images import ImageReadError, difference_hash, load_image, pixel_hash

    try:
        image = load_image(path)
        return pixel_hash(image), difference_hash(image), None
    except ImageReadError as exc:
        return None, None, (exc.kind, str(exc))


def image_set(table, *, num_workers: Optional[int] = None, progress: bool = False):
    """The :class:`~leukbench.featureset.FeatureSet` of the readable images of a discovery ``table``
    (``path, id, label, subject, split``), with their hashes and no feature column.

    Example
    -------
    >>> image_set(datasets.discover(folder)).feature_names  # doctest: +SKIP
    []
    """
    from tqdm.auto import tqdm

    from .._version import __version__
    from ..featureset import FeatureSet

    paths = table["path"].astype(str).tolist()
    workers = num_workers if num_workers else min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = list(tqdm(pool.map(_hashes, paths), total=len(paths), desc="images", unit="img",
                          disable=not progress, leave=False, dynamic_ncols=True))
    keep = np.array([err is None for _, _, err in found], dtype=bool)
    skipped = [{"id": str(i), "kind": err[0], "reason": err[1]}
               for i, (_, _, err) in zip(table["id"], found) if err is not None]
    sub = table.loc[keep]
    return FeatureSet(
        name=IMAGES_ONLY, X=np.zeros((len(sub), 0), np.float32),
        y=sub["label"].to_numpy(dtype=object), ids=sub["id"].to_numpy(dtype=object),
        subjects=sub["subject"].to_numpy(dtype=object), splits=sub["split"].to_numpy(dtype=object),
        feature_names=[], paths=sub["path"].to_numpy(dtype=object),
        pixel_hashes=np.array([h for (h, _, e) in found if e is None], dtype=object),
        dhashes=np.array([d for (_, d, e) in found if e is None], dtype=object),
        provenance={"images_only": True, "description": "the images alone (no feature; fine-tuned networks only)",
                    "dataset_root": str(table.attrs.get("root", "")), "layout": table.attrs.get("layout", ""),
                    "leukbench_version": __version__, "skipped": skipped})
