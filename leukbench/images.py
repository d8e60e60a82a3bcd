"""Images as leukbench handles them: RGB ``uint8`` arrays, read from disk, turned gray, fingerprinted.

:func:`load_image` reads any file PIL opens (and :func:`as_rgb_uint8` converts
an array the same way); :func:`to_grayscale` and :func:`grayscale_rgb` give
ITU-R 601 luma.

Two fingerprints are taken of every decoded image during extraction (the
leakage audit, :mod:`leukbench.audit`, compares them):

* :func:`pixel_hash` — a digest of the pixels and the shape: equal for the
  same image saved twice, under another name or in another lossless format;
* :func:`difference_hash` — a 256-bit perceptual hash (dHash) that moves by a
  few bits under re-compression, small brightness changes or resizing.

Example
-------
>>> import numpy as np
>>> image = np.zeros((8, 8, 3), np.uint8)
>>> pixel_hash(image) == pixel_hash(image.copy()), len(difference_hash(image))
(True, 64)
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from .exceptions import ImageReadError, InvalidParameterError

#: File extensions treated as images during discovery (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}
)


#: Bit depths of microscope cameras: a high-bit-depth image is scaled to 8 bits
#: by the range of the smallest of these that holds its maximum.
CAMERA_BIT_DEPTHS = (8, 10, 12, 14, 16)

#: An image whose longer side exceeds this many pixels is *large*: when the
#: caller says how much it needs (``load_image(path, reduce_to=...)``), it is
#: downscaled while it is decoded, before any conversion. No image at or under
#: it is ever resampled, so results for normal images do not depend on it.
LARGE_IMAGE_SIDE = 4096

#: Serialises opening files, the only step that can warn of a decompression
#: bomb, so that the warning is caught and re-issued with the file's path.
_OPEN_LOCK = threading.Lock()

__all__ = ["CAMERA_BIT_DEPTHS", "IMAGE_EXTENSIONS", "LARGE_IMAGE_SIDE", "ImageReadError", "as_rgb_uint8",
           "difference_hash", "grayscale_rgb", "is_image_file", "load_image", "pixel_hash", "to_grayscale"]


def is_image_file(name: str) -> bool:
    """True for a non-hidden file name with a known image extension."""
    if name.startswith("."):
        return False
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        # 10-, 12-, 14- or 16-bit microscopy: scale by the range of the camera's
        # bit depth, not by the image's maximum, so that one raw value gives one
        # 8-bit value across the images of one camera. The depth is inferred as
        # the smallest of 8, 10, 12, 14 and 16 bits that holds the maximum (the
        # files do not say: a 12-bit camera writes 16-bit TIFFs and PNGs).
        hi = float(arr.max()) if arr.size else 0.0
        top = next((2.0**b - 1 for b in CAMERA_BIT_DEPTHS if hi <= 2.0**b - 1), None)
        if top is None:  # wider than 16 bits: the smallest 2**k - 1 that holds it
            top = 2.0 ** math.ceil(math.log2(hi + 1)) - 1
        return np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    arr = arr.astype(np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if hi <= 1.0 and lo >= 0.0:
        return (np.nan_to_num(arr) * 255).round().astype(np.uint8)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((np.nan_to_num(arr) - lo) * scale).round().astype(np.uint8)


def load_image(path, *, reduce_to: Optional[int] = None) -> np.ndarray:
    """Load any image PIL can open as an RGB ``uint8`` array ``(H, W, 3)``.

    Handles BMP, JPEG, PNG, TIFF (8 and 16 bit), grayscale, RGBA (composited
    on black, the C-NMC background), palette images and EXIF orientation.
    TIFFs PIL cannot decode (RGB float32, say) are read with :mod:`tifffile`
    when it is installed (it comes with scikit-image) and scaled as
    :func:`as_rgb_uint8` scales arrays.

    Parameters
    ----------
    path : str or Path
        The image file.
    reduce_to : int, optional
        Shorter side, in pixels, the caller needs. Only a *large* image (longer
        side over :data:`LARGE_IMAGE_SIDE`) is downscaled to it while it is
        decoded (JPEG DCT scaling, then PIL's ``reduce`` and a Lanczos resize;
        never upscaled), so that memory stays bounded whatever the file's
        size. ``None`` (the default) decodes every image at its own size.

    Raises
    ------
    ImageReadError
        When the file is missing, empty, a symbolic-link loop, truncated or
        not an image; its ``kind`` says which.

    Warns
    -----
    PIL.Image.DecompressionBombWarning
        PIL's warning for an image over ``PIL.Image.MAX_IMAGE_PIXELS``, re-issued
        with the file's path in front.

    Example
    -------
    >>> import tempfile
    >>> empty = tempfile.NamedTemporaryFile(suffix=".png")
    >>> try:
    ...     load_image(empty.name)
    ... except ImageReadError as exc:
    ...     exc.kind
    'empty file'
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    bomb = Image.DecompressionBombError
    try:
        with _open_image(path) as im:
            return _pil_to_rgb(im, path, reduce_to)
    except UnidentifiedImageError as exc:
        if path.suffix.lower() in (".tif", ".tiff") and _file_size(path) != 0:
            return _read_tiff(path, exc)
        raise _read_error(path, exc) from None
    except (OSError, ValueError, SyntaxError, bomb) as exc:
        raise _read_error(path, exc) from None


