"""The deep feature extractor (its factories are in :mod:`._factories`)."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, List, Optional, Sequence

import numpy as np

from ..._validation import invalid
from ..base import Extractor, ExtractorConfig
from ._builder import _build
from ._decode import (
    DeviceDecoder,
    Encoded,
    decode_key,
    decode_label,
    decoded_or_raise,
    encode_item,
    resolve_decode,
)
from ._device import (
    cpu_has_native_bfloat16,
    default_batch_size,
    resolve_device,
    resolve_precision,
)
from ._folding import fold_batchnorm
from ._options import (
    GEM_P,
    LayerTap,
    check_pooling,
    check_tta,
    layer_label,
    pool,
    resolve_layers,
    stage_table,
    tta_views,
)
from ._preprocessing import Preprocessing, spec_preprocessing
from ._pretrained import (
    RANDOM,
    Location,
    requested_weights,
    resolve_weights,
    weights_id,
)
from ._specs import _Spec, spec_for

#: The options every deep factory accepts (what :class:`DeepExtractor` takes besides the name).
DEEP_OPTIONS = ("weights", "segment", "grayscale", "device", "batch_size", "seed", "precision",
                "tta", "layers", "pooling", "stain_norm", "stain_reference", "decode")


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """What a :class:`DeepExtractor`'s parameters resolve to on this machine."""

    spec: _Spec
    device: str
    batch_size: int
    precision: str
    preprocessing: Preprocessing
    source: str
    location: Location
    config: ExtractorConfig
    stages: tuple = ()  # (module, channels) of the intermediate layers taken, shallow to deep
    decode: str = "cpu"  # "cpu" (PIL in the workers) or "gpu" (torchvision on the device, _decode)


