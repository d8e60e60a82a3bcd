"""Fine-tuning (leukbench.finetune): the config, the inner split, the augmentation, FineTuner's fit /
predict / transform, checkpoints (a rerun trains nothing, an interrupted run resumes to the same
weights), freezing, and the real EfficientNet-Lite0 weights."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench.exceptions import InvalidParameterError
from leukbench.finetune import FineTuneConfig, FineTuner, _loop
from leukbench.finetune._data import AugmentedImages, inner_split

from .conftest import cell_image

TINY = "timm:test_efficientnet"  # a few thousand parameters, random init: seconds per fit


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cells():
    """40 synthetic cells (32 px) of 8 subjects, 2 classes."""
    rng = np.random.default_rng(0)
    y = np.array(["all"] * 20 + ["hem"] * 20, dtype=object)
    groups = np.array([f"S{i // 5}" for i in range(40)], dtype=object)
    images = np.stack([cell_image(rng, c, size=32) for c in y])
    return images, y, groups


def _tiny(tmp_path, **kw):
    opts = dict(weights="none", epochs=2, size=32, batch_size=8, augment=False, cache_dir=tmp_path)
    opts.update(kw)
    return FineTuner(TINY, **opts)


def test_config_is_checked_and_names_the_parameter():
    assert FineTuneConfig().epochs == 15 and FineTuneConfig().patience == 4 and FineTuneConfig().size is None
    for bad in ({"epochs": 0}, {"size": 8}, {"lr": 0.0}, {"precision": "float8"}, {"dropout": 1.5}):
        with pytest.raises(InvalidParameterError) as exc:
            FineTuneConfig(**bad)
        assert str(exc.value).startswith(next(iter(bad)))
    with pytest.raises(InvalidParameterError, match="backbone"):
        FineTuner("")


def test_inner_split_is_by_subject_and_says_so_without_subjects():
    y = np.array([0] * 10 + [1] * 10)
    groups = np.array([f"s{i // 2}" for i in range(20)], dtype=object)
    tr, va, note = inner_split(y, groups, n_folds=5, seed=0)
    assert not set(groups[tr]) & set(groups[va]) and len(tr) + len(va) == 20
    assert "StratifiedGroupKFold" in note and set(y[va]) == {0, 1}
    tr, va, note = inner_split(y, None, n_folds=5, seed=0)
    assert "by image" in note and "no subject ids" in note and len(va) == 4


def test_augmentation_is_seeded_per_epoch_and_image(cells):
    images, y, _ = cells
    ds = AugmentedImages(images, np.zeros(len(y)), augment=True, seed=3)
    a = ds[5][0].numpy()
    assert np.array_equal(a, ds[5][0].numpy()) and a.dtype == np.uint8 and a.shape == (3, 32, 32)
    ds.epoch = 1
    assert not np.array_equal(a, ds[5][0].numpy())


def test_fit_predict_transform_and_a_rerun_trains_nothing(cells, tmp_path, monkeypatch):
    images, y, groups = cells
    ft = _tiny(tmp_path, augment=True).fit(images, y, groups)
    assert list(ft.classes_) == ["all", "hem"] and [r["epoch"] for r in ft.history_] == [1, 2]
    assert sum(r["best"] for r in ft.history_) == 1 and ft.history_[ft.best_epoch_ - 1]["best"]
    assert {"train_loss", "val_loss", "val_balanced_accuracy", "val_accuracy", "lr", "seconds"} <= set(ft.history_[0])
    assert not set(ft.train_ids_) & set(ft.val_ids_) and len(ft.train_ids_) + len(ft.val_ids_) == 40
    proba = ft.predict_proba(images)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(1), 1)
    assert set(ft.predict(images)) <= {"all", "hem"}
    feats = ft.transform(images[:3])
    assert feats.dtype == np.float32 and feats.shape[0] == 3 and feats.shape[1] > 0
    files = {p.name for p in ft.checkpoint_dir_.iterdir()}
    assert {"best.safetensors", "last.pt", "done.json", "config.json"} <= files and not ft.from_cache_

    def no_training(*a, **k):
        raise AssertionError("a cached fine-tune trained again")

    monkeypatch.setattr(_loop, "train", no_training)
    again = _tiny(tmp_path, augment=True).fit(images, y, groups)
    assert again.from_cache_ and again.best_epoch_ == ft.best_epoch_ and again.key_ == ft.key_
    np.testing.assert_allclose(again.predict_proba(images), proba, atol=1e-6)
    other = _tiny(tmp_path, augment=True, lr=2e-3)
    assert other.key_parts("x", 2) != ft.key_parts("x", 2)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("augment", [False, True])  # True: a DataLoader worker process, and its base seed
def test_an_interrupted_run_resumes_to_the_same_result(cells, tmp_path, augment):
    images, y, groups = cells
    whole = _tiny(tmp_path / "a", epochs=3, patience=3, augment=augment).fit(images, y, groups)

    def interrupt(epoch, row):
        if epoch == 1:
            raise _Stop()

    with pytest.raises(_Stop):
        _tiny(tmp_path / "b", epochs=3, patience=3, augment=augment).fit(images, y, groups, on_epoch_end=interrupt)
    resumed = _tiny(tmp_path / "b", epochs=3, patience=3, augment=augment).fit(images, y, groups)
    assert resumed.resumed_from_ == 1 and not resumed.from_cache_
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3]
    for a, b in zip(whole.history_, resumed.history_):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_balanced_accuracy"] == b["val_balanced_accuracy"]
    assert resumed.best_epoch_ == whole.best_epoch_
    np.testing.assert_allclose(resumed.predict_proba(images), whole.predict_proba(images), atol=1e-5)


def test_early_stopping_and_time_limit(cells, tmp_path):
    images, y, groups = cells
    ft = _tiny(tmp_path, epochs=6, patience=1, lr=1e-6, cache_dir=False).fit(images, y, groups)
    assert len(ft.history_) < 6 and "early stopping" in ft.stopped_
    ft = _tiny(tmp_path, epochs=6, max_train_minutes=1e-6, cache_dir=False).fit(images, y, groups)
    assert len(ft.history_) == 1 and ft.stopped_.startswith("time limit")


def test_real_lite0_trains_with_frozen_stages(cells, tmp_path):
    """The default backbone with its offline ImageNet weights; frozen stages do not move."""
    import torch

    images, y, groups = cells
    ft = FineTuner("efficientnet_lite0", epochs=1, size=32, batch_size=8, augment=False, freeze=3,
                   cache_dir=False).fit(images[:24], y[np.r_[0:12, 20:32]], groups[np.r_[0:12, 20:32]])
    from leukbench.finetune._network import build_network

    init, n_stages = build_network("efficientnet_lite0", "imagenet", 2, dropout=0.2, freeze=3, seed=0)
    assert n_stages > 3 and "efficientnet-lite0" in ft.weights_id_
    frozen = dict(init.backbone.conv_stem.named_parameters())
    trained = dict(ft.model_.backbone.conv_stem.named_parameters())
    assert all(torch.equal(frozen[k], trained[k].cpu()) for k in frozen)
    last_init = dict(init.backbone.conv_head.named_parameters())["weight"]
    assert not torch.equal(last_init, ft.model_.backbone.conv_head.weight.detach().cpu())
    assert ft.predict_proba(images[:4]).shape == (4, 2)
    with pytest.raises(InvalidParameterError, match="freeze"):
        build_network("efficientnet_lite0", "imagenet", 2, dropout=0.2, freeze=99, seed=0)


def test_benchmark_loops_give_the_same_weights(tmp_path):
    """benchmarks/bench_finetune.py: leukbench's loop and the plain PyTorch loop, same seed, same weights."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_finetune.py"
    spec = importlib.util.spec_from_file_location("bench_finetune", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "b.json"
    assert bench.main(["--backbone", TINY, "--weights", "none", "--limit", "24", "--size", "32", "--epochs", "1",
                       "--batch-size", "8", "--out", str(out)]) == 0
    numbers = json.loads(out.read_text())
    assert numbers["max_weight_difference"] < 1e-5 and numbers["leukbench_images_per_second"] > 0


def test_image_options_reach_the_images_the_network_trains_on_predicts_and_ships(tmp_path, monkeypatch):
    """--segment / --grayscale / --stain-norm: applied to what training sees and to predictions, in the
    key and the bundle only when on (the default key, and so earlier checkpoints, unchanged)."""
    from leukbench import datasets
    from leukbench.finetune._data import decode_images
    from leukbench.images import grayscale_rgb, load_image
    from leukbench.models._kinds import NETWORK
    from leukbench.models._network import load_network, network_files
    from leukbench.preprocessing import segment_cell

    table = datasets.discover(datasets.sample_root()).groupby("subject").head(1)
    paths, y, groups = table["path"].tolist(), table["label"].to_numpy(object), table["subject"].to_numpy(object)
    plain, seg = _tiny(tmp_path), _tiny(tmp_path, segment=True)
    resize = plain.cell_input().pre.resize_crop
    expected = np.stack([resize(segment_cell(load_image(p)).crop) for p in paths])
    assert not np.array_equal(expected, decode_images(paths, plain.cell_input()))
    gray = decode_images(paths[:3], _tiny(tmp_path, grayscale=True).cell_input())
    assert np.array_equal(gray, np.stack([resize(grayscale_rgb(load_image(p))) for p in paths[:3]]))
    assert "segment" not in plain.config.key_fields() and plain.key_parts("x", 2)["input"] == \
        plain.cell_input().pre.options()  # the default key is what it was
    assert seg.config.key_fields()["segment"] is True and seg.key_parts("x", 2) != plain.key_parts("x", 2)
    assert _tiny(tmp_path, stain_norm="reinhard").key_parts("x", 2) != plain.key_parts("x", 2)
    with pytest.raises(InvalidParameterError, match="stain_norm"):
        FineTuneConfig(stain_norm="sepia")

    seen = []
    real_train = _loop.train

    def spy(model, data, *args, **kwargs):
        seen.append(data.images.copy())
        return real_train(model, data, *args, **kwargs)

    monkeypatch.setattr(_loop, "train", spy)
    seg.fit(paths, y, groups)
    assert np.array_equal(seen[0], expected)  # the network trains on the segmented cells
    proba = seg.predict_proba(paths)
    np.testing.assert_array_equal(proba, seg.predict_proba(expected))  # and predicts on them
    files, info = network_files(seg)
    assert info["config"]["segment"] is True and info["input"]["segment"] is True
    twin = load_network(files[NETWORK], info)
    assert twin.config.segment and np.array_equal(twin.predict_proba(paths), proba)
