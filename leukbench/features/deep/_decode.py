"""Where a deep backbone's JPEGs are decoded: PIL in the workers, or torchvision on the device.

``decode="cpu"``
    The PIL path: every image is decoded, resized and centre-cropped by
    :class:`~leukbench.features.deep._preprocessing.Preprocessing` in the
    decoding workers (the features leukbench always computed).
``decode="gpu"``
    The workers send a JPEG's **bytes**; batches of them are decoded by
    ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA,
    torchvision's libjpeg-turbo decoder on the CPU), then resized (antialiased,
    the backbone's filter), rounded to ``uint8`` and centre-cropped as tensors
    on the device, with the same geometry as the PIL path. Other files (PNG,
    BMP, TIFF ...) are decoded by PIL in the workers and join the same batches
    as ``uint8`` pixels, resized on the device too.
``decode="auto"``
    ``"gpu"`` when the device is CUDA (and nvJPEG works there, and no option
    needs PIL on the image), ``"cpu"`` otherwise.

The fingerprints of the leakage audit stay on the CPU path whatever the
decoder: the workers still decode every image with PIL to take them
(docs/audit.md). Importing this module does not import torch.

Example
-------
>>> resolve_decode("auto", "cpu", segment=False, stain_norm="none", interpolation="bicubic")
'cpu'
>>> resolve_decode("gpu", "cpu", segment=False, stain_norm="none", interpolation="bicubic")
'gpu'
>>> decode_key("cuda:0"), decode_key("cpu")
('gpu:nvjpeg', 'gpu:torchvision-cpu')
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..._validation import invalid

#: Accepted values of ``decode``.
DECODERS = ("auto", "cpu", "gpu")
#: File name endings decoded by torchvision under ``decode="gpu"``.
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
#: PIL filter name -> ``torch.nn.functional.interpolate`` mode (the filters torch has).
TORCH_FILTERS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}
#: What a skipped image's ``kind`` says when the device decoder refused it.
DEVICE_DECODE_FAILED = "device JPEG decoder failed"


class Encoded(NamedTuple):
    """An image as a worker hands it over under ``decode="gpu"``.

    ``kind`` is ``"jpeg"`` (``data``: the file's bytes, 1-D ``uint8``) or
    ``"pixels"`` (``data``: the PIL-decoded RGB ``uint8`` image, grayscale
    already applied); ``shape`` is ``(height, width)`` of PIL's decoding.
    """

    kind: str
    data: np.ndarray
    shape: Tuple[int, int]
    path: str


def check_decode(decode: str) -> str:
    """``decode`` when it is one of :data:`DECODERS` (lower case)."""
    d = str(decode or "auto").strip().lower()
    if d not in DECODERS:
        raise invalid("decode", f"must be one of {', '.join(DECODERS)} (got {decode!r})")
    return d


def _blockers(segment: bool, stain_norm: str, interpolation: str) -> List[str]:
    """The options that need PIL/NumPy on the decoded image (``decode="gpu"`` cannot honour them)."""
    out = []
    if segment:
        out.append("segment=True (the cell is segmented on the decoded image)")
    if stain_norm != "none":
        out.append(f"stain_norm={stain_norm!r} (normalised on the decoded image)")
    if interpolation not in TORCH_FILTERS:
        out.append(f"the backbone's {interpolation!r} resize filter (torch has {', '.join(TORCH_FILTERS)})")
    return out


def resolve_decode(decode: str, device: str, *, segment: bool, stain_norm: str, interpolation: str) -> str:
    """``"cpu"`` or ``"gpu"``: the decoder a run on a resolved ``device`` uses.

    Raises
    ------
    InvalidParameterError
        For an unknown name; ``"gpu"`` with an option it cannot honour
        (segmentation, stain normalisation, a resize filter torch lacks), or
        without torchvision's decoder on that device.
    """
    d = check_decode(decode)
    if d == "cpu":
        return d
    blockers = _blockers(segment, stain_norm, interpolation)
    if d == "auto":
        cuda = device.startswith("cuda")
        return "gpu" if cuda and not blockers and device_decode_error(device) is None else "cpu"
    if blockers:
        raise invalid("decode", f"'gpu' cannot be combined with {blockers[0]}; use decode='cpu' (--decode cpu) "
                                "or drop that option")
    problem = device_decode_error(device)
    if problem:
        raise invalid("decode", f"'gpu' is not available on {device}: {problem}; use decode='cpu' (--decode cpu)")
    return d


def decode_key(device: str) -> str:
    """The cache-key value of ``decode="gpu"`` on ``device``: which decoder made the pixels."""
    return "gpu:nvjpeg" if device.startswith("cuda") else "gpu:torchvision-cpu"


def decode_label(device: str) -> str:
    """How :meth:`DeepExtractor.describe` names the decoder of ``decode="gpu"``."""
    return "JPEGs decoded by nvJPEG on CUDA" if device.startswith("cuda") else "JPEGs decoded by torchvision"


@contextlib.contextmanager
def _quiet():
    """torchvision >= 0.29 warns at every call that its image decoders are deprecated (for torchcodec)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


@functools.lru_cache(maxsize=None)
def device_decode_error(device: str) -> Optional[str]:
    """``None`` when torchvision decodes a JPEG on ``device`` (a tiny probe); else why not."""
    try:
        import torch
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        return f"torchvision's image decoder cannot be imported ({exc})"
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 60)).save(buf, format="JPEG")
    where = device if device.startswith("cuda") else "cpu"
    try:
        with _quiet():
            out = decode_jpeg([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)],
                              mode=ImageReadMode.RGB, device=where)
    except (RuntimeError, ValueError, TypeError) as exc:
        return f"torchvision {torchvision.__version__} cannot decode JPEGs there ({_reason(exc)})"
    if tuple(out[0].shape) != (3, 8, 8):
        return f"torchvision's decoder gave a {tuple(out[0].shape)} image for an 8x8 JPEG"
    return None


