"""The statistics of a comparison: subject-level bootstrap and the corrected resampled t-test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from leukbench.evaluation.statistics import (
    BOOTSTRAP_METRICS,
    bootstrap_metric,
    corrected_resampled_ttest,
    percentile_interval,
    subject_resample_weights,
)


def _predictions(n_classes, n=400, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, n_classes, n))
    scores = rng.random((n, n_classes))
    scores[np.arange(n), y] += 0.3
    scores = np.round(scores / scores.sum(1, keepdims=True), 2)  # rounded: tied scores too
    groups = rng.integers(0, 30, n).astype(str)
    return y, pred, scores, groups


def test_resamples_never_split_a_subject():
    groups = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 7 + ["", ""])
    w = subject_resample_weights(groups, 500, seed=0)
    for g in ("a", "b", "c"):
        cols = w[:, groups == g]
        assert np.all(cols == cols[:, :1]), f"subject {g} was split"
    # an image without subject is its own unit: the two drift apart
    assert np.any(w[:, -1] != w[:, -2])
    # each resample draws as many units as there are (3 subjects + 2 lone images)
    units = w[:, [0, 5, 8, 15, 16]]
    assert np.all(units.sum(axis=1) == 5)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("metric", BOOTSTRAP_METRICS)
def test_each_resample_equals_scikit_learn_with_sample_weights(metric, n_classes):
    y, pred, scores, groups = _predictions(n_classes)
    w = subject_resample_weights(groups, 20, seed=3)
    positive = 1 if n_classes == 2 else None
    got = bootstrap_metric(metric, y, pred, scores, w, n_classes=n_classes, positive=positive)
    for value, weights in zip(got, w):
        if metric == "balanced_accuracy":
            ref = balanced_accuracy_score(y, pred, sample_weight=weights)
        elif metric == "f1":
            kw = (dict(average="binary", pos_label=1) if n_classes == 2
                  else dict(average="weighted", labels=np.arange(n_classes)))
            ref = f1_score(y, pred, sample_weight=weights, zero_division=0, **kw)
        elif n_classes == 2:
            ref = roc_auc_score(y == 1, scores[:, 1], sample_weight=weights)
        else:
            ref = np.mean([roc_auc_score(y == c, scores[:, c], sample_weight=weights)
                           for c in range(n_classes)])
        assert value == pytest.approx(ref, abs=1e-12)


def test_interval_is_reproducible_for_a_seed_and_moves_with_it():
    y, pred, scores, groups = _predictions(2)

    def interval(seed):
        w = subject_resample_weights(groups, 300, seed=seed)
        return percentile_interval(bootstrap_metric("balanced_accuracy", y, pred, scores, w,
                                                    n_classes=2, positive=1))

    assert interval(7) == interval(7)
    assert interval(7) != interval(8)
    lo, hi = interval(7)
    plain = balanced_accuracy_score(y, pred)
    assert lo < plain < hi and hi - lo < 0.2


def test_a_large_difference_is_not_a_tie():
    rng = np.random.default_rng(0)
    better = 0.85 + rng.normal(0, 0.01, 10)
    worse = 0.65 + rng.normal(0, 0.01, 10)
    r = corrected_resampled_ttest(better - worse, n_train=800, n_test=200)
    assert r.p_value < 1e-6 and r.mean_difference == pytest.approx(0.2, abs=0.02)


def test_two_copies_of_one_classifier_are_tied():
    scores = np.array([0.71, 0.64, 0.80, 0.69, 0.75])
    r = corrected_resampled_ttest(scores - scores, n_train=800, n_test=200)
    assert r.p_value == 1.0 and r.mean_difference == 0.0


def test_the_correction_widens_the_plain_paired_t_test():
    from scipy import stats

    d = np.array([0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.02, 0.03, 0.01, 0.05])
    corrected = corrected_resampled_ttest(d, n_train=800, n_test=200)
    plain = stats.ttest_1samp(d, 0.0)
    assert corrected.p_value > plain.pvalue
    assert corrected.t == pytest.approx(plain.statistic / np.sqrt(1 + len(d) * 200 / 800))


# --------------------------------------------------------------------------
# the statistics in the results table of compare()
# --------------------------------------------------------------------------


def _cells(n_subjects=(12, 12), per_subject=5, signal=2.5, seed=0, split=None):
    """Cells of subjects with a subject offset (what a subject-level bootstrap must respect)."""
    from leukbench import FeatureSet

    rng = np.random.default_rng(seed)
    X, y, subjects, ids = [], [], [], []
    for ci, (label, n) in enumerate(zip(("all", "hem"), n_subjects)):
        for s in range(n):
            offset = rng.normal(0, 0.7, 6)
            for k in range(per_subject):
                v = offset + rng.normal(0, 1, 6)
                v[0] += signal * ci
                X.append(v)
                y.append(label)
                subjects.append(f"{label}{s}")
                ids.append(f"{label}/{label}{s}_{k}.png")
    n = len(ids)
    splits = np.array(["train"] * n, object) if split is None else split(np.array(subjects, object))
    return FeatureSet(name="cells", X=np.array(X, np.float32), y=np.array(y, object), ids=np.array(ids, object),
                      subjects=np.array(subjects, object), splits=splits,
                      feature_names=[f"f{i}" for i in range(6)])


@pytest.fixture
def lda_copy():
    """A second registry name for LinearDiscriminantAnalysis: the same model twice."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from leukbench.classifiers import register_classifier, unregister_classifier

    register_classifier("LDA copy", lambda seed: LinearDiscriminantAnalysis(), replace=True)
    yield "LDA copy"
    unregister_classifier("LDA copy")


