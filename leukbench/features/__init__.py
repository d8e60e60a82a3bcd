"""Feature extractors: deep backbones and handcrafted descriptors.

The built-in extractors are listed here by name and ``"module:attribute"`` of
their factory; a factory's module is imported the first time the name is
used, so ``import leukbench.features`` imports neither torch nor scikit-image.

Example
-------
>>> from leukbench.features import list_extractors
>>> "efficientnet_lite0" in list_extractors() and "handcrafted" in list_extractors()
True
"""

from .base import (
    FEATURE_VERSION,
    Extractor,
    ExtractorConfig,
    column_groups,
    create_extractor,
    extractor_factory,
    extractor_options,
    list_extractors,
    override_extractor,
    register_extractor,
    unregister_extractor,
)

__all__ = [
    "FEATURE_VERSION",
    "Extractor",
    "ExtractorConfig",
    "column_groups",
    "create_extractor",
    "extractor_factory",
    "extractor_options",
    "list_extractors",
    "override_extractor",
    "register_extractor",
    "unregister_extractor",
]

_DEEP = "leukbench.features.deep"
_HANDCRAFTED = "leukbench.features.handcrafted"

#: Registry name -> factory of every built-in extractor, imported on first use.
BUILTIN_EXTRACTORS = {
    "efficientnet_lite0": f"{_DEEP}:create_efficientnet_lite0",
    "efficientnet_lite1": f"{_DEEP}:create_efficientnet_lite1",
    "efficientnet_lite2": f"{_DEEP}:create_efficientnet_lite2",
    "resnet50": f"{_DEEP}:create_resnet50",
    "efficientnet_b0": f"{_DEEP}:create_efficientnet_b0",
    "efficientnet_b3": f"{_DEEP}:create_efficientnet_b3",
    "densenet121": f"{_DEEP}:create_densenet121",
    "vgg16": f"{_DEEP}:create_vgg16",
    "alexnet": f"{_DEEP}:create_alexnet",
    "inception_v3": f"{_DEEP}:create_inception_v3",
    "timm:": f"{_DEEP}:create_timm",
    "handcrafted": f"{_HANDCRAFTED}:create_handcrafted",
    "morphology": f"{_HANDCRAFTED}:create_morphology",
    "texture": f"{_HANDCRAFTED}:create_texture",
    "color": f"{_HANDCRAFTED}:create_color",
    "nucleus": "leukbench.features.nucleus:create_nucleus",
}

for _name, _target in BUILTIN_EXTRACTORS.items():
    register_extractor(_name, _target)
del _name, _target
