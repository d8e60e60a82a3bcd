"""Cell segmentation as plain functions on NumPy arrays.

All functions take RGB ``uint8`` arrays of shape ``(H, W, 3)`` (the output of
:func:`leukbench.images.load_image`) and never modify their input. The
colour conversions :func:`to_grayscale` and :func:`grayscale_rgb` live in
:mod:`leukbench.images` and are importable from here too.

Segmentation recipe (:func:`segment_cell`), run on a copy downscaled so that
its longest side is at most ``work_size`` pixels:

1. grayscale (ITU-R 601 luma) and box-filter downscale;
2. polarity: the background is the end of the intensity range the image border
   is closest to (black on C-NMC, light smear on PBC), the cell the other end;
3. CLAHE (:func:`skimage.exposure.equalize_adapthist`) then Otsu threshold;
4. connected components with holes filled; the component with the best
   ``area x centrality^5`` score (border-touching ones penalised) is the cell;
5. cluttered images (smears where red cells fall on the same side of the
   threshold as the white cell, so the chosen component holds less than
   60% of the foreground): a second Otsu inside the foreground isolates the
   darkly stained material, the best of its components (after a small
   closing) is the cell core, and the cell is the foreground grown from it by
   at most ~30% of its radius (pale cytoplasm, not neighbouring red cells);
6. the mask is mapped back to the original resolution (bilinear, so the
   outline is smooth) and the crop is the cell's bounding box plus ``margin``.

When no cell is found (blank or tiny image, component smaller than
``min_area_fraction`` of the image, or a component that is the whole frame),
the whole image is returned with an all-true mask and ``found=False``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from .images import as_rgb_uint8, grayscale_rgb, to_grayscale

__all__ = [
    "Segmentation",
    "crop_to_cell",
    "grayscale_rgb",
    "locate_cell",
    "CellLocation",
    "segment_cell",
    "to_grayscale",
]

#: Images whose shorter side is below this are not segmented (fallback).
MIN_SIDE = 16
#: Images whose intensity range (max - min gray level) is below this are blank.
MIN_CONTRAST = 8
#: The foreground is "clean" (one cell, C-NMC style) when the best component
#: holds at least this fraction of it, does not touch the border, and no other
#: component reaches RIVAL_FRACTION of its area.
DOMINANT_FRACTION = 0.8
RIVAL_FRACTION = 0.2
#: At most this many nested Otsu levels when looking for the stained core.
CORE_LEVELS = 3
#: Growth of a stained core into the surrounding foreground, in core radii.
GROW_RADII = 0.3
#: How strongly a component's distance from the image centre counts against it:
#: single-cell images (C-NMC, CellaVision/PBC) centre the labelled cell, and a
#: neighbouring white cell near the edge must be ~4x larger to be chosen at half
#: the way to a corner (30x at the corner). With the power 1, 2.2 % of pbc-subset
#: crops missed the centred cell for a neighbour; with 5, 1.1 %.
CENTRALITY_POWER = 5


class Segmentation(NamedTuple):
    """Result of :func:`segment_cell`.

    Attributes
    ----------
    crop : ndarray of uint8, shape (h, w, 3)
        The cell's bounding box plus margin, cut from the original image (the
        whole image when ``found`` is False).
    mask : ndarray of bool, shape (h, w)
        Cell pixels inside ``crop`` (all True when ``found`` is False).
    bbox : tuple of int
        ``(min_row, min_col, max_row, max_col)`` of ``crop`` in the original
        image, max exclusive (``image[r0:r1, c0:c1]`` is ``crop``).
    found : bool
        False when segmentation fell back to the whole image.
    """

    crop: np.ndarray
    mask: np.ndarray
    bbox: Tuple[int, int, int, int]
    found: bool


class CellLocation(NamedTuple):
    """Low-resolution result of :func:`locate_cell`.

    Attributes
    ----------
    mask : ndarray of bool, shape (h, w)
        Cell mask on the working copy (all True when not found).
    scale : tuple of float
        ``(sy, sx)``: original pixels per working pixel along rows/columns.
    found : bool
        False when no cell was found.
    """

    mask: np.ndarray
    scale: Tuple[float, float]
    found: bool


# --------------------------------------------------------------------------
# segmentation helpers
# --------------------------------------------------------------------------


def _otsu_uint8(values: np.ndarray) -> int:
    """Otsu threshold of ``uint8`` values; foreground is ``values > t``."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 127
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * levels)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    best = between.max()
    if best <= 0:
        return int(values.min())
    # the middle of the plateau of maxima, for stability
    idx = np.flatnonzero(between >= best * (1 - 1e-12))
    return int((idx[0] + idx[-1]) // 2)


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r + r  # slightly fuller than a strict disk


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components that do not touch the border.

    Same result as :func:`scipy.ndimage.binary_fill_holes` (4-connected
    background) but one labelling pass instead of iterated dilations.
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    outside[_border_labels(labels)] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[labels]


def _border_labels(labels: np.ndarray) -> np.ndarray:
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return np.unique(edge[edge > 0])


def _best_component(mask: np.ndarray, weight: Optional[np.ndarray] = None):
    """Label ``mask`` and return ``(labels, areas, best_label)`` (best 0 if empty).

    Score: size x (1 - 0.5 d / d_max) ** CENTRALITY_POWER where size is the
    area (or the sum of ``weight`` over the component), d the distance of the
    component's centroid from the image centre; halved for components that
    touch the image border.
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask)
    if n == 0:
        return labels, np.zeros(1, np.int64), 0
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    h, w = mask.shape
    rows = np.bincount(labels.ravel(), weights=np.repeat(np.arange(h), w), minlength=n + 1)
    cols = np.bincount(labels.ravel(), weights=np.tile(np.arange(w), h), minlength=n + 1)
    safe = np.maximum(areas, 1)
    cy, cx = rows / safe, cols / safe
    d = np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2)
    dmax = max(np.hypot((h - 1) / 2, (w - 1) / 2), 1e-9)
    size = areas if weight is None else np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n + 1)
    score = size * (1.0 - 0.5 * d / dmax) ** CENTRALITY_POWER
    score[_border_labels(labels)] *= 0.5
    score[0] = -1
    return labels, areas, int(np.argmax(score))


def _grow_core(core: np.ndarray, fg: np.ndarray, grow: int) -> np.ndarray:
    """``core`` plus the connected part of ``fg`` within ``grow`` pixels of it.

    Works on a window around the core, so its cost does not depend on the
    image size.
    """
    from scipy import ndimage as ndi

    h, w = core.shape
    rows = np.flatnonzero(core.any(axis=1))
    cols = np.flatnonzero(core.any(axis=0))
    r0, r1 = max(0, rows[0] - grow - 1), min(h, rows[-1] + grow + 2)
    c0, c1 = max(0, cols[0] - grow - 1), min(w, cols[-1] + grow + 2)
    win_core = core[r0:r1, c0:c1]
    zone = ndi.distance_transform_edt(~win_core) <= grow
    grown = _fill_holes((fg[r0:r1, c0:c1] & zone) | win_core)
    # an opening drops thin crescents of touching red cells; the core stays
    grown = ndi.binary_opening(grown, _disk(max(1, grow // 2))) | win_core
    labels, _ = ndi.label(grown)
    keep = np.unique(labels[win_core])
    out = np.zeros_like(core)
    out[r0:r1, c0:c1] = np.isin(labels, keep[keep > 0])
    return out


def _working_gray(image: np.ndarray, work_size: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Grayscale copy whose longest side is at most ``work_size`` (box filter)."""
    from PIL import Image

    rgb = as_rgb_uint8(image)
    h, w = rgb.shape[:2]
    gray = Image.fromarray(rgb, "RGB").convert("L")
    f = min(1.0, float(work_size) / max(h, w))
    if f < 1.0:
        nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
        gray = gray.resize((nw, nh), Image.BOX)
    else:
        nh, nw = h, w
    return np.asarray(gray), (h / nh, w / nw)


def _is_cluttered(labels: np.ndarray, areas: np.ndarray, best: int) -> bool:
    """True unless ``best`` clearly dominates the other components."""
    others = np.delete(areas, [0, best])
    return bool(
        best in _border_labels(labels)
        or areas[best] < DOMINANT_FRACTION * areas[1:].sum()
        or np.any(others >= RIVAL_FRACTION * areas[best])
    )


def _select_cell(f: np.ndarray, f_core: Optional[np.ndarray] = None):
    """Cell mask on the polarity-normalised working image ``f`` (cell bright).

    ``f_core`` (default ``f``) is the image the stained core is looked for in
    when the foreground is cluttered. Returns ``(mask or None, info)`` where
    ``info`` records the mode (``"dominant"`` or ``"core"``), the thresholds
    and the number of core levels, for debugging.
    """
    h, w = f.shape
    f_core = f if f_core is None else f_core
    info = {"mode": None}
    t1 = _otsu_uint8(f)
    info["t1"] = t1
    fg = _fill_holes(f > t1)
    labels, areas, best = _best_component(fg)
    if best == 0:
        return None, info
    if not _is_cluttered(labels, areas, best):
        info["mode"] = "dominant"
        return labels == best, info

    # cluttered (smear): the most strongly stained material is the cell core;
    # Otsu inside the current candidate pixels, repeated while the result is
    # still cluttered (red-cell rims), so a lone dark platelet is found too
    info["mode"], info["t2"] = "core", []
    rad = max(1, int(round(max(h, w) / 128)))
    cand = fg
    core = clabels = careas = None
    for _level in range(CORE_LEVELS):
        vals = f_core[cand]
        if vals.size == 0 or int(vals.max()) == int(vals.min()):
            break
        t2 = _otsu_uint8(vals)
        new = _fill_holes(_binary_closing(f_core > t2, rad))
        excess = np.clip(f_core.astype(np.float64) - t2, 0, None)
        nl, na, nb = _best_component(new, excess)
        if nb == 0:
            break
        info["t2"].append(t2)
        core, clabels, careas, cbest = new, nl, na, nb
        if not _is_cluttered(nl, na, nb):
            break
        cand = f_core > t2
    if core is None:
        return None, info
    core = clabels == cbest
    grow = max(1, int(round(GROW_RADII * np.sqrt(careas[cbest] / np.pi))))
    return _grow_core(core, fg, grow), info


def _binary_closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Closing by a disk, padded so that objects at the border are not eroded."""
    from scipy import ndimage as ndi

    if radius < 1:
        return mask
    pad = np.pad(mask, radius, mode="edge")
    out = ndi.binary_closing(pad, _disk(radius))
    return out[radius:-radius, radius:-radius]


def locate_cell(
    image: np.ndarray,
    *,
    work_size: int = 256,
    clip_limit: Optional[float] = 0.01,
    min_area_fraction: float = 0.002,
) -> CellLocation:
    """Find the cell on a downscaled working copy (see the module docstring).

    Parameters
    ----------
    image : ndarray
        RGB ``uint8`` image ``(H, W, 3)``.
    work_size : int
        Longest side of the working copy (smaller images are used as is).
    clip_limit : float or None
        CLAHE clip limit; ``None`` or ``0`` skips CLAHE.
    min_area_fraction : float
        Smallest accepted cell, as a fraction of the image area.

    Returns
    -------
    CellLocation
        Low-resolution mask, scale to the original and ``found`` flag.
    """
    g, scale = _working_gray(image, work_size)
    h, w = g.shape

    def fallback() -> CellLocation:
        return CellLocation(np.ones((h, w), bool), scale, False)

    if min(h, w) < MIN_SIDE or int(g.max()) - int(g.min()) < MIN_CONTRAST:
        return fallback()

    # polarity from the raw gray levels: is the border nearer the dark or light end?
    edge = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    lo, hi = np.percentile(g, [2, 98])
    dark_cell = float(np.median(edge)) > (lo + hi) / 2

    if clip_limit:
        from skimage.exposure import equalize_adapthist

        e = equalize_adapthist(g, clip_limit=clip_limit)
        e8 = np.clip(np.rint(e * 255), 0, 255).astype(np.uint8)
    else:
        e8 = g
    f = 255 - e8 if dark_cell else e8  # cell bright from here on

    f_raw = 255 - g if dark_cell else g
    mask, _ = _select_cell(f, f_raw)
    if mask is None:
        return fallback()
    area = int(mask.sum())
    if area < max(1.0, min_area_fraction * h * w):
        return fallback()
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    whole = rows[0] == 0 and cols[0] == 0 and rows[-1] == h - 1 and cols[-1] == w - 1
    if area >= 0.9 * h * w or whole:
        return fallback()
    return CellLocation(mask, scale, True)


def _upsample_mask(
    mask: np.ndarray, scale: Tuple[float, float], bbox: Tuple[int, int, int, int]
) -> np.ndarray:
    """Bilinear upsampling of a working-resolution mask onto ``bbox`` of the original."""
    from PIL import Image

    r0, c0, r1, c1 = bbox
    sy, sx = scale
    if sy == 1.0 and sx == 1.0:
        return mask[r0:r1, c0:c1].copy()
    im = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    box = (c0 / sx, r0 / sy, c1 / sx, r1 / sy)
    up = im.resize((c1 - c0, r1 - r0), Image.BILINEAR, box=box)
    return np.asarray(up) >= 128


def segment_cell(
    image: np.ndarray,
    *,
    margin: float = 0.1,
    clip_limit: Optional[float] = 0.01,
    min_area_fraction: float = 0.002,
    work_size: int = 256,
) -> Segmentation:
    """Segment the single cell of a microscope image and crop around it.

    Parameters
    ----------
    image : ndarray
        RGB ``uint8`` image ``(H, W, 3)``; a cell on a black background
        (C-NMC) or on a light smear background (PBC, CellaVision).
    margin : float
        Added on each side of the cell's bounding box, as a fraction of the
        box's height (rows) and width (columns); the crop is clipped to the
        image.
    clip_limit : float or None
        CLAHE clip limit (:func:`skimage.exposure.equalize_adapthist`);
        ``None`` or ``0`` thresholds the plain grayscale.
    min_area_fraction : float
        Smallest accepted cell as a fraction of the image area.
    work_size : int
        Longest side of the downscaled copy the thresholding runs on.

    Returns
    -------
    Segmentation
        ``crop``, ``mask``, ``bbox`` and ``found`` (False: whole image,
        all-true mask).

    Example
    -------
    >>> import numpy as np
    >>> image = np.zeros((100, 100, 3), np.uint8)
    >>> image[40:60, 30:70] = 200  # a bright cell on a black background
    >>> seg = segment_cell(image, margin=0)
    >>> seg.found, seg.bbox, seg.crop.shape
    (True, (40, 30, 60, 70), (20, 40, 3))
    """
    rgb = as_rgb_uint8(image)
    H, W = rgb.shape[:2]
    if H == 0 or W == 0:
        return Segmentation(rgb.copy(), np.ones((H, W), bool), (0, 0, H, W), False)
    loc = locate_cell(
        rgb, work_size=work_size, clip_limit=clip_limit, min_area_fraction=min_area_fraction
    )
    if not loc.found:
        return Segmentation(rgb.copy(), np.ones((H, W), bool), (0, 0, H, W), False)
    bbox = _cell_bbox(loc, (H, W), margin)
    r0, c0, r1, c1 = bbox
    crop = rgb[r0:r1, c0:c1].copy()
    mask = _upsample_mask(loc.mask, loc.scale, bbox)
    return Segmentation(crop, mask, bbox, True)


def _cell_bbox(
    loc: CellLocation, shape: Tuple[int, int], margin: float
) -> Tuple[int, int, int, int]:
    """Bounding box of ``loc.mask`` in original pixels, plus ``margin``, clipped."""
    H, W = shape
    sy, sx = loc.scale
    rows = np.flatnonzero(loc.mask.any(axis=1))
    cols = np.flatnonzero(loc.mask.any(axis=0))
    r0, r1 = rows[0] * sy, (rows[-1] + 1) * sy
    c0, c1 = cols[0] * sx, (cols[-1] + 1) * sx
    mr, mc = margin * (r1 - r0), margin * (c1 - c0)
    r0 = int(max(0, np.floor(r0 - mr)))
    c0 = int(max(0, np.floor(c0 - mc)))
    r1 = int(min(H, np.ceil(r1 + mr)))
    c1 = int(min(W, np.ceil(c1 + mc)))
    return r0, c0, max(r1, r0 + 1), max(c1, c0 + 1)


def crop_to_cell(image: np.ndarray, **kwargs) -> Tuple[np.ndarray, bool]:
    """Convenience wrapper: ``(crop, found)`` of :func:`segment_cell`.

    Keyword arguments are passed to :func:`segment_cell`.
    """
    seg = segment_cell(image, **kwargs)
    return seg.crop, seg.found
