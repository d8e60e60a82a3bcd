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

The registry maps names to factories ``factory(**options) -> Extractor``. A
factory may be registered as a ``"module:attribute"`` string, imported on
first use: that is how :mod:`leukbench.features` lists the built-in
extractors without importing them (nor torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import json
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

import numpy as np

from .._validation import invalid
from ..exceptions import UnknownExtractorError

__all__ = [
    "FEATURE_VERSION",
    "Extractor",
    "ExtractorConfig",
    "check_options",
    "column_groups",
    "create_extractor",
    "extractor_factory",
    "extractor_options",
    "list_extractors",
    "override_extractor",
    "register_extractor",
    "unregister_extractor",
]

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

#: Registry key of the factory of every ``timm:<model>`` name.
TIMM_PREFIX = "timm:"


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

    Example
    -------
    >>> c = ExtractorConfig(name="timm:resnet18", kind="deep")
    >>> c.cache_key().startswith("timm_resnet18-")
    True
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

    #: Set by subclasses (an attribute, or a property computed on first use).
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

    def check(self) -> "Extractor":
        """Raise now what would otherwise fail during extraction; returns ``self``.

        Extraction calls it on every extractor before it reads any image, so
        an unknown device or a missing weights file is reported at once. The
        default resolves :attr:`config` and :attr:`feature_names`.
        """
        self.config  # noqa: B018 - resolving it is the check
        self.feature_names  # noqa: B018
        return self

    def segmentation_fallback(self, item: Any) -> bool:
        """Whether preparing ``item`` found no cell and used the whole image.

        Counted in the extraction summary; extractors that do not segment
        (the default) never fall back.
        """
        return False

    def column_source(self, candidates: Sequence["Extractor"]) -> Optional["Extractor"]:
        """One of ``candidates`` that computes all of this extractor's columns.

        When one does (with the same settings), extraction copies the columns
        from its cache instead of computing them again. The default is
        ``None``: nothing else computes these columns.
        """
        return None

    def cached_column_sources(self) -> List["Extractor"]:
        """Extractors whose caches from earlier runs may hold all of these columns.

        Each is checked with :meth:`column_source` and used when its cache
        exists. None by default.
        """
        return []

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

Factory = Callable[..., Extractor]

#: name -> factory, or "module:attribute" of a factory not imported yet
_REGISTRY: Dict[str, Union[Factory, str]] = {}


def register_extractor(name: str, factory: Union[Factory, str, None] = None, *, replace: bool = False):
    """Register a factory ``f(**options) -> Extractor`` under ``name``.

    Used as a decorator (``@register_extractor("mine")``) or called with the
    factory, which may be a ``"module:attribute"`` string imported on first
    use. A factory may declare the options it accepts as an ``options``
    attribute (a tuple of names); otherwise its keyword parameters are its
    options, and a ``**kwargs`` parameter accepts any.

    Raises
    ------
    InvalidParameterError
        When ``name`` is registered already and ``replace`` is False.

    Example
    -------
    >>> @register_extractor("doc_example")
    ... def _make(*, segment=False):
    ...     ...
    >>> extractor_options("doc_example")
    ('segment',)
    >>> unregister_extractor("doc_example")
    """
    if factory is None:
        def deco(f):
            register_extractor(name, f, replace=replace)
            return f

        return deco
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise invalid("name", f"{name!r} is already a registered feature extractor; pass replace=True")
    _REGISTRY[name] = factory
    return factory


def unregister_extractor(name: str) -> None:
    """Remove ``name`` from the registry (nothing happens when it is not there)."""
    _REGISTRY.pop(name, None)


@contextlib.contextmanager
def override_extractor(name: str, factory: Union[Factory, str]) -> Iterator[None]:
    """Register ``factory`` under ``name`` for a ``with`` block, then restore the registry."""
    before = _REGISTRY.get(name)
    _REGISTRY[name] = factory
    try:
        yield
    finally:
        if before is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = before


def list_extractors() -> List[str]:
    """Names of the registered extractors, each of which :func:`create_extractor` builds.

    Any timm model is accepted too, as ``timm:<model name>`` (not listed).
    """
    return sorted(n for n in _REGISTRY if n != TIMM_PREFIX)


def _registry_key(name: str) -> str:
    return TIMM_PREFIX if name.startswith(TIMM_PREFIX) else name


def extractor_factory(name: str) -> Factory:
    """The factory registered under ``name`` (``"timm:"`` for every timm model), imported if need be.

    Raises
    ------
    UnknownExtractorError
        When nothing is registered under ``name``.
    """
    key = _registry_key(name)
    if key not in _REGISTRY:
        known = ", ".join(list_extractors())
        raise UnknownExtractorError(
            f"unknown feature extractor {name!r}; choose one of {known}, or timm:<model>"
        )
    factory = _REGISTRY[key]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
        _REGISTRY[key] = factory
    return factory


def extractor_options(name: str) -> Optional[tuple]:
    """Options the factory of ``name`` accepts, or ``None`` when it accepts any."""
    factory = extractor_factory(name)
    declared = getattr(factory, "options", None)
    if declared is not None:
        return tuple(declared)
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "model_name")


def column_groups(name: str) -> FrozenSet[str]:
    """The groups of columns an extractor name contributes to a feature set.

    A factory may declare them as a ``column_groups`` attribute (the
    ``handcrafted`` factory: its three groups); otherwise, and for names not
    registered, the name itself is the one group. Two parts of a feature set
    that share a group would give it the same columns twice.

    Example
    -------
    >>> sorted(column_groups("handcrafted"))
    ['color', 'morphology', 'texture']
    >>> column_groups("not_registered")
    frozenset({'not_registered'})
    """
    if _registry_key(name) not in _REGISTRY:
        return frozenset({name})
    declared = getattr(extractor_factory(name), "column_groups", None)
    return frozenset(declared) if declared else frozenset({name})


def check_options(extractor: str, options: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Raise :class:`~leukbench.exceptions.InvalidParameterError` for an option not in ``accepted``."""
    accepted = tuple(accepted)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise invalid(unknown[0], f"is not an option of the {extractor} feature extractor; "
                                  f"its options are {', '.join(sorted(accepted))}")


def create_extractor(name: str, **kwargs) -> Extractor:
    """Build a registered extractor.

    Parameters
    ----------
    name : str
        A registered name, or ``timm:<model name>`` for any timm model.
    **kwargs
        Passed to the factory: ``weights``, ``segment``, ``grayscale``,
        ``device``, ``batch_size`` ... (see :func:`extractor_options`; an
        option the extractor does not take is an error).

    Raises
    ------
    UnknownExtractorError
        For a name that is not registered.
    InvalidParameterError
        For an option the extractor does not take.

    Example
    -------
    >>> create_extractor("morphology").feature_names[0]
    'morph.area'
    """
    factory = extractor_factory(name)
    if name.startswith(TIMM_PREFIX):
        return factory(model_name=name[len(TIMM_PREFIX):], **kwargs)
    return factory(**kwargs)
