"""Feature options of a deep backbone: test-time symmetries, intermediate layers, GeM pooling.

``tta``
    ``"none"``; ``"flip"``: the pooled features averaged over the image and its mirror
    image; ``"d4"``: over the 8 symmetries of the square (4 rotations, each also mirrored).
    A single cell has no orientation, so its features should not have one either.
``layers``
    ``"last"`` (the pooled penultimate activations); ``"last2"`` / ``"last3"``: also the
    pooled outputs of the last one / two feature stages of timm's ``feature_info``
    (``blocks.6``, ``blocks.4`` for EfficientNet-Lite); or comma-separated stage names.
``pooling``
    ``"avg"`` (global average, the network's own) or ``"gem"``: generalised mean with
    ``p = 3`` (Radenović et al. 2018), applied to every layer taken.

Example
-------
>>> import torch
>>> x = torch.arange(16).view(1, 1, 4, 4)
>>> [tuple(v[0, 0, 0].tolist()) for v in tta_views(x, "flip")]
[(0, 1, 2, 3), (3, 2, 1, 0)]
>>> len(tta_views(x, "d4"))
8
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from ..._validation import invalid

#: Accepted values of ``tta`` and ``pooling``; the named ``layers``.
TTA_MODES = ("none", "flip", "d4")
POOLINGS = ("avg", "gem")
LAYER_PRESETS = ("last", "last2", "last3")
#: Exponent of the generalised mean.
GEM_P = 3.0


def check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise invalid("tta", f"must be one of {', '.join(TTA_MODES)} (got {tta!r})")
    return tta


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise invalid("pooling", f"must be one of {', '.join(POOLINGS)} (got {pooling!r})")
    return pooling


def tta_views(x, tta: str) -> list:
    """The views of an ``(N, C, H, W)`` batch that ``tta`` averages over (the batch itself first)."""
    import torch

    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, torch.flip(x, dims=(3,))]
    views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return views + [torch.flip(v, dims=(3,)) for v in views]


def stage_table(model) -> List[Tuple[str, int]]:
    """``(module name, channels)`` of each feature stage of a timm model (its ``feature_info``)."""
    info = getattr(model, "feature_info", None)
    if not info:
        return []
    return [(str(f["module"]), int(f["num_chs"])) for f in info]


def resolve_layers(layers: str, stages: Sequence[Tuple[str, int]], backbone: str) -> List[Tuple[str, int]]:
    """The intermediate stages ``layers`` asks for, shallow to deep (the last layer is always taken).

    Raises
    ------
    InvalidParameterError
        For an unknown preset or stage name, or intermediate layers of a backbone without
        timm's ``feature_info`` (torchvision backbones).

    Example
    -------
    >>> resolve_layers("last2", [("blocks.4", 112), ("blocks.6", 320)], "x")
    [('blocks.6', 320)]
    >>> resolve_layers("blocks.6,blocks.4", [("blocks.4", 112), ("blocks.6", 320)], "x")
    [('blocks.4', 112), ('blocks.6', 320)]
    """
    text = str(layers).strip()
    if text == "last":
        return []
    if not stages:
        raise invalid("layers", f"other than 'last' needs a timm-built backbone with feature stages "
                                f"(efficientnet_lite0/1/2, timm:<model>); {backbone} has none")
    if text in ("last2", "last3"):
        n = 1 if text == "last2" else 2
        return list(stages[-n:])
    names = [t.strip() for t in text.split(",") if t.strip()]
    by_name = dict(stages)
    unknown = [n for n in names if n not in by_name]
    if not names or unknown:
        raise invalid("layers", f"must be one of {', '.join(LAYER_PRESETS)} or stage names of {backbone} "
                                f"({', '.join(by_name)}) (got {layers!r})")
    order = [n for n, _ in stages]
    return [(n, by_name[n]) for n in sorted(set(names), key=order.index)]


def layer_label(module: str) -> str:
    """The part of a feature name that says its layer: ``blocks.6`` -> ``blocks_6``."""
    return module.replace(".", "_")


def pool(fmap, pooling: str):
    """``(N, C, H, W)`` -> ``(N, C)``: global average or generalised mean (``p = GEM_P``)."""
    if pooling == "avg":
        return fmap.float().mean(dim=(2, 3))
    return fmap.float().clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)


class LayerTap:
    """Forward hooks that keep the outputs of some named modules of a model during a forward pass."""

    def __init__(self, model, modules: Sequence[str]):
        self.outputs: Dict[str, object] = {}
        named = dict(model.named_modules())
        self.handles = [named[m].register_forward_hook(self._keeper(m)) for m in modules]

    def _keeper(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
