"""A fine-tuned network as a model bundle (kind ``torch``): its predictions equal the in-memory
network's, it loads without unpickling anything, a tampered weights file is refused in one line,
``train`` -> ``predict`` on the command line, and ``--save-best`` keeps end-to-end rows."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from leukbench import cli, datasets
from leukbench.exceptions import BundleError, InvalidParameterError

TINY = "timm:test_efficientnet"  # a few thousand parameters, random init: seconds per fit
FEATURES = f"finetuned:{TINY}"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cells():
    """One image of each of the 16 subjects of the bundled sample (both classes)."""
    table = datasets.discover(datasets.sample_root())
    return table.groupby("subject").head(1).reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(cells, tmp_path_factory):
    import torch

    from leukbench.models import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # put back below: later tests (the committed sample table) use the default
    try:
        cache = tmp_path_factory.mktemp("cache")
        model = train(cells, FEATURES, "end-to-end", finetune_epochs=1, finetune_size=32, weights="none",
                      cache_dir=cache, progress=False)
        bundle = model.save(tmp_path_factory.mktemp("bundle") / "model")
    finally:
        torch.set_num_threads(before)
    return model, bundle


def test_a_torch_bundle_predicts_exactly_as_the_in_memory_network_without_unpickling(trained, cells, monkeypatch,
                                                                                    tmp_path):
    import torch

    from leukbench.models import load_model

    model, folder = trained
    paths = cells["path"].tolist()
    in_memory = model.estimator.predict_proba(paths)
    assert model.kind == "torch" and in_memory.shape == (len(paths), 2)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.json", "model.md",
                                                       "network.safetensors"]
    assert not any(p.read_bytes().startswith(b"\x80") for p in folder.iterdir())  # no pickle protocol header

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must load without unpickling")

    for target, name in ((pickle, "loads"), (pickle, "load"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    loaded = load_model(folder)
    assert loaded.kind == "torch" and loaded.classes == ["all", "hem"] and loaded.feature_set == FEATURES
    scores = loaded.predict_proba(paths, progress=False)
    assert np.array_equal(scores, in_memory)  # exactly, not within a tolerance
    assert list(loaded.predict(paths, progress=False)) == list(model.estimator.predict(paths))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    p = loaded.predictions([broken, *paths[:2]], progress=False)
    assert len(p.skipped) == 1 and p.skipped["id"][0].endswith("broken.png") and p.skipped["reason"][0]
    assert len(p.table) == 2 and "skipped 1" in p.summary_lines()[0]  # skipped and reported, as extraction does
    # the same images in the same batches: the same scores (another batch differs only in the last decimals)
    assert np.isnan(p.aligned_scores()[0]).all()
    assert np.array_equal(p.aligned_scores()[1:], model.estimator.predict_proba(paths[:2]))
    assert np.allclose(p.aligned_scores()[1:], in_memory[:2], rtol=0, atol=1e-6)
    manifest = json.loads((folder / "manifest.json").read_text())
    net = manifest["estimator"]
    assert net["backbone"] == TINY and net["config"]["size"] == 32 and net["input"]["crop"] == [32, 32]
    card = loaded.card
    assert not card["performance"]["cross_validated"] and card["training"]["epochs_run"] == 1
    assert card["training"]["best_epoch"] == 1 and "Fine-tuning" in (folder / "model.md").read_text()


def test_a_tampered_or_foreign_network_file_is_a_one_line_bundle_error(trained, tmp_path):
    from safetensors.torch import save

    from leukbench.models import load_model
    from leukbench.models._kinds import load_estimator

    model, folder = trained
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "network.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "network.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError) as exc:
        load_model(copy)
    assert "network.safetensors" in str(exc.value) and "\n" not in str(exc.value)
    info = json.loads((folder / "manifest.json").read_text())["estimator"]
    state = model.estimator.network_state()
    for bad, words in ((b"\x00" * 40, "not a safetensors file"),
                       (save({k: v for k, v in list(state.items())[1:]}), "do not fit the network")):
        with pytest.raises(BundleError, match=words) as exc:
            load_estimator("torch", {"network.safetensors": bad}, info, "m")
        assert str(exc.value).startswith("m/network.safetensors: ") and "\n" not in str(exc.value)
    with pytest.raises(BundleError, match="not one this leukbench builds") as exc:
        load_estimator("torch", {"network.safetensors": save(state)}, dict(info, backbone="no_such_net"), "m")
    assert str(exc.value).startswith("m/manifest.json: ") and "\n" not in str(exc.value)


def test_train_then_predict_on_the_command_line(cells, tmp_path, capsys):
    data = tmp_path / "cells"
    for path, label in zip(cells["path"][:12], cells["label"][:12]):
        (data / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / label)
    bundle, csv = tmp_path / "model.zip", tmp_path / "out" / "predictions.csv"
    assert cli.main(["train", str(data), "--features", FEATURES, "--classifier", "end-to-end", "--epochs", "1",
                     "--finetune-size", "32", "--weights", "none", "--cache-dir", str(tmp_path / "cache"),
                     "--out", str(bundle), "-q"]) == 0
    assert "end-to-end" in capsys.readouterr().out
    assert cli.main(["predict", str(bundle), str(data), "--out", str(csv), "-q"]) == 0
    out = capsys.readouterr().out
    assert "predicted 12 images, skipped 0" in out and "confusion" in out
    table = pd.read_csv(csv)
    assert table.columns.tolist() == ["path", "predicted_label", "score_all", "score_hem", "true_label"]
    assert np.allclose(table[["score_all", "score_hem"]].sum(axis=1), 1.0)
    assert (csv.parent / "plots" / "example_predictions.png").is_file()
    assert cli.main(["train", str(data), "--features", FEATURES, "--out", str(tmp_path / "m2"), "-q"]) == 2
    assert "end-to-end" in capsys.readouterr().err  # a network is trained end to end, said before any work
    assert cli.main(["train", str(data), "--features", FEATURES, "--classifier", "end-to-end", "--tta", "flip",
                     "--out", str(tmp_path / "m3"), "-q"]) == 2
    assert "--tta is an extraction option" in capsys.readouterr().err  # refused, not ignored (--segment is applied)


def test_best_row_keeps_end_to_end_rows_and_skips_the_battery_over_finetuned_features():
    from leukbench.models import best_row, check_train

    table = pd.DataFrame({"Feature Set": [FEATURES, FEATURES, "handcrafted"],
                          "Model": ["SVC", "end-to-end", "SVC"], "Status": ["ok"] * 3})
    result = type("Result", (), {"table": table})()
    assert best_row(result)["Model"] == "SVC"
    assert (best_row(result, bundlable=True)["Feature Set"], best_row(result, bundlable=True)["Model"]) == \
        (FEATURES, "end-to-end")
    with pytest.raises(InvalidParameterError) as exc:
        check_train(FEATURES, "SVC")
    assert exc.value.parameter == "classifier"


def test_save_best_fine_tunes_an_end_to_end_row_again_on_all_images(tmp_path):
    import leukbench
    from leukbench.extraction import extract_all
    from leukbench.models import train_best

    from .conftest import make_cnmc_folders

    cells = make_cnmc_folders(tmp_path / "cells", subjects={"all": ["1", "2"], "hem": ["H1", "H2"]}, per_subject=3)
    fs = extract_all(cells, "chanstats", cache_dir=tmp_path / "cache", progress=False,
                     num_workers=0).feature_sets["chanstats"]
    result = leukbench.compare(fs, classifiers="GaussianNB", cv=2, finetune=TINY, finetune_epochs=1,
                               finetune_size=32, finetune_battery=False, n_bootstrap=0, progress=False,
                               finetune_options={"weights": "none", "augment": False}, cache_dir=tmp_path / "cache")
    end_to_end = result.table["Model"] == "end-to-end"
    result.table = pd.concat([result.table[end_to_end], result.table[~end_to_end]])  # as if it ranked first
    model = train_best(result, [fs])
    assert (model.kind, model.feature_set, model.classifier) == ("torch", FEATURES, "end-to-end")
    assert model.card["performance"]["cross_validated"] and model.card["training_data"]["images"] == len(fs)
    assert model.estimator.config.epochs == 1 and model.estimator.config.augment is False
    scores = model.predict_proba(list(fs.paths), progress=False)
    assert np.array_equal(scores, model.estimator.predict_proba(list(fs.paths)))
