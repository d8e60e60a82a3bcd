"""Model bundles: train on part of the bundled sample, predict the rest exactly as in memory; the
safe bundle refuses pickles, untrusted types, tampered, truncated, missing and newer files."""

from __future__ import annotations

import inspect
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from leukbench import cli
from leukbench.classifiers import make_classifier
from leukbench.datasets import sample_root
from leukbench.evaluation.metrics import scores_of
from leukbench.exceptions import BundleError
from leukbench.extraction import extract_all
from leukbench.models import load_model, predict_images, train
from leukbench.models._trusted import TRUSTED_TYPES, battery_types

TRAIN_SUBJECTS = {"all": ["11", "14", "15"], "hem": ["H12", "H15", "H16"]}
REST_SUBJECTS = {"all": ["17"], "hem": ["H17"]}


def _copy_sample(root: Path, subjects, per_subject: int) -> Path:
    """Class folders with the first ``per_subject`` images of each subject of the bundled sample."""
    for cls, subs in subjects.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for s in subs:
            for f in sorted((sample_root() / cls).glob(f"UID_{s}_*"))[:per_subject]:
                shutil.copy(f, root / cls / f.name)
    return root


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Handcrafted features of 38 images of the sample, extracted once: training and held-out subjects."""
    base = tmp_path_factory.mktemp("models")
    data = _copy_sample(base / "data", TRAIN_SUBJECTS, 5)
    _copy_sample(data, REST_SUBJECTS, 4)
    cache = base / "cache"
    fs = extract_all(data, "handcrafted", cache_dir=cache, progress=False, num_workers=0).feature_sets["handcrafted"]
    rest = np.isin(fs.subjects, REST_SUBJECTS["all"] + REST_SUBJECTS["hem"])
    return {"base": base, "data": data, "cache": cache, "fs": fs, "train": fs.subset(~rest), "rest": fs.subset(rest)}


@pytest.fixture(scope="module")
def bundle(sample):
    """A saved LinearDiscriminantAnalysis bundle of the training subjects."""
    model = train(sample["train"], classifier="LinearDiscriminantAnalysis")
    return model.save(sample["base"] / "lda")


def _copy_bundle(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    return dst


def _rewrite_manifest(folder: Path, edit, rehash: bool = True) -> None:
    """Edit the manifest; with ``rehash`` consistently (its digest recomputed, as a deliberate edit would)."""
    from leukbench.models.bundle import DIGEST, _digest

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    if rehash:
        manifest[DIGEST] = _digest(manifest)
    path.write_text(json.dumps(manifest))


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


# -- training and predicting --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["LinearDiscriminantAnalysis", "LogisticRegression", "XGBClassifier"])
def test_a_bundle_predicts_the_rest_with_exactly_the_in_memory_scores(sample, tmp_path, name):
    tr, rest = sample["train"], sample["rest"]
    classes = sorted(set(tr.y))
    y = np.array([classes.index(c) for c in tr.y])
    in_memory = make_classifier(name, 42).fit(np.asarray(tr.X, dtype=np.float32), y)
    expected = scores_of(in_memory, np.asarray(rest.X, dtype=np.float32), len(classes))

    path = train(tr, classifier=name).save(tmp_path / "model")
    model = load_model(path)
    assert model.kind == ("xgboost" if name == "XGBClassifier" else "sklearn")
    # features computed again from the images (no cache), exactly as at training time
    got = model.predictions(list(rest.paths), cache_dir=False, progress=False, num_workers=0)
    assert got.table.columns.tolist() == ["path", "predicted_label", "score_all", "score_hem"]
    assert got.table["path"].tolist() == list(rest.paths)
    np.testing.assert_array_equal(got.table[["score_all", "score_hem"]].to_numpy(), expected)
    assert got.table["predicted_label"].tolist() == [classes[k] for k in in_memory.predict(rest.X)]


def test_round_trip_through_a_zip_and_the_notebook_api(sample, bundle, tmp_path):
    model = load_model(bundle)
    zipped = model.save(tmp_path / "model.zip")
    again = load_model(zipped)
    X = sample["rest"].X
    np.testing.assert_array_equal(again.predict_features(X)[1], model.predict_features(X)[1])
    paths = [str(p) for p in sample["rest"].paths]
    labels = again.predict(paths, cache_dir=sample["cache"], progress=False)
    assert labels.tolist() == model.predict_features(X)[0].tolist()
    assert again.predict_proba(paths, cache_dir=sample["cache"], progress=False).shape == (len(paths), 2)
    from_features = again.predictions(sample["rest"])  # a feature set made as the model's: no extraction
    np.testing.assert_array_equal(from_features.aligned_scores(), again.predict_features(X)[1])
    import leukbench

    assert (leukbench.train, leukbench.load_model, leukbench.Model) == (train, load_model, type(again))
    assert again.card["performance"]["cross_validated"] is False
    card, md = again.card, (bundle / "model.md").read_text()
    assert "not cross-validated" in md
    data = card["training_data"]
    assert (data["images"], data["subjects"], data["classes"]) == (30, 6, {"all": 15, "hem": 15})
    assert card["classes"] == ["all", "hem"] and card["positive_label"] == "all"
    assert len(data["fingerprint"]) >= 16 and data["fingerprint"] in md
    assert {"leukbench", "numpy", "scikit-learn", "skops"} <= set(card["versions"]) and "scikit-learn" in md
    assert "weights handcrafted" in card["features"][0]  # the weights identity (weights_id)


def test_a_labelled_folder_gives_metrics_a_confusion_matrix_and_true_labels(sample, bundle):
    result = predict_images(load_model(bundle), sample["data"], cache_dir=sample["cache"], progress=False)
    assert result.table.columns.tolist()[-1] == "true_label"
    assert len(result.table) == len(sample["fs"])
    assert int(result.confusion.to_numpy().sum()) == len(sample["fs"])
    assert 0.0 <= result.metrics["balanced_accuracy"] <= 1.0
    lines = result.summary_lines()
    assert lines[0].startswith(f"predicted {len(sample['fs'])} images, skipped 0;") and "images/s" in lines[0]


def test_an_unreadable_image_is_skipped_and_reported(sample, bundle, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    good = str(sample["rest"].paths[0])
    result = load_model(bundle).predictions([good, str(broken)], cache_dir=False, progress=False, num_workers=0)
    assert result.aligned_labels()[1] is None and result.aligned_labels()[0] in ("all", "hem")
    assert np.isnan(result.aligned_scores()[1]).all() and not np.isnan(result.aligned_scores()[0]).any()
    assert result.skipped["id"].str.endswith("/broken.png").tolist() == [True] and result.skipped["reason"].iloc[0]
    assert "skipped 1" in result.summary_lines()[0]


def test_save_best_trains_the_first_ok_row_and_carries_its_cross_validated_scores(sample):
    from leukbench import compare
    from leukbench.models import train_best

    fs = sample["train"]
    result = compare(fs, classifiers="GaussianNB,LinearDiscriminantAnalysis", cv=3, n_bootstrap=0, cache_dir=False,
                     progress=False)
    model = train_best(result, [fs])
    first = result.table.iloc[0]
    assert model.classifier == first["Model"]
    perf = model.card["performance"]
    assert perf["cross_validated"] and perf["metrics"]["Balanced Accuracy"]["mean"] == first["Balanced Accuracy"]
    assert perf["cv_scheme"] == result.cv_description and perf["audit"]
    result.table.loc[result.table.index[0], "Status"] = "failed: broken"  # the best row failed: the next one
    assert train_best(result, [fs]).classifier == result.table.iloc[1]["Model"]
    from leukbench.models import best_row
    from leukbench.schema import STATUS_OK

    result.table.loc[result.table.index[0], ["Status", "Feature Set"]] = [STATUS_OK, "finetuned:efficientnet_lite0"]
    assert best_row(result)["Feature Set"] == "finetuned:efficientnet_lite0"  # a network: not bundlable yet,
    assert train_best(result, [fs]).classifier == result.table.iloc[1]["Model"]  # the best battery row instead


# -- safety ------------------------------------------------------------------------------------------

class _RunsCode:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_in_place_of_the_pipeline_never_runs(bundle, tmp_path):
    folder, marker = _copy_bundle(bundle, tmp_path), tmp_path / "pwned"
    data = pickle.dumps(_RunsCode(marker))
    (folder / "pipeline.skops").write_bytes(data)
    with pytest.raises(BundleError) as err:  # the hash gives it away first
        load_model(folder)
    assert "pipeline.skops" in _one_line(err) and "changed" in str(err.value)
    import hashlib  # and with the manifest rewritten to match, skops still refuses it: not a skops file

    _rewrite_manifest(folder, lambda m: m["files"].update(
        {"pipeline.skops": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}))
    with pytest.raises(BundleError) as err:
        load_model(folder)
    assert "pipeline.skops" in _one_line(err) and "not a skops file" in str(err.value)
    assert not marker.exists()


def test_a_type_outside_the_trusted_list_is_refused_by_name(sample, tmp_path):
    from sklearn.dummy import DummyClassifier

    with pytest.warns(UserWarning, match="sklearn.dummy.DummyClassifier"):
        path = train(sample["train"], classifier=DummyClassifier()).save(tmp_path / "dummy")
    with pytest.raises(BundleError) as err:
        load_model(path)
    assert "sklearn.dummy.DummyClassifier" in _one_line(err) and "pipeline.skops" in str(err.value)
    assert type(load_model(path, trusted=["sklearn.dummy.DummyClassifier"]).estimator).__name__ == "DummyClassifier"


@pytest.mark.parametrize("damage, words", [
    (lambda f: (f / "model.json").write_bytes((f / "model.json").read_bytes().replace(b"GaussianNB", b"GaussianNb")
                                              .replace(b"Linear", b"linear")), ["model.json", "sha256"]),
    (lambda f: (f / "pipeline.skops").write_bytes((f / "pipeline.skops").read_bytes()[:100]),
     ["pipeline.skops", "truncated"]),
    (lambda f: (f / "model.md").unlink(), ["model.md", "missing"]),
    (lambda f: (f / "manifest.json").unlink(), ["manifest.json", "missing"]),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(format_version="2.0")), ["2.0", "upgrade leukbench"]),
])
def test_a_damaged_or_newer_bundle_is_one_line_naming_the_file_and_the_fix(bundle, tmp_path, capsys, damage, words):
    folder = _copy_bundle(bundle, tmp_path)
    damage(folder)
    with pytest.raises(BundleError) as err:
        load_model(folder)
    text = _one_line(err)
    assert all(w in text for w in words), text
    assert cli.main(["predict", str(folder), str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_bundle_whose_features_this_install_cannot_compute_is_refused(sample, bundle, tmp_path):
    folder = _copy_bundle(bundle, tmp_path)
    _rewrite_manifest(folder, lambda m: m["extractors"][0]["config"].update(feature_version=2))
    images = [str(sample["rest"].paths[0])]
    with pytest.raises(BundleError, match="feature version 2, this leukbench computes version"):
        load_model(folder).predict(images, cache_dir=False, progress=False, num_workers=0)
    _rewrite_manifest(folder, lambda m: m["extractors"][0]["config"].update(feature_version=3, weights_id="other.pth"))
    with pytest.raises(BundleError, match="weights 'other.pth'"):
        load_model(folder).predict(images, cache_dir=False, progress=False, num_workers=0)
    _rewrite_manifest(folder, lambda m: (m["extractors"][0]["config"].update(weights_id="handcrafted"),
                                         m["versions"].update(leukbench="0.0.9")))
    with pytest.warns(UserWarning, match=r"leukbench 0\.0\.9, this is leukbench"):
        load_model(folder).predict(images, cache_dir=sample["cache"], progress=False)


def test_the_trusted_list_holds_every_type_of_the_battery():
    assert set(battery_types()) <= TRUSTED_TYPES


# -- command line ------------------------------------------------------------------------------------

def test_train_and_predict_on_the_command_line(sample, tmp_path, capsys):
    out = tmp_path / "model"
    assert cli.main(["train", str(sample["data"]), "--features", "handcrafted", "--classifier",
                     "GaussianNB [power, pca:3]", "--cache-dir", str(sample["cache"]), "--out", str(out), "-q"]) == 0
    assert json.loads((out / "manifest.json").read_text())["classifier"] == "GaussianNB [power, pca:3]"  # a table row
    assert [type(s).__name__ for _, s in load_model(out).estimator.steps][-2:] == ["PCA", "GaussianNB"]
    csv = tmp_path / "pred" / "p.csv"
    assert cli.main(["predict", str(out), str(sample["data"]), "--cache-dir", str(sample["cache"]),
                     "--out", str(csv), "-q"]) == 0
    text = capsys.readouterr().out
    assert "Balanced Accuracy" in text and "confusion" in text
    assert csv.read_text().splitlines()[0] == "path,predicted_label,score_all,score_hem,true_label"
    assert (tmp_path / "pred" / "plots" / "example_predictions.png").stat().st_size > 1000
    capsys.readouterr()
    assert cli.main(["train", "--features", "handcrafted,morphology", "--out", str(tmp_path / "m2")]) == 2
    assert "--features names 2 feature sets" in capsys.readouterr().err  # before any extraction


def test_train_and_predict_options_have_the_library_defaults():
    from leukbench.models import predict_images as predict

    def defaults(f):
        return {n: p.default for n, p in inspect.signature(f).parameters.items() if p.default is not p.empty}

    parser = cli.build_parser()
    tr = vars(parser.parse_args(["train"]))
    assert (tr["classifier"], tr["seed"], tr["positive_label"]) == (
        defaults(train)["classifier"], defaults(train)["seed"], defaults(train)["positive_label"])
    pr = vars(parser.parse_args(["predict", "model", "img.png"]))
    for name in ("cache_dir", "device", "batch_size", "num_workers", "layout", "subject_regex"):
        assert pr[name] == defaults(predict)[name], name
    assert pr["quiet"] is not defaults(predict)["progress"]
    assert vars(parser.parse_args(["compare", "--save-best", "best"]))["save_best"] == "best"


def test_the_example_predictions_grid_puts_confident_errors_first(sample):
    import pandas as pd

    from leukbench.reporting.example_predictions import example_order, plot_example_predictions

    paths = [str(p) for p in sample["rest"].paths[:3]]
    table = pd.DataFrame({"path": paths, "predicted_label": ["all", "hem", "all"], "score_all": [0.6, 0.2, 0.95],
                          "score_hem": [0.4, 0.8, 0.05], "true_label": ["hem", "hem", "hem"]})
    assert example_order(table).tolist() == [2, 0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_example_predictions(table, n=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("all 0.95") and "wrong (true hem)" in titles[0] and titles[2].endswith("right")


def test_a_tuned_row_is_searched_once_on_all_the_data(sample):
    model = train(sample["train"], classifier="RidgeClassifier (tuned)")
    chosen = json.loads(model.card["model"]["params"])
    assert model.classifier == "RidgeClassifier (tuned)"
    assert model.estimator.get_params()["ridgeclassifier__alpha"] == chosen["ridgeclassifier__alpha"]
    from leukbench.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="GaussianNB has no search space"):
        train(sample["train"], classifier="GaussianNB (tuned)")


def test_save_best_keeps_the_post_processing_of_the_row(sample, tmp_path):
    from leukbench import compare
    from leukbench.models import train_best

    result = compare(sample["train"], classifiers="GaussianNB", cv=3, n_bootstrap=0, cache_dir=False, progress=False,
                     reduce="pca:3", normalize="power")
    model = load_model(train_best(result, [sample["train"]]).save(tmp_path / "pp"))
    assert model.classifier == result.table.iloc[0]["Model"] == "GaussianNB [power, pca:3]"
    assert [type(s).__name__ for _, s in model.estimator.steps] == ["FunctionTransformer", "Normalizer", "PCA",
                                                                    "GaussianNB"]


def test_images_to_predict_come_from_a_folder_a_manifest_or_paths(sample, bundle, tmp_path):
    from leukbench.exceptions import DatasetError, InvalidParameterError
    from leukbench.models._features import image_table

    loose = tmp_path / "loose"
    loose.mkdir()
    for p in sample["rest"].paths[:2]:
        shutil.copy(p, loose / Path(p).name)
    table = image_table(loose)
    assert len(table) == 2 and set(table["label"]) == {""} and table.attrs["root"] == str(loose)
    manifest = loose / "cells.csv"  # the two images, listed with their labels
    manifest.write_text("path,label\n" + "".join(f"{Path(p).name},{y}\n"
                                                 for p, y in zip(sample["rest"].paths[:2], sample["rest"].y[:2])))
    result = load_model(bundle).predictions(manifest, cache_dir=False, progress=False, num_workers=0)
    assert result.table["true_label"].tolist() == list(sample["rest"].y[:2]) and result.metrics is not None
    with pytest.raises(InvalidParameterError, match="given twice"):
        image_table([loose / table["id"][0], loose / table["id"][0]])
    with pytest.raises(DatasetError, match="no such image file"):
        image_table([tmp_path / "nope.png"])
    with pytest.raises(BundleError, match="no such model bundle"):
        load_model(tmp_path / "no_model")


def test_the_options_an_extractor_records_make_it_again():
    from leukbench.features.base import create_extractor
    from leukbench.models._features import creation_options, rebuild_extractors

    made = create_extractor("handcrafted", segment=True, stain_norm="reinhard")
    spec = {"name": "handcrafted", "config": made.config.to_dict()}
    assert creation_options(spec) == {"segment": True, "grayscale": False, "stain_norm": "reinhard"}
    (again,) = rebuild_extractors([spec])
    assert again.config.to_dict() == spec["config"] and again.config.cache_key() == made.config.cache_key()


# -- audit findings: tamper-evident manifest, clear one-line refusals ------------------------------------

def test_an_edited_manifest_is_refused_naming_it(bundle, tmp_path):
    folder = _copy_bundle(bundle, tmp_path)
    _rewrite_manifest(folder, lambda m: m["classes"].reverse(), rehash=False)  # would flip every prediction
    with pytest.raises(BundleError) as err:
        load_model(folder)
    assert "manifest.json" in _one_line(err) and "edited" in str(err.value)
    _rewrite_manifest(folder, lambda m: None)  # the digest made to match: the hashed card still disagrees
    with pytest.raises(BundleError) as err:
        load_model(folder)
    assert "manifest.json" in _one_line(err) and "classes ['hem', 'all'] differs from the card" in str(err.value)


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["files"].update({"model.md": "oops"}), ["manifest.json", "'model.md' is not"]),
    (lambda m: m.update(extractors="oops"), ["manifest.json", "extractors is not a list"]),
    (lambda m: m.update(feature_names=[1, 2]), ["manifest.json", "feature_names"]),
    (lambda m: (m.pop("files"), m.update(format_version="2.0")), ["2.0", "upgrade leukbench"]),
    (lambda m: m["files"].pop("model.md"), ["model.md", "not listed"]),
    (lambda m: m["files"].pop("model.json"), ["model.json", "not listed"]),
])
def test_a_consistently_edited_manifest_of_wrong_fields_is_one_line(bundle, tmp_path, edit, words):
    folder = _copy_bundle(bundle, tmp_path)
    _rewrite_manifest(folder, edit)
    with pytest.raises(BundleError) as err:
        load_model(folder)
    text = _one_line(err)
    assert all(w in text for w in words), text


def test_a_damaged_or_foreign_zip_is_named(bundle, tmp_path):
    import zipfile

    zipped = load_model(bundle).save(tmp_path / "model.zip")
    data = zipped.read_bytes()
    zipped.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"model\.zip: a truncated or damaged \.zip") as err:
        load_model(zipped)
    _one_line(err)
    other = tmp_path / "other.zip"  # somebody's archive: never overwritten
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("thesis.tex", "years of work")
    with pytest.raises(BundleError, match=r"other\.zip: exists and is not a model bundle \(no manifest\.json"):
        load_model(bundle).save(other)
    assert zipfile.ZipFile(other).namelist() == ["thesis.tex"]
    with pytest.raises(BundleError, match="not a model bundle"):  # nor is a damaged one: it cannot be told
        load_model(bundle).save(zipped)
    zipped.unlink()
    load_model(bundle).save(zipped)
    assert load_model(load_model(bundle).save(zipped)).classes == ["all", "hem"]  # a bundle .zip is replaced


def test_float16_features_need_a_cuda_device_named_by_the_bundle(sample, bundle, tmp_path, monkeypatch):
    from leukbench.models._features import rebuild_extractors

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    spec = {"name": "efficientnet_lite0", "config": {"weights": "imagenet", "segment": False, "grayscale": False,
                                                     "options": {"precision": "float16-autocast"}}}
    for device in ("cpu", "auto"):
        with pytest.raises(BundleError, match=r"precision 'float16-autocast', which needs a CUDA device.*"
                                              r"--device cuda") as err:
            rebuild_extractors([spec], device=device)
        _one_line(err)
    folder = _copy_bundle(bundle, tmp_path)  # a bundle trained on a GPU in float16, as its manifest records it
    _rewrite_manifest(folder, lambda m: m.update(extractors=[spec]))
    with pytest.raises(BundleError, match=r"efficientnet_lite0: .*'float16-autocast'.*--device cpu\)"):
        load_model(folder).predict([str(sample["rest"].paths[0])], device="cpu", cache_dir=False, progress=False)


def test_an_xgboost_pipeline_keeps_its_preprocessing_and_a_foreign_json_is_refused(sample, tmp_path):
    import hashlib

    path = train(sample["train"], classifier="XGBClassifier [l2]").save(tmp_path / "xgb")
    assert sorted(json.loads((path / "manifest.json").read_text())["files"]) == [
        "model.json", "model.md", "preprocess.skops", "xgboost.json"]
    model = load_model(path)
    assert [type(s).__name__ for _, s in model.estimator.steps][0] == "Normalizer"
    X = np.asarray(sample["rest"].X, dtype=np.float32)
    fresh = train(sample["train"], classifier="XGBClassifier [l2]")
    np.testing.assert_array_equal(model.predict_features(X)[1], fresh.predict_features(X)[1])
    data = b'{"learner": 1}'  # valid JSON, not a model: rehashed, as a deliberate swap would be
    (path / "xgboost.json").write_bytes(data)
    _rewrite_manifest(path, lambda m: m["files"].update(
        {"xgboost.json": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}))
    with pytest.raises(BundleError, match="xgboost.json: valid JSON but not an XGBoost model") as err:
        load_model(path)
    _one_line(err)


def test_predictions_save_writes_the_csv_the_grid_and_drops_a_stale_skipped_list(sample, bundle, tmp_path, capsys):
    paths = [str(p) for p in sample["rest"].paths[:2]]  # image files: no labels
    result = load_model(bundle).predictions(paths, cache_dir=sample["cache"], progress=False)
    csv = tmp_path / "p.csv"
    (tmp_path / "p_skipped.csv").write_text("id,path,kind,reason\nold.png,,unreadable,x\n")
    written = result.save(csv)
    assert written == [csv, tmp_path / "plots" / "example_predictions.png"]
    assert written[1].stat().st_size > 1000 and not (tmp_path / "p_skipped.csv").exists()
    assert cli.main(["predict", str(bundle), *paths, "--out", str(tmp_path), "-q"]) == 2  # a folder: refused first
    assert "--out" in capsys.readouterr().err and not (tmp_path / "plots" / "predictions.csv").exists()


def test_compare_save_best_on_the_command_line_trains_the_best_of_two_feature_sets(sample, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.setattr("leukbench.reporting.report.write_plots", lambda *a, **k: [])  # the slow part; tested elsewhere
    # as if a fine-tuned network had come first: the CLI says so and saves the best battery row
    monkeypatch.setattr("leukbench.models.best_row", lambda result: {"Feature Set": "finetuned:efficientnet_lite0",
                                                                     "Model": "finetuned"})
    best = tmp_path / "best.zip"
    assert cli.main(["compare", str(sample["data"]), "--features", "handcrafted,morphology", "--classifiers",
                     "GaussianNB,LinearDiscriminantAnalysis", "--cv", "3", "--n-bootstrap", "0", "--cache-dir",
                     str(sample["cache"]), "--out", str(tmp_path / "res"), "--save-best", str(best), "-q"]) == 0
    table = (tmp_path / "res" / "table.csv").read_text().splitlines()
    model = load_model(best)
    assert len(table) == 5 and {"handcrafted", "morphology"} <= {line.split(",")[0] for line in table}
    assert table[1].startswith(f"{model.feature_set},{model.classifier},")
    assert model.card["performance"]["cross_validated"] and model.card["performance"]["rank"] == "1 of 4 rows"
    out = capsys.readouterr().out
    assert f"best row {model.feature_set} / {model.classifier} trained on all 38" in out
    assert "note: the best row finetuned:efficientnet_lite0 / finetuned is a fine-tuned network" in out


def test_the_card_points_to_the_audit_pairs_of_the_results_folder_not_the_bundle():
    from leukbench.models.card import _audit_outcome

    class Audit:
        def summary(self):
            return "5 identical image pair(s) across subjects; see audit_pairs.csv"

    assert _audit_outcome({"handcrafted": Audit()}, "handcrafted").endswith(
        "see audit_pairs.csv of the comparison's results folder")
