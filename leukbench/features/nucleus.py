"""Nucleus descriptors of a single cell: the nucleus against the cytoplasm inside the cell.

Registered extractor ``nucleus`` (columns ``nucleus.<name>``), selectable alone or next to
the other handcrafted groups (``handcrafted+nucleus``).

The cell is located exactly as for the handcrafted descriptors (the working copy of
:data:`~leukbench.features.handcrafted.WORK_SIZE` pixels and
:func:`leukbench.preprocessing.locate_cell`). Inside it, the nucleus is the part stained
by the nuclear (purple) dye: a channel of colour deconvolution (:func:`skimage.color.rgb2hed`,
:data:`NUCLEUS_CHANNEL`), smoothed, above its Otsu threshold over the cell's pixels (the cell
eroded by 2 pixels, which leaves out its dark anti-aliased rim), opened, holes filled, small
specks dropped (:func:`segment_nucleus`); the rest of the cell is the cytoplasm.

Which channel: on C-NMC (Jenner-Giemsa stain, not H&E) the *haematoxylin* channel of
``rgb2hed`` does not separate nucleus from cytoplasm (mean 0.089 against 0.088 on the cell
``UID_11_11_1_all``, whose cytoplasm is obvious), while the second (in H&E the eosin) channel,
which picks the magenta part of the purple nuclear stain, does (0.035 against 0.010); see
``docs/handcrafted.md`` and its picture. Hematologists read blasts from these: a high nucleus-to-cell ratio, a round
nucleus (blasts) or a lobed one (mature neutrophils), fine or clumped chromatin, and
visible nucleoli.

Example
-------
>>> NUCLEUS_NAMES[:3]
['nucleus.area_ratio', 'nucleus.area', 'nucleus.circularity']
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .base import Extractor, ExtractorConfig, check_options
from .handcrafted import (
    GLCM_DISTANCES,
    GLCM_LEVELS,
    LBP_POINTS,
    LBP_RADIUS,
    TEXTURE_NAMES,
    WORK_SIZE,
    _cell_mask,
    _convex_area,
    _working_copy,
    texture_features,
)

__all__ = ["NUCLEUS_NAMES", "NUCLEUS_OPTIONS", "NucleusExtractor", "create_nucleus", "nucleus_features",
           "segment_nucleus"]

#: Bumped when the numbers may change for the same settings (part of the cache key).
#: 2: large images decoded downscaled, as the handcrafted set's (:data:`~leukbench.features.handcrafted.DECODE_SIDE`).
IMPLEMENTATION = 2
#: Gaussian smoothing (working-copy pixels) of the stain channel before its threshold.
NUCLEUS_SIGMA = 2.0
#: The ``rgb2hed`` channel the nucleus is thresholded on (0: haematoxylin, 1: eosin, 2: DAB).
NUCLEUS_CHANNEL = 1
#: Pixels of the cell's rim left out of the threshold (its dark anti-aliased border).
RIM = 2

_SHAPE_NAMES = [
    "area_ratio",       # nucleus area / cell area, in [0, 1] (N:C ratio = r / (1 - r))
    "area",             # nucleus area / working-copy area
    "circularity",      # 4 pi area / perimeter^2 (1 for a disc)
    "solidity",         # area / convex-hull area
    "eccentricity",     # of the ellipse with the same second moments
    "lobularity",       # perimeter / convex-hull perimeter (1 when convex, larger when lobed)
    "n_lobes",          # connected parts of the nucleus
    "offset",           # centroid distance nucleus-cell / equivalent radius of the cell
    "stain_mean",       # the nuclear stain channel in the nucleus: mean, std
    "stain_std",
    "cyto_stain_mean",  # the same channel in the cytoplasm
    "spots_count",      # nucleolus-like spots: pale blobs inside the nucleus
    "spots_area_ratio",
]
#: Column names of the ``nucleus`` extractor.
NUCLEUS_NAMES: List[str] = [f"nucleus.{n}" for n in _SHAPE_NAMES] + [f"nucleus.{n}" for n in TEXTURE_NAMES]


def stain_channel(rgb: np.ndarray) -> np.ndarray:
    """The :data:`NUCLEUS_CHANNEL` of :func:`skimage.color.rgb2hed` (float64, higher = more stain)."""
    from skimage.color import rgb2hed

    return rgb2hed(np.asarray(rgb, dtype=np.uint8))[..., NUCLEUS_CHANNEL]


def segment_nucleus(rgb: np.ndarray, cell: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Nucleus mask inside ``cell`` and the stain channel of ``rgb`` (:func:`stain_channel`).

    The stain channel, smoothed (Gaussian, :data:`NUCLEUS_SIGMA`), above its Otsu
    threshold over the cell's pixels but its rim (:data:`RIM`), opened with
    a 3x3 square, holes filled, parts under 5 % of the largest dropped; always a subset of
    ``cell``. Empty when the cell has fewer than 16 pixels or no contrast.

    Example
    -------
    >>> rgb = np.full((32, 32, 3), 230, np.uint8)
    >>> yy, xx = np.mgrid[:32, :32]
    >>> cell = (yy - 16) ** 2 + (xx - 16) ** 2 < 14 ** 2
    >>> rgb[cell] = (150, 130, 190)  # pale bluish cytoplasm
    >>> rgb[(yy - 16) ** 2 + (xx - 16) ** 2 < 8 ** 2] = (110, 40, 120)  # purple nucleus
    >>> nucleus, _ = segment_nucleus(rgb, cell)
    >>> bool((nucleus <= cell).all()), bool(0.2 < nucleus.sum() / cell.sum() < 0.5)
    (True, True)
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    cell = np.asarray(cell, bool)
    h = stain_channel(rgb)
    inner = ndimage.binary_erosion(cell, iterations=RIM)
    values = h[inner]
    if values.size < 16 or float(values.max() - values.min()) < 1e-9:
        return np.zeros_like(cell), h
    # smoothed first: the threshold separates stain regions, not chromatin grains
    smooth = ndimage.gaussian_filter(np.where(inner, h, float(values.mean())), NUCLEUS_SIGMA)
    nucleus = inner & (smooth > threshold_otsu(smooth[inner]))
    nucleus = ndimage.binary_opening(nucleus, structure=np.ones((3, 3), bool))
    nucleus = ndimage.binary_fill_holes(nucleus) & cell
    labels, n = ndimage.label(nucleus)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        nucleus = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
    return nucleus, h


def _perimeter(mask: np.ndarray) -> float:
    from skimage.measure import perimeter

    return float(perimeter(mask, neighborhood=4))


def _hull_perimeter(mask: np.ndarray) -> float:
    from skimage.morphology import convex_hull_image

    return _perimeter(convex_hull_image(mask)) if mask.sum() >= 3 else _perimeter(mask)


def _eccentricity(rr: np.ndarray, cc: np.ndarray) -> float:
    y, x = rr - rr.mean(), cc - cc.mean()
    mu_rr, mu_cc, mu_rc = (y * y).mean(), (x * x).mean(), (y * x).mean()
    half_tr, det = (mu_rr + mu_cc) / 2, mu_rr * mu_cc - mu_rc ** 2
    root = math.sqrt(max(half_tr ** 2 - det, 0.0))
    l1, l2 = half_tr + root, max(half_tr - root, 0.0)
    return math.sqrt(1 - l2 / l1) if l1 > 0 else 0.0


def _spots(h: np.ndarray, nucleus: np.ndarray) -> Tuple[float, float]:
    """Nucleolus-like spots: connected pale pixels (haematoxylin under mean - 1.5 std) of
    at least 2 pixels, inside the nucleus eroded by one pixel; their count and area ratio."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(nucleus, structure=np.ones((3, 3), bool))
    if inner.sum() < 16:
        return 0.0, 0.0
    values = h[nucleus]
    pale = inner & (h < values.mean() - 1.5 * values.std())
    labels, n = ndimage.label(pale)
    if n == 0:
        return 0.0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    big = sizes >= 2
    return float(big.sum()), float(sizes[big].sum() / nucleus.sum())


