"""The settings of one fine-tuning run: :class:`FineTuneConfig`, checked in one place.

Example
-------
>>> from leukbench.finetune import FineTuneConfig
>>> FineTuneConfig(epochs=2, size=64).epochs
2
>>> FineTuneConfig(epochs=0)
Traceback (most recent call last):
...
leukbench.exceptions.InvalidParameterError: epochs must be an integer of at least 1 (got 0)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from .._validation import Interval, Options, validate_params

__all__ = ["FineTuneConfig", "IMAGE_OPTIONS", "PRECISIONS", "without_default_image_options"]

#: Arithmetic of training: ``auto`` is float16 autocast (with loss scaling) on CUDA, float32 elsewhere.
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
#: The image pre-processing options (the frozen features' ``segment``, ``grayscale``, ``stain_norm``) and
#: their defaults: recorded (key, run.json, bundles) only when not at them.
IMAGE_OPTIONS = {"segment": False, "grayscale": False, "stain_norm": "none"}


def without_default_image_options(params: Dict[str, Any]) -> Dict[str, Any]:
    """``params`` less the :data:`IMAGE_OPTIONS` that are at their defaults.

    Example
    -------
    >>> without_default_image_options({"epochs": 2, "segment": False, "grayscale": True})
    {'epochs': 2, 'grayscale': True}
    """
    return {k: v for k, v in params.items() if not (k in IMAGE_OPTIONS and v == IMAGE_OPTIONS[k])}


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """How a backbone is fine-tuned (every field is part of the checkpoint key, bar ``device``,
    ``num_workers`` and ``progress``, which change where and how visibly it runs, not what it learns).

    Parameters
    ----------
    epochs : int
        Most epochs to train (default 15).
    patience : int
        Stop after this many epochs without a better validation balanced accuracy (default 4).
    size : int, optional
        Square input size in pixels; ``None``: the backbone's own input size (224 for Lite0).
    lr, weight_decay : float
        AdamW learning rate and weight decay.
    warmup_epochs : float
        Linear warm-up of the learning rate, then cosine decay to zero over the remaining epochs.
    batch_size : int
        Images per optimisation step.
    dropout : float
        Dropout before the new linear head.
    freeze : int
        Leading stages of the backbone kept frozen (0: train everything).
    augment : bool
        Flips, 90-degree rotations, small affine and mild colour jitter on the training images.
    val_folds : int
        The inner validation split is one of ``val_folds`` subject-aware folds of the training images
        (5: about a fifth of the training subjects).
    seed : int
        Seed of the head, the inner split, the order of the batches and the augmentation.
    max_train_minutes : float, optional
        Stop after the epoch that passes this training time (resumed runs count their earlier time).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    precision : {"auto", "float32", "float16", "bfloat16"}
        ``"auto"``: float16 autocast with loss scaling on CUDA, float32 on the CPU.
    num_workers : int, optional
        Threads decoding the images (once, before training); ``None``: by core count.
    segment, grayscale : bool
        Image pre-processing before the network's resize + crop, as the frozen features apply it
        (``--segment``: crop to the cell found by :func:`leukbench.preprocessing.segment_cell`;
        ``--grayscale``: ITU-R 601 luma replicated to 3 channels), in training and prediction.
    stain_norm : {"none", "reinhard", "macenko"}
        Colour normalisation of the network's input (:mod:`leukbench.stain`), after the resize + crop.

    The three image options enter the checkpoint key only when not at their defaults (the
    checkpoints of earlier runs keep their keys).
    """

    epochs: int = 15
    patience: int = 4
    size: Optional[int] = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    batch_size: int = 32
    dropout: float = 0.2
    freeze: int = 0
    augment: bool = True
    val_folds: int = 5
    seed: int = 0
    max_train_minutes: Optional[float] = None
    device: str = "auto"
    precision: str = "auto"
    num_workers: Optional[int] = None
    segment: bool = False
    grayscale: bool = False
    stain_norm: str = "none"

    def __post_init__(self):
        from ..stain import STAIN_METHODS

        validate_params(dataclasses.asdict(self), {
            "epochs": [Interval(int, 1, None)],
            "patience": [Interval(int, 1, None)],
            "size": [Interval(int, 16, 1024), None],
            "lr": [Interval(float, 0, None, open_low=True)],
            "weight_decay": [Interval(float, 0, None)],
            "warmup_epochs": [Interval(float, 0, None)],
            "batch_size": [Interval(int, 2, None)],
            "dropout": [Interval(float, 0, 0.95)],
            "freeze": [Interval(int, 0, None)],
            "augment": [bool],
            "val_folds": [Interval(int, 2, None)],
            "seed": [int],
            "max_train_minutes": [Interval(float, 0, None, open_low=True), None],
            "device": [str],
            "precision": [Options(*PRECISIONS, ignore_case=True)],
            "num_workers": [Interval(int, 0, None), None],
            "segment": [bool],
            "grayscale": [bool],
            "stain_norm": [Options(*STAIN_METHODS)],
        })

    def key_fields(self) -> Dict[str, Any]:
        """The fields that change what is learnt (the checkpoint key's part of the config)."""
        d = dataclasses.asdict(self)
        for name in ("device", "num_workers"):
            d.pop(name)
        return without_default_image_options(d)

    def replace(self, **changes) -> "FineTuneConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
