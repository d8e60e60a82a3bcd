"""Subject-aware evaluation: folds, metrics, isolation of failures, fold cache, lazypredict."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from leukbench.classifiers import register_classifier
from leukbench.datasets import load_sample
from leukbench.evaluation import EvaluationError, check_dataset, compare, plan_splits, roc_auc, score_fold
from leukbench.exceptions import InvalidParameterError
from leukbench.featureset import FeatureSet

FAST = "LogisticRegression,RidgeClassifier,GaussianNB"


def make_fs(n_subjects=(8, 8), per_subject=6, n_features=12, seed=0, classes=("all", "hem"),
            subject_shift=1.0, signal=1.2, name="synthetic", duplicate=None):
    """Images of subjects; every subject has its own offset (what leaks in a random split)."""
    rng = np.random.default_rng(seed)
    X, y, subjects, ids, hashes = [], [], [], [], []
    for ci, (cls, n) in enumerate(zip(classes, n_subjects)):
        for s in range(n):
            sid = f"{cls[0].upper()}{s}"
            offset = rng.normal(0, subject_shift, n_features)
            for k in range(per_subject):
                v = offset + rng.normal(0, 1, n_features)
                v[ci % n_features] += signal
                X.append(v)
                y.append(cls)
                subjects.append(sid)
                ids.append(f"{cls}/UID_{sid}_{k}.png")
                hashes.append(f"{len(ids):032x}")
    n = len(ids)
    ph = np.array(hashes, dtype=object)
    if duplicate is not None:  # image j is a copy of image i (another subject)
        i, j = duplicate
        ph[j] = ph[i]
    return FeatureSet(name=name, X=np.array(X, np.float32), y=np.array(y, object), ids=np.array(ids, object),
                      subjects=np.array(subjects, object), splits=np.array(["train"] * n, object),
                      feature_names=[f"f{i}" for i in range(n_features)], pixel_hashes=ph,
                      dhashes=np.array([None] * n, object))


def run(fs, tmp_path, **kw):
    kw.setdefault("classifiers", FAST)
    kw.setdefault("seed", 0)  # the assertions were written for these folds (compare's default is now 42)
    kw.setdefault("progress", False)
    kw.setdefault("cache_dir", tmp_path / "cache")
    return compare(fs, **kw)


def test_metrics_agree_with_sklearn_from_predictions(tmp_path):
    res = run(make_fs(), tmp_path, seed=1)
    assert res.positive_label == "all" and res.classes == ["all", "hem"]
    for (name, fold), p in res.predictions.groupby(["classifier", "fold"]):
        row = res.folds[(res.folds.classifier == name) & (res.folds.fold == fold)].iloc[0]
        assert row.accuracy == pytest.approx(skm.accuracy_score(p.y_true, p.y_pred))
        assert row.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(p.y_true, p.y_pred))
        assert row.f1 == pytest.approx(skm.f1_score(p.y_true, p.y_pred, pos_label="all"))
        assert row.precision == pytest.approx(skm.precision_score(p.y_true, p.y_pred, pos_label="all",
                                                                  zero_division=0))
        assert row.recall == pytest.approx(skm.recall_score(p.y_true, p.y_pred, pos_label="all"))
        assert row.mcc == pytest.approx(skm.matthews_corrcoef(p.y_true, p.y_pred))
        assert row.roc_auc == pytest.approx(skm.roc_auc_score(p.y_true == "all", p.score_all))
    t = res.table.set_index("Model")
    for name, f in res.folds.groupby("classifier"):
        assert t.loc[name, "Balanced Accuracy"] == pytest.approx(f.balanced_accuracy.mean())
        assert t.loc[name, "Balanced Accuracy Std"] == pytest.approx(f.balanced_accuracy.std(ddof=0))
        assert t.loc[name, "Folds"] == 5
    # sorted best first
    assert list(res.table["Balanced Accuracy"]) == sorted(res.table["Balanced Accuracy"], reverse=True)


def test_no_subject_on_both_sides_of_a_fold(tmp_path):
    fs = make_fs(n_subjects=(9, 7), per_subject=5)
    res = run(fs, tmp_path, classifiers="GaussianNB", repeats=2)
    assert len(res.folds) == 10
    assert res.cv_description.startswith("StratifiedGroupKFold(5)")
    for _, row in res.folds.iterrows():
        assert not set(row.train_subjects) & set(row.test_subjects)
        assert row.n_train + row.n_test == len(fs)
    # every image is tested exactly once per repeat
    per_repeat = res.predictions.groupby("repeat")["id"].agg(lambda s: sorted(s))
    assert all(list(v) == sorted(fs.ids) for v in per_repeat)


def test_duplicate_images_merge_their_subjects(tmp_path):
    fs = make_fs(duplicate=(0, 60))  # A0's first image is also filed under H2
    assert fs.subjects[0] == "A0" and fs.subjects[60] == "H2"
    res = run(fs, tmp_path, classifiers="GaussianNB")
    assert res.audit.merged_subjects == [("A0", "H2")]
    for _, row in res.folds.iterrows():
        sides = ("A0" in row.train_subjects, "H2" in row.train_subjects)
        assert sides in ((True, True), (False, False))
    assert "merged into 1 group(s)" in res.cv_description
    kept = run(fs, tmp_path, classifiers="GaussianNB", merge_duplicates=False)
    assert kept.audit.merged_subjects == [] and len(kept.audit.pairs) == 1
    assert "Warning" in kept.cv_description and "not merged" in kept.cv_description
    assert "leakage audit" not in run(make_fs(), tmp_path, classifiers="GaussianNB").cv_description


def test_roc_auc_comes_from_scores_not_labels():
    # perfect ranking, badly placed threshold: all predicted "all"
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 0, 0, 0])
    scores = np.column_stack([1 - np.linspace(0, 1, 6), np.linspace(0, 1, 6)])
    m = score_fold(y_true, y_pred, scores, 2, positive=1)
    assert m["roc_auc"] == 1.0 and m["balanced_accuracy"] == 0.5
    assert np.isnan(score_fold(y_true, y_pred, None, 2, positive=1)["roc_auc"])
    one_class = score_fold(np.zeros(3, int), np.zeros(3, int), scores[:3], 2, positive=1)
    assert np.isnan(one_class["roc_auc"])


def test_roc_auc_differs_from_balanced_accuracy_in_a_real_run(tmp_path):
    res = run(make_fs(signal=0.8), tmp_path, classifiers="LogisticRegression")
    f = res.folds
    assert (f.roc_auc - f.balanced_accuracy).abs().max() > 0.01


def test_failing_and_hanging_classifiers_are_isolated(tmp_path):
    from sklearn.dummy import DummyClassifier

    # local classes travel by value (cloudpickle): the workers need not import this test module
    class _Boom:
        def fit(self, X, y):
            raise RuntimeError("boom on purpose")

    class _Sleeper:
        def fit(self, X, y):
            time.sleep(60)
            return self

    class _Crash:
        def fit(self, X, y):  # only ever run in a worker process (timeout=...)
            import os

            os._exit(3)

    register_classifier("TestDummy", lambda seed: DummyClassifier(strategy="prior"), replace=True)
    register_classifier("TestBoom", lambda seed: _Boom(), replace=True)
    register_classifier("TestSleeper", lambda seed: _Sleeper(), replace=True)
    t0 = time.perf_counter()
    register_classifier("TestCrash", lambda seed: _Crash(), replace=True)
    res = run(make_fs(), tmp_path, classifiers="GaussianNB,TestBoom,TestSleeper,TestCrash", cv=2, timeout=2,
              n_jobs=2)
    assert time.perf_counter() - t0 < 30  # the sleeper was killed, not waited for
    t = res.table.set_index("Model")
    assert t.loc["GaussianNB", "Status"] == "ok" and t.loc["GaussianNB", "Folds"] == 2
    assert t.loc["TestBoom", "Status"] == "failed: RuntimeError: boom on purpose"
    assert t.loc["TestSleeper", "Status"] == "timeout"
    assert t.loc["TestCrash", "Status"] == "failed: worker process died (exit code 3)"
    assert np.isnan(t.loc["TestSleeper", "Balanced Accuracy"]) and t.loc["TestBoom", "Folds"] == 0
    # a timed-out row shows no fit time over the folds that happened to finish, but its cost
    assert np.isnan(t.loc["TestSleeper", "Fit Time"]) and t.loc["TestSleeper", "Time Taken"] >= 2 * 2
    assert list(res.table.Model)[0] == "GaussianNB"  # failed rows sorted last
    assert set(res.predictions.classifier) == {"GaussianNB"}
    # without a timeout the failure is isolated too (in-process and joblib paths), and classifiers
    # registered at run time work in joblib's worker processes
    for n_jobs in (1, 2):
        res2 = run(make_fs(), tmp_path, classifiers="GaussianNB,TestBoom,TestDummy", cv=2, n_jobs=n_jobs,
                   cache_dir=False)
        t2 = res2.table.set_index("Model")
        assert t2.loc["TestBoom", "Status"] == "failed: RuntimeError: boom on purpose"
        assert t2.loc["TestDummy", "Status"] == "ok" and t2.loc["GaussianNB", "Status"] == "ok"


def test_timeout_workers_do_not_inherit_openmp_state(tmp_path):
    """Fitting OpenMP models here first must not hang the killable workers (no fork)."""
    fs = make_fs(n_subjects=(5, 5), per_subject=4)
    names = "XGBClassifier"  # a forked child would hang in XGBoost's OpenMP pool, even with n_jobs=1
    inproc = run(fs, tmp_path, classifiers=names, cv=2, cache_dir=False)
    killable = run(fs, tmp_path, classifiers=names, cv=2, cache_dir=False, timeout=120)
    assert (killable.table.Status == "ok").all()
    cols = ["Model", "Accuracy", "Balanced Accuracy", "ROC AUC", "F1 Score"]
    pd.testing.assert_frame_equal(inproc.table[cols], killable.table[cols])


def test_rerun_reuses_cached_folds(tmp_path):
    fs = make_fs()
    first = run(fs, tmp_path, seed=3)
    assert first.n_cached == 0 and first.n_computed == 15
    again = run(fs, tmp_path, seed=3)
    assert again.n_cached == 15 and again.n_computed == 0
    cols = [c for c in first.table.columns if "Time" not in c]
    pd.testing.assert_frame_equal(first.table[cols], again.table[cols])
    pd.testing.assert_frame_equal(first.predictions, again.predictions)
    other_seed = run(fs, tmp_path, seed=4)
    assert other_seed.n_computed == 15
    no_cache = run(fs, tmp_path, seed=3, cache_dir=False)
    assert no_cache.n_cached == 0 and no_cache.n_computed == 15
    files = list((tmp_path / "cache" / "folds").rglob("*.npz"))
    assert len(files) == 30 and not list((tmp_path / "cache" / "folds").rglob("*.tmp"))


def test_cache_key_follows_the_classifier_parameters(tmp_path):
    from sklearn.linear_model import LogisticRegression

    fs = make_fs()
    register_classifier("TestLR", lambda seed: LogisticRegression(C=1.0), replace=True)
    assert run(fs, tmp_path, classifiers="TestLR").n_computed == 5
    assert run(fs, tmp_path, classifiers="TestLR").n_cached == 5
    register_classifier("TestLR", lambda seed: LogisticRegression(C=0.01), replace=True)
    changed = run(fs, tmp_path, classifiers="TestLR")
    assert changed.n_cached == 0 and changed.n_computed == 5


def test_too_few_subjects_reduce_the_folds_or_stop():
    y = np.array(["all"] * 12 + ["hem"] * 9, object)
    groups = np.array([f"A{i % 6}" for i in range(12)] + [f"H{i % 3}" for i in range(9)], object)
    splits, desc, notes = plan_splits(y, groups, cv=5, seed=0)
    assert len(splits) == 3 and "StratifiedGroupKFold(3)" in desc
    assert "hem: 3" in notes[0] and "3 folds are used" in notes[0]
    for sp in splits:
        assert set(y[sp.test]) == {"all", "hem"}  # both classes in every test fold
    with pytest.raises(EvaluationError, match="fewer than 2 subject groups.*hem: 1"):
        plan_splits(y, np.where(y == "hem", "H0", groups), cv=5)


def test_too_few_subjects_in_a_run_are_reported(tmp_path):
    res = run(make_fs(n_subjects=(6, 3)), tmp_path, classifiers="GaussianNB")
    assert res.cv_description.startswith("StratifiedGroupKFold(3)") and "hem: 3" in res.cv_description
    assert res.notes and res.params["warnings"] == res.notes and (res.table.Folds == 3).all()
    with pytest.raises(EvaluationError, match="fewer than 2 subject groups"):
        run(make_fs(n_subjects=(6, 1)), tmp_path, classifiers="GaussianNB")


def test_without_subjects_images_are_stratified_and_it_says_so(tmp_path):
    fs = make_fs()
    fs.subjects[:] = ""
    res = run(fs, tmp_path, classifiers="GaussianNB")
    assert res.cv_description.startswith("StratifiedKFold(5)") and "optimistic" in res.cv_description
    # ... but an image and its duplicate still stay on one side
    dup = make_fs(duplicate=(0, 60))
    dup.subjects[:] = ""
    res = run(dup, tmp_path, classifiers="GaussianNB")
    assert res.cv_description.startswith("StratifiedGroupKFold(5)") and "optimistic" in res.cv_description
    p = res.predictions
    assert p.loc[p.id == dup.ids[0], "fold"].item() == p.loc[p.id == dup.ids[60], "fold"].item()


def test_partly_known_subjects_are_still_grouped(tmp_path):
    fs = make_fs()
    fs.subjects[fs.subjects == "A0"] = ""  # A0's 6 images lose their subject id
    res = run(fs, tmp_path, classifiers="GaussianNB")
    assert res.cv_description.startswith("StratifiedGroupKFold(5)")
    assert "6 image(s) have no subject id and form groups of their own" in res.cv_description
    for _, row in res.folds.iterrows():
        assert not set(row.train_subjects) & set(row.test_subjects)


def test_predefined_split(tmp_path):
    fs = make_fs()
    test_subjects = {"A0", "A1", "H0", "H1"}
    fs.splits[:] = ["test" if s in test_subjects else "train" for s in fs.subjects]
    res = run(fs, tmp_path, split="predefined")
    assert len(res.folds) == 3 and set(res.folds.n_test) == {24}
    assert set(res.predictions.subject) == test_subjects
    assert res.table["Balanced Accuracy"].notna().all()
    assert res.table["Balanced Accuracy Std"].isna().all()  # one fold has no spread, not "± 0"
    fs.splits[:] = "train"
    with pytest.raises(EvaluationError, match="0 test"):
        run(fs, tmp_path, split="predefined")
    fs.splits[:] = np.where(fs.y == "hem", "test", "train")
    with pytest.raises(EvaluationError, match="train split has no image of class.*hem"):
        run(fs, tmp_path, split="predefined")


def test_multiclass_uses_one_vs_rest_auc(tmp_path):
    fs = make_fs(n_subjects=(5, 5, 5), classes=("aml", "cll", "cml"), signal=2.0)
    res = run(fs, tmp_path, classifiers="LogisticRegression,RidgeClassifier")
    assert res.positive_label is None and res.classes == ["aml", "cll", "cml"]
    assert len(res.folds) == 10 and (res.folds.status == "ok").all()
    for (name, fold), p in res.predictions.groupby(["classifier", "fold"]):
        row = res.folds[(res.folds.classifier == name) & (res.folds.fold == fold)].iloc[0]
        scores = p[["score_aml", "score_cll", "score_cml"]].to_numpy()
        # probabilities (LogisticRegression) or softmax-normalised decision scores (RidgeClassifier)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
        assert row.roc_auc == pytest.approx(skm.roc_auc_score(p.y_true, scores, multi_class="ovr"))
        assert row.f1 == pytest.approx(skm.f1_score(p.y_true, p.y_pred, average="weighted"))
        assert row.precision == pytest.approx(skm.precision_score(p.y_true, p.y_pred, average="weighted",
                                                                  zero_division=0))
    # the softmax is what makes the one-vs-rest AUC of decision scores well defined
    ridge = res.predictions[res.predictions.classifier == "RidgeClassifier"]
    assert (ridge.y_pred == ridge[["score_aml", "score_cll", "score_cml"]].idxmax(axis=1).str[6:]).all()


def test_several_feature_sets_give_rows_per_set(tmp_path):
    a, b = make_fs(name="a"), make_fs(name="b", seed=0)
    b.X = b.X[:, :4]
    b.feature_names = b.feature_names[:4]
    res = run({"deep": a, "small": b}, tmp_path, classifiers="GaussianNB,RidgeClassifier")
    assert sorted(zip(res.table["Feature Set"], res.table.Model)) == [
        ("deep", "GaussianNB"), ("deep", "RidgeClassifier"), ("small", "GaussianNB"), ("small", "RidgeClassifier")]
    # both sets are evaluated on the same folds
    fa = res.folds[res.folds.feature_set == "deep"].test_subjects.tolist()
    fb = res.folds[res.folds.feature_set == "small"].test_subjects.tolist()
    assert fa == fb


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="cannot sort by"):
        run(make_fs(), tmp_path, sort="Speed")
    with pytest.raises(ValueError, match="positive label 'x'"):
        run(make_fs(), tmp_path, positive_label="x")
    with pytest.raises(ValueError, match="timeout must be a positive"):
        run(make_fs(), tmp_path, timeout=-1)
    with pytest.raises(KeyError, match="unknown classifier"):
        run(make_fs(), tmp_path, classifiers="NoSuchModel")


def test_sort_best_params_and_unlabelled_images(tmp_path):
    fs = make_fs()
    fs.y[:4] = None  # unlabelled images are dropped
    res = run(fs, tmp_path, sort="roc_auc", positive_label="hem")
    assert res.params["sort"] == "ROC AUC" and res.positive_label == "hem"
    assert list(res.table["ROC AUC"]) == sorted(res.table["ROC AUC"], reverse=True)
    assert res.best().Model == res.table.Model.iloc[0]
    assert res.best("Fit Time")["Fit Time"] == res.table["Fit Time"].min()
    assert len(res.predictions) == 3 * (len(fs) - 4) and set(fs.ids[:4]).isdisjoint(res.predictions.id)
    for key in ("cv", "repeats", "seed", "split", "classifiers", "battery", "battery_version", "timeout",
                "sort", "positive_label"):
        assert key in res.params
    assert res.feature_sets_info == [{"name": "synthetic", "n_images": len(fs) - 4, "n_features": 12,
                                      "provenance": {}}]
    p = res.predictions[res.predictions.classifier == "LogisticRegression"]
    f = res.folds[res.folds.classifier == "LogisticRegression"]
    assert f.f1.tolist() == pytest.approx(
        [skm.f1_score(g.y_true, g.y_pred, pos_label="hem") for _, g in p.groupby("fold")])


def test_numbers_match_lazypredict_on_the_same_split(tmp_path):
    Supervised = pytest.importorskip("lazypredict.Supervised")
    fs = make_fs(n_subjects=(10, 10), n_features=20, seed=5)
    names = ["LinearDiscriminantAnalysis", "RidgeClassifier", "RidgeClassifierCV", "SVC", "XGBClassifier"]
    res = run(fs, tmp_path, classifiers=",".join(names), seed=42)
    p0 = res.predictions[(res.predictions.fold == 0)]
    test_ids = set(p0.id)
    te = np.array([i in test_ids for i in fs.ids])
    X = pd.DataFrame(fs.X.astype(np.float64))
    y = pd.Series(fs.y).map({"all": 1, "hem": 0})
    wanted = [c for n, c in Supervised.CLASSIFIERS if n in names]
    lazy = Supervised.LazyClassifier(classifiers=wanted, predictions=False, random_state=42,
                                     ignore_warnings=True, verbose=0)
    models = lazy.fit(X[~te], X[te], y[~te], y[te])
    models = models[0] if isinstance(models, tuple) else models
    compared = 0
    for name in names:
        if name not in models.index:
            continue
        f = res.folds[(res.folds.classifier == name) & (res.folds.fold == 0)].iloc[0]
        pred = res.predictions[(res.predictions.classifier == name) & (res.predictions.fold == 0)]
        assert models.loc[name, "Accuracy"] == pytest.approx(f.accuracy, abs=1e-9), name
        assert models.loc[name, "Balanced Accuracy"] == pytest.approx(f.balanced_accuracy, abs=1e-9), name
        assert models.loc[name, "F1 Score"] == pytest.approx(
            skm.f1_score(pred.y_true, pred.y_pred, average="weighted"), abs=1e-9), name
        compared += 1
    assert compared >= 4
    if any(n == "XGBClassifier" for n, _ in Supervised.CLASSIFIERS):
        assert "XGBClassifier" in models.index


def test_predefined_split_audit_reports_without_merging(tmp_path):
    """A copy across the fixed split is a warning; merging groups means nothing there."""
    fs = make_fs(duplicate=(0, 60))  # image 0 (A0) copied under H2
    fs.splits[:] = ["test" if s in {"A1", "H2"} else "train" for s in fs.subjects]
    res = run(fs, tmp_path, split="predefined")
    assert "1 of them across the train and test splits" in res.cv_description
    assert not res.audit.merged_subjects and "merged" not in res.audit.summary()
    assert "in both the train and the test split" not in res.cv_description  # no patient is
    fs.splits[:] = ["test" if s in {"A1", "H2"} else "train" for s in fs.subjects]
    fs.subjects[fs.subjects == "H3"] = "A1"  # one patient's images now on both sides
    res = run(fs, tmp_path, split="predefined")
    assert "1 subject group(s) are in both the train and the test split: A1" in res.cv_description


def test_rerun_says_how_many_fits_came_from_the_cache(tmp_path):
    import json

    from leukbench.reporting import markdown_summary

    fs = make_fs()
    first = run(fs, tmp_path)
    assert "Fits: 15 computed, 0 taken from the fold cache (15 in all)" in markdown_summary(first)
    again = run(fs, tmp_path)
    assert "Fits: 0 computed, 15 taken from the fold cache (15 in all)" in markdown_summary(again)
    again.save(tmp_path / "out", feature_sets=[fs], plots=False)
    fits = json.loads((tmp_path / "out" / "run.json").read_text())["fits"]
    assert fits == {"total": 15, "from_fold_cache": 15, "computed": 0}


def test_too_few_subjects_suggests_predefined_only_with_a_test_split():
    y = np.array(["all"] * 4 + ["hem"] * 4, dtype=object)
    groups = np.array(["A1"] * 4 + ["H1"] * 4, dtype=object)
    with pytest.raises(EvaluationError, match=r"fewer than 2 subject groups .*add data for that class$"):
        plan_splits(y, groups, np.array(["train"] * 8, dtype=object))
    with pytest.raises(EvaluationError, match=r"or use split='predefined' \(--split predefined\)"):
        plan_splits(y, groups, np.array(["train"] * 6 + ["test"] * 2, dtype=object))


def test_repeats_that_give_the_same_folds_are_not_counted_twice():
    """StratifiedGroupKFold shuffles only ties: with groups of distinct sizes every seed gives one
    partition, and a repeated run must not present it as new folds."""
    sizes = [1, 2, 3, 4, 5, 6]
    y = np.array([c for c in ("all", "hem") for s in sizes for _ in range(s)], dtype=object)
    groups = np.array([f"{c}{s}" for c in ("A", "H") for s in sizes for _ in range(s)], dtype=object)
    splits, desc, notes = plan_splits(y, groups, cv=3, repeats=3, seed=0)
    assert [(s.repeat, s.fold) for s in splits] == [(0, 0), (0, 1), (0, 2)]
    assert "2 of the 3 repeats gave folds identical to an earlier repeat and were dropped" in notes[0]
    assert "(seed 0)" in desc and "2 of the 3 repeats" in desc
    # equal sizes: the shuffle does change the folds, and every repeat is kept
    y2 = np.array(["all"] * 30 + ["hem"] * 30, dtype=object)
    g2 = np.array([f"S{i // 5}" for i in range(60)], dtype=object)
    splits2, desc2, notes2 = plan_splits(y2, g2, cv=3, repeats=3, seed=0)
    assert sorted({s.repeat for s in splits2}) == [0, 1, 2] and not notes2
    assert "repeated 3 times (seeds 0, 1, 2)" in desc2


def test_positive_label_on_more_than_two_classes_is_an_error(tmp_path):
    fs = make_fs()
    y = fs.y.copy()
    y[::3] = "third"
    with pytest.raises(ValueError, match="a positive class applies to two"):
        run(dataclasses.replace(fs, y=y), tmp_path, positive_label="all")
    with pytest.raises(EvaluationError, match="need at least two classes"):  # not "leave it out"
        run(dataclasses.replace(fs, y=np.full(len(fs), "all", dtype=object)), tmp_path, positive_label="all")


def test_one_roc_auc_definition_for_binary_and_multiclass():
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 40), rng.random((40, 2))
    assert roc_auc(y, s, positive=1) == pytest.approx(skm.roc_auc_score(y, s[:, 1]))
    assert roc_auc(y, s, positive=0) == pytest.approx(skm.roc_auc_score(y == 0, s[:, 0]))
    y3, s3 = rng.integers(0, 3, 60), rng.dirichlet(np.ones(3), 60)
    assert roc_auc(y3, s3) == pytest.approx(skm.roc_auc_score(y3, s3, multi_class="ovr"))
    assert score_fold(y3, y3, s3, 3, None)["roc_auc"] == roc_auc(y3, s3)  # the table's AUC is this one
    assert np.isnan(roc_auc(np.zeros(4, int), s[:4], positive=1))


def test_compare_checks_its_parameters_before_any_work(tmp_path):
    fs = make_fs()
    for kw, message in (
        (dict(n_jobs=0), "n_jobs is 0, which is not a number of jobs"),
        (dict(classifiers=""), "classifiers is empty; name classifiers to run"),
        (dict(classifiers="-,"), "classifiers is empty"),
        (dict(classifiers=[]), "classifiers is empty"),
        (dict(cv=1), r"cv must be at least 2 \(got 1\)"),
        (dict(cv="5"), "cv must be an integer"),
        (dict(repeats=0), "repeats must be at least 1"),
        (dict(split="random"), "unknown split 'random'"),
        (dict(timeout="soon"), "timeout must be a number or None"),
        (dict(sort="Speed"), "cannot sort by 'Speed'"),
        (dict(positive_label="x"), "positive label 'x' is not a class"),
    ):
        with pytest.raises(InvalidParameterError, match=message) as err:
            run(fs, tmp_path, **kw)
        assert err.value.parameter == next(iter(kw)), kw
    assert not (tmp_path / "cache").exists()  # nothing was computed
    # None is 1 job (scikit-learn's convention), as it always was
    assert run(fs, tmp_path, classifiers="GaussianNB", n_jobs=None, cache_dir=False).params["n_jobs"] == 1


def test_check_dataset_says_what_the_command_line_said(tmp_path):
    """The checks the CLI ran on the discovered table before extracting now live in the library;
    with the data source named and the parameter shown as its flag, the messages are the CLI's."""
    table = load_sample()
    assert check_dataset(table, source="sample/") == ["all", "hem"]
    with pytest.raises(InvalidParameterError) as err:
        check_dataset(table, positive_label="ALL", source="sample/")
    assert err.value.renamed("--positive-label") == (
        "--positive-label 'ALL' is not a class of sample/; its classes are all, hem")
    with pytest.raises(EvaluationError, match=r"^sample/: split='predefined' needs labelled images in both a "
                                              r"train and a test split \(found 159 train, 0 test\)"):
        check_dataset(table, split="predefined", source="sample/")
    three = table.assign(label=np.where(np.arange(len(table)) % 3 == 0, "third", table["label"]))
    with pytest.raises(InvalidParameterError) as err:
        check_dataset(three, positive_label="all", source="sample/")
    assert err.value.renamed("--positive-label") == (
        "--positive-label applies to two classes, and sample/ has 3; leave it out (F1, precision and "
        "recall are then weighted over the classes)")
    unlabelled = table.assign(label="")
    with pytest.raises(EvaluationError, match="need at least two classes"):
        check_dataset(unlabelled, source="sample/")


def test_a_class_lost_to_unreadable_images_is_named(tmp_path):
    fs = make_fs()
    only_all = fs.subset(fs.y == "all")
    with pytest.raises(EvaluationError, match="^data/: no image of class hem could be read for synthetic"):
        check_dataset(only_all, classes=["all", "hem"], source="data/")
    assert check_dataset(fs, classes=["all", "hem"]) == ["all", "hem"]
    # compare() applies it too: a feature set without the class the others have
    with pytest.raises(EvaluationError, match="no image of class hem could be read for b"):
        run({"a": fs, "b": only_all}, tmp_path, classifiers="GaussianNB")