def _shape(nucleus: np.ndarray, cell: np.ndarray, h: np.ndarray) -> List[float]:
    from scipy import ndimage

    area, cell_area = float(nucleus.sum()), float(cell.sum())
    rr, cc = np.nonzero(nucleus)
    perimeter = _perimeter(nucleus) or 1.0
    crr, ccc = np.nonzero(cell)
    offset = math.hypot(rr.mean() - crr.mean(), cc.mean() - ccc.mean()) / math.sqrt(cell_area / math.pi)
    cyto = cell & ~nucleus
    return [
        area / cell_area,
        area / float(nucleus.size),
        min(4 * math.pi * area / perimeter ** 2, 1.5),
        area / max(_convex_area(nucleus), area),
        _eccentricity(rr, cc),
        perimeter / (_hull_perimeter(nucleus) or 1.0),
        float(ndimage.label(nucleus)[1]),
        offset,
        float(h[nucleus].mean()),
        float(h[nucleus].std()),
        float(h[cyto].mean()) if cyto.any() else 0.0,
        *_spots(h, nucleus),
    ]


def nucleus_features(rgb: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """:data:`NUCLEUS_NAMES` of the cell ``cell`` (a mask) of the RGB ``uint8`` image ``rgb``.

    The chromatin texture is :func:`~leukbench.features.handcrafted.texture_features` of the
    stain channel (scaled to 0-255 over the cell) inside the nucleus. All zeros when
    no nucleus is found.

    Example
    -------
    >>> rgb = np.zeros((32, 32, 3), np.uint8)
    >>> nucleus_features(rgb, np.zeros((32, 32), bool)).shape
    (41,)
    """
    cell = np.asarray(cell, bool)
    nucleus, h = segment_nucleus(rgb, cell)
    if nucleus.sum() < 4:
        return np.zeros(len(NUCLEUS_NAMES), np.float32)
    lo, hi = float(h[cell].min()), float(h[cell].max())
    h8 = np.clip((h - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
    return np.concatenate([np.array(_shape(nucleus, cell, h), np.float64),
                           texture_features(h8, nucleus)]).astype(np.float32)


class NucleusExtractor(Extractor):
    """Nucleus descriptors (:data:`NUCLEUS_NAMES`) of the cell in each image.

    Parameters
    ----------
    segment, grayscale : bool
        Recorded in the config; the work is done upstream by the extraction
        (grayscale images have no stain to separate: the columns are then of little use).
    stain_norm : {"none", "reinhard", "macenko"}
        Colour normalisation of the working copy after the cell is located.
    stain_reference : dict, optional
        The Reinhard reference (:func:`leukbench.stain.resolve_reference`); ``None`` is the fixed one.

    Example
    -------
    >>> ex = NucleusExtractor()
    >>> ex.feature_names[0], len(ex.feature_names)
    ('nucleus.area_ratio', 41)
    """

    batch_size = 64

    def __init__(self, *, segment: bool = False, grayscale: bool = False, stain_norm: str = "none",
                 stain_reference=None):
        from ..stain import stain_key

        self.stain_norm, self.stain_reference = stain_norm, stain_reference
        #: Shorter side a large image is decoded at (read by the extraction's decoder), as the handcrafted set's.
        from . import handcrafted

        self.decode_side = int(handcrafted.DECODE_SIDE)
        options = [("decode_side", self.decode_side), ("glcm", f"levels={GLCM_LEVELS},d={list(GLCM_DISTANCES)}"),
                   ("implementation", IMPLEMENTATION),
                   ("lbp", f"P={LBP_POINTS},R={LBP_RADIUS},uniform"),
                   ("nucleus", f"rgb2hed[{NUCLEUS_CHANNEL}]-gauss{NUCLEUS_SIGMA:g}-rim{RIM}-otsu"),
                   ("work_size", WORK_SIZE)]
        if stain_norm != "none":
            options.append(("stain_norm", stain_key(stain_norm, stain_reference)))
        self.config = ExtractorConfig(name="nucleus", kind="handcrafted", weights="none", weights_id="handcrafted",
                                      input_size=0, segment=bool(segment), grayscale=bool(grayscale),
                                      options=tuple(sorted(options)))

    @property
    def feature_names(self) -> List[str]:
        return list(NUCLEUS_NAMES)

    def describe(self) -> str:
        from ..stain import stain_label

        c = self.config
        extra = [e for e, on in (("segmented", c.segment), ("grayscale", c.grayscale),
                                 (stain_label(self.stain_norm, self.stain_reference), self.stain_norm != "none")) if on]
        tail = f", {', '.join(extra)}" if extra else ""
        return f"nucleus ({len(NUCLEUS_NAMES)} columns; handcrafted — no learned weights{tail})"

    def prepare(self, image: np.ndarray) -> Dict[str, Any]:
        from ..stain import normalize_stain

        rgb = _working_copy(np.asarray(image))
        cell, found = _cell_mask(rgb)
        rgb = normalize_stain(rgb, self.stain_norm, self.stain_reference)
        return {"features": nucleus_features(rgb, cell), "segmentation_fallback": not found}

    def segmentation_fallback(self, item: Any) -> bool:
        return isinstance(item, dict) and bool(item.get("segmentation_fallback"))

    def compute(self, items: Sequence[Any]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, len(NUCLEUS_NAMES)), np.float32)
        return np.stack([it["features"] if isinstance(it, dict) else it for it in items]).astype(np.float32)


#: The options of the ``nucleus`` factory.
NUCLEUS_OPTIONS = ("segment", "grayscale", "stain_norm", "stain_reference")


def create_nucleus(**options) -> NucleusExtractor:
    """Create the ``nucleus`` extractor (options: segment, grayscale, stain_norm, stain_reference)."""
    check_options("nucleus", options, NUCLEUS_OPTIONS)
    return NucleusExtractor(**options)


create_nucleus.options = NUCLEUS_OPTIONS
create_nucleus.column_groups = ("nucleus",)
