"""The fold cache: one small file per finished task, so that an interrupted run resumes.

An entry is ``<cache_dir>/folds/<2 hex>/<key>.npz`` (written to a temporary
file, then atomically renamed) holding the task's predictions, scores and
times (and, for a search, the parameters it chose and the candidates it
tried). The key (:func:`task_key`) hashes the feature matrix, labels and image
ids, the classifier name and its full parameters (:func:`estimator_signature`;
for a tuned row also its search space, trials, budget and inner folds),
the battery version in which that classifier last changed
(:func:`leukbench.classifiers.classifier_version`, so that changing one classifier
keeps the cached fits of the others), the seed, the number of classes and the exact
train/test indices. Failures and timeouts are not cached: they are retried.

Example
-------
>>> digest("fold", np.arange(3)) == digest("fold", np.arange(3)) != digest("fold", np.arange(4))
True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..exceptions import CacheError
from ..schema import STATUS_OK
from .fits import FitOutcome
from .splits import Split

__all__ = ["FoldCache", "digest", "estimator_signature", "task_key"]

#: Version of the fold-cache entries and of their key (bump when either changes).
_CACHE_FORMAT = "fold-v2"


def digest(*parts) -> str:
    """A 32-hex-digit hash of arrays (shape and bytes) and JSON-able values, in order."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode())
            flat = np.ascontiguousarray(p).reshape(-1)  # hashed in slices: no copy of a large matrix
            for start in range(0, flat.size, 1 << 20):
                h.update(flat[start:start + (1 << 20)].tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


def task_key(data_digest: str, classifier: str, signature: str, battery_version: int, seed: int,
             n_classes: int, split: Split) -> str:
    """The fold-cache key of one task (see the module docstring for what it covers);
    ``battery_version`` is the classifier's own (:func:`leukbench.classifiers.classifier_version`)."""
    return digest(_CACHE_FORMAT, data_digest, classifier, signature, battery_version, seed, n_classes,
                  split.train, split.test)


def _param_text(value) -> Any:
    """A stable, JSON-able description of an estimator parameter."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        return f"<{type(value).__module__}.{type(value).__qualname__}>"  # its params are listed too
    if isinstance(value, (list, tuple)):
        return [_param_text(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _param_text(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def estimator_signature(est) -> str:
    """Class, parameters and library versions of an estimator (part of the fold-cache key)."""
    import sys

    modules = set()
    parts: Dict[str, Any] = {"class": f"{type(est).__module__}.{type(est).__qualname__}"}
    modules.add(type(est).__module__.split(".")[0])
    if hasattr(est, "get_params"):
        try:
            params = est.get_params(deep=True)
        except Exception:  # noqa: BLE001 - an estimator without proper params: class only
            params = {}
        for v in params.values():
            if hasattr(v, "get_params"):
                modules.add(type(v).__module__.split(".")[0])
        parts["params"] = {k: _param_text(v) for k, v in sorted(params.items())}
    modules.add("sklearn")
    parts["versions"] = {m: str(getattr(sys.modules.get(m), "__version__", "")) for m in sorted(modules)}
    return json.dumps(parts, sort_keys=True, default=repr)


class FoldCache:
    """One small file per finished task under ``<cache_dir>/folds/``; ``cache_dir=None`` keeps nothing."""

    def __init__(self, cache_dir):
        self.root = Path(cache_dir) / "folds" if cache_dir else None

    def _path(self, key: str) -> Optional[Path]:
        return self.root / key[:2] / f"{key}.npz" if self.root else None

    def get(self, key: str) -> Optional[FitOutcome]:
        """The cached outcome of task ``key`` (``cached=True``), or ``None``."""
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                scores = z["scores"] if z["has_scores"] else None
                search = {"params": str(z["params"]), "n_candidates": int(z["n_candidates"])} \
                    if "params" in z.files else {}  # a search (tuned row) only
                return FitOutcome(STATUS_OK, "", fit_time=float(z["fit_time"]),
                                  predict_time=float(z["predict_time"]), y_pred=z["y_pred"],
                                  scores=scores, cached=True, **search)
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed
            return None

    def put(self, key: str, outcome: FitOutcome) -> None:
        """Store a successful outcome (failures and timeouts are retried next time)."""
        path = self._path(key)
        if path is None or not outcome.ok:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        scores = outcome.scores
        search = {"params": np.array(outcome.params), "n_candidates": outcome.n_candidates} \
            if outcome.params else {}  # optional: entries of other fits are as before
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                np.savez(fh, y_pred=outcome.y_pred, fit_time=outcome.fit_time,
                         predict_time=outcome.predict_time, has_scores=scores is not None,
                         scores=scores if scores is not None else np.zeros((0, 0)), **search)
            os.replace(tmp, path)
        except OSError as exc:
            raise CacheError(f"{self.root}: cannot write the fold cache ({exc.strerror or exc}); "
                             "give cache_dir a writable folder, or cache_dir=False") from exc
