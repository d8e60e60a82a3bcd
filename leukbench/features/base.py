"""Extractor protocol, configuration objects and the extractor registry.

Every feature extractor (deep backbone or handcrafted group) is described by a
frozen :class:`ExtractorConfig` and implemented by an :class:`Extractor`.
Extraction is split in two stages so that decoding and per-image work run in
worker processes while batched work (a neural network) runs in the main one:

``prepare(image) -> item``
    Runs in a worker, once per image, on an RGB ``uint8`` array of shape
    ``(H, W, 3)`` (already segmented/cropped when the config asks for it).
    Must be picklable-friendly and cheap to ship back (a tensor or a vector).
``compute(items) -> ndarray``
    Runs in the main process on a list of prepared items and returns a
    ``float32`` matrix of shape ``(len(items), n_features)``.

The cache key of an extractor is derived from ``config.to_dict()`` plus
:data:`FEATURE_VERSION`, so any change of configuration gives a new cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

#: Bumped whenever the numbers an extractor produces may change for the same
#: configuration; part of every cache key.
#:
#: 2: deep backbones run with their batch norms folded into the convolutions on
#: the CPU (features change at float32 rounding, which can flip a tree's split).
#: 3: high-bit-depth images are scaled by the range of a camera bit depth (8, 10,
#: 12, 14, 16 bits), no longer by any 2**k - 1 (8-bit images are unchanged); the
#: cell is chosen with a stronger preference for the image centre
#: (preprocessing.CENTRALITY_POWER), which moves the mask of ~0.7 % of cells.
FEATURE_VERSION = 3


@dataclasses.dataclass(frozen=True)
class ExtractorConfig:
    """Full, hashable description of one feature extractor.

    Parameters
    ----------
    name : str
        Registry name (``"efficientnet_lite0"``, ``"resnet50"``,
        ``"handcrafted"``, ``"timm:convnext_tiny"`` ...).
    kind : {"deep", "handcrafted"}
        Family of the extractor.
    weights : str
        ``"imagenet"``, ``"none"`` (random init) or a path to a weights file;
        handcrafted extractors use ``"none"``.
    weights_id : str
        Identity of the weights actually loaded (e.g. file name + sha256
        prefix, or ``"random-init(seed=0)"``); filled in by the extractor.
    input_size : int
        Side of the square network input (0 for handcrafted extractors,
        which work at the image's own size).
    segment : bool
        Whether images are segmented and cropped to the cell first.
    grayscale : bool
        Whether images are turned to grayscale (replicated to 3 channels).
    options : tuple of (str, object)
        Extra extractor-specific settings, as sorted key/value pairs.
    """

    name: str
    kind: str
    weights: str = "none"
    weights_id: str = ""
    input_size: int = 0
    segment: bool = False
    grayscale: bool = False
    options: tuple = ()

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = {k: v for k, v in self.options}
        d["feature_version"] = FEATURE_VERSION
        return d

    def cache_key(self) -> str:
        """Short stable identifier: ``<name>-<sha1 of the config>``."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        digest = hashlib.sha1(blob).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return f"{safe}-{digest}"


class Extractor:
    """Base class of all feature extractors (see module docstring)."""

    #: Set by subclasses.
    config: ExtractorConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def feature_names(self) -> List[str]:
        """Stable, namespaced column names, e.g. ``efficientnet_lite0.f0000``."""
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> Any:
        """Per-image work, run in a worker process."""
        raise NotImplementedError

    def compute(self, items: Sequence[Any]) -> np.ndarray:
        """Batched work in the main process; returns float32 (n, n_features)."""
        raise NotImplementedError

    #: Suggested number of items per ``compute`` call.
    batch_size: int = 32

    #: How images reach ``compute``: ``"overlap"`` decodes and prepares them in
    #: worker processes while ``compute`` runs (right when ``compute`` is cheap
    #: or runs on a GPU); ``"alternate"`` prepares each batch with a pool of
    #: threads and then runs ``compute`` with every core to itself (right for a
    #: network on the CPU, whose threads lose far more to a decoding process
    #: competing for their cores than decoding costs).
    feed: str = "overlap"

    def describe(self) -> str:
        """One line for reports, e.g. ``resnet50 (weights: random init)``."""
        c = self.config
        w = {"none": "random init", "": "n/a"}.get(c.weights_id or c.weights, c.weights_id or c.weights)
        extra = []
        if c.segment:
            extra.append("segmented")
        if c.grayscale:
            extra.append("grayscale")
        tail = f", {', '.join(extra)}" if extra else ""
        if c.kind == "handcrafted":
            return f"{c.name} (handcrafted{tail})"
        return f"{c.name} (weights: {w}, input {c.input_size}px{tail})"


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------

_REGISTRY: Dict[str, Callable[..., Extractor]] = {}


def register_extractor(name: str):
    """Decorator registering a factory ``f(**kwargs) -> Extractor`` by name."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def list_extractors() -> List[str]:
    """Names of the registered extractors, each of which :func:`create_extractor` builds.

    Any timm model is accepted too, as ``timm:<model name>`` (not listed).
    """
    _ensure_builtin()
    return sorted(n for n in _REGISTRY if n != "timm:")


def create_extractor(name: str, **kwargs) -> Extractor:
    """Build a registered extractor.

    Parameters
    ----------
    name : str
        A registered name, or ``timm:<model name>`` for any timm model.
    **kwargs
        Passed to the factory: ``weights``, ``segment``, ``grayscale``,
        ``device``, ``batch_size`` ... (factories ignore what they do not use).
    """
    _ensure_builtin()
    if name.startswith("timm:"):
        return _REGISTRY["timm:"](model_name=name[len("timm:"):], **kwargs)
    if name not in _REGISTRY:
        known = ", ".join(n for n in sorted(_REGISTRY) if n != "timm:")
        raise KeyError(
            f"unknown feature extractor {name!r}; choose one of {known}, or timm:<model>"
        )
    return _REGISTRY[name](**kwargs)


def _ensure_builtin() -> None:
    # Importing the modules registers their extractors; done lazily so that
    # `import leukbench` does not import torch.
    from . import deep, handcrafted  # noqa: F401
