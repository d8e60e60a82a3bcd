"""Where the numbers of a comparison come from, read once into typed values.

:class:`Provenance` gathers, from a comparison result and its feature sets,
everything ``run.json`` and ``report.html`` say about the run's origin: package
versions, platform, command line, parameters and seeds, the feature sets with
their extractors (and whether any used random-init weights), and the data
fingerprints (computed in :mod:`.fingerprints`). :class:`RecordedProvenance` is
the one reader of a ``FeatureSet.provenance`` dict: extractor configurations,
description and the images the extraction skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ._result import as_feature_set_list
from .fingerprints import data_fingerprint, prediction_fingerprints

__all__ = [
    "Provenance",
    "FeatureSetInfo",
    "RecordedProvenance",
    "ExtractorInfo",
    "SkippedImage",
    "package_versions",
    "platform_info",
    "data_fingerprint",
    "prediction_fingerprints",
    "feature_sets_info",
    "seeds",
    "command_text",
    "jsonable",
]

#: Import name -> distribution name of the packages whose versions a report records.
_RECORDED_PACKAGES = (
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("sklearn", "scikit-learn"),
    ("scipy", "scipy"),
    ("matplotlib", "matplotlib"),
    ("xgboost", "xgboost"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("timm", "timm"),
    ("lazypredict", "lazypredict"),
)
_RANDOM_WEIGHTS = ("none", "random", "random-init", "random_init")


# --------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------


def package_versions() -> Dict[str, Optional[str]]:
    """Versions of Python, leukbench and the scientific packages (``None``: not installed).

    Read without importing heavy packages (torch) when they are not loaded yet.
    """
    import importlib.metadata as md
    import importlib.util

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    try:
        from leukbench._version import __version__ as leukbench_version
    except Exception:  # pragma: no cover - packaging broken
        leukbench_version = None
    out["leukbench"] = leukbench_version
    for module, dist in _RECORDED_PACKAGES:
        loaded = sys.modules.get(module)
        version = getattr(loaded, "__version__", None) if loaded is not None else None
        if version is None:
            try:
                version = md.version(dist) if importlib.util.find_spec(module) is not None else None
            except (md.PackageNotFoundError, ValueError, ImportError):
                version = None
        out[module] = None if version is None else str(version)
    return out


def platform_info() -> Dict[str, str]:
    """Operating system, release, machine and Python implementation."""
    return {"system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "python_implementation":
            platform.python_implementation()}


def seeds(params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Every seed among the parameters (nested dicts as ``outer.inner``).

    Example
    -------
    >>> seeds({"seed": 0, "cv": 5, "clf": {"random_state": 1}})
    {'seed': 0, 'clf.random_state': 1}
    """
    out: Dict[str, Any] = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if "seed" in str(k).lower() or str(k).lower() == "random_state":
                out[key] = v
            elif isinstance(v, dict):
                walk(v, key + ".")

    walk(params or {})
    return out


