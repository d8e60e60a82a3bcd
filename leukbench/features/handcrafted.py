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
:func:`leukbench.preprocessing.locate_cell` (grayscale, CLAHE except on dark
backgrounds, Otsu, best component). Texture and colour are measured over the cell mask; when no cell
is found the whole image is used and the image is counted in the extraction
summary as a segmentation fallback. Lengths are in working-copy pixels and
areas are fractions of the working-copy area, so they do not depend on the
file's resolution.

A *large* file (longer side over :data:`leukbench.images.LARGE_IMAGE_SIDE`)
is decoded downscaled to a shorter side of :data:`DECODE_SIDE` pixels before
any conversion, so that memory stays bounded whatever the file's size; the
working copy is then taken from that image (the cap is in the cache key).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..exceptions import UnknownExtractorError
from .base import Extractor, ExtractorConfig, check_options

__all__ = ["DECODE_SIDE", "HandcraftedExtractor", "GROUPS", "HANDCRAFTED_OPTIONS", "WORK_SIZE",
           "color_features", "create_color", "create_handcrafted", "create_morphology", "create_texture",
           "morphology_features", "texture_features"]

#: Longest side of the working copy, in pixels.
WORK_SIZE = 128
#: Shorter side, in pixels, at which a *large* image (longer side over
#: :data:`leukbench.images.LARGE_IMAGE_SIDE`, 4,096 px) is decoded: 16 times
#: the working copy, far above any single-cell image (C-NMC 450 px, PBC 360 x 363).
DECODE_SIDE = 2048
#: Grey levels of the GLCM.
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2, 4)
GLCM_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
LBP_POINTS, LBP_RADIUS = 8, 1
#: Bumped when the numbers may change for the same settings (part of the cache key);
#: 4: large images decoded downscaled (:data:`DECODE_SIDE`).
IMPLEMENTATION = 4

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


def _dark_background(gray: np.ndarray) -> bool:
    """True when the border is nearer the dark end of the intensity range (C-NMC)."""
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    lo, hi = np.percentile(gray, [2, 98])
    return float(np.median(edge)) <= (lo + hi) / 2


def _cell_mask(rgb: np.ndarray):
    """Cell mask of the working copy and whether a cell was found.

    :func:`leukbench.preprocessing.locate_cell` on the working copy. CLAHE,
    which costs ~5 ms whatever the image size, is skipped for a bright cell
    on a dark background (C-NMC), where it does not change the mask (mean
    IoU 0.999 on all 1,936 cnmc-subset cells, see ``docs/handcrafted.md``);
    light smear backgrounds (PBC) keep it.
    """
    from ..preprocessing import locate_cell, to_grayscale

    clip = None if _dark_background(to_grayscale(rgb)) else 0.01
    loc = locate_cell(rgb, work_size=WORK_SIZE, clip_limit=clip)
    mask = loc.mask
    if mask.shape != rgb.shape[:2]:  # locate_cell never upsamples; be safe
        return np.ones(rgb.shape[:2], bool), False
    return mask, bool(loc.found)


