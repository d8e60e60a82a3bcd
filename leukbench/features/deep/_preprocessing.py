"""The eval transform of each backbone: resize, centre crop, normalise.

Example
-------
>>> import numpy as np
>>> from leukbench.features.deep._preprocessing import Preprocessing
>>> pre = Preprocessing(crop=(4, 4), resize=4, interpolation="bilinear",
...                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
>>> pre.resize_crop(np.zeros((8, 6, 3), np.uint8)).shape
(4, 4, 3)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Tuple

import numpy as np

from ._specs import _Spec, spec_for, timm_cfg, torchvision_weights

_PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Eval transform of a backbone: resize, centre crop, normalise.

    Mirrors ``torchvision``'s ``Resize(resize) + CenterCrop(crop)`` on PIL
    images (antialiased), followed by ``(x / 255 - mean) / std``.

    Parameters
    ----------
    crop : (int, int)
        Network input ``(height, width)``.
    resize : int or (int, int)
        An int resizes the shorter side (aspect kept, long side truncated
        like torchvision); a pair resizes to exactly ``(height, width)``.
    interpolation : str
        ``"bilinear"``, ``"bicubic"``, ...
    mean, std : tuple of float
        Per-channel normalisation on the ``[0, 1]`` scale.
    """

    crop: Tuple[int, int]
    resize: Any
    interpolation: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def resized_shape(self, h: int, w: int) -> Tuple[int, int]:
        """``(height, width)`` of an ``h x w`` image after the resize step."""
        if isinstance(self.resize, (tuple, list)):
            return int(self.resize[0]), int(self.resize[1])
        size = int(self.resize)
        if w <= h:
            return int(size * h / w), size
        return size, int(size * w / h)

    def resize_crop(self, image: np.ndarray) -> np.ndarray:
        """Resize + centre crop an RGB ``uint8`` image to ``(crop_h, crop_w, 3)``.

        Only the region that survives the crop is resampled (PIL ``box``),
        which gives the same pixels as resizing the whole image first.
        """
        from PIL import Image

        img = np.ascontiguousarray(image, dtype=np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        ch, cw = self.crop
        nh, nw = self.resized_shape(h, w)
        resample = _PIL_FILTERS[self.interpolation]
        pil = Image.fromarray(img)
        if nh < ch or nw < cw:
            return self._padded_crop(img, pil, (nh, nw), resample)
        top = int(round((nh - ch) / 2.0))
        left = int(round((nw - cw) / 2.0))
        sx, sy = w / nw, h / nh
        if (nh, nw) == (h, w):
            out = np.array(pil.crop((left, top, left + cw, top + ch)))
        else:
            box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
            out = np.array(pil.resize((cw, ch), resample, box=box))
        return np.ascontiguousarray(out)

    def _padded_crop(self, img: np.ndarray, pil, resized: Tuple[int, int], resample) -> np.ndarray:
        """Crop larger than the resized image: torchvision pads with zeros."""
        h, w = img.shape[:2]
        nh, nw = resized
        ch, cw = self.crop
        res = np.asarray(pil.resize((nw, nh), resample)) if (nh, nw) != (h, w) else img
        out = np.zeros((ch, cw, 3), np.uint8)
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        top, left = int(round((nh + ph - ch) / 2.0)), int(round((nw + pw - cw) / 2.0))
        padded = np.zeros((nh + ph, nw + pw, 3), np.uint8)
        padded[ph // 2: ph // 2 + nh, pw // 2: pw // 2 + nw] = res
        out[:] = padded[top: top + ch, left: left + cw]
        return out

    def scale_shift(self, device="cpu"):
        """``(scale, shift)`` tensors of shape (1, 3, 1, 1): ``x*scale - shift``."""
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        shift = (mean / std).view(1, 3, 1, 1)
        return scale.to(device), shift.to(device)

    def normalize(self, batch, scale_shift=None):
        """uint8 ``(N, 3, H, W)`` tensor (any layout) -> normalised float32, channels-last."""
        import torch

        scale, shift = scale_shift if scale_shift is not None else self.scale_shift(batch.device)
        x = batch.to(torch.float32).contiguous(memory_format=torch.channels_last)
        return x.mul_(scale).sub_(shift)

    def __call__(self, image: np.ndarray):
        """One RGB ``uint8`` image -> normalised float tensor ``(1, 3, H, W)``."""
        import torch

        hwc = torch.from_numpy(self.resize_crop(image))
        return self.normalize(hwc.permute(2, 0, 1).unsqueeze(0))

    def options(self) -> tuple:
        """Sorted ``(key, value)`` pairs for :class:`ExtractorConfig`."""
        resize = tuple(self.resize) if isinstance(self.resize, (tuple, list)) else int(self.resize)
        return tuple(
            sorted(
                {
                    "crop": tuple(self.crop),
                    "interpolation": self.interpolation,
                    "mean": tuple(float(m) for m in self.mean),
                    "resize": resize,
                    "std": tuple(float(s) for s in self.std),
                }.items()
            )
        )


def timm_preprocessing(cfg: Dict[str, Any]) -> Preprocessing:
    """The eval transform timm's ``create_transform`` builds from a pretrained config.

    Example
    -------
    >>> timm_preprocessing({"input_size": (3, 224, 224), "crop_pct": 0.875}).resize
    256
    """
    size = tuple(cfg.get("input_size") or (3, 224, 224))[-2:]
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    mode = cfg.get("crop_mode") or "center"
    scale = tuple(math.floor(s / crop_pct) for s in size)
    if mode == "squash":
        resize: Any = scale
    else:
        # timm keeps the aspect ratio for square inputs (shorter side), else resizes to the pair
        resize = scale[0] if scale[0] == scale[1] else scale
    interp = cfg.get("interpolation") or "bicubic"
    if interp not in _PIL_FILTERS:
        interp = "bicubic"
    mean = tuple(cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(cfg.get("std") or (0.229, 0.224, 0.225))
    return Preprocessing((int(size[0]), int(size[1])), resize, interp, mean, std)


def spec_preprocessing(spec: _Spec) -> Preprocessing:
    """The eval transform of the reference weights of ``spec``'s architecture."""
    if spec.family == "torchvision":
        t = torchvision_weights(spec).transforms()
        crop = int(t.crop_size[0])
        return Preprocessing(
            (crop, crop),
            int(t.resize_size[0]),
            t.interpolation.value,
            tuple(float(m) for m in t.mean),
            tuple(float(s) for s in t.std),
        )
    return timm_preprocessing(timm_cfg(spec.arch))


def preprocess_for(name: str, weights: str = "imagenet") -> Preprocessing:
    """Eval preprocessing of a backbone (the same for every ``weights`` choice).

    The returned object is callable: ``preprocess_for("resnet50")(image)``
    gives a normalised ``(1, 3, H, W)`` float tensor ready for the model.

    Example
    -------
    >>> preprocess_for("efficientnet_lite0").crop  # doctest: +SKIP
    (224, 224)
    """
    del weights  # preprocessing follows the architecture's reference weights
    return spec_preprocessing(spec_for(name))
