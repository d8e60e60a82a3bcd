"""A fitted estimator as the files of a bundle, and back, by the bundle's ``kind``.

===========  ===============================================================
``sklearn``  ``pipeline.skops``: the whole fitted pipeline, :mod:`skops.io`
             (rebuilt from the trusted types of :mod:`._trusted` only)
``xgboost``  ``xgboost.json``: XGBoost's own JSON model format; a pipeline
             ending in XGBoost keeps the steps before it in
             ``preprocess.skops``
``torch``    ``network.safetensors``: the weights of a fine-tuned network
             (:class:`~leukbench.finetune.FineTuner`); its configuration
             (backbone, weights identity, :class:`~leukbench.finetune.FineTuneConfig`
             fields, classes, input size and preprocessing) is JSON in the manifest
===========  ===============================================================

No format runs code when it is read: skops rebuilds objects of listed
types, XGBoost parses its JSON, :func:`safetensors.torch.load` reads plain
tensors (no pickle, no ``torch.load``) into a network that leukbench builds
from the JSON configuration. A reader refuses a kind it does not know, by name.

Example
-------
>>> from sklearn.naive_bayes import GaussianNB
>>> import numpy as np
>>> est = GaussianNB().fit(np.array([[0.0], [1.0]]), [0, 1])
>>> kind, files, info = dump_estimator(est)
>>> kind, sorted(files)
('sklearn', ['pipeline.skops'])
>>> type(load_estimator(kind, files, info)).__name__
'GaussianNB'
"""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Dict, Iterable, Tuple

from ..exceptions import BundleError
from ._trusted import TRUSTED_TYPES, check_trusted

__all__ = ["KINDS", "NETWORK", "dump_estimator", "is_finetuner", "is_xgboost", "load_estimator"]

#: The kinds of estimator this leukbench writes and reads.
KINDS = ("sklearn", "xgboost", "torch")

_PIPELINE, _PREPROCESS, _XGB = "pipeline.skops", "preprocess.skops", "xgboost.json"
#: The weights file of a ``torch`` model.
NETWORK = "network.safetensors"


def is_xgboost(est) -> bool:
    """Whether ``est`` is an XGBoost estimator (stored in its own format, not with skops).

    Example
    -------
    >>> from sklearn.naive_bayes import GaussianNB
    >>> is_xgboost(GaussianNB())
    False
    """
    return type(est).__module__.split(".")[0] == "xgboost"


def is_finetuner(est) -> bool:
    """Whether ``est`` is a fine-tuned network (:class:`~leukbench.finetune.FineTuner`; stored as safetensors).

    Example
    -------
    >>> from leukbench.finetune import FineTuner
    >>> is_finetuner(FineTuner("efficientnet_lite0")), is_finetuner(object())
    (True, False)
    """
    return type(est).__name__ == "FineTuner" and type(est).__module__.startswith("leukbench.finetune")


def _final_step(est) -> Tuple[Any, Any]:
    """``(steps before the last, last estimator)`` of a pipeline; ``(None, est)`` for an estimator."""
    steps = getattr(est, "steps", None)
    if steps and type(est).__name__ == "Pipeline":
        return (est[:-1] if len(steps) > 1 else None), steps[-1][1]
    return None, est


def _xgb_bytes(model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, _XGB)
        model.save_model(path)
        with open(path, "rb") as fh:
            return fh.read()