def _bbox(mask: np.ndarray, pad: int = 0):
    """``(r0, r1, c0, c1)`` of the true pixels of ``mask`` plus ``pad``, clipped."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, mask.shape[0], 0, mask.shape[1]
    h, w = mask.shape
    return (max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad),
            max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad))


def _convex_area(mask: np.ndarray) -> float:
    """Area of the convex hull of the pixel squares of ``mask`` (pixels)."""
    from scipy.spatial import ConvexHull, QhullError

    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return 0.0
    sub = mask[rows]
    left = np.argmax(sub, axis=1)
    right = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    # the hull of a pixel set is the hull of the outer corners of each row's extreme pixels
    ys = np.r_[rows, rows + 1, rows, rows + 1].astype(np.float64)
    xs = np.r_[left, left, right + 1, right + 1].astype(np.float64)
    try:
        return float(ConvexHull(np.c_[ys, xs]).volume)
    except (QhullError, ValueError):  # degenerate (a line of pixels)
        return float(mask.sum())


def morphology_features(mask: np.ndarray) -> np.ndarray:
    """Shape of the cell mask (see :data:`MORPH_NAMES`).

    Parameters
    ----------
    mask : ndarray of bool, shape (h, w)
        Cell pixels on the working copy.

    Returns
    -------
    ndarray of float32
        Areas (``morph.area``, ``morph.convex_area``) as fractions of the mask
        image's area, lengths in its pixels; all zeros for an empty mask.
        Axes, eccentricity and orientation are those of the ellipse with the
        same second moments (as :func:`skimage.measure.regionprops`); the
        perimeter is :func:`skimage.measure.perimeter` (4-connected); the
        convex area is the area of the convex hull of the pixel squares.
    """
    from skimage.measure import perimeter as sk_perimeter

    mask = np.asarray(mask, bool)
    total = float(mask.size)
    r0, r1, c0, c1 = _bbox(mask, pad=1)
    crop = mask[r0:r1, c0:c1]
    rr, cc = np.nonzero(crop)
    area = float(len(rr))
    if area == 0:
        return np.zeros(len(MORPH_NAMES), np.float32)
    # second central moments -> inertia ellipse (regionprops' definitions)
    y, x = rr - rr.mean(), cc - cc.mean()
    mu_rr, mu_cc, mu_rc = (y * y).mean(), (x * x).mean(), (y * x).mean()
    half_tr, det = (mu_rr + mu_cc) / 2, mu_rr * mu_cc - mu_rc ** 2
    root = math.sqrt(max(half_tr ** 2 - det, 0.0))
    l1, l2 = half_tr + root, max(half_tr - root, 0.0)
    major, minor = 4 * math.sqrt(l1), 4 * math.sqrt(l2)
    eccentricity = math.sqrt(1 - l2 / l1) if l1 > 0 else 0.0
    orientation = 0.5 * math.atan2(2 * mu_rc, mu_rr - mu_cc) if mu_rr != mu_cc else math.pi / 4
    perimeter = float(sk_perimeter(crop, neighborhood=4)) or 1.0
    convex = max(_convex_area(crop), area)
    extent = area / float((rr.max() - rr.min() + 1) * (cc.max() - cc.min() + 1))
    return np.array([
        area / total,
        perimeter,
        eccentricity,
        area / convex,
        extent,
        major,
        minor,
        min(4 * math.pi * area / perimeter ** 2, 1.5),
        math.sqrt(4 * area / math.pi),
        major / minor if minor > 0 else 0.0,
        convex / total,
        abs(orientation),
    ], dtype=np.float32)


def _glcm_props(glcm: np.ndarray) -> np.ndarray:
    """:data:`GLCM_PROPS` of normalised GLCMs ``(L, L, n_dist, n_angle)``, averaged over angles.

    Same definitions as :func:`skimage.feature.graycoprops` (correlation is
    1 where a grey level is constant), computed in one vectorised pass.
    """
    levels = glcm.shape[0]
    i = np.arange(levels, dtype=np.float64).reshape(levels, 1, 1, 1)
    j = i.reshape(1, levels, 1, 1)
    diff2 = (i - j) ** 2
    contrast = (glcm * diff2).sum(axis=(0, 1))
    dissimilarity = (glcm * np.sqrt(diff2)).sum(axis=(0, 1))
    homogeneity = (glcm / (1.0 + diff2)).sum(axis=(0, 1))
    asm = (glcm ** 2).sum(axis=(0, 1))
    mu_i, mu_j = (glcm * i).sum(axis=(0, 1)), (glcm * j).sum(axis=(0, 1))
    std_i = np.sqrt((glcm * (i - mu_i) ** 2).sum(axis=(0, 1)))
    std_j = np.sqrt((glcm * (j - mu_j) ** 2).sum(axis=(0, 1)))
    cov = (glcm * (i - mu_i) * (j - mu_j)).sum(axis=(0, 1))
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    correlation = np.where(flat, 1.0, cov / np.where(flat, 1.0, std_i * std_j))
    by_name = {"contrast": contrast, "dissimilarity": dissimilarity, "homogeneity": homogeneity,
               "energy": np.sqrt(asm), "correlation": correlation, "ASM": asm}
    return np.stack([by_name[p].mean(axis=1) for p in GLCM_PROPS])  # (props, distances)


def _uniform_lbp(gray: np.ndarray) -> np.ndarray:
    """Uniform LBP codes (0 .. P + 1), as ``skimage.feature.local_binary_pattern``.

    Reproduces scikit-image's definition exactly (neighbour offsets rounded to
    5 decimals, bilinear interpolation with 0 outside the image, a neighbour
    counts when ``>=`` the centre, transitions counted between consecutive
    neighbours without wrap-around) in vectorised NumPy, ~3x faster on small
    images than the per-pixel Cython loop.
    """
    img = np.asarray(gray, dtype=np.float64)
    h, w = img.shape
    o = LBP_RADIUS + 1
    pad = np.zeros((h + 2 * o, w + 2 * o))
    pad[o:o + h, o:o + w] = img
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None, :]

    def shifted(dy: int, dx: int) -> np.ndarray:  # img[row + dy, col + dx], 0 outside
        return pad[o + dy:o + dy + h, o + dx:o + dx + w]

    signs = []
    for p in range(LBP_POINTS):
        angle = 2 * np.pi * p / LBP_POINTS
        rp = round(-LBP_RADIUS * math.sin(angle), 5)
        cp = round(LBP_RADIUS * math.cos(angle), 5)
        # fractional parts exactly as the Cython code computes them, per row / column
        r, c = rows + rp, cols + cp
        dr, dc = r - np.floor(r), c - np.floor(c)
        y0, x0 = math.floor(rp), math.floor(cp)
        y1, x1 = math.ceil(rp), math.ceil(cp)
        top = (1 - dc) * shifted(y0, x0) + dc * shifted(y0, x1)
        bottom = (1 - dc) * shifted(y1, x0) + dc * shifted(y1, x1)
        value = (1 - dr) * top + dr * bottom
        signs.append(value - img >= 0)
    signs = np.stack(signs).astype(np.int8)
    changes = (signs[1:] != signs[:-1]).sum(axis=0)
    return np.where(changes <= 2, signs.sum(axis=0), LBP_POINTS + 1)


def texture_features(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GLCM properties (averaged over 4 angles) and the uniform LBP histogram.

    Parameters
    ----------
    gray : ndarray of uint8, shape (h, w)
    mask : ndarray of bool, shape (h, w)
        Pixels that count; the GLCM only pairs pixels that are both inside
        and the LBP histogram counts the codes of pixels inside.

    Notes
    -----
    Both are computed on the bounding box of the mask plus a margin of
    ``LBP_RADIUS + 1`` pixels, which gives the same numbers as on the whole
    image at a fraction of the cost.
    """
    from skimage.feature import graycomatrix

    mask = np.asarray(mask, bool)
    r0, r1, c0, c1 = _bbox(mask, pad=LBP_RADIUS + 1)
    gray, mask = np.asarray(gray)[r0:r1, c0:c1], mask[r0:r1, c0:c1]
    # quantise; level 0 is reserved for "outside the mask" and dropped
    q = (gray.astype(np.uint16) * (GLCM_LEVELS - 1) // 256 + 1).astype(np.uint8)
    q[~mask] = 0
    glcm = graycomatrix(q, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS, symmetric=True)
    glcm = glcm[1:, 1:].astype(np.float64)
    sums = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = np.divide(glcm, sums, out=np.zeros_like(glcm), where=sums > 0)
    props = _glcm_props(glcm)
    codes = _uniform_lbp(gray)[mask]
    hist = np.bincount(codes, minlength=LBP_POINTS + 2)[: LBP_POINTS + 2].astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    return np.concatenate([props.ravel(), hist]).astype(np.float32)


def _rgb_to_hsv(pix: np.ndarray) -> np.ndarray:
    """HSV (each 0-1, hue as :func:`skimage.color.rgb2hsv`) of ``(n, 3)`` RGB in 0-1."""
    v = pix.max(axis=1)
    c = v - pix.min(axis=1)
    s = np.divide(c, v, out=np.zeros_like(v), where=v > 0)
    r, g, b = pix[:, 0], pix[:, 1], pix[:, 2]
    safe = np.where(c > 0, c, 1.0)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(c > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=1)


def color_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean, std, skewness and 10/50/90th percentiles of R, G, B, H, S, V in the mask.

    Channels are scaled to 0-1; hue is circular but summarised linearly
    (stained cells sit in one hue range, away from the 0/1 wrap).
    """
    pix = np.asarray(rgb)[np.asarray(mask, bool)].astype(np.float64) / 255.0
    if pix.shape[0] == 0:
        return np.zeros(len(COLOR_NAMES), np.float32)
    chans = np.concatenate([pix, _rgb_to_hsv(pix)], axis=1)  # (n, 6)
    mean = chans.mean(axis=0)
    centred = chans - mean
    std = np.sqrt((centred ** 2).mean(axis=0))
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
    stain_norm : {"none", "reinhard", "macenko"}
        Colour normalisation of the working copy (:mod:`leukbench.stain`) after the
        cell is located, before texture and colour are measured; recorded in the
        config when not ``"none"``.
    stain_reference : dict, optional
        The Reinhard reference (:func:`leukbench.stain.resolve_reference`); ``None`` is the
        fixed one. Its numbers are recorded in the config.

    Example
    -------
    >>> ex = HandcraftedExtractor(["color"], "color")
    >>> ex.feature_names[:2]
    ['color.r.mean', 'color.r.std']
    """

    batch_size = 64

    def __init__(self, groups: Sequence[str], name: str, *, segment: bool = False,
                 grayscale: bool = False, stain_norm: str = "none", stain_reference=None):
        from ..stain import stain_key

        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise UnknownExtractorError(f"unknown handcrafted group(s) {unknown}; choose from {sorted(GROUPS)}")
        self.groups = tuple(groups)
        #: Shorter side a large image is decoded at (read by the extraction's decoder).
        self.decode_side = int(DECODE_SIDE)
        self.config = ExtractorConfig(
            name=name,
            kind="handcrafted",
            weights="none",
            weights_id="handcrafted",
            input_size=0,
            segment=bool(segment),
            grayscale=bool(grayscale),
            options=(("decode_side", self.decode_side),
                     ("glcm", f"levels={GLCM_LEVELS},d={list(GLCM_DISTANCES)}"),
                     ("groups", ",".join(self.groups)),
                     ("implementation", IMPLEMENTATION),
                     ("lbp", f"P={LBP_POINTS},R={LBP_RADIUS},uniform"),
                     ("work_size", WORK_SIZE))
            + ((("stain_norm", stain_key(stain_norm, stain_reference)),) if stain_norm != "none" else ()),
        )
        self.stain_norm, self.stain_reference = stain_norm, stain_reference

    @property
    def feature_names(self) -> List[str]:
        return [n for g in self.groups for n in GROUPS[g]]

    def describe(self) -> str:
        from ..stain import stain_label

        extra = [e for e, on in (("segmented", self.config.segment),
                                 ("grayscale", self.config.grayscale),
                                 (stain_label(self.stain_norm, self.stain_reference), self.stain_norm != "none")) if on]
        tail = f", {', '.join(extra)}" if extra else ""
        return (f"{self.name} ({', '.join(self.groups)}; {len(self.feature_names)} columns; "
                f"handcrafted — no learned weights{tail})")

    def features(self, image: np.ndarray) -> Dict[str, Any]:
        """Descriptors of one RGB image: ``{"features": vector, "segmentation_fallback": bool}``."""
        from ..preprocessing import to_grayscale
        from ..stain import normalize_stain

        rgb = _working_copy(np.asarray(image))
        mask, found = _cell_mask(rgb)
        rgb = normalize_stain(rgb, self.stain_norm, self.stain_reference)  # the mask is located on the original colours
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

    def segmentation_fallback(self, item: Any) -> bool:
        """True when no cell was found in the image and the whole image was measured."""
        return isinstance(item, dict) and bool(item.get("segmentation_fallback"))

    def compute(self, items: Sequence[Any]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, len(self.feature_names)), np.float32)
        rows = [it["features"] if isinstance(it, dict) else it for it in items]
        return np.stack(rows).astype(np.float32, copy=False)

    # -- columns shared with `handcrafted` -----------------------------------
    def _settings(self) -> tuple:
        c = self.config
        return c.segment, c.grayscale, tuple(kv for kv in c.options if kv[0] != "groups")

    def column_source(self, candidates: Sequence[Extractor]) -> Optional[Extractor]:
        """A handcrafted extractor among ``candidates`` whose groups include all of these.

        ``morphology``, ``texture`` and ``color`` are columns of ``handcrafted``,
        computed from one cell mask with the same settings, so asking for a
        group next to ``handcrafted`` does not segment every cell twice.
        """
        for other in candidates:
            if (other is not self and isinstance(other, HandcraftedExtractor)
                    and set(self.groups) < set(other.groups) and other._settings() == self._settings()):
                return other
        return None

    def cached_column_sources(self) -> List[Extractor]:
        """``handcrafted`` with the same settings, whose cache of an earlier run may hold these columns."""
        return [create_handcrafted(segment=self.config.segment, grayscale=self.config.grayscale,
                                   stain_norm=self.stain_norm, stain_reference=self.stain_reference)]


#: The options every handcrafted factory accepts.
HANDCRAFTED_OPTIONS = ("segment", "grayscale", "stain_norm", "stain_reference")


class _HandcraftedFactory:
    """``factory(segment=False, grayscale=False) -> HandcraftedExtractor`` of some groups."""

    options = HANDCRAFTED_OPTIONS

    def __init__(self, name: str, groups: Sequence[str]):
        self.name = name
        #: what the extractor contributes to a feature set (see ``base.column_groups``)
        self.column_groups = tuple(groups)
        self.__name__ = f"create_{name}"
        self.__doc__ = f"Create the ``{name}`` handcrafted extractor ({', '.join(groups)})."

    def __call__(self, **options) -> HandcraftedExtractor:
        check_options(self.name, options, HANDCRAFTED_OPTIONS)
        return HandcraftedExtractor(self.column_groups, self.name, **options)

    def __repr__(self) -> str:
        return f"<handcrafted feature extractor factory {self.name!r}>"


create_handcrafted = _HandcraftedFactory("handcrafted", ("morphology", "texture", "color"))
create_morphology = _HandcraftedFactory("morphology", ("morphology",))
create_texture = _HandcraftedFactory("texture", ("texture",))
create_color = _HandcraftedFactory("color", ("color",))