def command_text(params: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The recorded command line (``params["command"]``) as one shell-quoted string.

    Example
    -------
    >>> command_text({"command": ["leukbench", "compare", "my data/"]})
    "leukbench compare 'my data/'"
    >>> command_text({}) is None
    True
    """
    cmd = (params or {}).get("command")
    if cmd is None or cmd == "":
        return None
    if isinstance(cmd, (list, tuple)):
        return shlex.join(str(c) for c in cmd)
    return str(cmd)


def jsonable(obj):
    """``obj`` with everything JSON cannot hold converted (non-finite floats -> ``None``).

    Example
    -------
    >>> jsonable({"a": (1, float("nan")), 2: {"b", "a"}})
    {'a': [1, None], '2': ['a', 'b']}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        seq = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [jsonable(v) for v in seq]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        try:
            return jsonable(obj.to_dict())
        except Exception:  # an odd to_dict: fall back to the text below
            pass
    return str(obj)


# --------------------------------------------------------------------------
# what a FeatureSet's provenance records
# --------------------------------------------------------------------------


def _weights_text(config: Mapping[str, Any]) -> Tuple[str, bool]:
    """Human text about the weights of one extractor config, and whether they are random."""
    kind = str(config.get("kind", ""))
    weights = str(config.get("weights", "") or "")
    weights_id = str(config.get("weights_id", "") or "")
    if kind == "handcrafted":
        return "handcrafted — no learned weights", False
    if weights.lower() in _RANDOM_WEIGHTS or "random" in weights_id.lower():
        suffix = f" ({weights_id})" if weights_id else ""
        return "weights: random init — not pretrained" + suffix, True
    if not weights and not weights_id:
        return "weights: unknown", False
    return (f"weights: {weights or '?'}"
            + (f" (id: {weights_id})" if weights_id else " (id: unknown)")), False


@dataclass(frozen=True)
class ExtractorInfo:
    """One feature extractor as a feature set's provenance records it.

    ``config`` is the recorded configuration (JSON-ready); ``weights_text``
    says in words which weights were used and ``random_init`` whether they
    were random (not pretrained).
    """

    name: Any
    kind: Any
    weights: Any
    weights_id: Any
    random_init: bool
    weights_text: str
    config: Dict[str, Any] = field(repr=False)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> ExtractorInfo:
        """Read an extractor configuration (``ExtractorConfig.to_dict()``).

        Example
        -------
        >>> x = ExtractorInfo.from_config({"name": "resnet50", "kind": "deep", "weights": "none"})
        >>> x.random_init, x.weights_text
        (True, 'weights: random init — not pretrained')
        """
        text, random_init = _weights_text(config)
        return cls(name=config.get("name"), kind=config.get("kind"), weights=config.get("weights"),
                   weights_id=config.get("weights_id"), random_init=random_init,
                   weights_text=text, config=config)

    def record(self) -> Dict[str, Any]:
        """The entry of ``run.json`` (everything but the configuration)."""
        return {"name": self.name, "kind": self.kind, "weights": self.weights,
                "weights_id": self.weights_id, "random_init": self.random_init,
                "weights_text": self.weights_text}

    def input_notes(self) -> List[str]:
        """What the configuration did to the images: input size, segmented, grayscale."""
        notes = []
        if self.config.get("input_size"):
            notes.append(f"input {self.config['input_size']}px")
        if self.config.get("segment"):
            notes.append("segmented")
        if self.config.get("grayscale"):
            notes.append("grayscale")
        options = self.config.get("options") or {}  # feature options, recorded when not at their defaults
        for key, label in (("tta", "tta"), ("layers", "layers: last +"), ("pooling", "pooling"),
                           ("stain_norm", "stain normalisation")):
            if isinstance(options, Mapping) and options.get(key):
                notes.append(f"{label} {str(options[key]).split(':')[0]}")
        if isinstance(options, Mapping) and options.get("decode"):  # gpu:nvjpeg, gpu:torchvision-cpu
            notes.append(f"decoded by {str(options['decode']).split(':', 1)[-1]}")
        return notes


@dataclass(frozen=True)
class SkippedImage:
    """An image the extraction could not read, as recorded (``id, kind, reason``)."""

    id: Any
    kind: Any
    reason: Any


def _is_extractor_config(obj: Dict[str, Any]) -> bool:
    return "name" in obj and (
        "weights" in obj or "weights_id" in obj or obj.get("kind") in ("deep", "handcrafted")
    )


def _extractor_configs(obj, found: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The extractor configurations anywhere in ``obj`` (one level per combined set)."""
    if isinstance(obj, dict):
        if _is_extractor_config(obj):
            if obj not in found:
                found.append(obj)
            return found
        for value in obj.values():
            _extractor_configs(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _extractor_configs(value, found)
    return found


def _skipped_records(obj, found: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The ``"skipped"`` lists anywhere in ``obj`` (combined sets hold one per part)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "skipped" and isinstance(value, list):
                found.extend(r for r in value if isinstance(r, dict))
            else:
                _skipped_records(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _skipped_records(value, found)
    return found


@dataclass(frozen=True)
class RecordedProvenance:
    """What a ``FeatureSet.provenance`` dict says, read once.

    ``description`` is the extractor's description (``None`` for combined
    sets), ``extractors`` every extractor configuration found (a combined set
    has one per part), ``skipped`` the images the extraction left out.
    """

    description: Optional[str]
    extractors: Tuple[ExtractorInfo, ...]
    skipped: Tuple[SkippedImage, ...]
    #: the reduced-data subsample the images were taken from (``None``: the whole dataset)
    subsample: Optional[Dict[str, Any]] = None

    @classmethod
    def read(cls, provenance) -> RecordedProvenance:
        """Read the provenance of a FeatureSet (a dict as :func:`leukbench.extract` writes it).

        Example
        -------
        >>> p = RecordedProvenance.read({"combined": [
        ...     {"extractor": {"name": "a", "kind": "handcrafted"}, "skipped": []},
        ...     {"extractor": {"name": "b", "kind": "deep", "weights": "imagenet"},
        ...      "skipped": [{"id": "x.png", "kind": "file not found", "reason": "gone"}]}]})
        >>> [x.name for x in p.extractors], [s.id for s in p.skipped]
        (['a', 'b'], ['x.png'])
        """
        description = provenance.get("description") if isinstance(provenance, dict) else None
        configs = _extractor_configs(jsonable(provenance or {}), [])
        records = _skipped_records(provenance or {}, [])
        parts = [provenance] + list(provenance.get("combined") or []) if isinstance(provenance, dict) else []
        subsample = next((p["subsample"] for p in parts if isinstance(p, dict) and p.get("subsample")), None)
        return cls(
            description=description,
            extractors=tuple(ExtractorInfo.from_config(c) for c in configs),
            skipped=tuple(SkippedImage(r.get("id", math.nan), r.get("kind", math.nan),
                                       r.get("reason", math.nan)) for r in records),
            subsample=subsample,
        )


@dataclass(frozen=True)
class FeatureSetInfo:
    """A feature set of the comparison: size and recorded provenance.

    ``entry`` is the description as the result (``feature_sets_info``) or
    the FeatureSet gave it, kept whole for ``run.json``.
    """

    name: Any
    n_images: Any
    n_features: Any
    provenance: RecordedProvenance
    entry: Dict[str, Any] = field(repr=False)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FeatureSetInfo:
        entry = dict(entry)
        return cls(name=entry.get("name"), n_images=entry.get("n_images"),
                   n_features=entry.get("n_features"),
                   provenance=RecordedProvenance.read(entry.get("provenance")), entry=entry)

    @property
    def extractors(self) -> Tuple[ExtractorInfo, ...]:
        return self.provenance.extractors

    def record(self) -> Dict[str, Any]:
        """The entry of ``run.json``: the given description plus its extractors."""
        return {**self.entry, "extractors": [x.record() for x in self.extractors]}


def feature_sets_info(result, feature_sets=None) -> List[FeatureSetInfo]:
    """The result's ``feature_sets_info``, plus the given feature sets it does not name."""
    entries = [dict(d) for d in (getattr(result, "feature_sets_info", None) or [])]
    names = {str(d.get("name")) for d in entries}
    for fs in as_feature_set_list(feature_sets):
        if str(fs.name) not in names:
            entries.append({"name": fs.name, "n_images": len(fs), "n_features": fs.X.shape[1],
                            "provenance": fs.provenance})
    return [FeatureSetInfo.from_entry(d) for d in entries]


# --------------------------------------------------------------------------
# the provenance of a run
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Where the numbers of a comparison come from (the origin part of ``run.json``).

    Build it with :meth:`collect`; ``command`` is ``None`` when no command
    line was recorded, ``data_fingerprints`` come from the feature sets when
    given, otherwise from the predictions.
    """

    created_utc: str
    versions: Dict[str, Optional[str]]
    platform: Dict[str, str]
    command: Optional[str]
    working_directory: str
    params: Dict[str, Any]
    seeds: Dict[str, Any]
    feature_sets: Tuple[FeatureSetInfo, ...]
    data_fingerprints: Tuple[Dict[str, Any], ...]

    @classmethod
    def collect(cls, result, feature_sets=None) -> Provenance:
        """Read the provenance of ``result`` (and of ``feature_sets``, when given) now."""
        sets = as_feature_set_list(feature_sets)
        params = dict(getattr(result, "params", None) or {})
        fingerprints = ([data_fingerprint(fs) for fs in sets] if sets
                        else prediction_fingerprints(result))
        return cls(
            created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            versions=package_versions(),
            platform=platform_info(),
            command=command_text(params),
            working_directory=os.getcwd(),  # where a relative path in the command is resolved
            params=params,
            seeds=seeds(params),
            feature_sets=tuple(feature_sets_info(result, sets)),
            data_fingerprints=tuple(fingerprints),
        )

    @property
    def random_init_extractors(self) -> List[str]:
        """Names of the extractors that used random-init weights, each once, in order."""
        names = [str(x.name) for info in self.feature_sets for x in info.extractors
                 if x.random_init]
        return list(dict.fromkeys(names))

    @property
    def subsample(self) -> Optional[Dict[str, Any]]:
        """The reduced-data subsample of the first feature set that records one (``None``: none)."""
        return next((info.provenance.subsample for info in self.feature_sets
                     if info.provenance.subsample), None)

    @property
    def sample_seed(self) -> int:
        """The run's ``seed`` (0 when absent or not an integer), to pick sample images."""
        seed = self.seeds.get("seed", 0)
        return int(seed) if isinstance(seed, (int, np.integer)) else 0
