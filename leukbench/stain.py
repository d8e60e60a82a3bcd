"""Colour (stain) normalisation of RGB ``uint8`` images, as plain functions on arrays.

Smear staining varies between patients, days and centres; subject-aware folds expose it.
Two classical normalisations map an image's colours towards a fixed reference:

``reinhard``
    Reinhard et al. (2001): each CIE-Lab channel of the stained pixels is shifted and
    scaled to the reference mean and standard deviation (:data:`REINHARD_REFERENCE`).
``macenko``
    Macenko et al. (2009): the two stain vectors of the image are estimated in optical
    density (extreme angles of the plane of the two main directions), each pixel's stain
    concentrations are computed, scaled to the reference's 99th percentiles and re-coloured
    with the reference stain vectors (:data:`MACENKO_REFERENCE`).

Only *stained* pixels take part (:func:`stained_mask`): the black background of C-NMC cells
and a white smear background keep their colour. The references are fixed numbers, recorded
in the cache key of every extractor that uses them (:func:`stain_key`).

The Reinhard reference can also come from the data (``stain_reference``, :func:`resolve_reference`):
``"fixed"`` (the default, :data:`REINHARD_REFERENCE`), ``"dataset"`` (the same statistics over a
seeded subsample of the dataset's own images, :func:`dataset_reference`: label-free, but test-fold
images are among them) or the path of one image. The resolved numbers, with where they came
from, are what the cache key records.

Example
-------
>>> import numpy as np
>>> rgb = np.full((8, 8, 3), (150, 90, 160), np.uint8)
>>> normalize_stain(rgb, "none") is rgb
True
>>> normalize_stain(rgb, "reinhard").dtype
dtype('uint8')
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np

from ._validation import invalid

__all__ = ["DATASET_REFERENCE_IMAGES", "MACENKO_REFERENCE", "REINHARD_REFERENCE", "STAIN_METHODS",
           "STAIN_REFERENCES", "dataset_reference", "lab_stats", "macenko", "normalize_stain", "reinhard",
           "reinhard_reference", "resolve_reference", "stain_key", "stain_label", "stained_mask"]

#: The accepted values of ``stain_norm``.
STAIN_METHODS = ("none", "reinhard", "macenko")

#: Reinhard reference: CIE-Lab mean and standard deviation of the stained pixels
#: (L, a, b), the medians over the 159 cells of the bundled C-NMC sample, rounded (C-NMC cells
#: are dark: L about 18 of 100).
REINHARD_REFERENCE = {"mean": (18.3, 27.9, -22.8), "std": (4.0, 2.6, 3.1)}

#: The named values of ``stain_reference`` (any other value is the path of one image).
STAIN_REFERENCES = ("fixed", "dataset")

#: ``stain_reference="dataset"``: at most this many images (a seeded subsample), seed 0.
DATASET_REFERENCE_IMAGES = 256
_DATASET_REFERENCE_SEED = 0

#: Macenko reference: the two stain vectors (optical density, one per column: haematoxylin-like,
#: eosin-like) and the 99th percentiles of their concentrations; the values of Macenko's method
#: as commonly published for H&E (also torchstain's defaults).
MACENKO_REFERENCE = {
    "stains": ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581)),
    "max_concentrations": (1.9705, 1.0308),
}

_IO = 240.0  # transmitted light intensity of Macenko's optical density
_BETA = 0.15  # optical density below which a pixel counts as background
_ALPHA = 1.0  # percentile of the extreme stain angles


def stained_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that carry stain: neither near black (a C-NMC background) nor near white.

    Example
    -------
    >>> px = np.array([[[0, 0, 0], [250, 250, 250], [150, 90, 160]]], np.uint8)
    >>> stained_mask(px).tolist()
    [[False, False, True]]
    """
    rgb = np.asarray(rgb)
    return (rgb.max(axis=-1) > 25) & (rgb.min(axis=-1) < 225)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise invalid("rgb", f"must be an RGB uint8 array of shape (H, W, 3) (got {rgb.dtype} {rgb.shape})")
    return rgb


