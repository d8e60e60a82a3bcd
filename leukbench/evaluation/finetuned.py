"""The rows of fine-tuned networks in a comparison (``compare(..., finetune=...)``).

For each fine-tuner and each outer split of the plan the battery uses (the same audit-merged
groups and folds), :func:`~leukbench.finetune._folds.finetune_folds` trains on that split's
training images only. Two kinds of rows come out, under the feature set ``finetuned:<backbone>``:

* ``end-to-end``: the network's own softmax on the test fold, as a task outcome scored by the
  same table code as every other row;
* the battery over that fold's fine-tuned features (pooled penultimate activations of that fold's
  network for that fold's training and test images; one matrix per fold, never shared).

The ids each fold used for training, validation (early stopping, checkpoint selection) and
testing are kept in ``ComparisonResult.finetune_ids``; ``training`` holds the epochs.

Example
-------
>>> from leukbench.evaluation.finetuned import END_TO_END
>>> END_TO_END
'end-to-end'
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from ..exceptions import InvalidParameterError
from ..schema import STATUS_OK
from .fits import FitOutcome, PreparedSet, Task, error_text
from .fold_cache import digest, estimator_signature, task_key

if TYPE_CHECKING:
    import pandas as pd

    from ..featureset import FeatureSet

__all__ = ["END_TO_END", "FineTunedRows", "add_finetuned"]

#: Classifier name of a fine-tuned network's own predictions.
END_TO_END = "end-to-end"


@dataclasses.dataclass
class FineTunedRows:
    """What the fine-tuned networks add to a run."""

    sets: List[FeatureSet]  # one per (fine-tuner, split): that split's features
    prepared: List[PreparedSet]
    table_sets: List[FeatureSet]  # one per fine-tuner (the table's rows)
    params: Dict[str, Any]
    training: Optional[pd.DataFrame]
    ids: Optional[pd.DataFrame]
    groups: Dict[str, Dict[str, str]]  # feature-set name -> (image id -> cross-validation group)

    @property
    def rows(self) -> List[str]:
        """The classifier rows the fine-tuned networks add to the table's row names."""
        return [END_TO_END] if self.table_sets else []


def _base_set(sets: Sequence[FeatureSet]) -> int:
    for i, fs in enumerate(sets):
        if fs.paths is not None and all(p for p in fs.paths):
            return i
    raise InvalidParameterError("finetune needs the image files: pass feature sets from leukbench.extract(), "
                                "which know their images' paths", parameter="finetune")


def add_finetuned(tuners, sets: Sequence[FeatureSet], prepared: Sequence[PreparedSet], set_splits, set_groups,
                  names: Sequence[str], tasks: List[Task], outcomes: Dict[int, FitOutcome], *, seed: int,
                  n_classes: int, battery: bool, progress: bool) -> FineTunedRows:
    """Fine-tune each of ``tuners`` on the splits of the first feature set with image paths; append
    the end-to-end outcomes and (``battery``) the battery tasks to ``tasks``/``outcomes``."""
    from ..finetune._folds import finetune_folds

    out = FineTunedRows([], [], [], {}, None, None, {})
    if not tuners:
        return out
    base = _base_set(sets)
    fs0, y, groups = sets[base], prepared[base].y, set_groups[base]
    offset = len(sets)
    records, ids_rows = [], []
    for tuner in tuners:
        runs = finetune_folds(tuner, list(fs0.paths), y, groups, fs0.ids, set_splits[base], n_classes,
                              features=battery and bool(names), progress=progress)
        out.table_sets.append(_named(fs0, tuner.name, None))
        for sp, run in zip(set_splits[base], runs):
            fs = _named(fs0, tuner.name, run.features)
            data = PreparedSet(fs.X, y, digest(fs.X, y, np.asarray(fs.ids, dtype=str).astype("U")))
            si = offset + len(out.sets)
            out.sets.append(fs)
            out.prepared.append(data)
            tasks.append(Task(len(tasks), si, END_TO_END, sp, ""))
            outcomes[tasks[-1].index] = FitOutcome(STATUS_OK, "", run.train_seconds, run.predict_seconds,
                                                   run.scores.argmax(1).astype(np.int64), run.scores,
                                                   cached=run.from_cache)
            if run.features is not None:
                _battery_tasks(tasks, outcomes, data, si, sp, names, seed, n_classes)
            records += [{"feature_set": tuner.name, "repeat": run.repeat, "fold": run.fold, **row}
                        for row in run.history]
            ids_rows += [(tuner.name, run.repeat, run.fold, role, i) for role, part in
                         (("train", run.train_ids), ("val", run.val_ids), ("test", run.test_ids)) for i in part]
        out.params[tuner.name] = _tuner_params(tuner, runs)
        out.groups[tuner.name] = ({} if groups is None else
                                  {str(i): str(g) for i, g in zip(fs0.ids, groups) if g is not None})
    import pandas as pd

    out.training = pd.DataFrame(records)
    out.ids = pd.DataFrame(ids_rows, columns=["feature_set", "repeat", "fold", "role", "id"])
    return out


def _named(fs: FeatureSet, name: str, X: Optional[np.ndarray]) -> FeatureSet:
    X = np.zeros((len(fs), 0), np.float32) if X is None else X
    prov = {**fs.provenance, "finetuned": name}
    return dataclasses.replace(fs, name=name, X=X, feature_names=[f"{name}.f{i:04d}" for i in range(X.shape[1])],
                               provenance=prov)


def _battery_tasks(tasks, outcomes, data: PreparedSet, si: int, sp, names, seed: int, n_classes: int) -> None:
    """One task per classifier of the battery over one split's fine-tuned features."""
    from ..classifiers import classifier_version, make_classifier

    for name in names:
        try:
            signature, error = estimator_signature(make_classifier(name, seed)), None
        except Exception as exc:  # noqa: BLE001 - a broken factory fails its own row only
            signature, error = "", FitOutcome.failed(error_text(exc))
        tasks.append(Task(len(tasks), si, name, sp, task_key(data.digest, name, signature, classifier_version(name),
                                                             seed, n_classes, sp)))  # as comparison._build_tasks
        if error is not None:
            outcomes[tasks[-1].index] = error


def _tuner_params(tuner, runs) -> Dict[str, Any]:
    """What run.json records of one fine-tuner (the image options only when not at their defaults)."""
    from ..finetune._config import without_default_image_options

    return {
        "backbone": tuner.backbone, "weights": str(tuner.weights),
        "config": without_default_image_options(tuner.get_params()),
        "device": runs[0].device if runs else "", "precision": runs[0].precision if runs else "",
        "epochs_run": [len(r.history) for r in runs], "best_epoch": [r.best_epoch for r in runs],
        "stopped": [r.stopped for r in runs], "train_seconds": float(sum(r.train_seconds for r in runs)),
        "from_cache": [r.from_cache for r in runs], "validation": list(dict.fromkeys(r.split_note for r in runs)),
        "checkpoints": [r.key for r in runs], "resumed_from": [r.resumed_from for r in runs],
    }
