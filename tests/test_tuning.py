"""Nested, subject-aware tuning (compare(tune=True), --tune): the search sees the outer training fold only."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from leukbench import classifiers as C
from leukbench.classifiers import register_classifier, unregister_classifier
from leukbench.evaluation import EvaluationError, compare
from leukbench.evaluation.tuning import (
    BudgetedRandomSearch,
    distributions,
    inner_folds,
    tuned_name,
)
from leukbench.exceptions import InvalidParameterError
from leukbench.featureset import FeatureSet


def _cells(n_subjects=(8, 8), per_subject=5, signal=2.0, seed=0, with_row_ids=False, subjects=True):
    """Cells of subjects, each subject with its own offset; optionally the row number as column 0."""
    rng = np.random.default_rng(seed)
    X, y, subj, ids = [], [], [], []
    for ci, (label, n) in enumerate(zip(("all", "hem"), n_subjects)):
        for s in range(n):
            offset = rng.normal(0, 0.7, 5)
            for k in range(per_subject):
                v = offset + rng.normal(0, 1, 5)
                v[0] += signal * ci
                X.append(([len(ids)] if with_row_ids else []) + list(v))
                y.append(label)
                subj.append(f"{label}{s}" if subjects else None)
                ids.append(f"{label}/{label}{s}_{k}.png")
    n = len(ids)
    return FeatureSet(name="cells", X=np.array(X, np.float32), y=np.array(y, object), ids=np.array(ids, object),
                      subjects=np.array(subj, object), splits=np.array(["train"] * n, object),
                      feature_names=[f"f{i}" for i in range(len(X[0]))])


def _run(fs, **kw):
    kw.setdefault("seed", 0)
    kw.setdefault("progress", False)
    kw.setdefault("cache_dir", False)
    kw.setdefault("n_bootstrap", 0)
    return compare(fs, **kw)


# ---------------------------------------------------------------------------
# the search spaces, the inner folds and the search
# ---------------------------------------------------------------------------


def test_every_search_space_names_real_parameters_of_its_classifier():
    assert set(C.SEARCH_SPACES) <= set(C.DEFAULT_BATTERY)
    assert C.search_space("RidgeClassifierCV") is None and C.search_space("GaussianNB") is None
    from sklearn.model_selection import ParameterSampler

    for name, space in C.SEARCH_SPACES.items():
        est = C.make_classifier(name, 0)
        for candidate in ParameterSampler(distributions(space), 5, random_state=0):
            est.set_params(**candidate)  # an unknown parameter name raises here
            for param, value in candidate.items():
                entry = space[param]
                if isinstance(entry, list):
                    assert value in entry
                else:
                    assert entry[1] <= value <= entry[2], (name, param, value)
                    assert isinstance(value, (int, np.integer)) == (entry[0] == "randint")


@pytest.mark.parametrize("entry", [("loguniform", 0, 1), ("uniform", 2, 1), ("randint", 1.5, 3), ("normal", 0, 1),
                                   [], "C", ("uniform", True, 3)])
def test_a_malformed_space_entry_is_named(entry):
    with pytest.raises(InvalidParameterError, match="search space entry 'C'"):
        distributions({"C": entry})


def test_inner_folds_keep_each_subject_on_one_side_and_every_class_in_every_fold():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], [40, 30])
    groups = np.concatenate([rng.choice([f"a{i}" for i in range(7)], 40), rng.choice([f"h{i}" for i in range(5)], 30)])
    folds = inner_folds(y, groups, n_folds=3, seed=1)
    assert folds.n_folds == 3 and folds.by_subject and (folds.test_fold >= 0).all()
    for f in range(3):
        inside = folds.test_fold == f
        assert not set(groups[inside]) & set(groups[~inside])
        assert set(y[inside]) == {0, 1}
    assert np.array_equal(folds.test_fold, inner_folds(y, groups, n_folds=3, seed=1).test_fold)  # seeded


def test_inner_folds_are_fewer_when_a_class_has_few_groups_and_by_image_without_groups():
    y = np.repeat([0, 1], [12, 6])
    groups = np.array([f"a{i % 6}" for i in range(12)] + ["h0"] * 3 + ["h1"] * 3)
    assert inner_folds(y, groups, n_folds=3, seed=0).n_folds == 2
    by_image = inner_folds(y, None, n_folds=3, seed=0)
    assert by_image.n_folds == 3 and not by_image.by_subject
    with pytest.raises(EvaluationError, match="cannot tune.*hem|cannot tune.*1: 1"):
        inner_folds(y, np.array([f"a{i % 6}" for i in range(12)] + ["h0"] * 6), seed=0)


def test_the_search_is_randomized_search_cv_without_a_budget_and_stops_with_one():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV

    fs = _cells()
    y = (fs.y == "hem").astype(int)
    cv = inner_folds(y, fs.subjects, n_folds=3, seed=5).splitter()
    space = {"C": ("loguniform", 1e-3, 1e2), "fit_intercept": [True, False]}
    ours = BudgetedRandomSearch(LogisticRegression(), space, n_iter=6, cv=cv, random_state=5).fit(fs.X, y)
    ref = RandomizedSearchCV(LogisticRegression(), distributions(space), n_iter=6, cv=cv, random_state=5,
                             scoring="balanced_accuracy").fit(fs.X, y)
    assert ours.best_params_ == ref.best_params_ and ours.n_candidates_ == 6 and not ours.budget_exhausted_
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"])
    quick = BudgetedRandomSearch(LogisticRegression(), space, n_iter=6, budget=1e-9, cv=cv, random_state=5)
    quick.fit(fs.X, y)
    assert quick.n_candidates_ == 1 and quick.budget_exhausted_
    assert quick.cv_results_["params"][0] == ref.cv_results_["params"][0]  # the same first candidate


# ---------------------------------------------------------------------------
# compare(tune=True)
# ---------------------------------------------------------------------------


class _Spy(ClassifierMixin, BaseEstimator):
    """Nearest class mean on columns 1.. ; column 0 is the row number. Every predict logs
    (rows it was fitted on, rows it predicts)."""

    log: list = []

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, X, y):
        self.rows_ = frozenset(X[:, 0].astype(int).tolist())
        self.classes_ = np.unique(y)
        self.means_ = np.array([X[y == c, 1:].mean(0) * (1 - self.shrink) for c in self.classes_])
        return self

    def predict(self, X):
        _Spy.log.append((self.rows_, frozenset(X[:, 0].astype(int).tolist())))
        d = ((X[:, None, 1:] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[d.argmin(1)]


@pytest.fixture
def spy(monkeypatch):
    register_classifier("Spy", lambda seed: _Spy(), replace=True)
    monkeypatch.setitem(C.SEARCH_SPACES, "Spy", {"shrink": [0.0, 0.1, 0.2, 0.3]})
    _Spy.log.clear()
    yield "Spy"
    unregister_classifier("Spy")


def test_the_inner_search_never_sees_the_outer_test_ids(spy):
    fs = _cells(n_subjects=(7, 6), with_row_ids=True)
    res = _run(fs, classifiers="Spy", tune=True, tune_trials=3, cv=3, n_jobs=1)  # in this process: _Spy.log
    assert (res.table.Status == "ok").all()
    rows = {image: i for i, image in enumerate(fs.ids)}
    subject = np.asarray(fs.subjects)
    outer = {}
    tuned_preds = res.predictions[res.predictions.classifier == "Spy (tuned)"]
    for _, part in tuned_preds.groupby(["repeat", "fold"]):
        test = frozenset(rows[i] for i in part["id"])
        outer[test] = frozenset(range(len(fs))) - test
    assert len(outer) == 3
    # tasks ran one after the other in this process: each ends with the predict of its outer test fold
    searches, inner = [], []
    for fitted, predicted in _Spy.log:
        if predicted in outer and fitted == outer[predicted]:
            searches.append((outer[predicted], inner))
            inner = []
        else:
            inner.append((fitted, predicted))
    assert not inner
    tuned = [(train, pairs) for train, pairs in searches if pairs]
    assert len(tuned) == 3 and len(searches) == 6  # 3 tuned fits with a search, 3 default fits without
    for train, pairs in tuned:
        assert len(pairs) == 3 * 3  # 3 candidates x 3 inner folds
        for fitted, predicted in pairs:
            assert fitted | predicted <= train  # never a row of the outer test fold
            assert not fitted & predicted
            assert not set(subject[list(fitted)]) & set(subject[list(predicted)])  # subjects kept apart
    assert {frozenset().union(*(p for _, p in pairs)) for _, pairs in tuned} == {t for t, _ in tuned}


def test_tuned_rows_sit_beside_the_defaults_with_the_parameters_chosen_per_fold():
    from sklearn.model_selection import RandomizedSearchCV

    fs = _cells()
    res = _run(fs, classifiers="LogisticRegression,KNeighborsClassifier,GaussianNB", tune=True, tune_trials=4, cv=3)
    assert sorted(res.table.Model) == sorted(["LogisticRegression", "LogisticRegression (tuned)", "GaussianNB",
                                              "KNeighborsClassifier", "KNeighborsClassifier (tuned)"])
    assert (res.table.Status == "ok").all() and (res.table.Folds == 3).all()
    assert any("GaussianNB has no search space" in n and "no tuned row" in n for n in res.notes)
    assert res.params["tune"] is True and res.params["tune_trials"] == 4
    assert res.params["tuned_classifiers"] == ["LogisticRegression (tuned)", "KNeighborsClassifier (tuned)"]
    folds = res.folds
    plain = folds[~folds.classifier.str.endswith("(tuned)")]
    assert (plain.params == "").all() and (plain.n_candidates == 0).all()
    y = (fs.y == "hem").astype(int)
    for name in ("LogisticRegression", "KNeighborsClassifier"):
        mine = folds[folds.classifier == tuned_name(name)]
        assert len(mine) == 3 and (mine.n_candidates == 4).all()
        assert set(res.predictions[res.predictions.classifier == tuned_name(name)].fold) == {0, 1, 2}
        for _, row in mine.iterrows():  # the same choice as a plain RandomizedSearchCV on the training fold
            chosen = json.loads(row.params)
            assert set(chosen) == set(C.SEARCH_SPACES[name])
            test_ids = set(res.predictions[(res.predictions.classifier == name)
                                           & (res.predictions.fold == row.fold)]["id"])
            train = np.array([i for i, image in enumerate(fs.ids) if image not in test_ids])
            cv = inner_folds(y[train], np.asarray(fs.subjects)[train], n_folds=3, seed=0).splitter()
            ref = RandomizedSearchCV(C.make_classifier(name, 0), distributions(C.SEARCH_SPACES[name]), n_iter=4,
                                     cv=cv, random_state=0, scoring="balanced_accuracy").fit(fs.X[train], y[train])
            assert chosen == pytest.approx(ref.best_params_)


def test_the_fold_cache_tells_tuned_from_default_fits_and_reruns_come_from_it(tmp_path):
    fs, cache = _cells(), tmp_path / "cache"
    kw = dict(classifiers="LogisticRegression", cv=3, cache_dir=cache)
    default = _run(fs, **kw)
    assert (default.n_cached, default.n_computed) == (0, 3)
    tuned = _run(fs, tune=True, tune_trials=3, **kw)
    assert (tuned.n_cached, tuned.n_computed) == (3, 3)  # the defaults came from the cache, the searches not
    again = _run(fs, tune=True, tune_trials=3, **kw)
    assert (again.n_cached, again.n_computed) == (6, 0)
    cols = ["classifier", "fold", "params", "n_candidates", "balanced_accuracy"]
    pd.testing.assert_frame_equal(again.folds[cols], tuned.folds[cols])
    assert (again.folds[again.folds.classifier == "LogisticRegression"].params == "").all()
    for changed in (dict(tune_trials=4), dict(tune_trials=3, tune_budget=100.0)):
        other = _run(fs, tune=True, **changed, **kw)
        assert (other.n_cached, other.n_computed) == (3, 3), changed  # other settings: other searches
    plain = _run(fs, **kw)
    assert (plain.n_cached, plain.n_computed) == (3, 0) and list(plain.table.Model) == ["LogisticRegression"]


def test_the_budget_stops_each_search_after_its_first_candidate_and_the_run_says_so():
    res = _run(_cells(), classifiers="LogisticRegression", tune=True, tune_trials=5, tune_budget=1e-9, cv=3)
    mine = res.folds[res.folds.classifier == "LogisticRegression (tuned)"]
    assert (mine.status == "ok").all() and (mine.n_candidates == 1).all()
    assert any("budget of 1e-09 s per search stopped 3 search(es) after 1-1 of 5 candidates" in n for n in res.notes)


def test_a_timeout_stops_a_tuned_fit_and_tuned_fits_run_in_worker_processes():
    class _Nap(ClassifierMixin, BaseEstimator):  # travels to the worker by value (cloudpickle)
        def __init__(self, bias=0):
            self.bias = bias

        def fit(self, X, y):
            time.sleep(0.5)
            self.classes_ = np.unique(y)
            return self

        def predict(self, X):
            return np.full(len(X), self.classes_[0])

    register_classifier("TestNap", lambda seed: _Nap(), replace=True)
    C.SEARCH_SPACES["TestNap"] = {"bias": [0, 1, 2, 3, 4]}
    try:
        t0 = time.perf_counter()
        res = _run(_cells(), classifiers="TestNap,LogisticRegression", tune=True, tune_trials=5, cv=2, timeout=4)
        assert time.perf_counter() - t0 < 90
    finally:
        del C.SEARCH_SPACES["TestNap"]
        unregister_classifier("TestNap")
    t = res.table.set_index("Model")
    assert t.loc["TestNap", "Status"] == "ok"  # 0.5 s a fit
    assert t.loc["TestNap (tuned)", "Status"] == "timeout"  # 5 candidates x 2 inner folds x 0.5 s > 4 s
    assert (res.folds[res.folds.classifier == "TestNap (tuned)"].params == "").all()
    assert t.loc["LogisticRegression (tuned)", "Status"] == "ok"  # searched in a worker, its choice came back
    lr = res.folds[res.folds.classifier == "LogisticRegression (tuned)"]
    assert (lr.n_candidates == 5).all() and all("logisticregression__C" in json.loads(p) for p in lr.params)


def test_a_training_fold_without_inner_folds_fails_its_tuned_row_only():
    fs = _cells(n_subjects=(6, 2))  # an outer training fold holds 1 hem subject: no inner folds
    res = _run(fs, classifiers="LogisticRegression", tune=True, tune_trials=2, cv=2)
    t = res.table.set_index("Model")
    assert t.loc["LogisticRegression", "Status"] == "ok"
    assert t.loc["LogisticRegression (tuned)", "Status"].startswith("failed: EvaluationError: cannot tune")


def test_without_subject_ids_the_inner_folds_are_by_image_and_the_run_says_so():
    res = _run(_cells(subjects=False), classifiers="LogisticRegression", tune=True, tune_trials=2, cv=3)
    assert (res.table.Status == "ok").all()
    assert any("inner folds of the search are split by image" in n for n in res.notes)


@pytest.mark.parametrize("options, name", [
    (dict(tune_trials=0), "tune_trials"), (dict(tune_trials=2.5), "tune_trials"),
    (dict(tune_budget=0), "tune_budget"), (dict(tune_budget=-1.0), "tune_budget"),
    (dict(tune_budget=float("nan")), "tune_budget"), (dict(tune_budget="soon"), "tune_budget"),
    (dict(tune="yes"), "tune"),
])
def test_bad_tuning_options_name_the_parameter(options, name):
    with pytest.raises(InvalidParameterError, match=f"^{name} must be") as err:
        _run(_cells(), classifiers="LogisticRegression", **{"tune": True, **options})
    assert err.value.parameter == name


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


def _cli_tune(data, features, tmp_path, capsys):
    from leukbench.cli import main

    out = tmp_path / "r"
    argv = ["compare", *([str(data)] if data else []), "--features", features, "--classifiers",
            "LogisticRegression", "--tune", "--tune-trials", "3", "--n-bootstrap", "0", "--cache-dir",
            str(tmp_path / "c"), "-q", "--out", str(out)]
    assert main(argv) == 0
    assert f"| {features} | LogisticRegression (tuned) |" in capsys.readouterr().out
    folds = pd.read_csv(out / "folds.csv", keep_default_na=False)
    tuned = folds[folds.classifier == "LogisticRegression (tuned)"]
    assert len(tuned) and (tuned.status == "ok").all() and (tuned.n_candidates == 3).all()
    assert all(set(json.loads(p)) == {"logisticregression__C"} for p in tuned.params)
    assert (folds[folds.classifier == "LogisticRegression"].params == "").all()
    params = json.loads((out / "run.json").read_text())["params"]
    assert params["tune"] is True and params["tune_trials"] == 3 and params["tune_budget"] is None
    return tuned


def test_cli_tune_end_to_end(cnmc_folders, tmp_path, capsys):
    """Generated C-NMC folders (3 subjects a class) and the light test extractor: quick."""
    assert len(_cli_tune(cnmc_folders, "chanstats", tmp_path, capsys)) == 3  # folds reduced to the subjects


@pytest.mark.slow
def test_cli_tune_end_to_end_on_the_sample(tmp_path, capsys):
    assert len(_cli_tune(None, "handcrafted", tmp_path, capsys)) == 5


def test_cli_checks_the_tuning_options_before_any_work(tmp_path, capsys):
    from leukbench.cli import main

    code = main(["compare", "--features", "handcrafted", "--tune", "--tune-budget", "0", "--cache-dir",
                 str(tmp_path / "c"), "-q", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--tune-budget must be a number greater than 0 or None (got 0.0)" in err
    assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--tune-trials", "0"])
    assert exit_.value.code == 2 and "--tune-trials: must be at least 1" in capsys.readouterr().err
