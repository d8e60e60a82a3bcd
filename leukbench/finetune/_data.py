"""The images of a fine-tuning run: decoded once to ``uint8`` at the input size, the inner
validation split by subject, and the seeded augmentation of single cells.

Example
-------
>>> import numpy as np
>>> from leukbench.finetune._data import inner_split
>>> y = np.array([0] * 6 + [1] * 6)
>>> groups = np.array(list("aabbccddeeff"), dtype=object)
>>> train, val, note = inner_split(y, groups, n_folds=3, seed=0)
>>> sorted(set(groups[train]) & set(groups[val]))
[]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._validation import invalid

__all__ = ["CellInput", "decode_images", "inner_split", "images_digest", "AugmentedImages", "epoch_seed"]

#: Shorter side a large image is decoded at before segmentation (the extraction's ``SEGMENTED_DECODE_SIDE``).
_SEGMENTED_DECODE_SIDE = 2048


@dataclasses.dataclass(frozen=True)
class CellInput:
    """How an image becomes the network's ``uint8`` input, in the order the frozen features apply it:
    grayscale, segmentation (crop to the cell), the backbone's resize + centre crop (``pre``), stain
    normalisation. At their defaults it is ``pre`` alone, and :meth:`options` is ``pre.options()``.

    Example
    -------
    >>> from leukbench.finetune._network import input_preprocessing
    >>> CellInput(input_preprocessing("efficientnet_lite0", 64), segment=True).options()[-1]  # doctest: +SKIP
    ('segment', True)
    """

    pre: Any  # features.deep._preprocessing.Preprocessing
    segment: bool = False
    grayscale: bool = False
    stain_norm: str = "none"

    @property
    def crop(self):
        return self.pre.crop

    def scale_shift(self, device="cpu"):
        return self.pre.scale_shift(device)

    def options(self) -> tuple:
        """``pre.options()``, then the image options that are not at their defaults (key, manifest)."""
        extra = []
        if self.grayscale:
            extra.append(("grayscale", True))
        if self.segment:
            extra.append(("segment", True))
        if self.stain_norm != "none":
            from ..stain import stain_key

            extra.append(("stain_norm", stain_key(self.stain_norm)))
        return tuple(self.pre.options()) + tuple(extra)

    @property
    def reduce_to(self) -> int:
        """Shorter side a very large image is decoded at (as the extraction decodes it)."""
        return _SEGMENTED_DECODE_SIDE if self.segment else 2 * max(self.crop)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """An RGB ``uint8`` image -> the network's input, ``uint8 (size, size, 3)``."""
        if self.grayscale:
            from ..images import grayscale_rgb

            image = grayscale_rgb(image)
        if self.segment:
            from ..preprocessing import segment_cell

            image = segment_cell(image).crop
        image = self.pre.resize_crop(image)
        if self.stain_norm != "none":
            from ..stain import normalize_stain

            image = normalize_stain(image, self.stain_norm)
        return image


def as_cell_input(pre) -> CellInput:
    """``pre`` (a backbone's ``Preprocessing`` or a :class:`CellInput`) as a :class:`CellInput`."""
    return pre if isinstance(pre, CellInput) else CellInput(pre)


def _decode_one(item, pre) -> np.ndarray:
    from ..images import as_rgb_uint8, load_image

    cell = as_cell_input(pre)
    if isinstance(item, np.ndarray):
        img = as_rgb_uint8(item)
    else:
        img = load_image(item, reduce_to=cell.reduce_to)  # only very large images are reduced
    return cell(img)


