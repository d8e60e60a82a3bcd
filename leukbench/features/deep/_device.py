"""Where and in which arithmetic a backbone runs: device, precision, batch size.

Importing this module does not import torch (the command line builds its
``--precision`` choices from :data:`PRECISIONS`); the functions that need
torch import it when called.

Example
-------
>>> from leukbench.features.deep._device import default_batch_size, resolve_precision
>>> default_batch_size("cpu"), default_batch_size("cuda:0"), default_batch_size("mps")
(16, 256, 32)
>>> resolve_precision("auto", "cpu"), resolve_precision("auto", "cuda")
('float32', 'float16')
"""

from __future__ import annotations

from ...exceptions import InvalidParameterError

#: Names accepted by :func:`resolve_precision`.
PRECISIONS = ("auto", "float32", "float16", "bfloat16")


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"``/``"cpu"``/``"cuda[:N]"``/``"mps"`` into a usable device.

    Raises
    ------
    InvalidParameterError
        When the requested accelerator is not available (or the name is
        unknown); a ``ValueError``.
    """
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        return _cuda_device(device, d)
    if d == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidParameterError("device 'mps' requested but not available here; use --device cpu")
        return d
    raise InvalidParameterError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def _cuda_device(device: str, d: str) -> str:
    """``d`` (``"cuda"`` or ``"cuda:N"``, lower case) when that device is here."""
    import torch

    if ":" in d and not d.split(":", 1)[1].isdigit():
        raise InvalidParameterError(f"unknown device {device!r}; use cuda:N with N a device number, or cpu")
    if not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if ":" in d:
        idx = d.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
            raise InvalidParameterError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                "use --device cuda:0 or --device cpu"
            )
    return d


def default_batch_size(device: str) -> int:
    """Images per network call when none is given: 16 on the CPU, 256 on CUDA, 32 elsewhere.

    On the CPU, batches of 16 ran 7-15 % faster than 32 (folded
    EfficientNet-Lite0 and ResNet-50 alone, 2 threads, oneDNN;
    benchmarks/README.md), with bit-identical features. 256 on CUDA is
    **not measured** (no GPU run has been made): a large batch to keep a GPU
    busy, as issue 15 asks; ``benchmarks/bench_gpu.py --batch-sizes`` measures it.
    """
    if device == "cpu":
        return 16
    return 256 if device.startswith("cuda") else 32


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
    InvalidParameterError
        For an unknown name, float16 off CUDA, or bfloat16 on a device other
        than the CPU or CUDA (a ``ValueError``).

    Example
    -------
    >>> resolve_precision("BFloat16", "cpu")
    'bfloat16'
    """
    p = (precision or "auto").strip().lower()
    if p not in PRECISIONS:
        raise InvalidParameterError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    cuda = device.startswith("cuda")
    if p == "auto":
        return "float16" if cuda else "float32"
    if p == "float16" and not cuda:
        raise InvalidParameterError(
            f"precision 'float16' needs a CUDA device (this run is on {device}); "
            "use --precision bfloat16 on the CPU, or float32"
        )
    if p == "bfloat16" and not (cuda or device == "cpu"):
        raise InvalidParameterError(
            f"precision 'bfloat16' runs on the CPU or CUDA, not on {device}; use float32")
    return p


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False
