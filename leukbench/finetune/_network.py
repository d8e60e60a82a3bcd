"""The network that is fine-tuned: a registered backbone, built by the deep-feature builder, with a
new dropout + linear head on its pooled features; its stages (for ``freeze``) and its input transform.

Example
-------
>>> from leukbench.finetune._network import input_preprocessing
>>> input_preprocessing("efficientnet_lite0", 64).crop  # doctest: +SKIP
(64, 64)
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

from .._validation import invalid

__all__ = ["backbone_stages", "build_network", "input_preprocessing", "resolved_weights", "set_train_mode"]

#: Child modules whose own children are stages (timm's ``blocks``, torchvision's ``features``/``layerN``).
_STAGE_CONTAINERS = ("blocks", "features", "layers", "stages")


def resolved_weights(backbone: str, weights) -> Tuple[Any, str, Any, str]:
    """``(spec, source, location, weights_id)`` of ``backbone`` with ``weights`` (nothing built)."""
    from ..features.deep._pretrained import resolve_weights, weights_id
    from ..features.deep._specs import spec_for

    spec = spec_for(backbone)
    source, location = resolve_weights(spec, weights)
    return spec, source, location, weights_id(spec, source, location, seed=0)


def input_preprocessing(backbone: str, size: Optional[int]):
    """The backbone's eval transform, scaled to ``size`` pixels (same crop fraction); ``None``: as is."""
    from ..features.deep._preprocessing import spec_preprocessing
    from ..features.deep._specs import spec_for

    pre = spec_preprocessing(spec_for(backbone))
    if size is None or (int(size), int(size)) == tuple(pre.crop):
        return pre
    ratio = _resize_ratio(pre)
    resize: Any = (round(size * ratio[0]), round(size * ratio[1])) if isinstance(pre.resize, (tuple, list)) \
        else int(round(size * ratio[0]))
    return dataclasses.replace(pre, crop=(int(size), int(size)), resize=resize)


def _resize_ratio(pre) -> Tuple[float, float]:
    if isinstance(pre.resize, (tuple, list)):
        return pre.resize[0] / pre.crop[0], pre.resize[1] / pre.crop[1]
    return pre.resize / min(pre.crop), pre.resize / min(pre.crop)


_NET = []


def _net_class():
    """The module class (defined on first use: torch is imported lazily)."""
    if _NET:
        return _NET[0]
    import torch.nn as nn

    class FineTuneNet(nn.Module):
        """``backbone`` (pooled penultimate features) -> dropout -> linear head."""

        def __init__(self, backbone, n_features: int, n_classes: int, dropout: float):
            super().__init__()
            self.backbone = backbone
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, n_classes))

        def features(self, x):
            return self.backbone(x).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    _NET.append(FineTuneNet)
    return FineTuneNet


def _n_features(backbone) -> int:
    import torch

    n = getattr(backbone, "num_features", None)
    if isinstance(n, int) and n > 0:
        return n
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        out = backbone(torch.zeros(1, 3, 64, 64))
        backbone.train(was)
    return int(out.flatten(1).shape[1])


def build_network(backbone: str, weights, n_classes: int, *, dropout: float, freeze: int, seed: int):
    """The backbone (as the extractor builds it: ImageNet or ``weights``, head removed), trainable,
    with a new head whose initialisation follows ``seed``; the first ``freeze`` stages stay frozen.

    Returns
    -------
    (model, n_stages)
    """
    import torch

    from ..features.deep._builder import _build

    spec, source, location, _ = resolved_weights(backbone, weights)
    net = _build(spec, source, location, seed, with_head=False)
    net.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _net_class()(net, _n_features(net), n_classes, dropout)
    stages = backbone_stages(net)
    if freeze > len(stages):
        raise invalid("freeze", f"must be at most {len(stages)}, the stages of {backbone} (got {freeze})")
    for stage in stages[:freeze]:
        stage.requires_grad_(False)
    model.frozen_stages = stages[:freeze]
    model.train()
    return model, len(stages)


def backbone_stages(net) -> List[Any]:
    """The backbone's stages in input order: its top-level children with parameters, the children of
    a stage container (``blocks``, ``features``, ``layers``, ``stages``) counted one by one."""
    out = []
    for name, child in net.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if name in _STAGE_CONTAINERS and len(list(child.children())) > 1:
            out.extend(c for c in child.children() if any(True for _ in c.parameters()))
        else:
            out.append(child)
    return out


def set_train_mode(model, train: bool) -> None:
    """``model.train(train)``, with the frozen stages (and their batch norms) always in eval mode."""
    model.train(train)
    for stage in getattr(model, "frozen_stages", ()):
        stage.eval()
