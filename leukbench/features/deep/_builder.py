"""Building a backbone: architecture, weights from their source, head removed.

Example
-------
>>> from leukbench.features.deep import build_model
>>> model = build_model("timm:test_resnet", weights="none")  # doctest: +SKIP
>>> model.training  # doctest: +SKIP
False
"""

from __future__ import annotations

from typing import Any, Dict

from ...exceptions import WeightsUnavailableError
from ._hub import hub_offline_when_unreachable
from ._pretrained import (
    BUNDLED,
    FILE,
    RANDOM,
    TIMM,
    TORCHVISION,
    Location,
    ensure_torchvision_cached,
    lite_file,
    resolve_weights,
    unavailable,
)
from ._specs import _Spec, spec_for, timm_cfg, torchvision_weights
from ._state_dict import load_into, load_state_dict_file, lukemelas_to_timm


def _set_module(model, path: str, module) -> None:
    parent = model
    parts = path.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], module)


def _strip_head(model, spec: _Spec) -> None:
    """Replace the classification head by the identity (pooled penultimate features)."""
    import torch.nn as nn

    if spec.family == "torchvision":
        if spec.arch == "inception_v3":
            model.aux_logits = False
            model.AuxLogits = None
            _set_module(model, "fc", nn.Identity())
        else:
            _set_module(model, spec.head[0], nn.Identity())
    else:
        model.reset_classifier(0)


def _construct(spec: _Spec, pretrained_torchvision=None):
    """Architecture with its ImageNet head, randomly initialised (or torchvision weights)."""
    if spec.family == "torchvision":
        import torchvision.models as tvm

        builder = getattr(tvm, spec.arch)
        kwargs: Dict[str, Any] = {}
        if spec.arch == "inception_v3":
            # the arguments torchvision uses with its pretrained weights
            kwargs = {"aux_logits": True, "transform_input": True}
            if pretrained_torchvision is None:
                kwargs["init_weights"] = True
        return builder(weights=pretrained_torchvision, **kwargs)
    import timm

    return timm.create_model(spec.arch, pretrained=False)


def _seeded_construct(spec: _Spec, seed: int):
    """:func:`_construct` under ``seed``, leaving the global random state as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _construct(spec)


def _random_model(spec: _Spec, location: Location, seed: int, with_head: bool):
    model = _seeded_construct(spec, seed)
    if not with_head:
        _strip_head(model, spec)
    return model


def _file_model(spec: _Spec, path: Location, seed: int, with_head: bool):
    model = _random_model(spec, None, seed, with_head)
    if not path.is_file():
        raise WeightsUnavailableError(f"{spec.name}: weights file {str(path)!r} not found")
    load_into(model, spec, load_state_dict_file(path), with_head=with_head, source=str(path))
    return model


def _bundled_model(spec: _Spec, location: Location, seed: int, with_head: bool):
    import torch

    model = _construct(spec)
    sd = torch.load(str(lite_file(spec.name)), map_location="cpu", weights_only=True)
    model.load_state_dict(lukemelas_to_timm(sd, model.state_dict()), strict=True)
    if not with_head:
        _strip_head(model, spec)
    return model


def _torchvision_model(spec: _Spec, location: Location, seed: int, with_head: bool):
    cached = ensure_torchvision_cached(spec)
    try:
        model = _construct(spec, pretrained_torchvision=torchvision_weights(spec))
    except Exception as exc:
        raise WeightsUnavailableError(
            f"{spec.name}: cached ImageNet weights {cached} could not be loaded "
            f"({exc.__class__.__name__}); delete the file to re-download, or use "
            "--weights /path/to/file.pth or --weights none"
        ) from exc
    if not with_head:
        _strip_head(model, spec)
    return model


def _timm_model(spec: _Spec, location: Location, seed: int, with_head: bool):
    import timm

    cfg = timm_cfg(spec.arch)
    if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
        raise WeightsUnavailableError(
            f"{spec.name}: timm has no pretrained weights for this model; "
            "use --weights /path/to/file.pth or --weights none"
        )
    try:
        with hub_offline_when_unreachable():
            return timm.create_model(spec.arch, pretrained=True, **({} if with_head else {"num_classes": 0}))
    except Exception as exc:  # hub/network errors come in many types
        raise unavailable(spec, exc) from exc


#: How a model is built from each source of weights (see ``resolve_weights``).
_BUILDERS = {
    RANDOM: _random_model,
    FILE: _file_model,
    BUNDLED: _bundled_model,
    TORCHVISION: _torchvision_model,
    TIMM: _timm_model,
}


def _build(spec: _Spec, source: str, location: Location, seed: int, with_head: bool):
    """The model of ``spec`` with the weights of ``(source, location)``, in eval mode, frozen."""
    model = _BUILDERS[source](spec, location, seed, with_head)
    model.eval()
    model.requires_grad_(False)
    return model


def build_model(name: str, weights="imagenet", *, with_head: bool = False, seed: int = 0):
    """Build a backbone as a CPU ``torch.nn.Module`` in eval mode.

    Parameters
    ----------
    name : str
        Registered backbone name or ``timm:<model>``.
    weights : str or path
        ``"imagenet"``, ``"none"`` or a local state-dict file.
    with_head : bool
        Keep the ImageNet classification head (logits output) instead of
        returning pooled penultimate features.
    seed : int
        Seed of the random initialisation (``weights="none"``).

    Raises
    ------
    WeightsUnavailableError
        When the weights cannot be obtained or do not fit.

    Example
    -------
    >>> model = build_model("efficientnet_lite0", with_head=True)  # doctest: +SKIP
    >>> model.get_classifier().out_features  # doctest: +SKIP
    1000
    """
    spec = spec_for(name)
    source, location = resolve_weights(spec, weights)
    return _build(spec, source, location, seed, with_head)