@pytest.fixture
def chance():
    """A classifier that knows nothing: the class prior for every cell."""
    from sklearn.dummy import DummyClassifier

    from leukbench.classifiers import register_classifier, unregister_classifier

    register_classifier("Chance", lambda seed: DummyClassifier(strategy="prior"), replace=True)
    yield "Chance"
    unregister_classifier("Chance")


def _compare(fs, **kw):
    from leukbench import compare

    kw.setdefault("progress", False)
    kw.setdefault("cache_dir", False)
    return compare(fs, **kw)


def test_two_copies_of_one_classifier_are_tied_in_the_table(lda_copy):
    table = _compare(_cells(), classifiers=["LinearDiscriminantAnalysis", lda_copy]).table.set_index("Model")
    assert sorted(table["Tied With Best"]) == ["best", "yes"]
    other = table[table["Tied With Best"] == "yes"].iloc[0]
    assert other["P Value vs Best"] == 1.0 and other["Difference vs Best"] == 0.0
    assert other["Difference vs Best CI Low"] == other["Difference vs Best CI High"] == 0.0
    for column in ("Balanced Accuracy", "ROC AUC", "F1 Score"):  # same predictions, same resamples
        assert table[f"{column} CI Low"].nunique() == 1 and table[f"{column} CI High"].nunique() == 1


def test_a_much_worse_classifier_is_not_tied_with_the_best(chance):
    table = _compare(_cells(n_subjects=(20, 20)), cv=10,
                     classifiers=["LinearDiscriminantAnalysis", chance]).table.set_index("Model")
    best, dummy = table.loc["LinearDiscriminantAnalysis"], table.loc[chance]
    assert best["Tied With Best"] == "best" and best["Balanced Accuracy"] > 0.75
    assert dummy["Tied With Best"] == "no" and dummy["P Value vs Best"] < 0.05
    assert dummy["Difference vs Best CI High"] < 0