class DeepExtractor(Extractor):
    """Pooled penultimate activations of a CNN backbone.

    The constructor only stores its parameters; the backbone's table entry,
    the device, the preprocessing and the identity of the weights are
    resolved on first use (:attr:`config`, :meth:`check`, :meth:`prepare`
    ...), and the network is built by :meth:`load_model`.

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
    tta : {"none", "flip", "d4"}
        Average the pooled features over the image and its mirror image, or
        over the 8 symmetries of the square (batched: 2x / 8x the network work).
    layers : {"last", "last2", "last3"} or str
        Also take the pooled outputs of the last one / two feature stages
        (timm-built backbones), or of the comma-separated stage names given;
        their columns are named ``<backbone>.<stage>.fNNNN`` (``blocks_6``).
    pooling : {"avg", "gem"}
        Global average pooling, or generalised mean (p=3) of every layer taken.
    stain_norm : {"none", "reinhard", "macenko"}
        Colour normalisation of the network input (:mod:`leukbench.stain`).
    stain_reference : dict, optional
        The Reinhard reference (:func:`leukbench.stain.resolve_reference`); ``None`` is the fixed one.
    decode : {"auto", "cpu", "gpu"}
        Where JPEGs are decoded and resized: PIL in the workers (``"cpu"``), or
        torchvision on the device (``"gpu"``: nvJPEG on CUDA); ``"auto"`` is
        ``"gpu"`` on CUDA, ``"cpu"`` elsewhere (:mod:`._decode`).

    Every option at its default leaves the cache key as it was; any other
    value is recorded in it.

    Example
    -------
    >>> ex = DeepExtractor("resnet50", weights="none", device="cpu")  # nothing resolved yet
    >>> ex.name
    'resnet50'
    >>> ex.config.weights_id  # doctest: +SKIP
    'random-init(seed=0)'
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
        tta: str = "none",
        layers: str = "last",
        pooling: str = "avg",
        stain_norm: str = "none",
        stain_reference=None,
        decode: str = "auto",
    ):
        self._name = name
        self._decode = decode
        self._stain_reference = stain_reference
        self._tta, self._layers, self._pooling, self._stain_norm = tta, layers, pooling, stain_norm
        self._weights = weights
        self._segment = segment
        self._grayscale = grayscale
        self._device = device
        self._batch_size = batch_size
        self._seed = seed
        self._precision = precision
        self._resolved: Optional[_Resolved] = None
        self._n_features = 0
        self._model = None
        self._norm = None
        self._tap = None

    # -- resolution, on first use --------------------------------------------
    def _resolve(self) -> _Resolved:
        if self._resolved is None:
            spec = spec_for(self._name)
            device = resolve_device(self._device)
            batch_size = default_batch_size(device) if self._batch_size is None else max(1, int(self._batch_size))
            precision = resolve_precision(self._precision, device)
            preprocessing = spec_preprocessing(spec)
            source, location = resolve_weights(spec, self._weights)
            stages = self._resolve_feature_options(spec)
            decode = resolve_decode(self._decode, device, segment=bool(self._segment), stain_norm=self._stain_norm,
                                    interpolation=preprocessing.interpolation)
            config = self._make_config(spec, precision, preprocessing, source, location, stages,
                                       decode_key(device) if decode == "gpu" else None)
            self._resolved = _Resolved(spec, device, batch_size, precision, preprocessing, source, location, config,
                                       stages, decode)
            self._n_features = spec.n_features
        return self._resolved

    def _resolve_feature_options(self, spec: _Spec) -> tuple:
        """Check ``tta``, ``pooling`` and ``stain_norm``; the intermediate stages ``layers`` asks for."""
        from ...stain import stain_key

        check_tta(self._tta)
        check_pooling(self._pooling)
        stain_key(self._stain_norm, self._stain_reference)
        if self._pooling == "gem" and spec.family == "torchvision":
            raise invalid("pooling", f"'gem' needs a timm-built backbone (efficientnet_lite0/1/2, timm:<model>); "
                                     f"{spec.name} is torchvision's")
        if str(self._layers).strip() == "last":
            return ()
        stages = []
        if spec.family != "torchvision":
            import timm
            import torch

            with torch.device("meta"):
                stages = stage_table(timm.create_model(spec.arch, pretrained=False, num_classes=0))
        return tuple(resolve_layers(self._layers, stages, spec.name))

    def _make_config(self, spec: _Spec, precision: str, preprocessing: Preprocessing, source: str,
                     location: Location, stages: tuple = (), decoder: Optional[str] = None) -> ExtractorConfig:
        from ...stain import stain_key

        options = list(preprocessing.options())
        # the feature options enter the key only when not at their defaults: the
        # caches of default extractors keep their keys
        if self._tta != "none":
            options.append(("tta", self._tta))
        if stages:
            options.append(("layers", ",".join(m for m, _ in stages)))
        if self._pooling != "avg":
            options.append(("pooling", f"gem(p={GEM_P:g})"))
        if self._stain_norm != "none":
            options.append(("stain_norm", stain_key(self._stain_norm, self._stain_reference)))
        if spec.family != "torchvision":
            options.append(("arch", f"timm:{spec.arch}"))
        if precision != "float32":
            # autocast features differ from float32 ones in the second or third
            # decimal: a separate cache, never rows of both kinds in one matrix
            options.append(("precision", f"{precision}-autocast"))
        if decoder:  # other pixels than PIL's, by a grey level here and there (docs/performance.md)
            options.append(("decode", decoder))
        return ExtractorConfig(
            name=self._name,
            kind="deep",
            weights=requested_weights(source, location),
            weights_id=weights_id(spec, source, location, self.seed),
            input_size=int(preprocessing.crop[0]),
            segment=bool(self._segment),
            grayscale=bool(self._grayscale),
            options=tuple(sorted(options)),
        )

    def check(self) -> "DeepExtractor":
        """Resolve the backbone, device, precision and weights now; returns ``self``.

        Raises
        ------
        UnknownExtractorError, InvalidParameterError, WeightsUnavailableError
            For an unknown backbone, an unusable device or precision, or a
            weights file that does not exist.
        """
        self._resolve()
        return self

    @property
    def config(self) -> ExtractorConfig:
        return self._resolve().config

    @property
    def name(self) -> str:
        return self._name

    @property
    def device(self) -> str:
        return self._resolve().device

    @property
    def batch_size(self) -> int:
        return self._resolve().batch_size

    @property
    def precision(self) -> str:
        return self._resolve().precision

    @property
    def preprocessing(self) -> Preprocessing:
        return self._resolve().preprocessing

    @property
    def decode(self) -> str:
        """``"cpu"`` or ``"gpu"``: where JPEGs are decoded (``decode="auto"`` resolved)."""
        return self._resolve().decode

    @property
    def seed(self) -> int:
        return int(self._seed)

    # -- pickling: never ship the network to workers ------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_norm"] = None
        state["_tap"] = None
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
        spec = self._resolve().spec
        if not self._n_features:
            if self._model is not None:
                self._n_features = int(self._model.num_features)
            else:
                import timm
                import torch

                with torch.device("meta"):
                    m = timm.create_model(spec.arch, pretrained=False, num_classes=0)
                self._n_features = int(m.num_features)
        return self._n_features + sum(c for _, c in self._resolve().stages)

    @property
    def feature_names(self) -> List[str]:
        """``<backbone>.fNNNN`` for the last layer, then ``<backbone>.<stage>.fNNNN`` for each stage taken."""
        r = self._resolve()
        n_last = self.n_features - sum(c for _, c in r.stages)
        names = [f"{r.spec.prefix}.f{i:04d}" for i in range(n_last)]
        for module, channels in r.stages:
            names += [f"{r.spec.prefix}.{layer_label(module)}.f{i:04d}" for i in range(channels)]
        return names

    @property
    def is_random_init(self) -> bool:
        return self._resolve().source == RANDOM

    def describe(self) -> str:
        from ...stain import stain_label

        c = self.config
        w = f"random init (seed={self.seed}), not pretrained" if self.is_random_init else c.weights_id
        where = "CUDA" if self.device.startswith("cuda") else self.device.split(":")[0].upper()
        stages = "+".join(m for m, _ in self._resolve().stages)
        extra = [e for e, on in (("segmented", c.segment), ("grayscale", c.grayscale),
                                 (f"{self.precision} autocast on {where}", self.precision != "float32"),
                                 (f"tta {self._tta}", self._tta != "none"),
                                 (f"last layer + {stages}", bool(stages)),
                                 ("GeM pooling", self._pooling != "avg"),
                                 (stain_label(self._stain_norm, self._stain_reference), self._stain_norm != "none"),
                                 (decode_label(self.device), self.decode == "gpu")) if on]
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

            r = self._resolve()
            self._warn_if_bfloat16_is_emulated()
            model = _build(r.spec, r.source, r.location, self.seed, with_head=False)
            if not r.device.startswith("cuda"):
                # CPU: batch norms folded into the convolutions (same features up to
                # float32 rounding); on CUDA cuDNN does its own fusions under autocast
                fold_batchnorm(model)
            model = model.to(r.device).to(memory_format=torch.channels_last)
            self._norm = r.preprocessing.scale_shift(r.device)
            self._tap = LayerTap(model, [m for m, _ in r.stages]) if r.stages else None
            self._model = model
        return self._model

    def _warn_if_bfloat16_is_emulated(self) -> None:
        import torch

        if self.precision == "bfloat16" and self.device == "cpu" and not cpu_has_native_bfloat16():
            warnings.warn(
                "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): bfloat16 autocast is "
                "emulated and slower than float32; use --precision float32",
                RuntimeWarning, stacklevel=3,
            )
        if self.precision == "bfloat16" and self.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            warnings.warn(
                f"{self.device} has no native bfloat16 (it needs an Ampere or newer GPU); "
                "use --precision float16 or float32",
                RuntimeWarning, stacklevel=3,
            )

    def _ieee_float32(self):
        """float32 on CUDA means float32: cuDNN's TF32 convolutions (on by default
        in PyTorch) are switched off for the forward pass, so the features match
        the CPU's, whose cache they share."""
        import torch

        if self.precision != "float32" or not self.device.startswith("cuda"):
            return contextlib.nullcontext()
        c = torch.backends.cudnn
        keep = {"benchmark_limit": c.benchmark_limit} if hasattr(c, "benchmark_limit") else {}
        return c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic,
                       allow_tf32=False, **keep)

    # -- extraction ---------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Resize + centre crop (+ stain normalisation) in the worker; ``uint8`` array ``(H, W, 3)``."""
        from ...stain import normalize_stain

        self._resolve()  # checks the options (stain_norm) in the worker too
        return normalize_stain(self.preprocessing.resize_crop(image), self._stain_norm, self._stain_reference)

    def prepare_file(self, path: str, image: np.ndarray):
        """In the worker: :meth:`prepare`, or under ``decode="gpu"`` an :class:`Encoded` item
        (a plain JPEG's bytes, other files' decoded pixels) for :meth:`decode_items`."""
        if self.decode != "gpu":
            return self.prepare(image)
        from ...images import LARGE_IMAGE_SIDE

        return encode_item(path, image, LARGE_IMAGE_SIDE)

    def decode_items(self, items: Sequence[Any]):
        """``(items, {position: (kind, reason)})``: :class:`Encoded` items decoded, resized and
        cropped on the device (``None`` where that failed); other items as they are."""
        if not any(isinstance(it, Encoded) for it in items):
            return list(items), {}
        return DeviceDecoder(self.preprocessing, self.device, self._grayscale)(items)

    def _to_batch(self, items: Sequence[Any]):
        import torch

        if all(isinstance(it, torch.Tensor) and it.ndim == 3 and it.shape[0] == 3 for it in items):
            return torch.stack(list(items))  # decoded on the device (decode_items)
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
        items = decoded_or_raise(self.decode_items(items))
        cuda = self.device.startswith("cuda")
        autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(self.precision)
        outs = []
        for start in range(0, len(items), self.batch_size):
            x = self._to_batch(items[start:start + self.batch_size])
            if cuda and x.device.type == "cpu":  # not decoded on the device (decode_items)
                x = x.pin_memory().to(self.device, non_blocking=True)
            elif x.device.type == "cpu" and self.device != "cpu":
                x = x.to(self.device)
            with torch.inference_mode(), self._ieee_float32():
                views = [self._forward(model, self.preprocessing.normalize(v, self._norm), autocast)
                         for v in tta_views(x, self._tta)]
                y = views[0] if len(views) == 1 else torch.stack(views).mean(dim=0)
            outs.append(y.cpu().numpy())
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def _forward(self, model, x, autocast):
        """Pooled features ``(N, n_features)`` of one normalised batch: the last layer, then each stage taken."""
        import torch

        where = self.device.split(":")[0]
        with torch.autocast(where, dtype=autocast) if autocast is not None else contextlib.nullcontext():
            if self._pooling == "avg":
                y = model(x).flatten(1).float()
            else:
                y = pool(model.forward_features(x), "gem")
            stages = self._resolve().stages
            if not stages:
                return y
            return torch.cat([y] + [pool(self._tap.outputs[m], self._pooling) for m, _ in stages], dim=1)
