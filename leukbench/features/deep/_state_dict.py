"""Reading weights files and fitting state dicts to the architectures.

Example
-------
>>> from leukbench.features.deep._state_dict import is_head_key
>>> is_head_key("classifier.6.weight", ("classifier.6",)), is_head_key("classifier.0.weight", ("classifier.6",))
(True, False)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Sequence

from ...exceptions import WeightsUnavailableError
from ._specs import _Spec


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
        save = ("safetensors.torch.save_file(model.state_dict(), path)" if path.suffix == ".safetensors"
                else "torch.save(model.state_dict(), path)")
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} {_what_is_wrong(path, exc)}; save the weights with {save}"
        ) from exc
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


def _what_is_wrong(path: Path, exc: Exception) -> str:
    """Why ``path`` could not be read as weights, e.g. ``"is empty"``."""
    import pickle

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours part of its message
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        head = b"?"  # unreadable: described by the exception below
    if not head:
        return "is empty"
    if path.suffix == ".safetensors":
        return f"is not a readable safetensors file ({exc.__class__.__name__})"
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch's unpickler misreads text as opcodes
        kind = ("a text file, not a torch weights file" if _looks_like_text(path)
                else "neither a torch.save zip nor a pickle")
        return f"is not a torch file ({kind})"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        return ("holds pickled Python objects other than tensors (a whole model, an optimizer, "
                "NumPy arrays...), which leukbench does not unpickle since that can run code "
                "from the file")
    return (f"is truncated or damaged ({exc.__class__.__name__}: "
            f"{text.splitlines()[0] if text else 'no details'})")


def _looks_like_text(path: Path) -> bool:
    """Whether the first KiB of ``path`` decodes as UTF-8 text without control bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
        text = head.decode("utf-8", errors="ignore" if len(head) == 1024 else "strict")
    except (OSError, UnicodeDecodeError):
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def is_head_key(key: str, heads: Sequence[str]) -> bool:
    """Whether a state-dict key belongs to one of the ``heads`` module paths."""
    return any(key == h or key.startswith(h + ".") for h in heads)


def lukemelas_to_timm(src: Dict[str, Any], target: Dict[str, Any]) -> Dict[str, Any]:
    """Map a lukemelas EfficientNet-Lite0/1/2 state dict onto timm's by position.

    Head tensors (``_fc``) map onto ``classifier``; every other tensor must
    line up in order, with the same kind (weight/bias/running stats) and
    shape, or a ``ValueError`` is raised.
    """
    s_body = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    t_body = [(k, v) for k, v in target.items() if not k.startswith("classifier.")]
    if len(s_body) != len(t_body):
        raise ValueError(
            f"EfficientNet-Lite weights: {len(s_body)} backbone tensors in the file, "
            f"{len(t_body)} in the timm model"
        )
    out = {}
    for (sk, sv), (tk, tv) in zip(s_body, t_body):
        if sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1] or tuple(sv.shape) != tuple(tv.shape):
            raise ValueError(
                f"EfficientNet-Lite weights: {sk} {tuple(sv.shape)} does not match "
                f"{tk} {tuple(tv.shape)}; the file is not a checkpoint of this EfficientNet-Lite"
            )
        out[tk] = sv
    for suffix in ("weight", "bias"):
        if f"_fc.{suffix}" in src:
            out[f"classifier.{suffix}"] = src[f"_fc.{suffix}"]
    return out


def load_into(model, spec: _Spec, sd: Dict[str, Any], *, with_head: bool, source: str) -> None:
    """Strict load of ``sd`` into ``model``; head tensors are dropped when headless."""
    if spec.family == "torchvision" and spec.arch.startswith("densenet"):
        sd = {(_DENSENET_OLD_KEY.sub(r"\1\2", k)): v for k, v in sd.items()}
    if spec.family == "lite" and any(k.startswith("_conv_stem.") for k in sd):
        # the model's own keys fix the target order (its head, if any, is skipped)
        try:
            sd = lukemelas_to_timm(sd, model.state_dict())
        except ValueError as exc:
            raise WeightsUnavailableError(f"{spec.name}: weights from {source}: {exc}") from exc
    if not with_head:
        sd = {k: v for k, v in sd.items() if not is_head_key(k, spec.head)}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc).replace("\n\t", " ").replace("\n", " ")
        if len(msg) > 600:
            msg = msg[:600] + " ..."
        raise WeightsUnavailableError(
            f"{spec.name}: weights from {source} do not fit the architecture: {msg}"
        ) from exc

