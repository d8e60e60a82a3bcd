"""Fine-tuned networks in a comparison: the end-to-end row scored like every other row, the battery
over each fold's fine-tuned features, the test fold never seen by training or early stopping,
training.csv / the curves / run.json, a cached rerun, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import leukbench
from leukbench import cli
from leukbench.evaluation.metrics import score_fold
from leukbench.extraction import extract_all

from .conftest import make_cnmc_folders

TINY = "timm:test_efficientnet"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """24 synthetic cells of 6 subjects in C-NMC class folders."""
    subjects = {"all": ["1", "2", "3"], "hem": ["H1", "H2", "H3"]}
    return make_cnmc_folders(tmp_path_factory.mktemp("cells"), subjects=subjects, per_subject=4)


@pytest.fixture(scope="module")
def run(cells, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    fs = extract_all(cells, "chanstats", cache_dir=cache, progress=False, num_workers=0).feature_sets["chanstats"]
    kw = dict(classifiers="GaussianNB", cv=3, finetune=TINY, finetune_epochs=2, finetune_size=32,
              finetune_options={"weights": "none", "batch_size": 16, "augment": False}, cache_dir=cache,
              progress=False, n_bootstrap=0)
    first = leukbench.compare(fs, **kw)
    again = leukbench.compare(fs, **kw)
    out = first.save(tmp_path_factory.mktemp("out") / "res", feature_sets=[fs])
    return fs, first, again, out, cache


def test_end_to_end_and_battery_rows_are_in_the_table(run):
    fs, result, _, _, _ = run
    rows = set(zip(result.table["Feature Set"], result.table["Model"]))
    assert rows == {("chanstats", "GaussianNB"), (f"finetuned:{TINY}", "end-to-end"),
                    (f"finetuned:{TINY}", "GaussianNB")}
    assert (result.table["Status"] == "ok").all() and (result.table["Folds"] == 3).all()
    e2e = result.predictions[result.predictions.classifier == "end-to-end"]
    assert len(e2e) == len(fs.labeled()) and e2e.groupby("fold").size().sum() == len(fs.labeled())


def test_end_to_end_metrics_are_recomputable_from_the_predictions(run):
    _, result, _, out, _ = run
    preds = pd.read_csv(out / "predictions.csv")
    folds = result.folds[result.folds.classifier == "end-to-end"]
    classes = result.classes
    for _, row in folds.iterrows():
        p = preds[(preds.classifier == "end-to-end") & (preds.fold == row.fold)]
        y = np.array([classes.index(c) for c in p.y_true])
        yp = np.array([classes.index(c) for c in p.y_pred])
        scores = p[[f"score_{c}" for c in classes]].to_numpy()
        m = score_fold(y, yp, scores, len(classes), classes.index(result.positive_label))
        assert m["balanced_accuracy"] == pytest.approx(row.balanced_accuracy)
        assert m["roc_auc"] == pytest.approx(row.roc_auc)
        assert np.array_equal(yp, scores.argmax(1))


def test_the_test_fold_is_never_seen_by_training_or_early_stopping(run):
    fs, result, _, _, _ = run
    ids = result.finetune_ids
    subjects = dict(zip(fs.ids, fs.subjects))
    base = result.folds[(result.folds.feature_set == "chanstats")]
    preds = result.predictions[result.predictions.classifier == "GaussianNB"]
    for fold, f in ids.groupby("fold"):
        part = {role: set(g["id"]) for role, g in f.groupby("role")}
        assert not part["test"] & (part["train"] | part["val"]) and not part["train"] & part["val"]
        # the same outer split as the battery's rows
        assert part["test"] == set(preds[(preds.feature_set == "chanstats") & (preds.fold == fold)]["id"])
        assert len(part["train"]) + len(part["val"]) == int(base[base.fold == fold].n_train.iloc[0])
        test_subjects = {subjects[i] for i in part["test"]}
        assert not test_subjects & {subjects[i] for i in part["train"] | part["val"]}


def test_results_folder_has_the_training_record(run):
    _, result, _, out, _ = run
    training = pd.read_csv(out / "training.csv")
    assert {"fold", "epoch", "train_loss", "val_loss", "val_balanced_accuracy", "val_accuracy", "lr", "seconds",
            "best"} <= set(training.columns)
    assert training.groupby("fold")["best"].sum().eq(1).all() and sorted(training.fold.unique()) == [0, 1, 2]
    assert (out / "plots" / "training_curves.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "<h2>Fine-tuning</h2>" in html and 'data-file="plots/training_curves.png"' in html
    record = json.loads((out / "run.json").read_text())
    ft = record["params"]["finetune"][f"finetuned:{TINY}"]
    assert ft["epochs_run"] == [2, 2, 2] and ft["device"] == "cpu" and ft["precision"] == "float32"
    assert ft["config"]["epochs"] == 2 and ft["config"]["size"] == 32 and ft["train_seconds"] > 0
    assert "end-to-end" in (out / "table.md").read_text()


def test_a_rerun_takes_every_fold_from_the_cache(run):
    _, first, again, _, cache = run
    assert again.params["finetune"][f"finetuned:{TINY}"]["from_cache"] == [True, True, True]
    assert again.n_computed == 0  # the battery's fits too: each fold's features are the same matrix again
    from leukbench.reporting._result import fit_counts

    assert fit_counts(first) == {"total": 6, "from_fold_cache": 0, "computed": 6, "finetunings": 3,
                                 "finetunings_trained": 3, "finetunings_from_cache": 0}
    assert fit_counts(again)["from_fold_cache"] == 6 and fit_counts(again)["finetunings_from_cache"] == 3
    keys = first.params["finetune"][f"finetuned:{TINY}"]["checkpoints"]
    assert len(set(keys)) == 3  # one network per fold
    for key in keys:
        assert len(list((cache / "finetune" / key).glob("features-*.npy"))) == 1
    cols = [c for c in first.table.columns if c not in ("Time Taken",)]
    pd.testing.assert_frame_equal(first.table[cols], again.table[cols])


def test_command_line(cells, tmp_path, capsys):
    out, cache = tmp_path / "res", tmp_path / "cache"
    code = cli.main(["compare", str(cells), "--features", f"chanstats,finetuned:{TINY}",
                     "--weights", "none", "--epochs", "1", "--finetune-size", "32", "--cv", "2",
                     "--classifiers", "GaussianNB", "--n-bootstrap", "0", "-q", "--out", str(out),
                     "--cache-dir", str(cache), "--num-workers", "0"])
    assert code == 0
    assert f"finetuned:{TINY} | end-to-end" in (out / "table.md").read_text()
    record = json.loads((out / "run.json").read_text())["params"]["finetune"][f"finetuned:{TINY}"]
    assert record["epochs_run"] == [1, 1] and "segment" not in record["config"]  # at its default: not recorded
    assert ("Fits: 4 computed, 0 taken from the fold cache (4 in all) + 2 fine-tunings (2 trained, 0 taken from "
            "the checkpoint cache)") in capsys.readouterr().out


def test_command_line_with_the_network_alone_and_segmented_cells(cells, tmp_path, capsys):
    """finetuned:<backbone> alone (no feature set extracted), with --segment applied to its images."""
    import shutil

    out, data = tmp_path / "res", tmp_path / "cells"
    shutil.copytree(cells, data)
    (data / "hem" / "UID_H9_1_1_hem.bmp").write_bytes(b"not an image")  # skipped and listed, as extraction does
    args = ["compare", str(data), "--features", f"finetuned:{TINY}", "--segment", "--weights", "none", "--epochs",
            "1", "--finetune-size", "32", "--cv", "2", "--classifiers", "GaussianNB", "--n-bootstrap", "0", "-q",
            "--cache-dir", str(tmp_path / "cache"), "--num-workers", "0"]
    assert cli.main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out / "table.csv")
    assert set(zip(table["Feature Set"], table["Model"])) == {(f"finetuned:{TINY}", "end-to-end"),
                                                              (f"finetuned:{TINY}", "GaussianNB")}
    record = json.loads((out / "run.json").read_text())["params"]["finetune"][f"finetuned:{TINY}"]
    assert record["config"]["segment"] is True and record["epochs_run"] == [1, 1]
    assert pd.read_csv(out / "skipped_images.csv")["id"].tolist() == ["hem/UID_H9_1_1_hem.bmp"]
    text = capsys.readouterr().out
    assert "Leakage audit:" in text and "2 fine-tunings (2 trained, 0 taken from the checkpoint cache)" in text
    assert cli.main([*args, "--out", str(tmp_path / "again")]) == 0  # the same networks: from the cache
    assert ("Fits: 0 computed, 2 taken from the fold cache (2 in all) + 2 fine-tunings (0 trained, 2 taken from the "
            "checkpoint cache)") in capsys.readouterr().out
    plain = json.loads((out / "run.json").read_text())["params"]["finetune"][f"finetuned:{TINY}"]["checkpoints"]
    assert cli.main([*args[:4], *args[5:], "--out", str(tmp_path / "plain")]) == 0  # without --segment
    other = json.loads((tmp_path / "plain" / "run.json").read_text())["params"]["finetune"][f"finetuned:{TINY}"]
    assert not set(other["checkpoints"]) & set(plain)  # other images, other networks


def test_command_line_refusals(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "--epochs", "0", "-q"])
    assert exit_.value.code == 2 and "--epochs: must be at least 1" in capsys.readouterr().err
    from leukbench._parser import build_parser

    if cli.flags_by_dest(build_parser(), "compare").get("stain_reference"):  # a per-dataset Reinhard reference
        code = cli.main(["compare", "--features", f"finetuned:{TINY}", "--stain-norm", "reinhard",
                         "--stain-reference", "dataset", "-q", "--out", str(tmp_path / "x")])
        assert code == 2 and "--stain-reference dataset is not supported with finetuned:" in capsys.readouterr().err