def encode_item(path: str, image: np.ndarray, large_side: int) -> Encoded:
    """In a worker: a plain JPEG as its bytes; anything else as the PIL-decoded ``image``.

    A JPEG goes to the device only when torchvision decodes it as PIL does:
    no EXIF rotation (nvJPEG ignores it), RGB or gray, not larger than
    ``large_side`` (those are downscaled while decoded, by PIL).
    """
    from PIL import Image

    shape = (int(image.shape[0]), int(image.shape[1]))
    if os.path.splitext(str(path))[1].lower() in JPEG_SUFFIXES:
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            with Image.open(io.BytesIO(data)) as im:
                plain = (im.format == "JPEG" and im.mode in ("RGB", "L") and max(im.size) <= large_side
                         and im.getexif().get(0x0112, 1) == 1 and (im.size[1], im.size[0]) == shape)
        except Exception:  # noqa: BLE001 - PIL read it a moment ago; anything odd goes as pixels
            plain = False
        if plain:
            return Encoded("jpeg", np.frombuffer(data, dtype=np.uint8), shape, str(path))
    return Encoded("pixels", np.ascontiguousarray(image, dtype=np.uint8), shape, str(path))


class DeviceDecoder:
    """Decode :class:`Encoded` items on a device and resize + crop them as the PIL path does.

    Parameters
    ----------
    preprocessing : Preprocessing
        The backbone's eval transform (resize, crop, filter).
    device : str
        A resolved device; JPEGs are decoded there on CUDA, on the CPU otherwise.
    grayscale : bool
        Turn decoded JPEGs to ITU-R 601 luma (PIL's integer formula) first;
        ``"pixels"`` items were turned gray by the worker.
    """

    def __init__(self, preprocessing, device: str, grayscale: bool = False):
        self.pre, self.device, self.grayscale = preprocessing, device, bool(grayscale)
        self.cuda = device.startswith("cuda")

    def __call__(self, items: Sequence[Any]) -> Tuple[List[Any], Dict[int, Tuple[str, str]]]:
        """``(uint8 (3, H, W) tensors on the device, {position: (kind, reason)})``; ``None`` where it failed."""
        import torch

        out: List[Any] = [None] * len(items)
        errors: Dict[int, Tuple[str, str]] = {}
        full: Dict[int, Any] = {}
        jpegs = [k for k, it in enumerate(items) if isinstance(it, Encoded) and it.kind == "jpeg"]
        full.update(self._decode_jpegs([items[k] for k in jpegs], jpegs, errors))
        for k, it in enumerate(items):
            if isinstance(it, Encoded) and it.kind == "pixels":
                pixels = np.require(it.data, dtype=np.uint8, requirements=("C", "W"))
                full[k] = self._upload(torch.from_numpy(pixels).permute(2, 0, 1))
            elif not isinstance(it, Encoded):  # already decoded (a tensor or a prepared array)
                out[k] = it
        for k, img in self._resized(full).items():
            out[k] = img
        return out, errors

    def _upload(self, chw):
        if self.cuda:
            return chw.contiguous().pin_memory().to(self.device, non_blocking=True)
        return chw if self.device == "cpu" else chw.to(self.device)

    def _decode_jpegs(self, items: Sequence[Encoded], where: Sequence[int], errors) -> Dict[int, Any]:
        """Decode a batch at once; when the batch fails, one by one (only the bad ones are lost)."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        if not items:
            return {}
        target = self.device if self.cuda else "cpu"
        raw = [torch.from_numpy(np.array(it.data, dtype=np.uint8, copy=True)) for it in items]
        with _quiet():
            try:
                decoded = list(decode_jpeg(raw, mode=ImageReadMode.RGB, device=target))
            except RuntimeError:
                decoded = []
                for r, it, k in zip(raw, items, where):
                    try:
                        decoded.append(decode_jpeg(r, mode=ImageReadMode.RGB, device=target))
                    except RuntimeError as exc:
                        decoded.append(None)
                        errors[k] = (DEVICE_DECODE_FAILED, f"{it.path}: torchvision could not decode it on "
                                                           f"{target} ({_reason(exc)}); "
                                                           "use --decode cpu, or re-export the file")
        out = {}
        for img, it, k in zip(decoded, items, where):
            if img is None:
                continue
            if tuple(img.shape[-2:]) != tuple(it.shape):
                errors[k] = (DEVICE_DECODE_FAILED, f"{it.path}: torchvision decoded it as {tuple(img.shape[-2:])}, "
                                                   f"PIL as {tuple(it.shape)}; use --decode cpu")
                continue
            if not self.cuda and self.device != "cpu":
                img = img.to(self.device)
            out[k] = luma(img) if self.grayscale else img
        return out

    def _resized(self, full: Dict[int, Any]) -> Dict[int, Any]:
        """Resize + centre crop each ``uint8 (3, h, w)`` image, a batch per image size."""
        by_size: Dict[tuple, List[int]] = {}
        for k, img in full.items():
            by_size.setdefault(tuple(img.shape[-2:]), []).append(k)
        out = {}
        for (h, w), ks in by_size.items():
            batch = resize_crop_batch([full[k] for k in ks], self.pre, h, w)
            out.update(zip(ks, batch.unbind(0)))
        return out


def decoded_or_raise(result) -> List[Any]:
    """The items of :class:`DeviceDecoder`'s ``(items, errors)``, or the first error as
    :class:`~leukbench.exceptions.ImageReadError` (``compute`` called without ``decode_items``)."""
    from ...exceptions import ImageReadError

    items, errors = result
    if errors:
        kind, reason = next(iter(errors.values()))
        raise ImageReadError(reason, kind)
    return items


def _reason(exc: Exception) -> str:
    """torchvision's message without its source location (``decode_jpeg, .../decode_jpeg.cpp:171, why``)."""
    text = (str(exc).splitlines() or [exc.__class__.__name__])[0]
    return text.rsplit(", ", 1)[-1] if ".cpp:" in text else text


