"""A fine-tuned network as a model: :func:`fit_network` trains one on all labelled images,
:func:`predict_network` predicts images with it.

The network is a :class:`~leukbench.finetune.FineTuner` (the ``end-to-end``
row of ``compare --features ...,finetuned:<backbone>``), fitted as the
comparison fits it on a fold, but on every labelled image: its own inner
validation split by subject picks the best epoch and stops early. The
images are decoded at the network's input size once (unreadable ones
skipped and counted); the card says "not cross-validated" unless the row
comes from a comparison, and gives the training history (epochs run, best
epoch, why it stopped). Predicting decodes the new images the same way and
returns the network's softmax: exactly the in-memory network's scores.

Example
-------
>>> is_finetuned("finetuned:efficientnet_lite0"), is_finetuned("efficientnet_lite0")
(True, False)
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .._validation import invalid
from .model import Model

__all__ = ["END_TO_END", "FINETUNE_OPTIONS", "fit_network", "is_finetuned", "network_tuner", "predict_network"]

#: The classifier name of a fine-tuned network's own row (as in the comparison's table).
END_TO_END = "end-to-end"
#: The options of :func:`leukbench.train` that configure a fine-tuned network, and its config field of each.
FINETUNE_OPTIONS = {"finetune_epochs": "epochs", "finetune_patience": "patience", "finetune_size": "size",
                    "finetune_freeze": "freeze", "finetune_max_minutes": "max_train_minutes"}
#: Extraction options that also mean something to a fine-tuned network (the image options are applied
#: to the images it trains on and predicts, as the frozen features apply them).
_NETWORK_OPTIONS = ("weights", "device", "precision", "cache_dir", "num_workers", "segment", "grayscale",
                    "stain_norm")
_SKIPPED = ["id", "path", "kind", "reason"]


def is_finetuned(features) -> bool:
    """Whether ``features`` names a fine-tuned network (``finetuned:<backbone>``)."""
    from ..finetune import finetuned_backbone

    return finetuned_backbone(features) is not None


def network_tuner(features: str, classifier, *, seed: int, progress: bool, options: Dict[str, Any]):
    """The unfitted :class:`~leukbench.finetune.FineTuner` of ``features`` (checked now, before any work).

    ``options`` are :data:`FINETUNE_OPTIONS` and the extraction options a
    network takes (``weights``, ``device``, ``precision``, ``cache_dir``, ``num_workers``, and the
    image pre-processing ``segment``, ``grayscale``, ``stain_norm``); any other extraction option
    (``tta``, ``layers``, ``pooling`` ...) is refused.

    Example
    -------
    >>> network_tuner("finetuned:efficientnet_lite0", "end-to-end", seed=0, progress=False,
    ...               options={"finetune_epochs": 2}).config.epochs
    2
    >>> from leukbench.exceptions import InvalidParameterError
    >>> try:
    ...     network_tuner("finetuned:efficientnet_lite0", "SVC", seed=0, progress=False, options={})
    ... except InvalidParameterError as exc:
    ...     print(str(exc).split(";")[0])
    classifier must be 'end-to-end' for a fine-tuned network (finetuned:efficientnet_lite0) (got 'SVC')
    """
    from ..finetune import FineTuner, finetuned_backbone

    backbone = finetuned_backbone(features) or ""
    if not backbone or any(c in backbone for c in ",+"):
        raise invalid("features", f"must name one fine-tuned network, finetuned:<backbone> (e.g. "
                                  f"finetuned:efficientnet_lite0), got {features!r}")
    if classifier != END_TO_END:
        raise invalid("classifier", f"must be {END_TO_END!r} for a fine-tuned network ({features.strip()}) "
                                    f"(got {classifier!r}); it is trained end to end, and the battery over "
                                    "fine-tuned features is not bundled")
    unknown = sorted(set(options) - set(FINETUNE_OPTIONS) - set(_NETWORK_OPTIONS))
    if unknown:
        raise invalid(unknown[0], f"is an extraction option; a fine-tuned network takes {', '.join(_NETWORK_OPTIONS)}")
    config = {FINETUNE_OPTIONS[k]: v for k, v in options.items() if k in FINETUNE_OPTIONS}
    config.update({k: v for k, v in options.items() if k in _NETWORK_OPTIONS and k not in ("weights", "cache_dir")})
    kw = {k: options[k] for k in ("weights", "cache_dir") if k in options}
    if kw.get("cache_dir") == "":  # the command line's "no folder given": the default cache
        kw["cache_dir"] = None
    from ..features.deep._specs import spec_for

    spec_for(backbone)  # an unknown backbone is refused now, before any work
    return FineTuner(backbone, progress=progress, **{"seed": seed, **config}, **kw)


def _decode(table: pd.DataFrame, pre, progress: bool) -> Tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``(images, kept rows, skipped)``: the readable images of ``table`` at the network's input size."""
    from tqdm.auto import tqdm

    from ..finetune._data import _decode_one  # the very decoding FineTuner.fit and predict use
    from ..images import ImageReadError

    out, keep, skipped = [], [], []
    for i, (ident, path) in enumerate(tqdm(list(zip(table["id"], table["path"])), desc="decode", unit="img",
                                           disable=not progress, leave=False, dynamic_ncols=True)):
        try:
            out.append(_decode_one(path, pre))
            keep.append(i)
        except ImageReadError as exc:
            skipped.append({"id": ident, "path": path, "kind": exc.kind, "reason": str(exc)})
    crop = tuple(pre.crop)
    images = np.stack(out) if out else np.zeros((0, *crop, 3), np.uint8)
    return images, np.asarray(keep, dtype=np.int64), pd.DataFrame(skipped, columns=_SKIPPED)