def _open_image(path: Path):
    """``PIL.Image.open(path)``, with PIL's decompression-bomb warning re-issued naming ``path``.

    Other warnings caught meanwhile are re-issued unchanged; the user's filters
    apply to the re-issued ones as they applied to PIL's.
    """
    from PIL import Image

    with _OPEN_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        im = Image.open(path)
    try:
        for w in caught:
            if issubclass(w.category, Image.DecompressionBombWarning):
                warnings.warn(f"{path}: {w.message}", w.category, stacklevel=3)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    except BaseException:
        im.close()
        raise
    return im


#: EXIF orientation -> the PIL transposition that undoes it (as ImageOps.exif_transpose).
_ORIENTATIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                 6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _reduced(im, short_side: int):
    """A large open PIL image decoded downscaled so that its shorter side is ``short_side``.

    JPEG is decoded at a reduced DCT scale (``draft``); other formats are decoded
    at full size in PIL's own ``uint8`` buffer and box-reduced (``reducing_gap``)
    before the final Lanczos step, so no float copy of the full image is made.
    The EXIF orientation is applied to the small image.
    """
    from PIL import Image

    w, h = im.size
    scale = short_side / min(w, h)
    if scale >= 1.0:
        return _transposed(im)
    orientation = im.getexif().get(0x0112)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
        im.draft(im.mode, size)
    im.load()
    if im.mode.startswith("I;16") or im.mode == "1":
        im = im.convert("I" if im.mode != "1" else "L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    elif im.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):
        im = im.convert("RGB")
    small = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    method = _ORIENTATIONS.get(orientation)
    return small.transpose(getattr(Image.Transpose, method)) if method else small


def _transposed(im):
    from PIL import ImageOps

    return ImageOps.exif_transpose(im)


def _pil_to_rgb(im, path: Path, reduce_to: Optional[int] = None) -> np.ndarray:
    """An open PIL image as a checked RGB ``uint8`` array (downscaled first when large)."""
    from PIL import Image

    if reduce_to is not None and max(im.size) > LARGE_IMAGE_SIDE:
        im = _reduced(im, int(reduce_to))
    else:
        im = _transposed(im)
    im.load()
    mode = im.mode
    if mode in ("RGB",):
        arr = np.asarray(im)
    elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = _to_uint8(np.asarray(im))
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif mode in ("L", "1"):
        arr = np.asarray(im.convert("L"))
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        arr = np.asarray(Image.alpha_composite(black, rgba).convert("RGB"))
    else:  # P, CMYK, YCbCr, LAB, HSV, I;16 variants PIL converts itself
        arr = np.asarray(im.convert("RGB"))
    return _checked_rgb(arr, path)


def _checked_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: unexpected image shape {arr.shape}; expected an RGB image",
                             "unexpected image shape")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _file_size(path: Path) -> int:
    """Size of ``path`` in bytes; -1 when it cannot be stat'ed."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _read_tiff(path: Path, pil_error: Exception) -> np.ndarray:
    """A TIFF PIL cannot decode (float32 RGB, ...), read with tifffile and scaled to ``uint8``."""
    try:
        import tifffile
    except ImportError:
        raise ImageReadError(
            f"{path}: a TIFF PIL cannot decode (float or other sample format); install tifffile "
            "(pip install tifffile) to read it, or re-export it as an 8- or 16-bit TIFF/PNG",
            "TIFF needs tifffile",
        ) from None
    try:
        arr = np.squeeze(tifffile.imread(str(path), key=0))
    except Exception:  # noqa: BLE001 - tifffile cannot read it either: PIL's reason stands
        raise _read_error(path, pil_error) from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (separate) samples
    if arr.size == 0:
        raise _read_error(path, pil_error) from None
    try:
        return _checked_rgb(as_rgb_uint8(arr), path)
    except (InvalidParameterError, ValueError):
        raise ImageReadError(f"{path}: unexpected image shape {arr.shape}; expected an RGB image",
                             "unexpected image shape") from None


def _read_error(path: Path, exc: Exception) -> ImageReadError:
    """The :class:`ImageReadError` for an exception raised while PIL read ``path``."""
    import errno

    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, FileNotFoundError):
        return ImageReadError(f"{path}: file not found", "file not found")
    if isinstance(exc, PermissionError):
        return ImageReadError(f"{path}: permission denied; make the file readable (chmod a+r)",
                              "permission denied")
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return ImageReadError(f"{path}: a symbolic-link loop (the link leads back to itself); "
                              "point it at an image file or remove it", "symbolic link loop")
    if isinstance(exc, UnidentifiedImageError):
        if _file_size(path) == 0:
            return ImageReadError(f"{path}: empty file (0 bytes); copy the image again or remove it "
                                  "from the dataset", "empty file")
        return ImageReadError(f"{path}: not a recognised image format (PIL cannot identify it); "
                              "re-export it as PNG/BMP/JPEG or remove it from the dataset",
                              "not a recognised image format")
    if isinstance(exc, Image.DecompressionBombError):
        return ImageReadError(
            f"{path}: {exc.args[0] if exc.args else exc} — larger than PIL's limit for one image; "
            "downscale the file, or raise PIL.Image.MAX_IMAGE_PIXELS in Python if it is genuine",
            "image too large for PIL")
    return ImageReadError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc}); "
                          "re-export it as PNG/BMP/JPEG or remove it from the dataset",
                          "truncated or damaged image file")


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An image array as RGB ``uint8`` ``(H, W, 3)``, converted as :func:`load_image` converts files.

    Gray (2-D or one channel) is replicated, alpha dropped, other dtypes scaled.

    Raises
    ------
    InvalidParameterError
        For an array that is not an image of 1, 3 or 4 channels.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidParameterError(f"expected an RGB image of shape (H, W, 3), got {arr.shape}")
    return np.ascontiguousarray(arr)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an RGB image, as ``uint8`` of shape ``(H, W)``.

    ``L = (19595 R + 38470 G + 7471 B + 32768) >> 16`` (PIL's ``"L"``
    conversion); gray images (2-D, or three equal channels) come back
    unchanged.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` RGB (RGBA and 2-D gray accepted); non-``uint8`` data is
        scaled as :func:`leukbench.images.load_image` does.

    Example
    -------
    >>> to_grayscale(np.full((1, 2, 3), (255, 0, 0), np.uint8)).tolist()
    [[76, 76]]
    """
    arr = np.asarray(image)
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return arr.copy()
    rgb = as_rgb_uint8(arr)
    if rgb.size == 0:
        return np.zeros(rgb.shape[:2], np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))


def grayscale_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale replicated to three channels, ``uint8`` of shape ``(H, W, 3)``.

    Idempotent: applying it to its own output changes nothing.
    """
    g = to_grayscale(image)
    return np.repeat(g[..., None], 3, axis=2)


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
