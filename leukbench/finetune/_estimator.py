""":class:`FineTuner`: fine-tune a backbone in scikit-learn style, with checkpoints in the cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from .._validation import invalid
from ._config import FineTuneConfig

__all__ = ["FineTuner"]


class FineTuner:
    """A backbone fine-tuned on labelled cell images, with a dropout + linear head.

    Parameters are stored by ``__init__`` and checked there (:class:`FineTuneConfig`); the
    network is built and trained by :meth:`fit`.

    Parameters
    ----------
    backbone : str
        A registered deep backbone (``efficientnet_lite0``, ``resnet50`` ...) or ``timm:<model>``.
    weights : str or path
        ``"imagenet"`` (the offline EfficientNet-Lite0 weights for the default), ``"none"`` or a file.
    cache_dir : path, optional
        Checkpoints go to ``<cache_dir>/finetune/<key>/``; ``None``: the default cache folder,
        ``False``: none kept.
    progress : bool
        Progress per epoch on stderr.
    **config
        The fields of :class:`FineTuneConfig` (``epochs``, ``patience``, ``size``, ``lr`` ...).

    Attributes
    ----------
    classes_ : ndarray
    history_ : list of dict
        One row per epoch: ``epoch, train_loss, val_loss, val_balanced_accuracy, val_accuracy, lr,
        seconds, best``.
    best_epoch_ : int
    stopped_ : str
        Why training ended (``"epochs"``, early stopping, a time limit).
    from_cache_ : bool
        The fit trained nothing: a finished run with the same key was in the cache.
    split_note_ : str
        How the inner validation split was made.
    train_ids_, val_ids_ : list of str
        The images used for training and for early stopping (paths, or indices for arrays).
    device_, precision_ : str
    key_ : str
        The checkpoint key.

    Example
    -------
    >>> from leukbench.finetune import FineTuner
    >>> ft = FineTuner("efficientnet_lite0", epochs=2, size=64)
    >>> ft.config.epochs, ft.config.patience
    (2, 4)
    >>> ft.fit(paths, labels, subjects).predict_proba(paths).shape  # doctest: +SKIP
    (120, 2)
    """

    def __init__(self, backbone: str = "efficientnet_lite0", *, weights="imagenet", cache_dir=None,
                 progress: bool = False, **config):
        if not isinstance(backbone, str) or not backbone:
            raise invalid("backbone", f"must be a backbone name such as 'efficientnet_lite0' (got {backbone!r})")
        self.backbone = backbone
        self.weights = weights
        self.cache_dir = cache_dir
        self.progress = progress
        self.config = FineTuneConfig(**config)

    @property
    def name(self) -> str:
        """The feature-set name of this network's rows: ``finetuned:<backbone>``."""
        from ._names import finetuned_name

        return finetuned_name(self.backbone)

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        import dataclasses

        return {"backbone": self.backbone, "weights": self.weights, "cache_dir": self.cache_dir,
                "progress": self.progress, **dataclasses.asdict(self.config)}

    def set_params(self, **params) -> "FineTuner":
        for k in ("backbone", "weights", "cache_dir", "progress"):
            if k in params:
                setattr(self, k, params.pop(k))
        self.config = self.config.replace(**params)
        return self

    def __repr__(self) -> str:
        return f"FineTuner({self.backbone!r}, epochs={self.config.epochs}, size={self.config.size})"

    # -- resolution -----------------------------------------------------------
    def _setup(self):
        from ..features.deep._device import resolve_device, resolve_precision
        from ._network import resolved_weights

        device = resolve_device(self.config.device)
        precision = resolve_precision(self.config.precision, device)
        _, _, _, wid = resolved_weights(self.backbone, self.weights)
        return device, precision, wid, self.cell_input()

    def cell_input(self):
        """How an image becomes this network's input (:class:`~leukbench.finetune._data.CellInput`):
        the image options of the config, then the backbone's resize + crop at ``size``."""
        from ._data import CellInput
        from ._network import input_preprocessing

        c = self.config
        return CellInput(input_preprocessing(self.backbone, c.size), segment=c.segment, grayscale=c.grayscale,
                         stain_norm=c.stain_norm)

    def _cache_root(self) -> Optional[Path]:
        if self.cache_dir is False:
            return None
        if self.cache_dir is None:
            from ..cache import default_cache_dir

            return default_cache_dir()
        return Path(self.cache_dir)

    def key_parts(self, ids_digest: str, n_classes: int) -> Dict[str, Any]:
        """What the checkpoint key is made of."""
        device, precision, wid, pre = self._setup()
        return {"backbone": self.backbone, "weights_id": wid, "config": self.config.key_fields(),
                "input": pre.options(), "precision": precision, "device": device.split(":")[0],
                "n_classes": n_classes, "train_ids": ids_digest}

    # -- fitting --------------------------------------------------------------
    def fit(self, images: Sequence, y: Sequence, groups: Optional[Sequence] = None, *,
            ids: Optional[Sequence[str]] = None,
            on_epoch_end: Optional[Callable[[int, Dict[str, Any]], None]] = None, desc: str = "fine-tune"
            ) -> "FineTuner":
        """Fine-tune on ``images`` (paths or RGB arrays) with labels ``y``; returns ``self``.

        ``groups`` (subject ids) shape the inner validation split (by image without them). ``ids``
        name the images in the checkpoint key (default: the paths, or the pixels of arrays).
        ``on_epoch_end(epoch, row)`` runs after each finished, checkpointed epoch.
        """
        from ._checkpoint import CheckpointDir, checkpoint_key
        from ._data import decode_images, images_digest, inner_split
        from ._loop import TrainData, TrainOutcome, train
        from ._network import build_network

        y = np.asarray(y)
        if len(y) != len(images):
            raise invalid("y", f"must have one label per image ({len(y)} labels for {len(images)} images)")
        t0 = time.perf_counter()
        device, precision, wid, pre = self._setup()
        self.classes_, y_enc = np.unique(y.astype(str) if y.dtype == object else y, return_inverse=True)
        g = None if groups is None else np.asarray(groups, dtype=object)
        tr, va, self.split_note_ = inner_split(y_enc, g, n_folds=self.config.val_folds, seed=self.config.seed)
        names = [str(i) for i in ids] if ids is not None else (
            [str(p) for p in images] if not isinstance(images, np.ndarray) and all(
                isinstance(p, (str, Path)) for p in images) else [str(i) for i in range(len(images))])
        self.train_ids_, self.val_ids_ = [names[i] for i in tr], [names[i] for i in va]
        parts = self.key_parts(images_digest(images, ids), len(self.classes_))
        self.key_ = checkpoint_key(parts)
        ckpt = CheckpointDir(self._cache_root(), self.key_, {"backbone": self.backbone, **parts})
        self.device_, self.precision_, self.weights_id_, self._pre = device, precision, wid, pre
        self.model_, self.n_stages_ = build_network(self.backbone, self.weights, len(self.classes_),
                                                    dropout=self.config.dropout, freeze=self.config.freeze,
                                                    seed=self.config.seed)
        done = ckpt.done()
        if done is not None:
            self.model_.load_state_dict(ckpt.load_best())
            self.model_.to(device)
            out = TrainOutcome(done["history"], done["best_epoch"], done["stopped"], done["seconds"])
            self.from_cache_ = True
        else:
            data = TrainData(decode_images(images, pre, num_workers=self.config.num_workers,
                                           progress=self.progress), y_enc, tr, va, len(self.classes_))
            out = train(self.model_, data, self.config, pre, device, precision, ckpt, progress=self.progress,
                        desc=desc, on_epoch_end=on_epoch_end)
            ckpt.finish({"history": out.history, "best_epoch": out.best_epoch, "stopped": out.stopped,
                         "seconds": out.seconds})
            self.from_cache_ = False
        self.history_, self.best_epoch_, self.stopped_ = out.history, out.best_epoch, out.stopped
        self.train_seconds_, self.resumed_from_ = out.seconds, out.resumed_from
        self.fit_seconds_ = time.perf_counter() - t0
        self.checkpoint_dir_ = ckpt.path
        return self

    # -- the fitted network as weights, and back ----------------------------
    def network_state(self) -> Dict[str, Any]:
        """The fitted network's weights (name -> contiguous CPU tensor), as :meth:`load_network` takes them."""
        self._check_fitted()
        return {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}

    def load_network(self, state: Dict[str, Any], classes: Sequence) -> "FineTuner":
        """Build this configuration's network and load the fitted weights ``state`` (of
        :meth:`network_state`) for ``classes``; returns ``self``, ready to predict, trained no further.

        The architecture is built without initial weights (``state`` replaces them all; ``weights``
        only names where training started). torch raises ``RuntimeError`` for weights of another network.

        Example
        -------
        >>> twin = FineTuner(**ft.get_params()).load_network(ft.network_state(), ft.classes_)  # doctest: +SKIP
        """
        from ..features.deep._device import resolve_device, resolve_precision
        from ._network import build_network

        self.device_ = resolve_device(self.config.device)
        self.precision_ = resolve_precision(self.config.precision, self.device_)
        self._pre = self.cell_input()
        self.classes_ = np.asarray(classes)
        model, self.n_stages_ = build_network(self.backbone, "none", len(self.classes_), dropout=self.config.dropout,
                                              freeze=self.config.freeze, seed=self.config.seed)
        model.load_state_dict(state, strict=True)
        self.model_ = model.to(self.device_)
        return self

    # -- using the fitted network --------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this FineTuner is not fitted yet; call fit(images, y, groups) first")

    def _outputs(self, images: Sequence, features: bool) -> np.ndarray:
        from ._data import decode_images
        from ._loop import _Runner, evaluate

        self._check_fitted()
        arr = decode_images(images, self._pre, num_workers=self.config.num_workers)
        runner = _Runner(self.model_, self._pre, self.device_, self.precision_)
        return evaluate(runner, arr, max(self.config.batch_size, 64), features=features)

    def decision_function(self, images: Sequence) -> np.ndarray:
        """Logits ``(n, n_classes)`` of the fine-tuned network."""
        return self._outputs(images, features=False)

    def predict_proba(self, images: Sequence) -> np.ndarray:
        """Softmax of the logits, ``(n, n_classes)``, columns in the order of :attr:`classes_`."""
        z = self.decision_function(images).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: Sequence) -> np.ndarray:
        """The most probable class of each image (labels of :attr:`classes_`)."""
        return self.classes_[self.predict_proba(images).argmax(1)]

    def transform(self, images: Sequence) -> np.ndarray:
        """Pooled penultimate activations of the fine-tuned backbone, float32 ``(n, n_features)``."""
        return np.ascontiguousarray(self._outputs(images, features=True), dtype=np.float32)
