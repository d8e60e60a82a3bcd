"""Handcrafted descriptors of a single cell: morphology, texture and colour.

Registered extractors
---------------------
``handcrafted``  all three groups;
``morphology``   ``morph.*``: shape of the segmented cell;
``texture``      ``glcm.<property>.d<distance>`` and ``lbp.binNN``;
``color``        ``color.<channel>.<statistic>`` in RGB and HSV.

Every image is first reduced to a **working copy** whose longest side is
:data:`WORK_SIZE` pixels (area-averaged, so texture is measured at a fixed
scale whatever the source resolution) and the cell is located on it with
:func:`leukbench.preprocessing.locate_cell` (grayscale, CLAHE, Otsu, largest
component). Texture and colour are measured over the cell mask; when no cell
is found the whole image is used and the image is counted in the extraction
summary as a segmentation fallback. Lengths are in working-copy pixels and
areas are fractions of the working-copy area, so they do not depend on the
file's resolution.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import numpy as np

from .base import Extractor, ExtractorConfig, register_extractor

__all__ = ["HandcraftedExtractor", "GROUPS", "WORK_SIZE", "morphology_features",
           "texture_features", "color_features"]

#: Longest side of the working copy, in pixels.
WORK_SIZE = 128
#: Grey levels of the GLCM.
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2, 4)
GLCM_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
LBP_POINTS, LBP_RADIUS = 8, 1

MORPH_NAMES = [
    "morph.area", "morph.perimeter", "morph.eccentricity", "morph.solidity", "morph.extent",
    "morph.major_axis", "morph.minor_axis", "morph.circularity", "morph.equivalent_diameter",
    "morph.aspect_ratio", "morph.convex_area", "morph.orientation_abs",
]
TEXTURE_NAMES = (
    [f"glcm.{p.lower()}.d{d}" for p in GLCM_PROPS for d in GLCM_DISTANCES]
    + [f"lbp.bin{i:02d}" for i in range(LBP_POINTS + 2)]
)
_COLOR_CHANNELS = ("r", "g", "b", "h", "s", "v")
_COLOR_STATS = ("mean", "std", "skew", "p10", "p50", "p90")
COLOR_NAMES = [f"color.{c}.{s}" for c in _COLOR_CHANNELS for s in _COLOR_STATS]

#: Column names of each group.
GROUPS: Dict[str, List[str]] = {
    "morphology": MORPH_NAMES,
    "texture": TEXTURE_NAMES,
    "color": COLOR_NAMES,
}


def _working_copy(image: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` image with its longest side reduced to :data:`WORK_SIZE`."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = WORK_SIZE / max(h, w)
    if scale >= 1:
        return np.ascontiguousarray(image[..., :3])
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(size, Image.BOX))


def _cell_mask(rgb: np.ndarray):
    """Cell mask of the working copy and whether a cell was found."""
    from ..preprocessing import locate_cell

    loc = locate_cell(rgb, work_size=WORK_SIZE)
    mask = loc.mask
    if mask.shape != rgb.shape[:2]:  # locate_cell never upsamples; be safe
        mask = np.ones(rgb.shape[:2], bool)
        return mask, False
    return mask, bool(loc.found)


def morphology_features(mask: np.ndarray) -> np.ndarray:
    """Shape of the largest region of ``mask`` (see :data:`MORPH_NAMES`)."""
    from skimage.measure import regionprops

    mask = np.asarray(mask, bool)
    total = float(mask.size)
    props = regionprops(mask.astype(np.uint8))
    if not props:
        return np.zeros(len(MORPH_NAMES), np.float32)
    p = props[0]
    area = float(p.area)
    perimeter = float(p.perimeter) or 1.0
    major, minor = float(p.axis_major_length), float(p.axis_minor_length)
    circularity = min(4 * math.pi * area / perimeter ** 2, 1.5)
    return np.array([
        area / total,
        perimeter,
        float(p.eccentricity),
        float(p.solidity),
        float(p.extent),
        major,
        minor,
        circularity,
        float(p.equivalent_diameter_area),
        major / minor if minor > 0 else 0.0,
        float(p.area_convex) / total,
        abs(float(p.orientation)),
    ], dtype=np.float32)


def texture_features(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GLCM properties (averaged over 4 angles) and the uniform LBP histogram.

    Parameters
    ----------
    gray : ndarray of uint8, shape (h, w)
    mask : ndarray of bool, shape (h, w)
        Pixels that count; the GLCM only pairs pixels that are both inside.
    """
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    # quantise; level 0 is reserved for "outside the mask" and dropped
    q = (gray.astype(np.uint16) * (GLCM_LEVELS - 1) // 256 + 1).astype(np.uint8)
    q[~mask] = 0
    glcm = graycomatrix(q, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS, symmetric=True)
    glcm = glcm[1:, 1:].astype(np.float64)
    sums = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = np.divide(glcm, sums, out=np.zeros_like(glcm), where=sums > 0)
    vals = []
    for prop in GLCM_PROPS:
        with np.errstate(invalid="ignore", divide="ignore"):
            v = graycoprops(glcm, prop)  # (distances, angles)
        vals.append(np.nan_to_num(v, nan=0.0).mean(axis=1))
    lbp = local_binary_pattern(gray, LBP_POINTS, LBP_RADIUS, method="uniform")
    codes = lbp[mask].astype(np.int64)
    hist = np.bincount(codes, minlength=LBP_POINTS + 2)[: LBP_POINTS + 2].astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    return np.concatenate([np.concatenate(vals), hist]).astype(np.float32)


def color_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean, std, skewness and 10/50/90th percentiles of R, G, B, H, S, V in the mask."""
    from skimage.color import rgb2hsv

    pix = rgb[mask].astype(np.float64) / 255.0
    if pix.shape[0] == 0:
        return np.zeros(len(COLOR_NAMES), np.float32)
    hsv = rgb2hsv(pix[None, :, :])[0]
    chans = np.concatenate([pix, hsv], axis=1)  # (n, 6)
    mean = chans.mean(axis=0)
    std = chans.std(axis=0)
    centred = chans - mean
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.where(std > 1e-12, (centred ** 3).mean(axis=0) / np.maximum(std, 1e-12) ** 3, 0.0)
    pcts = np.percentile(chans, [10, 50, 90], axis=0)
    out = np.stack([mean, std, skew, pcts[0], pcts[1], pcts[2]], axis=1)  # (6 channels, 6 stats)
    return out.ravel().astype(np.float32)


class HandcraftedExtractor(Extractor):
    """Handcrafted descriptors of the cell in each image.

    Parameters
    ----------
    groups : sequence of {"morphology", "texture", "color"}
        Which descriptor groups to compute, in this order.
    name : str
        Registry name (``"handcrafted"`` or the group's name).
    segment, grayscale : bool
        Recorded in the config; the work is done upstream by the extraction.
    """

    batch_size = 64

    def __init__(self, groups: Sequence[str], name: str, *, segment: bool = False,
                 grayscale: bool = False):
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise KeyError(f"unknown handcrafted group(s) {unknown}; choose from {sorted(GROUPS)}")
        self.groups = tuple(groups)
        self.config = ExtractorConfig(
            name=name,
            kind="handcrafted",
            weights="none",
            weights_id="handcrafted",
            input_size=0,
            segment=bool(segment),
            grayscale=bool(grayscale),
            options=(("glcm", f"levels={GLCM_LEVELS},d={list(GLCM_DISTANCES)}"),
                     ("groups", ",".join(self.groups)),
                     ("lbp", f"P={LBP_POINTS},R={LBP_RADIUS},uniform"),
                     ("work_size", WORK_SIZE)),
        )

    @property
    def feature_names(self) -> List[str]:
        return [n for g in self.groups for n in GROUPS[g]]

    def describe(self) -> str:
        extra = [e for e, on in (("segmented", self.config.segment),
                                 ("grayscale", self.config.grayscale)) if on]
        tail = f", {', '.join(extra)}" if extra else ""
        return (f"{self.name} ({', '.join(self.groups)}; {len(self.feature_names)} columns; "
                f"handcrafted — no learned weights{tail})")

    def features(self, image: np.ndarray) -> Dict[str, Any]:
        """Descriptors of one RGB image: ``{"features": vector, "segmentation_fallback": bool}``."""
        from ..preprocessing import to_grayscale

        rgb = _working_copy(np.asarray(image))
        mask, found = _cell_mask(rgb)
        parts = []
        for g in self.groups:
            if g == "morphology":
                parts.append(morphology_features(mask) if found
                             else np.zeros(len(MORPH_NAMES), np.float32))
            elif g == "texture":
                parts.append(texture_features(to_grayscale(rgb), mask))
            else:
                parts.append(color_features(rgb, mask))
        vec = np.concatenate(parts).astype(np.float32)
        return {"features": vec, "segmentation_fallback": not found}

    def prepare(self, image: np.ndarray) -> Dict[str, Any]:
        return self.features(image)

    def compute(self, items: Sequence[Any]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, len(self.feature_names)), np.float32)
        rows = [it["features"] if isinstance(it, dict) else it for it in items]
        return np.stack(rows).astype(np.float32, copy=False)


def _factory(name: str, groups: Sequence[str]):
    def factory(*, segment=False, grayscale=False, **ignored) -> HandcraftedExtractor:
        return HandcraftedExtractor(groups, name, segment=segment, grayscale=grayscale)

    factory.__name__ = f"create_{name}"
    factory.__doc__ = f"Create the ``{name}`` handcrafted extractor ({', '.join(groups)})."
    return factory


register_extractor("handcrafted")(_factory("handcrafted", ("morphology", "texture", "color")))
for _group in GROUPS:
    register_extractor(_group)(_factory(_group, (_group,)))
