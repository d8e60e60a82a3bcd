"""A fine-tuned network as the files of a ``torch`` bundle, and back.

The weights go to ``network.safetensors`` (:func:`safetensors.torch.save`:
plain tensors, no pickle); what builds the network again goes to the
manifest as JSON (:func:`network_info`): the backbone, the weights it started
from and their identity, the :class:`~leukbench.finetune.FineTuneConfig`
fields that shape what it learnt, the classes, and the input size and
preprocessing. :func:`load_network` reads the tensors with
:func:`safetensors.torch.load` into a network that
:meth:`FineTuner.load_network <leukbench.finetune.FineTuner.load_network>`
builds from that configuration; ``torch.load`` is never called.

Example
-------
>>> info = {"backbone": "efficientnet_lite0", "weights": "imagenet", "config": {}, "classes": ["all"],
...         "input": {}}
>>> info_problem(info)
'classes is not a list of at least two class names'
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..exceptions import BundleError, InvalidParameterError, UnknownExtractorError
from ._kinds import NETWORK

__all__ = ["info_problem", "input_options", "load_network", "network_files", "network_info"]

_REFIT = "copy the bundle again or train it again with `leukbench train`"


def input_options(pre) -> Dict[str, Any]:
    """The input transform of a network (crop, resize, interpolation, mean, std) as JSON values.

    Example
    -------
    >>> from leukbench.finetune._network import input_preprocessing
    >>> input_options(input_preprocessing("efficientnet_lite0", 64))["crop"]  # doctest: +SKIP
    [64, 64]
    """
    return {k: list(v) if isinstance(v, tuple) else v for k, v in pre.options()}


def network_info(ft) -> Dict[str, Any]:
    """What the manifest holds of a fitted :class:`~leukbench.finetune.FineTuner` (all JSON).

    ``config`` leaves out where it ran (``device``, ``num_workers``): a
    bundle predicts on the device it is given.
    """
    return {"backbone": ft.backbone, "weights": str(ft.weights), "weights_id": str(getattr(ft, "weights_id_", "")),
            "config": ft.config.key_fields(), "classes": [str(c) for c in ft.classes_],
            "input": input_options(ft._pre), "best_epoch": int(getattr(ft, "best_epoch_", 0))}


def network_files(ft) -> Tuple[Dict[str, bytes], Dict[str, Any]]:
    """``(files, info)`` of a fitted fine-tuner: ``network.safetensors`` and :func:`network_info`."""
    from safetensors.torch import save

    return {NETWORK: save(ft.network_state())}, network_info(ft)


def info_problem(info: Dict[str, Any]) -> Optional[str]:
    """What is wrong with the types of a network's manifest entry, or ``None``."""
    for key in ("backbone", "weights"):
        if not isinstance(info.get(key), str) or not info.get(key):
            return f"{key} is not a string"
    if not isinstance(info.get("config"), dict) or not isinstance(info.get("input"), dict):
        return "config or input is not an object"
    classes = info.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        return "classes is not a list of at least two class names"
    return None


def load_network(data: bytes, info: Dict[str, Any], where: str = "bundle"):
    """The fitted :class:`~leukbench.finetune.FineTuner` of ``network.safetensors`` and its manifest entry.

    Raises
    ------
    BundleError
        One line naming the file: not a safetensors file, a configuration
        this leukbench cannot build, weights of another network, or an input
        preprocessing that this install computes differently.

    Example
    -------
    >>> try:
    ...     load_network(b"not tensors", {"backbone": "efficientnet_lite0", "weights": "imagenet",
    ...                  "config": {}, "classes": ["all", "hem"], "input": {}})
    ... except BundleError as exc:
    ...     print(str(exc).split(" (")[0])
    bundle/network.safetensors: not a safetensors file of network weights
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from ..finetune import FineTuner

    name, manifest = f"{where}/{NETWORK}", f"{where}/manifest.json"
    problem = info_problem(info)
    if problem:
        raise BundleError(f"{manifest}: the network's {problem}; {_REFIT}")
    try:
        state = load(data)
    except SafetensorError as exc:
        raise BundleError(f"{name}: not a safetensors file of network weights ({exc}); {_REFIT}") from None
    backbone = info["backbone"]
    try:
        ft = FineTuner(backbone, weights=info["weights"], cache_dir=False, **info["config"])
        ft.load_network(state, info["classes"])
    except (TypeError, InvalidParameterError, UnknownExtractorError) as exc:
        raise BundleError(f"{manifest}: the network ({backbone}) is not one this leukbench builds "
                          f"({str(exc).splitlines()[0]}); upgrade leukbench or train it again") from None
    except RuntimeError as exc:  # torch's load_state_dict: missing, unexpected or misshapen tensors
        raise BundleError(f"{name}: the weights do not fit the network of {backbone} "
                          f"({str(exc).splitlines()[0].rstrip(':')}); {_REFIT}") from None
    now = input_options(ft._pre)
    if now != info["input"]:
        raise BundleError(f"{manifest}: this install prepares the input of {backbone} as {now}, the model was "
                          f"trained on {info['input']}; install the leukbench version that trained it")
    ft.weights_id_ = str(info.get("weights_id", ""))
    ft.best_epoch_ = info.get("best_epoch")
    return ft
