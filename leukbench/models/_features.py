"""The features of a model: the extractor configurations of its training set, rebuilt on new images.

At training time :func:`extractor_specs` reads, from a feature set's
provenance, each extractor's configuration (the cache key's
:class:`~leukbench.features.base.ExtractorConfig`, with the feature version).
At prediction time :func:`rebuild_extractors` makes the same extractors with
this install and compares their configurations field by field: another
feature version, other weights (their identity or hash) or other
preprocessing is an error naming both values, never a silent mismatch.
:func:`image_features` then runs them through extraction (the feature cache,
skipped unreadable images) on the images to predict.

Example
-------
>>> spec = {"name": "handcrafted", "config": {"segment": True, "grayscale": False, "weights": "none",
...         "options": {"work_size": 128}}}
>>> creation_options(spec)
{'segment': True, 'grayscale': False}
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from ..exceptions import BundleError, InvalidParameterError

__all__ = ["creation_options", "extractor_specs", "image_features", "image_table", "rebuild_extractors"]


def _configs(provenance: Dict[str, Any]) -> List[Dict[str, Any]]:
    if "combined" in provenance:
        return [c for part in provenance["combined"] for c in _configs(part)]
    if "extractor" in provenance:
        return [dict(provenance["extractor"], cache_key=provenance.get("cache_key", ""))]
    return []


def extractor_specs(fs) -> List[Dict[str, Any]]:
    """One ``{"name", "config"}`` per extractor of ``fs``, in column order, from its provenance.

    Raises
    ------
    InvalidParameterError
        For a feature set that does not say how its features were computed
        (not made by :func:`leukbench.extract`).

    Example
    -------
    >>> [s["name"] for s in extractor_specs(leukbench.extract(features="handcrafted"))]  # doctest: +SKIP
    ['handcrafted']
    """
    configs = _configs(fs.provenance or {})
    if not configs:
        raise InvalidParameterError(f"feature set {fs.name!r} does not say which extractor made it (no "
                                    "provenance); make it with leukbench.extract so that a model can "
                                    "compute its features on new images", parameter="data")
    return [{"name": c["name"], "config": c} for c in configs]


def _option_value(value):
    """The value an option was given, from what the configuration records of it:
    ``"gem(p=3)"`` -> ``"gem"``, ``"reinhard:mean=..."`` -> ``"reinhard"``; others as they are."""
    match = re.match(r"^([A-Za-z_]\w*)[:(]", value) if isinstance(value, str) else None
    return match.group(1) if match else value


def creation_options(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The options that make the extractor of ``spec`` again (those its factory takes).

    The weights, segmentation, grayscale and precision, and each recorded
    option that the factory takes. Whatever is read back, the rebuilt
    extractor's configuration is compared with the stored one field by field.
    """
    from ..features.base import extractor_options

    config = spec["config"]
    options = dict(config.get("options") or {})
    precision = options.pop("precision", "float32")
    wanted = {"weights": config.get("weights", "none"), "segment": bool(config.get("segment")),
              "grayscale": bool(config.get("grayscale")), "precision": str(precision).split("-")[0],
              "decode": _option_value(options.pop("decode", "cpu"))}  # no decode recorded: PIL's
    accepted = extractor_options(spec["name"])
    if accepted is None:
        return wanted
    wanted.update({k: _option_value(v) for k, v in options.items() if k in accepted and k not in wanted})
    return {k: v for k, v in wanted.items() if k in accepted}


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _compare(name: str, stored: Dict[str, Any], now: Dict[str, Any]) -> None:
    """Raise for the first field of the configuration that differs (the feature version first)."""
    from ..features.base import FEATURE_VERSION

    if stored.get("feature_version") != now.get("feature_version"):
        raise BundleError(f"{name}: the model's features are of feature version {stored.get('feature_version')}, "
                          f"this leukbench computes version {FEATURE_VERSION}; its numbers would differ: train "
                          "the model again with this leukbench (`leukbench train`)")
    for key in ("weights_id", "weights", "input_size", "segment", "grayscale", "kind"):
        if _canonical(stored.get(key)) != _canonical(now.get(key)):
            what = "weights" if key.startswith("weights") else key
            raise BundleError(f"{name}: the model was trained with {what} {stored.get(key)!r}, this install gives "
                              f"{now.get(key)!r}; install the same weights (or give the same file) or train the "
                              "model again with `leukbench train`")
    old, new = stored.get("options") or {}, now.get("options") or {}
    for key in sorted(set(old) | set(new)):
        if _canonical(old.get(key)) != _canonical(new.get(key)):
            raise BundleError(f"{name}: the model was trained with the option {key}={old.get(key)!r}, this "
                              f"install uses {new.get(key)!r}; use the leukbench the model was made with, or "
                              "train it again with `leukbench train`")


