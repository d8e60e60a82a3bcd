"""Reading microscope images from disk as RGB ``uint8`` arrays."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .exceptions import ImageReadError

#: File extensions treated as images during discovery (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}
)


#: Bit depths of microscope cameras: a high-bit-depth image is scaled to 8 bits
#: by the range of the smallest of these that holds its maximum.
CAMERA_BIT_DEPTHS = (8, 10, 12, 14, 16)




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


def load_image(path) -> np.ndarray:
    """Load any image PIL can open as an RGB ``uint8`` array ``(H, W, 3)``.

    Handles BMP, JPEG, PNG, TIFF (8 and 16 bit), grayscale, RGBA (composited
    on black, the C-NMC background), palette images and EXIF orientation.

    Raises
    ------
    ImageReadError
        When the file is missing, truncated or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
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
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found", "file not found") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied; make the file readable (chmod a+r)",
                             "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a recognised image format (PIL cannot identify it); "
            "re-export it as PNG/BMP/JPEG or remove it from the dataset",
            "not a recognised image format",
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{path}: {exc.args[0] if exc.args else exc} — larger than PIL's limit for one image; "
            "downscale the file, or raise PIL.Image.MAX_IMAGE_PIXELS in Python if it is genuine",
            "image too large for PIL",
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(
            f"{path}: cannot decode image ({exc.__class__.__name__}: {exc}); "
            "re-export it as PNG/BMP/JPEG or remove it from the dataset",
            "truncated or damaged image file",
        ) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: unexpected image shape {arr.shape}; expected an RGB image",
                             "unexpected image shape")
    return np.ascontiguousarray(arr, dtype=np.uint8)
