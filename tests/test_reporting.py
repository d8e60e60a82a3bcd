"""Tests of leukbench.reporting on a small fake comparison result."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukbench import reporting
from leukbench.exceptions import InvalidParameterError, LeukbenchError, ReportError
from leukbench.featureset import FeatureSet
from leukbench.reporting.dataset import dataset_summary
from leukbench.reporting.provenance import ExtractorInfo, Provenance, RecordedProvenance

METRICS = list(reporting.METRIC_COLUMNS)
CLASSES = ["all", "hem"]
FSETS = ["resnet50", "handcrafted"]
CLFS = ["LogisticRegression", "RandomForest", "SVC"]


# --------------------------------------------------------------------------
# fakes
# --------------------------------------------------------------------------


class FakeAudit:
    def __init__(self, n=2):
        self.pairs = pd.DataFrame({
            "id_a": [f"img{i}.png" for i in range(n)],
            "id_b": [f"img{i + 10}.png" for i in range(n)],
            "subject_a": ["s0"] * n, "subject_b": ["s1"] * n,
            "split_a": ["train"] * n, "split_b": ["test"] * n,
            "kind": ["exact"] * n, "distance": [0.0] * n,
        })

    def summary(self):
        return f"{len(self.pairs)} exact duplicate pairs across subjects\nno near duplicates"


def _make_images(tmp_path, n):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(n):
        p = tmp_path / "imgs" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        if i == 3:
            p.write_bytes(b"not an image")  # unreadable: must be skipped
        else:
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def make_fake(tmp_path=None, n_per_subject=5, n_subjects=6, failed=True):
    """2 feature sets x 3 classifiers x 3 subject-grouped folds, binary all/hem."""
    rng = np.random.default_rng(42)
    n = n_per_subject * n_subjects
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], n_per_subject)
    subject_class = np.where(np.arange(n_subjects) % 2 == 0, "all", "hem")
    y = subject_class[np.repeat(np.arange(n_subjects), n_per_subject)]
    ids = np.array([f"img{i}.png" for i in range(n)], dtype=object)
    fold_of_subject = {f"s{i}": i % 3 for i in range(n_subjects)}
    paths = _make_images(tmp_path, n) if tmp_path is not None else None

    feature_sets = []
    for k, fs in enumerate(FSETS):
        prov = (
            {"extractor": {"name": "resnet50", "kind": "deep", "weights": "none",
                           "weights_id": "random-init(seed=0)", "input_size": 224}}
            if fs == "resnet50"
            else {"extractor": {"name": "handcrafted", "kind": "handcrafted", "weights": "none",
                                "weights_id": ""}, "description": "morphology + texture"}
        )
        feature_sets.append(FeatureSet(
            name=fs, X=rng.normal(size=(n, 4 + k)), y=y, ids=ids, subjects=subjects,
            splits=["train"] * n, feature_names=[f"{fs}.f{j}" for j in range(4 + k)],
            paths=paths, provenance=prov,
        ))

    pred_rows, fold_rows, table_rows = [], [], []
    for fs in FSETS:
        for ci, clf in enumerate(CLFS):
            is_failed = failed and fs == "handcrafted" and clf == "SVC"
            per_fold = []
            for fold in range(3):
                test = np.array([fold_of_subject[s] == fold for s in subjects])
                if is_failed:
                    fold_rows.append(dict(feature_set=fs, classifier=clf, repeat=0, fold=fold,
                                          n_train=int((~test).sum()), n_test=int(test.sum()),
                                          train_subjects=4, test_subjects=2, status="failed",
                                          error="ValueError: boom"))
                    continue
                signal = (y[test] == "all") * (0.45 - 0.1 * ci)
                s_all = np.clip(signal + rng.uniform(0, 0.55, test.sum()), 0, 1)
                pred = np.where(s_all > 0.5, "all", "hem")
                for i, yt, yp, sa in zip(ids[test], y[test], pred, s_all):
                    pred_rows.append(dict(feature_set=fs, classifier=clf, repeat=0, fold=fold,
                                          id=i, subject=subjects[list(ids).index(i)], y_true=yt,
                                          y_pred=yp, score_all=sa, score_hem=1 - sa))
                acc = float((pred == y[test]).mean())
                per_fold.append(acc)
                fold_rows.append(dict(feature_set=fs, classifier=clf, repeat=0, fold=fold,
                                      n_train=int((~test).sum()), n_test=int(test.sum()),
                                      train_subjects=4, test_subjects=2, accuracy=acc,
                                      balanced_accuracy=acc, roc_auc=acc, f1=acc, precision=acc,
                                      recall=acc, mcc=2 * acc - 1, fit_time=0.01 * (ci + 1),
                                      predict_time=0.001, status="ok", error=""))
            row = {"Feature Set": fs, "Model": clf}
            for m in METRICS:
                if is_failed:
                    row[m], row[f"{m} Std"] = np.nan, np.nan
                else:
                    v = np.array(per_fold) if m != "MCC" else 2 * np.array(per_fold) - 1
                    row[m], row[f"{m} Std"] = v.mean(), v.std(ddof=1)
            row["Fit Time"], row["Fit Time Std"] = 0.0123 * (ci + 1), 0.001
            row["Time Taken"] = 0.5 + ci
            row["Folds"] = 0 if is_failed else 3
            row["Status"] = "failed: ValueError: boom | bad" if is_failed else "ok"
            table_rows.append(row)
    table = pd.DataFrame(table_rows)
    table = table.sort_values("Balanced Accuracy", ascending=False, na_position="last",
                              kind="stable").reset_index(drop=True)
    result = types.SimpleNamespace(
        table=table, folds=pd.DataFrame(fold_rows), predictions=pd.DataFrame(pred_rows),
        audit={"resnet50": FakeAudit(2), "handcrafted": FakeAudit(1)},
        cv_description="3-fold GroupKFold by subject (6 subjects), 1 repeat, seed 0",
        classes=list(CLASSES), positive_label="all",
        params={"seed": 0, "command": ["leukbench", "compare", "data/", "--seed", "0"]},
        feature_sets_info=[{"name": fs.name, "n_images": len(fs), "n_features": fs.X.shape[1],
                            "provenance": fs.provenance} for fs in feature_sets],
    )
    return result, feature_sets


def _parse_md(md):
    lines = md.rstrip("\n").split("\n")
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]  # noqa
    return split(lines[0]), lines[1], [split(line) for line in lines[2:]]


# --------------------------------------------------------------------------
# format_table
# --------------------------------------------------------------------------


def test_markdown_table_numbers_status_and_order():
    result, _ = make_fake()
    t = result.table
    md = reporting.format_table(t, "markdown", digits=3)
    header, sep, rows = _parse_md(md)
    assert header[:2] == ["Feature Set", "Model"]
    assert "Balanced Accuracy" in header and "Folds" in header and "Status" in header
    assert "Fit Time (s)" in header and "Time Taken (s)" in header
    # valid GitHub table: separator has one cell per column, every row as many cells
    assert re.fullmatch(r"\|(:?-{3,}:?\|)+", sep)
    assert sep.count("|") - 1 == len(header)
    assert all(len(r) == len(header) for r in rows)
    assert len(rows) == len(t)
    # order preserved
    assert [(r[0], r[1]) for r in rows] == list(zip(t["Feature Set"], t["Model"]))
    ba = header.index("Balanced Accuracy")
    for r, (_, tr) in zip(rows, t.iterrows()):
        if tr["Status"] == "ok":
            m = re.fullmatch(r"(-?\d+\.\d{3}) ± (\d+\.\d{3})", r[ba])
            assert m, r[ba]
            assert float(m.group(1)) == pytest.approx(round(tr["Balanced Accuracy"], 3), abs=1e-9)
            std = round(tr["Balanced Accuracy Std"], 3)
            assert float(m.group(2)) == pytest.approx(std, abs=1e-9)
            fit = r[header.index("Fit Time (s)")]
            assert re.fullmatch(r"\d+\.\d{2} ± \d+\.\d{2}", fit)
        else:
            assert r[ba] == "failed"
            assert r[header.index("Status")].startswith("failed: ValueError: boom")
            assert "\\|" in md  # the pipe in the reason is escaped
            assert not re.search(r"\d\.\d{3}", " ".join(r[2:]))


def test_markdown_rounding_exact():
    t = pd.DataFrame([{"Feature Set": "a", "Model": "m", "Accuracy": 0.91249,
                       "Accuracy Std": 0.0206,
                       "Folds": 5, "Status": "ok"}])
    header, _, rows = _parse_md(reporting.format_table(t, "markdown", digits=3))
    assert rows[0][header.index("Accuracy")] == "0.912 ± 0.021"
    _, _, rows = _parse_md(reporting.format_table(t, "markdown", digits=2))
    assert rows[0][2] == "0.91 ± 0.02"
    assert rows[0][header.index("Folds")] == "5"


def test_markdown_without_times_and_timeout():
    result, _ = make_fake()
    t = result.table.copy()
    t.loc[0, "Status"] = "timeout"
    for m in METRICS:
        t.loc[0, m] = np.nan
    md = reporting.format_table(t, "markdown", include_times=False)
    header, _, rows = _parse_md(md)
    assert not any("Time" in h for h in header)
    assert rows[0][header.index("Accuracy")] == "timeout"


def test_csv_roundtrip():
    result, _ = make_fake()
    t = result.table
    back = pd.read_csv(io.StringIO(reporting.format_table(t, "csv")))
    for c in METRICS + ["Fit Time", "Time Taken"]:
        np.testing.assert_allclose(back[c].to_numpy(float), t[c].to_numpy(float), rtol=0, atol=0,
                                   equal_nan=True)
    for c in METRICS + ["Fit Time"]:
        np.testing.assert_allclose(back[f"{c} Std"].to_numpy(float), t[f"{c} Std"].to_numpy(float),
                                   rtol=0, atol=0, equal_nan=True)
    assert back["Folds"].tolist() == t["Folds"].tolist()
    assert back["Status"].tolist() == t["Status"].tolist()
    assert list(back["Model"]) == list(t["Model"])


def test_html_table_escapes_and_marks_failed():
    result, _ = make_fake()
    h = reporting.format_table(result.table, "html")
    assert h.count("<tr") == len(result.table) + 1
    assert 'class="failed"' in h and "±" in h


def test_unknown_format():
    with pytest.raises(ValueError):
        reporting.format_table(make_fake()[0].table, "latex")


def test_user_errors_are_leukbench_errors_of_the_old_builtin_types():
    result, _ = make_fake()
    with pytest.raises(InvalidParameterError, match="unknown table format 'latex'"):
        reporting.format_table(result.table, "latex")
    with pytest.raises(KeyError) as err:
        reporting.plot_metric_bars(result, "Nope")
    assert isinstance(err.value, LeukbenchError)
    assert str(err.value).startswith("metric 'Nope' not in the results table")  # no KeyError quotes
    with pytest.raises(TypeError) as err:
        reporting.roc_points(result, "first")
    assert isinstance(err.value, LeukbenchError) and str(err.value).startswith("row must be")
    with pytest.raises(ValueError, match="2 paths but 1 labels") as err:
        reporting.plot_sample_grid(["a.png", "b.png"], ["all"])
    assert isinstance(err.value, LeukbenchError)


# --------------------------------------------------------------------------
# ROC / confusion
# --------------------------------------------------------------------------


def _perfect_ranking_result():
    rows = []
    for fold in range(3):
        for i in range(10):
            yt = "all" if i < 5 else "hem"
            score = 0.9 - 0.05 * i  # 'all' always scored above 'hem'
            yp = "hem" if i in (0, 4) else ("all" if i == 7 else yt)  # hard-label errors
            rows.append(dict(feature_set="f", classifier="c", repeat=0, fold=fold,
                             id=f"{fold}_{i}", subject=f"s{fold}", y_true=yt, y_pred=yp,
                             score_all=score, score_hem=1 - score))
    table = pd.DataFrame([{"Feature Set": "f", "Model": "c", "ROC AUC": 1.0, "ROC AUC Std": 0.0,
                           "Balanced Accuracy": 0.7, "Balanced Accuracy Std": 0.0,
                           "Folds": 3, "Status": "ok"}])
    return types.SimpleNamespace(table=table, predictions=pd.DataFrame(rows),
                                 classes=["all", "hem"],
                                 positive_label="all", folds=None, audit=None)


def test_roc_uses_scores_not_hard_labels():
    r = _perfect_ranking_result()
    pts = reporting.roc_points(r, 0)
    assert pts["auc"] == pytest.approx(1.0)
    assert pts["auc_mean"] == pytest.approx(1.0)
    assert len(pts["fold_aucs"]) == 3
    assert pts["positive_label"] == "all"
    # hard labels would have given an AUC below 1
    assert (r.predictions["y_pred"] != r.predictions["y_true"]).any()
    fig = reporting.plot_roc_curves(r, top=3)
    assert fig.axes[0].get_legend() is None  # the legend is the figure's, below the curves
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("AUC 1.000" in t for t in texts), texts


def test_roc_reversed_scores_and_missing_positive_column():
    r = _perfect_ranking_result()
    r.predictions = r.predictions.drop(columns=["score_all"])  # only score_hem left
    assert reporting.roc_points(r, ("f", "c"))["auc"] == pytest.approx(1.0)
    r.predictions["score_hem"] = 1 - r.predictions["score_hem"]  # now anti-ranked
    assert reporting.roc_points(r, 0)["auc"] == pytest.approx(0.0)


def test_roc_multiclass_micro():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    rows = []
    for i in range(60):
        yt = classes[i % 3]
        s = rng.uniform(0, 0.3, 3)
        s[i % 3] += 0.7
        rows.append(dict(feature_set="f", classifier="c", repeat=0, fold=i % 2, id=str(i),
                         subject="", y_true=yt, y_pred=classes[int(np.argmax(s))],
                         **{f"score_{c}": v for c, v in zip(classes, s)}))
    r = types.SimpleNamespace(table=pd.DataFrame([{"Feature Set": "f", "Model": "c",
                                                   "Status": "ok"}]),
                              predictions=pd.DataFrame(rows), classes=classes, positive_label=None)
    pts = reporting.roc_points(r, 0)
    assert pts["kind"] == "micro-ovr"
    assert pts["auc"] == pytest.approx(1.0)
    assert pts["fpr"][0] == 0 and pts["tpr"][-1] == 1
    # the legend gives the table's (macro) AUC, not a per-fold micro AUC of its own
    r.table = pd.DataFrame([{"Feature Set": "f", "Model": "c", "Status": "ok", "ROC AUC": 0.9123,
                             "ROC AUC Std": 0.0456}])
    fig = reporting.plot_roc_curves(r)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "f · c: macro AUC 0.912 ± 0.046 (micro, pooled 1.000)" in legend
    # a test split of one class: no AUC in the table, and no number of its own in the plot
    r.predictions = r.predictions[r.predictions["y_true"] == "a"].assign(fold=0)
    r.table = r.table.assign(**{"ROC AUC": np.nan, "ROC AUC Std": np.nan})
    assert np.isnan(reporting.roc_points(r, 0)["auc_mean"])
    fig = reporting.plot_roc_curves(r)
    assert "the test data hold one class only: no ROC curve" in [t.get_text() for t in fig.axes[0].texts]
    assert "(one test split)" in fig.axes[0].get_title()


def test_roc_of_one_test_split_and_of_one_class():
    r = _perfect_ranking_result()
    r.predictions = r.predictions[r.predictions["fold"] == 0]  # one test split
    r.table = r.table.assign(**{"ROC AUC": 0.8, "ROC AUC Std": np.nan})
    fig = reporting.plot_roc_curves(r)
    assert [t.get_text() for t in fig.legends[0].get_texts()][1].endswith(": AUC 0.800")  # no ± 0.000
    assert "(one test split)" in fig.axes[0].get_title()
    r.predictions = r.predictions[r.predictions["y_true"] == "all"]  # the test split holds one class
    fig = reporting.plot_roc_curves(r)
    assert "the test data hold one class only: no ROC curve" in [t.get_text() for t in fig.axes[0].texts]


def test_positive_class_falls_back_to_the_evaluation_default():
    r = _perfect_ranking_result()
    r.positive_label = None  # real results always carry it; the fallback is the evaluation's
    assert reporting.roc_points(r, 0)["positive_label"] == "all"
    r.classes = ["benign", "malignant"]
    r.predictions = r.predictions.assign(
        y_true=r.predictions["y_true"].map({"all": "malignant", "hem": "benign"}),
        y_pred=r.predictions["y_pred"].map({"all": "malignant", "hem": "benign"}),
        score_malignant=r.predictions["score_all"])
    pts = reporting.roc_points(r, 0)
    assert pts["positive_label"] == "malignant" and pts["auc"] == pytest.approx(1.0)


def test_roc_multiclass_leaves_the_fold_auc_to_the_table():
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    rows = []
    for i in range(30):
        s = rng.uniform(0, 1, 3)
        rows.append({"feature_set": "f", "classifier": "c", "repeat": 0, "fold": i // 10,
                     "id": str(i), "y_true": classes[i % 3], "y_pred": classes[int(np.argmax(s))],
                     **{f"score_{c}": v for c, v in zip(classes, s)}})
    r = types.SimpleNamespace(table=pd.DataFrame([{"Feature Set": "f", "Model": "c",
                                                   "Status": "ok"}]),
                              predictions=pd.DataFrame(rows), classes=classes, positive_label=None)
    pts = reporting.roc_points(r, 0)
    assert pts["n_splits"] == 3 and len(pts["fold_aucs"]) == 0
    assert np.isnan(pts["auc_mean"]) and np.isnan(pts["auc_std"])
    assert 0 <= pts["auc"] <= 1


def test_dataset_summary_ignores_unlabelled_images_without_subjects():
    images = pd.DataFrame({"label": ["all", "all", "hem", None], "subject": ["1", "2", "H1", ""]})
    d = dataset_summary(images)
    assert d["n_subjects"] == 3 and d["classes"]["hem"] == {"images": 1, "subjects": 1}
    assert d["n_images"] == 4 and d["n_labeled"] == 3


def test_confusion_counts_pooled():
    r = _perfect_ranking_result()
    m = reporting.confusion_counts(r, 0)
    assert list(m.index) == ["all", "hem"] and list(m.columns) == ["all", "hem"]
    assert int(m.to_numpy().sum()) == len(r.predictions)
    # per fold: 'all' -> 3 right, 2 wrong; 'hem' -> 4 right, 1 wrong
    assert m.loc["all", "all"] == 9 and m.loc["all", "hem"] == 6
    assert m.loc["hem", "hem"] == 12 and m.loc["hem", "all"] == 3
    fig = reporting.plot_confusion_matrices(r, top=3)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "9\n60.0%" in texts


# --------------------------------------------------------------------------
# provenance and skipped images
# --------------------------------------------------------------------------


def test_provenance_is_read_once_into_typed_values():
    result, fsets = make_fake()
    prov = Provenance.collect(result, fsets)
    assert prov.command == "leukbench compare data/ --seed 0"
    assert prov.seeds == {"seed": 0} and prov.sample_seed == 0
    assert [info.name for info in prov.feature_sets] == FSETS
    resnet = prov.feature_sets[0].extractors[0]
    assert isinstance(resnet, ExtractorInfo) and resnet.random_init
    assert resnet.weights_text == "weights: random init — not pretrained (random-init(seed=0))"
    assert resnet.input_notes() == ["input 224px"]
    assert prov.random_init_extractors == ["resnet50"]
    assert prov.feature_sets[1].provenance.description == "morphology + texture"
    assert [d["source"] for d in prov.data_fingerprints] == ["feature_set"] * 2
    record = prov.feature_sets[0].record()  # the run.json entry: no configuration
    assert list(record) == ["name", "n_images", "n_features", "provenance", "extractors"]
    assert "config" not in record["extractors"][0]
    assert Provenance.collect(result).data_fingerprints[0]["source"] == "predictions"


def test_recorded_provenance_of_a_combined_set_and_its_skipped_images():
    _, (a, b) = make_fake()
    gone = {"id": "z.png", "kind": "file not found", "reason": "gone"}
    a.provenance = {**a.provenance, "skipped": [gone]}
    b.provenance = {**b.provenance, "skipped": [{"id": "y.png", "kind": "unreadable",
                                                 "reason": "bad"}, gone]}
    combined = FeatureSet.combine([a, b])
    read = RecordedProvenance.read(combined.provenance)
    assert [x.name for x in read.extractors] == ["resnet50", "handcrafted"]
    assert read.description is None  # a combined set has one description per part
    assert [s.id for s in read.skipped] == ["z.png", "y.png", "z.png"]
    skipped = reporting.skipped_images([combined, a])
    assert skipped.to_dict("records") == [{"id": "y.png", "kind": "unreadable", "reason": "bad"},
                                          gone]
    assert list(reporting.skipped_images(None).columns) == list(reporting.SKIPPED_COLUMNS)


def test_doctests_of_the_reporting_modules():
    import doctest
    import importlib

    for name in ("_result", "tables", "curves", "plots", "fingerprints", "provenance",
                 "data_checks", "dataset"):
        module = importlib.import_module(f"leukbench.reporting.{name}")
        failed, _ = doctest.testmod(module)
        assert failed == 0, name


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------


def test_class_balance_and_sample_grid(tmp_path):
    _, fsets = make_fake(tmp_path)
    fig = reporting.plot_class_balance(fsets[0])
    assert len(fig.axes) == 2  # images and subjects panels
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [15, 15]
    assert sorted(p.get_height() for p in fig.axes[1].patches) == [3, 3]
    many = ["basophil", "eosinophil", "erythroblast", "lymphocyte", "monocyte", "neutrophil"]
    fig = reporting.plot_class_balance(many)
    assert all(t.get_rotation() == 40 for t in fig.axes[0].get_xticklabels())  # readable, not overlapping
    fig = reporting.plot_class_balance(["a", "a", "b"])
    assert all(t.get_rotation() == 0 for t in fig.axes[0].get_xticklabels())
    assert len(fig.axes) == 1
    assert sorted(p.get_height() for p in fig.axes[0].patches) == [1, 2]
    fig = reporting.plot_sample_grid(fsets[0].paths, fsets[0].y, per_class=4, seed=1)
    shown = sum(len(ax.images) for ax in fig.axes)
    assert shown == 8  # the unreadable image was skipped, not fatal


def test_metric_bars_sorted_with_error_bars():
    result, _ = make_fake()
    fig = reporting.plot_metric_bars(result, "Balanced Accuracy")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ys = [t.get_position()[1] for t in ax.get_yticklabels()]
    top_first = [lab for _, lab in sorted(zip(ys, labels), reverse=True)]
    exp = [f"{f} · {m}" for f, m in zip(result.table["Feature Set"], result.table["Model"])]
    assert top_first == exp
    widths = [p.get_width() for p in ax.patches if p.get_height() == pytest.approx(0.7)]
    assert len(widths) == 5  # the failed row has no bar
    assert "failed" in [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------
# write_report
# --------------------------------------------------------------------------


def test_table_md_identical_across_runs_with_different_timings(tmp_path):
    result, _ = make_fake()
    a = reporting.write_report(result, tmp_path / "a", plots=False)
    result2 = copy.deepcopy(result)
    result2.table["Fit Time"] *= 3.7
    result2.table["Time Taken"] += 11.0
    b = reporting.write_report(result2, tmp_path / "b", plots=False)
    assert (a / "table.md").read_bytes() == (b / "table.md").read_bytes()
    assert (a / "table.csv").read_bytes() != (b / "table.csv").read_bytes()  # timings are there
    # rewriting the same result in place is also stable
    first = (a / "table.csv").read_bytes()
    reporting.write_report(result, a, plots=False)
    assert (a / "table.csv").read_bytes() == first
    assert not list((a / "plots").glob("*.png"))


def test_audit_variants_and_summary():
    result, _ = make_fake()
    s = reporting.markdown_summary(result)
    assert s.startswith("| Feature Set | Model |")
    assert "Cross-validation: 3-fold GroupKFold by subject" in s
    assert ("resnet50: 2 exact duplicate pairs across subjects; no near duplicates | "
            "handcrafted: 1 exact") in s
    lines = s.rstrip("\n").split("\n")
    assert lines[-2].startswith("Cross-validation:") and lines[-1].startswith("Leakage audit:")
    result.audit = FakeAudit(3)
    assert "Leakage audit: 3 exact duplicate pairs" in reporting.markdown_summary(result)
    result.audit = None
    assert "no leakage audit was run" in reporting.markdown_summary(result)


def test_unwritable_results_folder_raises_report_error(tmp_path):
    result, _ = make_fake()
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    with pytest.raises(ReportError, match="a-file: cannot write a results folder here"):
        reporting.write_report(result, taken, plots=False)
    with pytest.raises(ReportError):
        reporting.write_report(result, taken / "below", plots=False)


def test_report_css_is_package_data(tmp_path):
    from importlib import resources

    from leukbench.reporting.html import report_css

    css = resources.files("leukbench.reporting").joinpath("report.css").read_text(encoding="utf-8")
    assert css == report_css() and "table.leukbench-results" in css
    result, _ = make_fake()
    out = reporting.write_report(result, tmp_path / "css", plots=False)
    assert f"<style>\n{css}</style>" in (out / "report.html").read_text(encoding="utf-8")


def test_write_report_minimal_result(tmp_path):
    """No predictions, no audit, no provenance: still a complete, valid folder."""
    result, _ = make_fake()
    result.predictions = pd.DataFrame()
    result.audit = None
    result.feature_sets_info = []
    result.params = {}
    out = reporting.write_report(result, tmp_path / "m")
    html = (out / "report.html").read_text()
    assert "No leakage audit was run" in html and "No command recorded" in html
    assert (out / "plots" / "metric_bars.png").exists()
    assert not (out / "plots" / "roc_curves.png").exists()
    assert list(pd.read_csv(out / "audit_pairs.csv").columns)[:2] == ["id_a", "id_b"]
    json.loads((out / "run.json").read_text())


# --------------------------------------------------------------------------
# slow: a subprocess, and full reports with all plots
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_import_and_plotting_leave_matplotlib_state_alone():
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.get_backend()\n"
        "import leukbench.reporting as r\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())\n"
        "r.plot_class_balance(['a', 'b', 'b'])\n"
        "assert matplotlib.get_backend() == before\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print('OK', before)\n"
    )
    env = dict(os.environ, MPLBACKEND="svg")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "OK svg" in out.stdout


@pytest.mark.slow
def test_write_report_full(tmp_path):
    result, fsets = make_fake(tmp_path)
    out = reporting.write_report(result, tmp_path / "res", feature_sets=fsets)
    assert out == tmp_path / "res"
    for f in ["table.md", "table.csv", "folds.csv", "predictions.csv", "audit_pairs.csv",
              "run.json", "report.html"]:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == sorted(["class_balance.png", "sample_grid.png", "metric_bars.png",
                           "roc_curves.png", "confusion_matrices.png", "calibration.png",
                           "critical_difference.png"])
    for p in (out / "plots").glob("*.png"):
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150, (p, im.size)

    # CSV columns as documented
    tcsv = pd.read_csv(out / "table.csv")
    exp = ["Feature Set", "Model"]
    for m in METRICS + ["Fit Time"]:
        exp += [m, f"{m} Std"]
    exp += ["Time Taken", "Folds", "Status"]
    assert list(tcsv.columns) == exp
    folds = pd.read_csv(out / "folds.csv")
    assert list(folds.columns) == list(result.folds.columns)
    preds = pd.read_csv(out / "predictions.csv")
    assert {"feature_set", "classifier", "repeat", "fold", "id", "subject", "y_true", "y_pred",
            "score_all", "score_hem"} <= set(preds.columns)
    assert len(preds) == len(result.predictions)
    pairs = pd.read_csv(out / "audit_pairs.csv")
    assert len(pairs) == 3 and "feature_set" in pairs.columns

    # table.md: scores only, no timings
    md = (out / "table.md").read_text()
    assert "Time" not in md and "± " in md

    # report.html
    html = (out / "report.html").read_text()
    assert '<table class="leukbench-results">' in html
    for cell in _parse_md(md)[2][0][2:4]:
        assert cell in html
    assert html.count('src="data:image/png;base64,') == len(pngs)
    for name in pngs:
        assert f'data-file="plots/{name}"' in html
    assert "random init — not pretrained" in html
    assert "morphology + texture" in html
    assert "leukbench compare data/ --seed 0" in html
    assert "GroupKFold by subject" in html
    assert "exact duplicate pairs" in html
    assert "30 images" in html and "6 subjects" in html

    # run.json
    run = json.loads((out / "run.json").read_text())
    for k in ("leukbench", "python", "numpy", "sklearn", "xgboost", "torch"):
        assert k in run["versions"]
    assert run["versions"]["numpy"] == np.__version__
    assert run["seeds"] == {"seed": 0}
    assert run["classes"] == CLASSES and run["positive_label"] == "all"
    assert run["cv_description"] == result.cv_description
    fps = {d["name"]: d for d in run["data_fingerprints"]}
    assert set(fps) == set(FSETS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", d["X_sha256"]) for d in fps.values())
    # same images/labels/subjects -> same label fingerprint; different X -> different X hash
    assert fps["resnet50"]["labels_sha256"] == fps["handcrafted"]["labels_sha256"]
    assert fps["resnet50"]["X_sha256"] != fps["handcrafted"]["X_sha256"]
    ex = {x["name"]: x for d in run["feature_sets"] for x in d["extractors"]}
    assert ex["resnet50"]["random_init"] is True
    assert ex["resnet50"]["weights_id"] == "random-init(seed=0)"
    assert ex["handcrafted"]["random_init"] is False


@pytest.mark.slow
def test_fingerprint_from_predictions_matches_feature_sets(tmp_path):
    result, fsets = make_fake(failed=False)
    out = reporting.write_report(result, tmp_path / "r")
    run = json.loads((out / "run.json").read_text())
    fp_pred = {d["name"]: d for d in run["data_fingerprints"]}
    assert fp_pred["resnet50"]["source"] == "predictions"
    assert fp_pred["resnet50"]["X_sha256"] is None
    fp_fs = reporting.data_fingerprint(fsets[0])
    assert fp_pred["resnet50"]["labels_sha256"] == fp_fs["labels_sha256"]
    # order of images does not matter; a changed label does
    perm = np.random.default_rng(0).permutation(len(fsets[0]))
    shuffled = fsets[0].subset(perm)
    assert reporting.data_fingerprint(shuffled) == reporting.data_fingerprint(fsets[0])
    changed = copy.deepcopy(fsets[0])
    changed.y[0] = "hem" if changed.y[0] == "all" else "all"
    assert reporting.data_fingerprint(changed)["labels_sha256"] != \
        reporting.data_fingerprint(fsets[0])["labels_sha256"]
    # no feature sets: no sample grid, but still class balance from the predictions
    assert not (out / "plots" / "sample_grid.png").exists()
    assert (out / "plots" / "class_balance.png").exists()