def test_intervals_bracket_the_table_and_follow_the_seed():
    fs = _cells()
    first = _compare(fs, classifiers=["LogisticRegression"], seed=3).table.iloc[0]
    again = _compare(fs, classifiers=["LogisticRegression"], seed=3).table.iloc[0]
    other = _compare(fs, classifiers=["LogisticRegression"], seed=3, n_bootstrap=400).table.iloc[0]
    columns = [c for c in first.index if " CI " in c and not c.startswith("Difference")]
    assert len(columns) == 6 and all(first[c] == again[c] for c in columns)
    assert any(first[c] != other[c] for c in columns)
    for metric in ("Balanced Accuracy", "ROC AUC", "F1 Score"):
        assert first[f"{metric} CI Low"] <= first[metric] <= first[f"{metric} CI High"]


def test_no_bootstrap_leaves_the_intervals_out_and_still_tests_ties(lda_copy):
    result = _compare(_cells(), classifiers=["LinearDiscriminantAnalysis", lda_copy], n_bootstrap=0)
    assert result.table["Balanced Accuracy CI Low"].isna().all()
    assert sorted(result.table["Tied With Best"]) == ["best", "yes"]
    assert result.params["n_bootstrap"] == 0 and result.params["alpha"] == 0.05


def test_a_predefined_split_is_tested_by_the_paired_bootstrap(chance):
    def half_by_subject(subjects):
        return np.array(["test" if int(s[-1]) % 2 else "train" for s in subjects], object)

    table = _compare(_cells(n_subjects=(20, 20), split=half_by_subject), split="predefined",
                     classifiers=["LinearDiscriminantAnalysis", chance]).table.set_index("Model")
    dummy = table.loc[chance]
    assert np.isnan(dummy["P Value vs Best"])  # one test split: no t-test
    assert dummy["Tied With Best"] == "no" and dummy["Difference vs Best CI High"] < 0


def test_table_md_shows_the_interval_and_the_tie(tmp_path, lda_copy):
    from leukbench.reporting import format_table

    result = _compare(_cells(), classifiers=["LinearDiscriminantAnalysis", lda_copy])
    text = format_table(result.table, "markdown", include_times=False)
    header, _, first, second = text.splitlines()[:4]
    assert header.endswith("| Status | Tied With Best |")
    row = result.table.iloc[0]
    cell = (f"{row['Balanced Accuracy']:.3f} ± {row['Balanced Accuracy Std']:.3f} "
            f"[{row['Balanced Accuracy CI Low']:.3f}, {row['Balanced Accuracy CI High']:.3f}]")
    assert cell in first and first.endswith("| ok | best |") and second.endswith("| ok | yes |")
    csv_header = format_table(result.table, "csv").splitlines()[0].split(",")
    assert csv_header[-5:] == ["Tied With Best", "P Value vs Best", "Difference vs Best",
                               "Difference vs Best CI Low", "Difference vs Best CI High"]


@pytest.mark.parametrize("alpha, n_bootstrap", [(0.0, 1000), (0.7, 1000), (0.05, -1)])
def test_bad_statistics_options_name_the_parameter(alpha, n_bootstrap):
    from leukbench.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="alpha must be|n_bootstrap must be"):
        _compare(_cells(), classifiers=["GaussianNB"], alpha=alpha, n_bootstrap=n_bootstrap)


def test_without_subjects_the_run_says_images_were_resampled():
    fs = _cells()
    fs.subjects[:] = ""
    result = _compare(fs, classifiers=["GaussianNB"])
    assert any("resample images, not subjects" in n for n in result.notes)
    assert any("resample images, not subjects" in n for n in result.params["warnings"])
    assert not any("resample images" in n for n in _compare(_cells(), classifiers=["GaussianNB"]).notes)


def test_the_report_says_when_images_were_resampled(tmp_path):
    fs = _cells()
    fs.subjects[:] = ""
    out = _compare(fs, classifiers=["GaussianNB"]).save(tmp_path / "r", plots=False)
    assert "resample images, not subjects" in (out / "report.html").read_text(encoding="utf-8")