def _check_precision(spec: Dict[str, Any], options: Dict[str, Any], device: str) -> None:
    """Refuse, by name, features computed in float16 autocast where no CUDA device computes them again.

    The precision is part of the features' identity (float16 numbers differ
    from float32 ones in the third decimal), so it is never silently changed.
    """
    if options.get("precision") != "float16":
        return
    from ..features.deep._device import resolve_device

    if not resolve_device(device).startswith("cuda"):
        recorded = (spec["config"].get("options") or {}).get("precision")
        raise BundleError(f"{spec['name']}: the model's features were computed with precision {recorded!r}, which "
                          f"needs a CUDA device (this is --device {device}); predict on a machine with a GPU "
                          "(--device cuda), or train the model again with --precision float32")


def rebuild_extractors(specs: List[Dict[str, Any]], *, device: str = "auto", batch_size: Optional[int] = None,
                       trained_with: str = "") -> List[Any]:
    """The extractors of ``specs``, made with this install and checked to compute the same features.

    Raises
    ------
    BundleError
        A feature version, weights identity, preprocessing or option that
        differs from the stored configuration (both named); features computed
        in float16 when no CUDA device is here.

    Example
    -------
    >>> spec = {"name": "handcrafted", "config": {}}
    >>> rebuild_extractors([spec])  # doctest: +SKIP
    [HandcraftedExtractor(...)]
    """
    from .._version import __version__
    from ..features.base import create_extractor, extractor_options

    out = []
    for spec in specs:
        options = creation_options(spec)
        _check_precision(spec, options, device)
        accepted = extractor_options(spec["name"])
        for key, value in (("device", device), ("batch_size", batch_size)):
            if accepted is None or key in accepted:
                options[key] = value
        extractor = create_extractor(spec["name"], **options).check()
        _compare(spec["name"], spec["config"], extractor.config.to_dict())
        out.append(extractor)
    if trained_with and trained_with != __version__:
        warnings.warn(f"the model was made with leukbench {trained_with}, this is leukbench {__version__}; "
                      "its feature configuration matches, so the features are computed the same way",
                      UserWarning, stacklevel=3)
    return out


def image_table(data, *, layout: str = "auto", subject_regex: Optional[str] = None) -> pd.DataFrame:
    """The discovery table of the images to predict: a folder, a CSV manifest, or image paths.

    A folder of class folders or the C-NMC layout gives labels; a folder
    with its images directly inside, and a list of image files, give none.

    Raises
    ------
    DatasetError, InvalidParameterError
        A path that does not exist, no images, an image named twice.

    Example
    -------
    >>> image_table(["cell_1.bmp", "cell_2.bmp"])[["id", "label"]]  # doctest: +SKIP
               id label
    0  cell_1.bmp
    1  cell_2.bmp
    """
    from .. import datasets
    from ..images import is_image_file

    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not items:
        raise InvalidParameterError("data: no images given; pass a folder, a CSV manifest or image files",
                                    parameter="data")
    if len(items) == 1 and (Path(items[0]).is_dir() or Path(items[0]).suffix.lower() == ".csv"):
        folder = Path(items[0])
        loose = sorted(folder / e for e in os.listdir(folder) if is_image_file(e)) if folder.is_dir() else []
        if not loose:
            return datasets.discover(folder, layout=layout, subject_regex=subject_regex, require_labels=False)
        items = loose
    paths = [os.path.abspath(os.fspath(p)) for p in items]
    for p in paths:
        if not os.path.isfile(p):
            raise datasets.DatasetError(f"{p}: no such image file; pass existing image files, a folder or a CSV "
                                        "manifest")
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise InvalidParameterError(f"data: the image {twice} is given twice; give each image once",
                                    parameter="data")
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    ids = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    table = pd.DataFrame({"path": paths, "id": ids, "label": "", "subject": "", "split": "unlabeled", "fold": ""})
    table = table[list(datasets.COLUMNS)]
    table.attrs.update(root=root, layout="files")
    return table


def image_features(table: pd.DataFrame, extractors: List[Any], *, cache_dir=None, num_workers=None,
                   progress: bool = True) -> Tuple[Any, List[Any]]:
    """``(FeatureSet, summaries)`` of the images of ``table``: each extractor run as extraction runs it.

    ``cache_dir`` ``None`` is the default feature cache, ``False`` a
    temporary one removed afterwards. Unreadable images are left out of the
    feature set and listed in the summaries' ``skipped`` tables.

    Example
    -------
    >>> fs, summaries = image_features(image_table("new_cells/"), extractors)  # doctest: +SKIP
    """
    from ..cache import default_cache_dir, stat_images
    from ..extraction import load_feature_set, run_extractor
    from ..featureset import FeatureSet

    root = table.attrs["root"]
    with tempfile.TemporaryDirectory(prefix="leukbench-predict-") as tmp:
        where = Path(tmp) if cache_dir is False else (Path(cache_dir) if cache_dir is not None
                                                       else default_cache_dir())
        stats = stat_images(table["path"].tolist())
        sets, summaries = [], []
        for extractor in extractors:
            summary = run_extractor(table, root, extractor, where, num_workers=num_workers, progress=progress,
                                    stats=stats)
            sets.append(load_feature_set(table, root, extractor, where, table.attrs.get("layout", ""),
                                         stats=stats, skipped=summary.skipped))
            summaries.append(summary)
        return FeatureSet.combine(sets), summaries
