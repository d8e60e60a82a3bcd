"""Fine-tuning on each outer fold of a split plan: what :func:`leukbench.compare` runs for
``finetune=``. Plain data in and out (indices, labels, arrays), so that the evaluation layer above
turns the results into rows; nothing here imports it.

For each fold the network is trained on that fold's training images only (its inner validation
split is drawn from them), and gives scores for the fold's test images and, for the battery,
pooled features of the fold's training and test images from that fold's network.

Example
-------
>>> from leukbench.finetune._folds import tuners_of
>>> [t.name for t in tuners_of("efficientnet_lite0", {"epochs": 2}, seed=0)]
['finetuned:efficientnet_lite0']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .._atomic import write_atomically
from .._validation import invalid
from ._estimator import FineTuner
from ._names import finetuned_backbone

__all__ = ["FoldRun", "tuners_of", "finetune_folds"]


@dataclasses.dataclass
class FoldRun:
    """What fine-tuning one outer fold gave."""

    repeat: int
    fold: int
    scores: np.ndarray  # (n_test, n_classes), columns in the order of the run's classes
    features: Optional[np.ndarray]  # (n_images, n_features) from this fold's network, or None
    history: List[Dict[str, Any]]
    best_epoch: int
    stopped: str
    split_note: str
    train_ids: List[str]
    val_ids: List[str]
    test_ids: List[str]
    train_seconds: float
    predict_seconds: float
    from_cache: bool
    key: str
    device: str = ""
    precision: str = ""
    resumed_from: int = 0  # epochs taken from an interrupted run's checkpoint (0: trained from the start)


def tuners_of(finetune, options: Optional[Dict[str, Any]], *, seed: int) -> List[FineTuner]:
    """``finetune`` (backbone names, comma-separated or a list, or :class:`FineTuner` objects) as
    a list of fine-tuners; names are built with ``options`` (keyword arguments of :class:`FineTuner`)."""
    if finetune is None or finetune is False:
        return []
    items = finetune.split(",") if isinstance(finetune, str) else (
        [finetune] if isinstance(finetune, FineTuner) else list(finetune))
    out = []
    for item in items:
        if isinstance(item, FineTuner):
            out.append(item)
        elif isinstance(item, str) and item.strip():
            name = finetuned_backbone(item)
            name = item.strip() if name is None else name
            out.append(FineTuner(name, **{"seed": seed, **(options or {})}))
        else:
            raise invalid("finetune", f"must be backbone names or FineTuner objects (got {item!r})")
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise invalid("finetune", f"names each backbone once (got {', '.join(names)})")
    return out


def finetune_folds(tuner: FineTuner, images: Sequence, y: np.ndarray, groups: Optional[np.ndarray],
                   ids: Sequence[str], splits: Sequence[Any], n_classes: int, *, features: bool = True,
                   progress: bool = False) -> List[FoldRun]:
    """Fine-tune a fresh copy of ``tuner`` on each split's training rows.

    Parameters
    ----------
    images : paths or arrays
        Every labelled image of the plan (decoded once, at the network's input size).
    y : ndarray of int
        Encoded labels ``0 .. n_classes - 1``.
    groups : ndarray or None
        The cross-validation group (audit-merged subject) of each image.
    splits : sequence
        Objects with ``repeat``, ``fold``, ``train`` and ``test`` (indices).
    features : bool
        Also compute the fold network's pooled features of every image (for the battery).
    """
    from ._data import decode_images

    ids = np.asarray([str(i) for i in ids], dtype=object)
    decoded = decode_images(images, tuner.cell_input(), num_workers=tuner.config.num_workers, progress=progress)
    runs = []
    for sp in splits:
        runs.append(_one_fold(tuner, decoded, np.asarray(y), groups, ids, sp, n_classes, features, progress,
                              f"{tuner.name} fold {sp.fold + 1}" + (f" repeat {sp.repeat + 1}" if sp.repeat else "")))
    return runs


def _one_fold(tuner, decoded, y, groups, ids, sp, n_classes, features, progress, desc) -> FoldRun:
    import time

    train, test = np.asarray(sp.train), np.asarray(sp.test)
    ft = FineTuner(**{**tuner.get_params(), "progress": progress})
    ft.fit(decoded[train], y[train], None if groups is None else groups[train], ids=ids[train], desc=desc)
    t0 = time.perf_counter()
    proba = ft.predict_proba(decoded[test])
    scores = np.zeros((len(test), n_classes))
    scores[:, ft.classes_.astype(int)] = proba
    feats = _fold_features(ft, decoded, ids) if features else None
    return FoldRun(sp.repeat, sp.fold, scores, feats, ft.history_, ft.best_epoch_, ft.stopped_, ft.split_note_,
                   ft.train_ids_, ft.val_ids_, list(ids[test]), ft.train_seconds_, time.perf_counter() - t0,
                   ft.from_cache_, ft.key_, ft.device_, ft.precision_, ft.resumed_from_)


def _fold_features(ft: FineTuner, decoded: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The fold network's features of every image, kept beside its checkpoint (``features-<ids>.npy``):
    one matrix per fold's key, never shared with another fold."""
    from ._data import images_digest

    folder = ft.checkpoint_dir_
    path = None if folder is None else folder / f"features-{images_digest(None, list(ids))}.npy"
    if path is not None and path.is_file():
        return np.load(path)
    X = ft.transform(decoded)
    if path is not None and folder.is_dir():
        write_atomically(path, lambda tmp: np.save(tmp, X))  # tmp ends in .npy: np.save adds nothing
    return X
