"""The factories the registry builds deep extractors with (listed by name in
:mod:`leukbench.features`, imported on first use)."""

from __future__ import annotations

from ..base import check_options
from ._extractor import DEEP_OPTIONS, DeepExtractor


class _BackboneFactory:
    """``factory(**options) -> DeepExtractor`` of one registered backbone."""

    options = DEEP_OPTIONS

    def __init__(self, name: str):
        self.name = name
        self.__name__ = f"create_{name}"
        self.__doc__ = f"Create the ``{name}`` deep feature extractor (options: {', '.join(DEEP_OPTIONS)})."

    def __call__(self, **options) -> DeepExtractor:
        check_options(self.name, options, DEEP_OPTIONS)
        return DeepExtractor(self.name, **options)

    def __repr__(self) -> str:
        return f"<deep feature extractor factory {self.name!r}>"


create_efficientnet_lite0 = _BackboneFactory("efficientnet_lite0")
create_efficientnet_lite1 = _BackboneFactory("efficientnet_lite1")
create_efficientnet_lite2 = _BackboneFactory("efficientnet_lite2")
create_resnet50 = _BackboneFactory("resnet50")
create_efficientnet_b0 = _BackboneFactory("efficientnet_b0")
create_efficientnet_b3 = _BackboneFactory("efficientnet_b3")
create_densenet121 = _BackboneFactory("densenet121")
create_vgg16 = _BackboneFactory("vgg16")
create_alexnet = _BackboneFactory("alexnet")
create_inception_v3 = _BackboneFactory("inception_v3")


def create_timm(*, model_name: str, **options) -> DeepExtractor:
    """Create a ``timm:<model_name>`` deep feature extractor.

    Options are those of :class:`DeepExtractor` (``weights``, ``segment``,
    ``grayscale``, ``device``, ``batch_size``, ``seed``, ``precision``,
    ``tta``, ``layers``, ``pooling``, ``stain_norm``, ``stain_reference``); any other is an
    :class:`~leukbench.exceptions.InvalidParameterError`.
    """
    check_options(f"timm:{model_name}", options, DEEP_OPTIONS)
    return DeepExtractor(f"timm:{model_name}", **options)


create_timm.options = DEEP_OPTIONS