def dump_estimator(est) -> Tuple[str, Dict[str, bytes], Dict[str, Any]]:
    """``(kind, files, info)`` of a fitted estimator; ``info`` goes into the manifest.

    ``info["untrusted"]`` lists types outside :data:`TRUSTED_TYPES` (a
    classifier of your own): such a bundle loads only with ``trusted=``.

    Example
    -------
    >>> from sklearn.naive_bayes import GaussianNB
    >>> import numpy as np
    >>> dump_estimator(GaussianNB().fit(np.array([[0.0], [1.0]]), [0, 1]))[2]
    {'untrusted': []}
    """
    import skops.io

    if is_finetuner(est):
        from ._network import network_files

        return ("torch", *network_files(est))
    before, last = _final_step(est)
    if is_xgboost(last):
        files = {_XGB: _xgb_bytes(last)}
        info: Dict[str, Any] = {"xgboost_class": type(last).__name__}
        if before is not None:
            files[_PREPROCESS] = skops.io.dumps(before)
            info["final_step"] = est.steps[-1][0]
        kind = "xgboost"
    else:
        files, info, kind = {_PIPELINE: skops.io.dumps(est)}, {}, "sklearn"
    untrusted = set()
    for name, data in files.items():
        if name.endswith(".skops"):
            from ._trusted import types_in

            untrusted |= {t for t in types_in(data) + skops.io.get_untrusted_types(data=data)
                          if t not in TRUSTED_TYPES}
    if untrusted:
        warnings.warn(f"the model holds types outside leukbench's trusted list ({', '.join(sorted(untrusted))}); "
                      "loading it will need load_model(path, trusted=[...])", UserWarning, stacklevel=3)
    info["untrusted"] = sorted(untrusted)
    return kind, files, info


def _load_skops(files: Dict[str, bytes], name: str, where: str, trusted: Iterable[str]):
    import skops.io

    try:
        skops_trusted = check_trusted(files[name], trusted)
    except BundleError as exc:
        raise BundleError(f"{where}/{name}: {exc}") from None
    return skops.io.loads(files[name], trusted=skops_trusted)


def _load_xgb(data: bytes, class_name: str, where: str):
    import json

    import xgboost

    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{where}/{_XGB}: not an XGBoost JSON model; copy the bundle again or train it "
                          "again with `leukbench train`") from None
    if not isinstance(class_name, str) or class_name not in ("XGBClassifier", "XGBRFClassifier"):
        raise BundleError(f"{where}: unknown XGBoost class {class_name!r}; this leukbench reads XGBClassifier")
    model = getattr(xgboost, class_name)()
    try:
        model.load_model(bytearray(data))
    except xgboost.core.XGBoostError:
        raise BundleError(f"{where}/{_XGB}: valid JSON but not an XGBoost model; copy the bundle again or train "
                          "it again with `leukbench train`") from None
    return model


def load_estimator(kind: str, files: Dict[str, bytes], info: Dict[str, Any], where: str = "bundle",
                   trusted: Iterable[str] = ()):
    """The fitted estimator of a bundle's files (see the module docstring).

    Raises
    ------
    BundleError
        An unknown kind, a file of the kind missing from the manifest, a type
        outside the trusted list (and ``trusted``), a file that is not of its format.

    Example
    -------
    >>> try:
    ...     load_estimator("onnx", {}, {})
    ... except BundleError as exc:
    ...     print(str(exc).split(";")[0])
    bundle: model kind 'onnx' is not one this leukbench reads (sklearn, xgboost, torch)
    """
    if kind not in KINDS:
        raise BundleError(f"{where}: model kind {kind!r} is not one this leukbench reads ({', '.join(KINDS)}); "
                          "upgrade leukbench (pip install -U leukbench)")
    needed = {"sklearn": [_PIPELINE], "torch": [NETWORK]}.get(
        kind, [_XGB] + ([_PREPROCESS] if "final_step" in info else []))
    for name in needed:
        if name not in files:
            raise BundleError(f"{where}/{name}: not listed in the manifest of this {kind} model; copy the bundle "
                              "again or train it again with `leukbench train`")
    if kind == "sklearn":
        return _load_skops(files, _PIPELINE, where, trusted)
    if kind == "torch":
        from ._network import load_network

        return load_network(files[NETWORK], info, where)
    model = _load_xgb(files[_XGB], info.get("xgboost_class", "XGBClassifier"), where)
    if "final_step" not in info:
        return model
    from sklearn.pipeline import Pipeline

    before = _load_skops(files, _PREPROCESS, where, trusted)
    return Pipeline(list(before.steps) + [(info["final_step"], model)])
