"""Folding eval-mode batch norms into the convolutions that feed them."""

from __future__ import annotations

from typing import List, Tuple

from ._builder import _set_module


def fold_batchnorm(model) -> int:
    """Fold eval-mode batch norms into the convolutions that feed them, in place.

    ``bn(conv(x))`` with frozen statistics is an affine map per channel, so it
    is merged into the convolution's weight and bias; the batch norm is then
    replaced by its activation (timm's ``BatchNormAct2d``) or removed. The
    output is the same function up to float32 rounding (about 1e-6 relative)
    and a forward pass on the CPU skips one full pass over every activation
    map. Pairs are found on a ``torch.fx`` trace (a batch norm whose only input
    is a convolution used nowhere else); models that cannot be traced, and
    batch-norm types not known here, are left as they are.

    Returns the number of folded pairs.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    >>> fold_batchnorm(model), type(model[1]).__name__
    (1, 'Identity')
    """
    import torch

    if model.training:
        return 0
    pairs = _foldable_pairs(model)
    with torch.no_grad():
        for conv, bn_name, bn, replacement in pairs:
            _fold_into(conv, bn)
            _set_module(model, bn_name, replacement)
    return len(pairs)


def _foldable_pairs(model) -> List[Tuple[object, str, object, object]]:
    """``(conv, batch-norm name, batch norm, replacement)`` of each pair that can be folded."""
    import torch.fx as fx
    import torch.nn as nn

    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        BatchNormAct2d = None

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - dynamic control flow: keep the model as it is
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        bn = modules.get(node.target)
        src = node.args[0]
        if not isinstance(bn, nn.BatchNorm2d) or not isinstance(src, fx.Node) or src.op != "call_module":
            continue
        conv = modules.get(src.target)
        if not isinstance(conv, nn.Conv2d) or len(src.users) != 1 or conv.out_channels != bn.num_features:
            continue
        if type(bn) is nn.BatchNorm2d:
            replacement = nn.Identity()
        elif BatchNormAct2d is not None and type(bn) is BatchNormAct2d:
            replacement = nn.Sequential(bn.drop, bn.act)
        else:
            continue
        if bn.running_mean is None or bn.running_var is None:
            continue
        pairs.append((conv, node.target, bn, replacement))
    return pairs


def _fold_into(conv, bn) -> None:
    """Merge the affine map of eval-mode ``bn`` into ``conv``'s weight and bias (no grad)."""
    import torch
    import torch.nn as nn

    w = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    b = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
    scale = w / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + b
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias.detach().clone(), requires_grad=False)
    else:
        conv.bias.copy_(new_bias)