def _is_known(values) -> np.ndarray:
    return np.array([v not in (None, "") and v == v for v in values], dtype=bool)


def fit_network(tuner, table: pd.DataFrame, *, positive_label: Optional[str] = None, comparison=None,
                progress: bool = True) -> Model:
    """The :class:`Model` of ``tuner`` fine-tuned on the labelled images of the discovery ``table``.

    Example
    -------
    >>> from leukbench import datasets  # doctest: +SKIP
    >>> fit_network(network_tuner(...), datasets.discover(datasets.sample_root()))  # doctest: +SKIP
    """
    from .._version import __version__
    from ..schema import default_positive_label
    from .bundle import sha256
    from .card import cross_validated, not_cross_validated

    table = table[_is_known(table["label"])].reset_index(drop=True)
    classes = sorted({str(v) for v in table["label"]})
    if len(classes) < 2:
        raise invalid("data", f"has {len(table)} labelled images of {len(classes)} class(es); a network needs "
                              "at least two classes")
    if positive_label is not None and positive_label not in classes:
        raise invalid("positive_label", f"must be a class ({', '.join(classes)}), got {positive_label!r}")
    images, keep, skipped = _decode(table, tuner._setup()[3], progress)
    kept = table.iloc[keep]
    ids, y = kept["id"].astype(str).tolist(), kept["label"].astype(str).to_numpy(dtype=object)
    subjects = kept["subject"].fillna("").astype(str).tolist()
    groups = None if not any(subjects) else [s or f"image:{i}" for s, i in zip(subjects, ids)]
    ft = tuner.fit(images, y, groups, ids=ids, desc=f"{tuner.name} (all labelled images)")
    if [str(c) for c in ft.classes_] != classes:
        raise invalid("data", f"lost a class to unreadable images ({len(skipped)} skipped); fix or remove them")
    positive = positive_label if positive_label is not None else default_positive_label(classes)
    card: Dict[str, Any] = {
        "model": {"feature_set": ft.name, "classifier": END_TO_END, "seed": ft.config.seed, "params": "",
                  "pipeline": f"{ft.backbone} fine-tuned -> dropout {ft.config.dropout} -> linear"},
        "features": [f"{ft.name} (the network's own input: {ft._pre.crop[0]} px{_image_note(ft.config)}, training "
                     f"started from weights {ft.weights_id_})"],
        "classes": classes, "positive_label": positive,
        "training_data": {"images": len(kept), "subjects": len({s for s in subjects if s}),
                          "classes": {c: int((y == c).sum()) for c in classes},
                          "dataset_root": str(table.attrs.get("root", "")), "skipped_images": len(skipped),
                          "fingerprint": sha256(json.dumps([ids, list(y)]).encode())[:20], "subsample": None},
        "performance": (cross_validated(comparison, ft.name, END_TO_END) if comparison is not None
                        else not_cross_validated()),
        "training": {"epochs_run": len(ft.history_), "best_epoch": ft.best_epoch_, "stopped": ft.stopped_,
                     "validation": ft.split_note_, "train_seconds": round(float(ft.train_seconds_), 1),
                     "from_cache": ft.from_cache_, "device": ft.device_, "precision": ft.precision_,
                     "config": ft.config.key_fields(), "history": ft.history_},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    from ..finetune._config import IMAGE_OPTIONS, without_default_image_options

    image_options = without_default_image_options({k: getattr(ft.config, k) for k in IMAGE_OPTIONS})
    extractor = {"name": ft.name, "config": {"kind": "finetuned", "backbone": ft.backbone, "weights": str(ft.weights),
                                             "weights_id": ft.weights_id_, "size": int(ft._pre.crop[0]),
                                             **image_options}}
    return Model(estimator=ft, feature_set=ft.name, classifier=END_TO_END, extractors=[extractor], feature_names=[],
                 classes=classes, positive_label=positive, card=card, kind="torch", trained_with=__version__)


def _image_note(config) -> str:
    """``", segmented, grayscale"``: the image options a network was trained with (``""``: none)."""
    on = [w for w, yes in (("grayscale", config.grayscale), ("segmented", config.segment),
                           (f"{config.stain_norm} stain normalisation", config.stain_norm != "none")) if yes]
    return "".join(f", {w}" for w in on)


def featureset_table(fs) -> pd.DataFrame:
    """The discovery table (``id, path, label, subject``) of a feature set that knows its images' paths."""
    if fs.paths is None or not all(p for p in fs.paths):
        raise invalid("data", f"must know its images' paths (the feature set {fs.name!r} does not); a fine-tuned "
                              "network needs the images: pass a folder, a CSV manifest or image files")
    table = pd.DataFrame({"id": [str(i) for i in fs.ids], "path": list(fs.paths),
                          "label": ["" if v is None else str(v) for v in fs.y],
                          "subject": ["" if s is None else str(s) for s in fs.subjects]})
    table.attrs["root"] = (fs.provenance or {}).get("dataset_root", "")
    return table


def _retarget(ft, device: str, batch_size: Optional[int], num_workers: Optional[int]):
    """``ft`` on ``device`` with ``batch_size`` (a copy when anything changes; the scores do not)."""
    from ..finetune import FineTuner

    changes = {k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers)) if v is not None}
    if device not in ("auto", ft.config.device):
        changes["device"] = device
    if not changes:
        return ft
    twin = FineTuner(**{**ft.get_params(), **changes})
    return twin.load_network(ft.network_state(), ft.classes_)


def predict_network(model: Model, data, *, device: str = "auto", batch_size: Optional[int] = None,
                    num_workers: Optional[int] = None, layout: str = "auto", subject_regex: Optional[str] = None,
                    progress: bool = True) -> Tuple[pd.DataFrame, np.ndarray, List[str], pd.DataFrame]:
    """``(table of the predicted images, scores, every id asked for, skipped)`` of a ``torch`` model.

    ``table`` has ``id``, ``path`` and ``label`` of each readable image;
    ``scores`` its softmax, columns in ``model.classes`` order.
    """
    from ..featureset import FeatureSet
    from ._features import image_table

    table = featureset_table(data) if isinstance(data, FeatureSet) else image_table(
        data, layout=layout, subject_regex=subject_regex)
    ft = _retarget(model.estimator, device, batch_size, num_workers)
    images, keep, skipped = _decode(table, ft._pre, progress)
    scores = ft.predict_proba(images) if len(images) else np.zeros((0, len(model.classes)))
    return table.iloc[keep].reset_index(drop=True), scores, table["id"].astype(str).tolist(), skipped