def decode_images(images: Sequence, pre, *, num_workers: Optional[int] = None, progress: bool = False) -> np.ndarray:
    """Paths or RGB arrays -> ``uint8`` array ``(n, size, size, 3)``, resized and centre-cropped as
    the backbone's eval transform does, after the image options of ``pre`` when it is a
    :class:`CellInput` (:mod:`leukbench.images` decodes; threads do it in parallel).

    Arrays already at the input size (``(n, size, size, 3)`` ``uint8``) are taken as decoded and
    returned as they are (no option is applied to them again).
    """
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype == np.uint8 \
            and images.shape[1:] == (*pre.crop, 3):
        return images
    from tqdm.auto import tqdm

    n = len(images)
    out = np.empty((n, *pre.crop, 3), np.uint8)
    workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    bar = tqdm(total=n, desc="decode", unit="img", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        if workers <= 1:
            for i, item in enumerate(images):
                out[i] = _decode_one(item, pre)
                bar.update(1)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for i, arr in enumerate(pool.map(lambda it: _decode_one(it, pre), images)):
                    out[i] = arr
                    bar.update(1)
    finally:
        bar.close()
    return out


def images_digest(images: Sequence, ids: Optional[Sequence[str]] = None) -> str:
    """Digest of the training images: their ids (paths) when given, else their pixels."""
    h = hashlib.sha256()
    if ids is not None:
        for i in ids:
            h.update(str(i).encode())
            h.update(b"\0")
    elif isinstance(images, np.ndarray):
        h.update(repr(images.shape).encode())
        h.update(np.ascontiguousarray(images).tobytes())
    else:
        for it in images:
            if isinstance(it, np.ndarray):
                h.update(np.ascontiguousarray(it).tobytes())
            else:
                h.update(os.fspath(it).encode())
            h.update(b"\0")
    return h.hexdigest()[:20]


def inner_split(y: np.ndarray, groups: Optional[np.ndarray], *, n_folds: int, seed: int
                ) -> Tuple[np.ndarray, np.ndarray, str]:
    """Training and validation indices of the inner split, and a sentence saying how it was made.

    One fold of ``StratifiedGroupKFold(n_folds)`` over the subjects (``groups``) of the training
    images; with fewer subjects per class than folds, as many folds as the rarest class allows (at
    least 2); by image (``StratifiedKFold``) when there are no subjects, and the sentence says so.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise invalid("y", f"must hold at least 2 classes to fine-tune (got {len(classes)})")
    has_groups = groups is not None and any(g not in (None, "") for g in groups)
    if has_groups:
        g = np.array([str(v) if v not in (None, "") else f"__image{i}" for i, v in enumerate(groups)], dtype=object)
        per_class = min(len(set(g[y == c])) for c in classes)
        k = min(n_folds, per_class)
        if k >= 2:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            tr, va = next(splitter.split(np.zeros(len(y)), y, g))
            return tr, va, (f"validation: 1 of {k} StratifiedGroupKFold folds of the training subjects "
                            f"({len(set(g[va]))} subjects, {len(va)} images)")
    k = min(n_folds, int(counts.min()))
    if k < 2:
        raise invalid("y", "needs at least 2 training images of each class to set some aside for validation")
    tr, va = next(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    why = "no subject ids" if not has_groups else "too few subjects per class"
    return tr, va, f"validation: 1 of {k} StratifiedKFold folds by image ({why}; {len(va)} images)"


def epoch_seed(seed: int, epoch: int, index: int = 0) -> int:
    """A seed for (``seed``, ``epoch``, ``index``): each epoch's randomness, whatever ran before it."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()[:4], "little")


def augmentation():
    """Flips, 90-degree rotations, small rotation/zoom/shear and mild colour jitter (torchvision v2,
    on ``uint8`` CHW tensors): what a single cell on a slide may look like."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
        v2.RandomAffine(degrees=10, scale=(0.9, 1.1), shear=5),
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),  # no hue: 3x the cost of the rest
    ])


class AugmentedImages:
    """A map-style dataset over decoded ``uint8`` images: ``(CHW uint8 tensor, label)``, augmented
    with a seed per (epoch, image), so that an epoch's batches do not depend on what ran before."""

    def __init__(self, images: np.ndarray, y: np.ndarray, *, augment: bool, seed: int):
        self.images, self.y, self.augment, self.seed = images, np.asarray(y, np.int64), augment, seed
        self.epoch = 0
        self._transform = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        if self.augment:
            if self._transform is None:
                self._transform = augmentation()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(epoch_seed(self.seed, self.epoch, int(i)))
                x = self._transform(x)
        return x.contiguous(), int(self.y[i])
