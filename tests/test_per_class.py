"""Per-class scores and calibration of a comparison's rows, and their files in a results folder."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_fscore_support

import leukbench
from leukbench.evaluation.calibration import (
    DECISION_SCORES,
    NO_SCORES,
    PROBABILITIES,
    are_probabilities,
    calibration_table,
    expected_calibration_error,
    reliability_bins,
    row_calibration,
    score_kind,
)
from leukbench.evaluation.metrics import softmax
from leukbench.evaluation.per_class import PER_CLASS_COLUMNS, per_class_folds, per_class_table
from leukbench.exceptions import InvalidParameterError
from leukbench.reporting.calibration_plot import plot_calibration, row_calibrations
from leukbench.reporting.report import REPORT_FILES, calibration_frame, per_class_frame

# --------------------------------------------------------------------------
# a hand-made predictions frame
# --------------------------------------------------------------------------


def hand_made(classes=("all", "hem"), rows=(("hc", "A"), ("hc", "B")), repeats=2, folds=3,
              n=12, seed=0):
    """Noisy predictions of ``rows`` × ``repeats`` × ``folds``, every fold holding every class."""
    rng = np.random.default_rng(seed)
    frames = []
    for fs, clf in rows:
        for rep in range(repeats):
            for fold in range(folds):
                y_true = np.array([classes[i % len(classes)] for i in range(n)], dtype=object)
                flip = rng.random(n) < 0.35
                y_pred = np.where(flip, rng.choice(list(classes), n), y_true)
                p = rng.dirichlet(np.ones(len(classes)), n)
                frame = pd.DataFrame({"feature_set": fs, "classifier": clf, "repeat": rep,
                                      "fold": fold, "id": [f"i{k}" for k in range(n)],
                                      "subject": [f"s{k % 4}" for k in range(n)],
                                      "y_true": y_true, "y_pred": y_pred})
                for ci, c in enumerate(classes):
                    frame[f"score_{c}"] = p[:, ci]
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def sklearn_per_fold(preds, fs, clf, classes):
    """{(repeat, fold): (precision, recall, f1, support)} by scikit-learn."""
    p = preds[(preds.feature_set == fs) & (preds.classifier == clf)]
    return {key: precision_recall_fscore_support(g["y_true"], g["y_pred"], labels=list(classes),
                                                 zero_division=0)
            for key, g in p.groupby(["repeat", "fold"])}


# --------------------------------------------------------------------------
# per-class scores
# --------------------------------------------------------------------------


def test_per_fold_scores_are_scikit_learns():
    classes = ["all", "hem"]
    preds = hand_made()
    folds = per_class_folds(preds, classes)
    assert len(folds) == 2 * 2 * 3 * 2  # rows x repeats x folds x classes
    for (fs, clf), f in folds.groupby(["feature_set", "classifier"]):
        expected = sklearn_per_fold(preds, fs, clf, classes)
        for (rep, fold), (p, r, f1, s) in expected.items():
            got = f[(f.repeat == rep) & (f.fold == fold)].set_index("class").loc[classes]
            np.testing.assert_allclose(got["precision"], p)
            np.testing.assert_allclose(got["recall"], r)
            np.testing.assert_allclose(got["f1"], f1)
            assert got["support"].tolist() == s.tolist()


def test_per_class_table_is_the_mean_and_std_over_folds():
    classes = ["all", "hem"]
    preds = hand_made()
    table = per_class_table(preds, classes)
    assert list(table.columns) == list(PER_CLASS_COLUMNS)
    assert table[["Feature Set", "Model", "Class"]].values.tolist() == [
        ["hc", "A", "all"], ["hc", "A", "hem"], ["hc", "B", "all"], ["hc", "B", "hem"]]
    for (fs, clf) in [("hc", "A"), ("hc", "B")]:
        per_fold = sklearn_per_fold(preds, fs, clf, classes)
        stacked = np.array([np.stack(v) for v in per_fold.values()])  # (splits, 4, classes)
        rows = table[(table["Feature Set"] == fs) & (table["Model"] == clf)].set_index("Class")
        for k, col in enumerate(["Precision", "Recall", "F1 Score"]):
            np.testing.assert_allclose(rows.loc[classes, col], stacked[:, k].mean(axis=0))
            np.testing.assert_allclose(rows.loc[classes, f"{col} Std"], stacked[:, k].std(axis=0))
        # support: test images of the class over every fold of every repeat
        p = preds[(preds.feature_set == fs) & (preds.classifier == clf)]
        assert rows.loc[classes, "Support"].tolist() == [int((p.y_true == c).sum()) for c in classes]
        assert rows["Folds"].tolist() == [6, 6]


def test_rows_select_and_order_and_unknown_rows_have_no_scores():
    preds = hand_made()
    table = per_class_table(preds, ["all", "hem"], rows=[("hc", "B"), ("hc", "gone")])
    assert table["Model"].tolist() == ["B", "B", "gone", "gone"]
    gone = table[table["Model"] == "gone"]
    assert gone["Support"].tolist() == [0, 0] and gone["Precision"].isna().all()


def test_a_fold_without_the_class_does_not_count_for_it():
    preds = pd.DataFrame({
        "feature_set": "f", "classifier": "c", "repeat": 0, "fold": [0, 0, 0, 1, 1, 1, 2, 2],
        "y_true": ["a", "b", "c", "a", "b", "c", "a", "b"],
        "y_pred": ["a", "b", "c", "a", "c", "c", "b", "b"],
    })
    table = per_class_table(preds, ["a", "b", "c"]).set_index("Class")
    assert table["Folds"].tolist() == [3, 3, 2]
    assert table.loc["c", "Support"] == 2
    # class c: recall 1 in folds 0 and 1; fold 2 has no c and is left out (not a 0)
    assert table.loc["c", "Recall"] == 1.0 and table.loc["c", "Recall Std"] == 0.0
    # class a: recall 1, 1, 0 over the three folds
    assert table.loc["a", "Recall"] == pytest.approx(2 / 3)
    assert table.loc["a", "Recall Std"] == pytest.approx(np.std([1, 1, 0]))


def test_multiclass_with_a_foreign_prediction_and_a_single_split():
    classes = ["lymph", "mono", "neutro"]
    preds = hand_made(classes=tuple(classes), rows=(("deep", "M"),), repeats=1, folds=1, n=30, seed=3)
    preds = preds.drop(columns=["repeat", "fold"])  # one test split: no split columns
    preds.loc[0, "y_pred"] = "7"  # a label the model made up: a miss of the true class
    table = per_class_table(preds, classes).set_index("Class")
    p, r, f1, s = precision_recall_fscore_support(preds["y_true"], preds["y_pred"], labels=classes,
                                                  zero_division=0)
    np.testing.assert_allclose(table.loc[classes, "Precision"], p)
    np.testing.assert_allclose(table.loc[classes, "Recall"], r)
    np.testing.assert_allclose(table.loc[classes, "F1 Score"], f1)
    assert table.loc[classes, "Support"].tolist() == s.tolist() == [10, 10, 10]
    assert table["Recall Std"].isna().all()  # one split: no spread, as in the results table
    assert table.loc["lymph", "Recall"] < 1.0


# --------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------


def test_ece_is_the_binned_gap_by_hand():
    y = np.array([0, 1, 1, 0, 1])
    proba = np.array([[0.95, 0.05], [0.15, 0.85], [0.45, 0.55], [0.25, 0.75], [0.12, 0.88]])
    # confidences 0.95 (right), 0.85 (right), 0.55 (right), 0.75 (wrong), 0.88 (right)
    # bins of width 0.1: (0.9,1]: 1 right, conf .95; (0.8,0.9]: 2 right, conf .865;
    # (0.7,0.8]: 0 right, conf .75; (0.5,0.6]: 1 right, conf .55
    by_hand = (1 * 0.05 + 2 * 0.135 + 1 * 0.75 + 1 * 0.45) / 5
    assert expected_calibration_error(y, proba) == pytest.approx(by_hand)
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(abs(0.8 - proba.max(1).mean()))


def test_reliability_bins_are_scikit_learns_calibration_curve():
    rng = np.random.default_rng(1)
    prob = rng.random(500)
    hits = (rng.random(500) < prob ** 2).astype(int)
    bins = reliability_bins(hits, prob, n_bins=8)
    frac, mean = calibration_curve(hits, prob, n_bins=8, strategy="uniform")
    full = bins["count"] > 0
    np.testing.assert_allclose(bins["observed"][full], frac)
    np.testing.assert_allclose(bins["mean_prob"][full], mean)
    assert bins["count"].sum() == 500 and len(bins["edges"]) == 9


def test_ece_of_calibrated_scores_is_near_zero_and_of_overconfident_scores_large():
    rng = np.random.default_rng(7)
    n = 100_000
    conf = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < conf  # right exactly as often as the model says
    y = np.where(right, 1, 0)
    proba = np.column_stack([1 - conf, conf])  # the model always picks class 1
    assert expected_calibration_error(y, proba) < 0.01
    # overconfident: says 0.99, right 60 % of the time
    y_over = np.where(rng.random(n) < 0.6, 1, 0)
    over = np.column_stack([np.full(n, 0.01), np.full(n, 0.99)])
    assert expected_calibration_error(y_over, over) == pytest.approx(0.39, abs=0.01)
    # three classes, calibrated by construction: the true class is drawn from the probabilities
    p3 = rng.dirichlet([2, 2, 2], n)
    y3 = (rng.random(n)[:, None] > np.cumsum(p3, axis=1)).sum(axis=1)
    assert expected_calibration_error(y3, p3) < 0.01


def test_which_scores_are_probabilities():
    rng = np.random.default_rng(0)
    d = rng.normal(size=20)
    assert score_kind(np.column_stack([-d, d])) == DECISION_SCORES  # binary decision scores
    p32 = rng.dirichlet([1, 1], 50).astype(np.float32).astype(np.float64)
    assert are_probabilities(p32) and score_kind(p32) == PROBABILITIES
    assert score_kind(np.full((3, 2), np.nan)) == NO_SCORES
    assert score_kind(np.array([[0.5, 0.6]])) == DECISION_SCORES  # does not sum to 1
    # a softmax of multiclass decision scores passes the rule: the registry settles it
    soft = softmax(rng.normal(size=(20, 3)))
    assert are_probabilities(soft)
    assert score_kind(soft, model="RidgeClassifier") == DECISION_SCORES  # no predict_proba
    assert score_kind(soft, model="LogisticRegression") == PROBABILITIES
    assert score_kind(soft, model="not-registered") == PROBABILITIES  # the rule alone


def test_row_calibration_and_table():
    preds = hand_made(rows=(("hc", "A"), ("hc", "RidgeClassifier")))
    ridge = preds["classifier"] == "RidgeClassifier"
    d = preds.loc[ridge, "score_all"].to_numpy() - 0.5
    preds.loc[ridge, "score_all"], preds.loc[ridge, "score_hem"] = -d, d
    table = calibration_table(preds, ["all", "hem"], n_bins=5, positive="all")
    assert list(table.columns) == ["Feature Set", "Model", "Scores", "ECE", "n_bins", "n"]
    assert table["Scores"].tolist() == [PROBABILITIES, DECISION_SCORES]
    a = preds[preds.classifier == "A"]
    y = (a["y_true"] == "hem").astype(int).to_numpy()
    assert table.loc[0, "ECE"] == pytest.approx(
        expected_calibration_error(y, a[["score_all", "score_hem"]].to_numpy(), n_bins=5))
    assert np.isnan(table.loc[1, "ECE"]) and table["n"].tolist() == [len(a), len(a)]
    c = row_calibration(a, ["all", "hem"], positive="all", n_bins=5)
    frac, mean = calibration_curve((a["y_true"] == "all").astype(int), a["score_all"], n_bins=5)
    full = c["positive"]["count"] > 0
    np.testing.assert_allclose(c["positive"]["observed"][full], frac)
    np.testing.assert_allclose(c["positive"]["mean_prob"][full], mean)
    assert c["positive_label"] == "all"
    with pytest.raises(InvalidParameterError, match="n_bins"):
        calibration_table(preds, ["all", "hem"], n_bins=0)


# --------------------------------------------------------------------------
# the reporting side on a fake result
# --------------------------------------------------------------------------


def fake_result():
    preds = hand_made(rows=(("hc", "A"), ("hc", "RidgeClassifier"), ("hc", "C"), ("hc", "D")))
    ridge = preds["classifier"] == "RidgeClassifier"
    d = preds.loc[ridge, "score_all"].to_numpy() - 0.5
    preds.loc[ridge, "score_all"], preds.loc[ridge, "score_hem"] = -d, d
    table = pd.DataFrame({"Feature Set": "hc", "Model": ["RidgeClassifier", "A", "C", "D", "E"],
                          "Status": ["ok", "ok", "ok", "ok", "failed: ValueError: boom"]})
    return types.SimpleNamespace(table=table, predictions=preds, classes=["all", "hem"],
                                 positive_label="all")


def test_frames_of_a_result_follow_the_table_and_skip_failed_rows():
    r = fake_result()
    pc = per_class_frame(r)
    assert list(dict.fromkeys(pc["Model"])) == ["RidgeClassifier", "A", "C", "D"]
    cal = calibration_frame(r)
    assert cal["Model"].tolist() == ["RidgeClassifier", "A", "C", "D"]
    assert cal["Scores"].tolist()[:2] == [DECISION_SCORES, PROBABILITIES]
    assert [c["model"] for c in row_calibrations(r)] == ["RidgeClassifier", "A", "C"]


def test_calibration_plot_names_the_rows_without_probabilities():
    fig = plot_calibration(fake_result(), top=3)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("RidgeClassifier: decision scores, not probabilities" in t for t in texts)
    assert any(t.startswith("hc · A: ECE ") for t in texts)
    assert len(fig.axes) == 2  # the diagram and the images per bin
    assert "positive class = all" in fig.axes[0].get_title()
    drawn = [line for line in fig.axes[0].lines if len(line.get_xdata())]
    assert len(drawn) == 1 + 3  # the diagonal and the three best rows that have probabilities
    from matplotlib.figure import Figure

    ax = Figure().subplots()  # the best row has no probabilities: the best one that has is drawn
    assert plot_calibration(fake_result(), top=1, ax=ax) is ax.figure
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("RidgeClassifier: decision scores" in t for t in labels)
    assert sum("ECE" in t for t in labels) == 1 and not ax.texts


def test_multiclass_calibration_plot_shows_the_top_label_confidence():
    classes = ["lymph", "mono", "neutro"]
    preds = hand_made(classes=tuple(classes), rows=(("deep", "LogisticRegression"),))
    table = pd.DataFrame({"Feature Set": ["deep"], "Model": ["LogisticRegression"], "Status": ["ok"]})
    r = types.SimpleNamespace(table=table, predictions=preds, classes=classes, positive_label=None)
    fig = plot_calibration(r)
    assert "top-label confidence" in fig.axes[0].get_title()
    assert fig.axes[0].get_ylabel() == "accuracy"
    (c,) = row_calibrations(r)
    assert c["positive"] is None and c["positive_label"] is None
    y = preds["y_true"].map({k: i for i, k in enumerate(classes)}).to_numpy()
    scores = preds[[f"score_{k}" for k in classes]].to_numpy()
    assert c["ece"] == pytest.approx(expected_calibration_error(y, scores))
    assert c["confidence"]["count"].sum() == len(preds)


def test_a_result_without_predictions_writes_header_only_files(tmp_path):
    from leukbench.reporting import write_report

    r = fake_result()
    r.predictions = pd.DataFrame()
    out = write_report(r, tmp_path / "empty", plots=False)
    assert list(pd.read_csv(out / "per_class.csv").columns) == list(PER_CLASS_COLUMNS)
    assert pd.read_csv(out / "per_class.csv").empty and pd.read_csv(out / "calibration.csv").empty
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "No per-class scores" in html and "No calibration" in html


# --------------------------------------------------------------------------
# a real comparison on the bundled sample, saved
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("per_class")
    fs = leukbench.extract(features="handcrafted", progress=False, cache_dir=tmp)
    result = leukbench.compare(fs, classifiers="LinearDiscriminantAnalysis,GaussianNB",
                               progress=False, cache_dir=tmp)
    return result, result.save(tmp / "results", feature_sets=fs)


def test_saved_results_folder_has_per_class_and_calibration(sample_run):
    result, out = sample_run
    for name in ("per_class.csv", "calibration.csv", "plots/calibration.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert {"per_class.csv", "calibration.csv"} <= set(REPORT_FILES)
    with Image.open(out / "plots" / "calibration.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    run = json.loads((out / "run.json").read_text())
    assert {"per_class.csv", "calibration.csv", "plots/calibration.png"} <= set(run["files"])

    per_class = pd.read_csv(out / "per_class.csv")
    assert list(per_class.columns) == list(PER_CLASS_COLUMNS)
    assert len(per_class) == len(result.table) * len(result.classes)
    pd.testing.assert_frame_equal(per_class, result.per_class(), check_dtype=False)
    # the positive class's numbers are the table's (same folds, same definition)
    pos = per_class[per_class["Class"] == result.positive_label].set_index("Model")
    table = result.table.set_index("Model")
    for col in ("Precision", "Recall", "F1 Score"):
        for c in (col, f"{col} Std"):
            np.testing.assert_allclose(pos.loc[table.index, c], table[c], rtol=1e-9)
    images_per_class = result.predictions.drop_duplicates("id")["y_true"].value_counts()
    for _, r in per_class.iterrows():  # one repeat: every image once
        assert r["Support"] == images_per_class[r["Class"]]

    cal = pd.read_csv(out / "calibration.csv")
    assert cal["Model"].tolist() == result.table["Model"].tolist()
    assert (cal["Scores"] == "probabilities").all() and (cal["n_bins"] == 10).all()
    preds = pd.read_csv(out / "predictions.csv")
    for _, r in cal.iterrows():
        p = preds[preds["classifier"] == r["Model"]]
        y = p["y_true"].map({c: i for i, c in enumerate(result.classes)}).to_numpy()
        scores = p[[f"score_{c}" for c in result.classes]].to_numpy()
        assert r["ECE"] == pytest.approx(expected_calibration_error(y, scores))
        assert r["n"] == len(p) and 0 < r["ECE"] < 1


def test_report_shows_per_class_scores_and_calibration(sample_run):
    result, out = sample_run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Per-class scores</h2>" in html and "<code>per_class.csv</code>" in html
    assert "<h2>Calibration</h2>" in html and "<code>calibration.csv</code>" in html
    assert 'data-file="plots/calibration.png"' in html
    assert html.count('data-file="plots/calibration.png"') == 1
    cal = result.calibration()
    for ece in cal["ECE"]:
        assert f"{ece:.3f}" in html
    best = result.per_class().iloc[0]
    assert f'{best["Recall"]:.3f} ± {best["Recall Std"]:.3f}' in html
    fig = result.plot_calibration(top=2)
    assert sum("ECE" in t.get_text() for t in fig.legends[0].get_texts()) == 2