def lab_stats(rgb: np.ndarray, mask: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """CIE-Lab mean and standard deviation (3 values each) of the pixels of ``mask`` (default: all).

    Example
    -------
    >>> mean, std = lab_stats(np.full((4, 4, 3), 128, np.uint8))
    >>> round(float(mean[0]), 1), bool(abs(mean[1]) < 0.01 and std.max() < 1e-3)
    (53.6, True)
    """
    from skimage.color import rgb2lab

    lab = rgb2lab(_check_rgb(rgb)).reshape(-1, 3)
    if mask is not None:
        lab = lab[np.asarray(mask, bool).reshape(-1)]
    if len(lab) == 0:
        return np.zeros(3), np.zeros(3)
    return lab.mean(axis=0), lab.std(axis=0)


def reinhard(rgb: np.ndarray, reference=None, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Reinhard normalisation: the Lab mean/std of the pixels of ``mask`` mapped to ``reference``'s.

    ``mask`` defaults to :func:`stained_mask`; pixels outside it are left as they are.
    ``reference`` is a dict with ``"mean"`` and ``"std"`` (3 Lab values each), default
    :data:`REINHARD_REFERENCE`.

    Example
    -------
    >>> rgb = np.random.default_rng(0).integers(60, 200, (16, 16, 3)).astype(np.uint8)
    >>> out = reinhard(rgb)
    >>> mean, _ = lab_stats(out)
    >>> bool(abs(mean[0] - REINHARD_REFERENCE["mean"][0]) < 1.5)
    True
    """
    from skimage.color import lab2rgb, rgb2lab

    rgb = _check_rgb(rgb)
    reference = REINHARD_REFERENCE if reference is None else reference
    mask = stained_mask(rgb) if mask is None else np.asarray(mask, bool)
    if mask.sum() < 2:
        return rgb
    lab = rgb2lab(rgb)
    pix = lab[mask]
    mean, std = pix.mean(axis=0), pix.std(axis=0)
    ref_mean, ref_std = np.asarray(reference["mean"], float), np.asarray(reference["std"], float)
    pix = (pix - mean) * (ref_std / np.maximum(std, 1e-6)) + ref_mean
    pix[:, 0] = np.clip(pix[:, 0], 0, 100)
    lab[mask] = pix
    with warnings.catch_warnings():  # colours outside sRGB are clipped, which is what is wanted
        warnings.simplefilter("ignore", UserWarning)
        srgb = lab2rgb(lab)
    out = np.clip(np.rint(srgb * 255), 0, 255).astype(np.uint8)
    out[~mask] = rgb[~mask]
    return out


def _stain_vectors(od: np.ndarray) -> np.ndarray:
    """The two stain vectors (columns, unit length) of the optical densities ``od`` (n, 3)."""
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, 1:3]  # the two main directions
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [_ALPHA, 100 - _ALPHA])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = v1 * np.sign(v1.sum() or 1.0), v2 * np.sign(v2.sum() or 1.0)
    # haematoxylin first: the vector with the larger red optical density
    stains = np.c_[v1, v2] if v1[0] > v2[0] else np.c_[v2, v1]
    return stains / np.linalg.norm(stains, axis=0, keepdims=True)


def macenko(rgb: np.ndarray, reference=None, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Macenko normalisation of the stained pixels of ``rgb`` to ``reference`` (see the module docstring).

    ``reference`` is a dict with ``"stains"`` (3x2 optical densities) and
    ``"max_concentrations"`` (2 values), default :data:`MACENKO_REFERENCE`; ``mask``
    defaults to :func:`stained_mask`. An image with too few stained pixels is returned as it is.

    Example
    -------
    >>> rgb = np.random.default_rng(0).integers(60, 200, (16, 16, 3)).astype(np.uint8)
    >>> macenko(rgb).shape
    (16, 16, 3)
    """
    rgb = _check_rgb(rgb)
    reference = MACENKO_REFERENCE if reference is None else reference
    mask = stained_mask(rgb) if mask is None else np.asarray(mask, bool)
    od = -np.log((rgb[mask].astype(np.float64) + 1.0) / _IO)
    od = np.maximum(od, 0.0)
    keep = (od > _BETA).all(axis=1)
    if keep.sum() < 10 or od[keep].std(axis=0).max() < 1e-3:  # too few, or one colour: no stains to find
        return rgb
    stains = _stain_vectors(od[keep])
    conc, *_ = np.linalg.lstsq(stains, od.T, rcond=None)  # (2, n)
    max_c = np.percentile(conc[:, keep], 99, axis=1)
    conc *= (np.asarray(reference["max_concentrations"], float) / np.maximum(max_c, 1e-6))[:, None]
    pix = _IO * np.exp(-(np.asarray(reference["stains"], float) @ conc)).T - 1.0
    out = rgb.copy()
    out[mask] = np.clip(np.rint(pix), 0, 255).astype(np.uint8)
    return out


def _check_method(method: str) -> str:
    if method not in STAIN_METHODS:
        raise invalid("stain_norm", f"must be one of {', '.join(STAIN_METHODS)} (got {method!r})")
    return method


def normalize_stain(rgb: np.ndarray, method: str = "none", reference=None) -> np.ndarray:
    """``rgb`` normalised by ``method`` (one of :data:`STAIN_METHODS`); ``"none"`` returns it as it is.

    ``reference`` (Reinhard only) is a dict from :func:`resolve_reference`; ``None`` is
    :data:`REINHARD_REFERENCE`.

    Raises
    ------
    InvalidParameterError
        For an unknown method (named as ``stain_norm``).
    """
    if _check_method(method) == "none":
        return rgb
    return reinhard(rgb, reference) if method == "reinhard" else macenko(rgb)


def stain_key(method: str, reference=None) -> str:
    """What the cache key records of ``method``: its name and reference values.

    ``reference`` is a Reinhard reference from :func:`resolve_reference` (``None``: the
    fixed one, whose key is unchanged); its ``source`` is recorded in brackets.

    Example
    -------
    >>> stain_key("reinhard")
    'reinhard:mean=18.3,27.9,-22.8;std=4.0,2.6,3.1'
    >>> stain_key("reinhard", {"mean": (20.0, 25.0, -20.0), "std": (4.0, 3.0, 3.0), "source": "dataset"})
    'reinhard[dataset]:mean=20.0,25.0,-20.0;std=4.0,3.0,3.0'
    """
    _check_method(method)
    if reference is not None and method != "reinhard":
        raise invalid("stain_reference", f"applies to stain_norm='reinhard' only (got stain_norm={method!r})")
    if method == "reinhard":
        ref = REINHARD_REFERENCE if reference is None else reference
        source = f"[{ref['source']}]" if ref.get("source") else ""
        return (f"reinhard{source}:mean={','.join(str(v) for v in ref['mean'])};"
                f"std={','.join(str(v) for v in ref['std'])}")
    if method == "macenko":
        ref = MACENKO_REFERENCE
        stains = ",".join(str(v) for row in ref["stains"] for v in row)
        return f"macenko:stains={stains};max={','.join(str(v) for v in ref['max_concentrations'])}"
    return "none"


def stain_label(method: str, reference=None) -> str:
    """How an extractor's summary line names the normalisation.

    Example
    -------
    >>> stain_label("reinhard", {"mean": (1, 2, 3), "std": (1, 1, 1), "source": "dataset(256/1936)"})
    'reinhard stain normalisation (reference: dataset(256/1936))'
    """
    tail = f" (reference: {reference['source']})" if reference is not None and reference.get("source") else ""
    return f"{method} stain normalisation{tail}"


def reinhard_reference(images, source: str = "") -> dict:
    """A Reinhard reference from ``images`` (RGB ``uint8`` arrays), defined as the fixed one is:
    the median over the images of each one's stained-pixel Lab mean and std, rounded to 2 decimals.

    Example
    -------
    >>> ref = reinhard_reference([np.full((8, 8, 3), (150, 90, 160), np.uint8)] * 3, "demo")
    >>> ref["source"], len(ref["mean"]), ref["std"]
    ('demo', 3, (0.0, 0.0, 0.0))
    """
    stats = []
    for rgb in images:
        mask = stained_mask(_check_rgb(rgb))
        if mask.sum() >= 2:  # as reinhard(): an image with no stain is left out
            stats.append(lab_stats(rgb, mask))
    if not stats:
        raise invalid("stain_reference", "found no stained pixels in the images to take a reference from")
    mean = np.median([m for m, _ in stats], axis=0)
    std = np.median([s for _, s in stats], axis=0)
    return {"mean": tuple(round(float(v), 2) for v in mean), "std": tuple(round(float(v), 2) for v in std),
            "source": source}


def dataset_reference(paths, n_images: int = DATASET_REFERENCE_IMAGES) -> dict:
    """:func:`reinhard_reference` of a seeded subsample (at most ``n_images``) of the images ``paths``.

    Label-free: only pixels are read, but every image of the dataset (test folds too) can be in
    the subsample. The subsample does not depend on the order of ``paths`` (it is drawn from
    them sorted, seed 0); its size is recorded in the ``source`` (``dataset(256/1936)``).

    Example
    -------
    >>> from leukbench import datasets
    >>> ref = dataset_reference(datasets.discover(datasets.sample_root())["path"], 16)  # doctest: +SKIP
    >>> ref["source"]  # doctest: +SKIP
    'dataset(16/159)'
    """
    from .images import load_image

    paths = sorted(str(p) for p in paths)
    if not paths:
        raise invalid("stain_reference", "'dataset' needs images, and the dataset has none")
    take = np.random.default_rng(_DATASET_REFERENCE_SEED).permutation(len(paths))[:n_images]
    chosen = [paths[i] for i in sorted(take)]
    return reinhard_reference((load_image(p) for p in chosen), f"dataset({len(chosen)}/{len(paths)})")


def resolve_reference(stain_reference: str, stain_norm: str, paths=()) -> Optional[dict]:
    """The Reinhard reference ``stain_reference`` names: ``None`` for ``"fixed"`` (the default),
    :func:`dataset_reference` of ``paths`` for ``"dataset"``, or :func:`reinhard_reference`
    of the one image at a path.

    Raises
    ------
    InvalidParameterError
        For a value other than those (or an unreadable image), or a reference other than
        ``"fixed"`` with ``stain_norm`` other than ``"reinhard"``.

    Example
    -------
    >>> resolve_reference("fixed", "reinhard") is None
    True
    """
    from pathlib import Path

    from .exceptions import ImageReadError

    if not isinstance(stain_reference, (str, Path)) or not str(stain_reference):
        raise invalid("stain_reference",
                      f"must be 'fixed', 'dataset' or the path of an image (got {stain_reference!r})")
    _check_method(stain_norm)
    if str(stain_reference) == "fixed":
        return None
    if stain_norm != "reinhard":
        raise invalid("stain_reference", f"applies to stain_norm='reinhard' only (got stain_norm={stain_norm!r})")
    if str(stain_reference) == "dataset":
        return dataset_reference(paths)
    path = Path(stain_reference)
    if not path.is_file():
        raise invalid("stain_reference", f"must be 'fixed', 'dataset' or the path of an image file "
                                         f"({str(path)!r} is none)")
    from .images import load_image

    try:
        rgb = load_image(path)
    except ImageReadError as exc:
        raise invalid("stain_reference", f"could not read the image {path}: {exc}") from None
    return reinhard_reference([rgb], f"image {path.name}")