def luma(chw):
    """ITU-R 601 luma of a ``uint8 (3, H, W)`` tensor, replicated to 3 channels (PIL's ``"L"``)."""
    import torch

    x = chw.to(torch.int32)
    y = (19595 * x[0] + 38470 * x[1] + 7471 * x[2] + 32768) >> 16
    return y.to(torch.uint8).unsqueeze(0).expand(3, -1, -1).contiguous()


def resize_crop_batch(images: Sequence[Any], pre, h: int, w: int):
    """``uint8 (N, 3, crop_h, crop_w)``: images of one size ``h x w`` resized and cropped as
    :meth:`Preprocessing.resize_crop` does (antialiased filter, rounded to ``uint8``, zero padding)."""
    import torch
    import torch.nn.functional as F

    x = torch.stack(list(images))
    ch, cw = pre.crop
    nh, nw = pre.resized_shape(h, w)
    if (nh, nw) != (h, w):
        mode = TORCH_FILTERS[pre.interpolation]
        extra = {} if mode == "nearest-exact" else {"antialias": True, "align_corners": False}
        x = F.interpolate(x.to(torch.float32), size=(nh, nw), mode=mode, **extra)
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    if nh < ch or nw < cw:  # torchvision's CenterCrop pads with zeros
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        nh, nw = nh + ph, nw + pw
    top, left = int(round((nh - ch) / 2.0)), int(round((nw - cw) / 2.0))
    return x[:, :, top:top + ch, left:left + cw]
