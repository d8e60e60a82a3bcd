"""The classifier battery registry."""

from __future__ import annotations

import numpy as np
import pytest

from leukbench import classifiers as C


def test_default_battery_is_the_fixed_twelve():
    assert C.select_classifiers() == list(C.DEFAULT_BATTERY)
    assert len(C.DEFAULT_BATTERY) == 12
    assert set(C.SEED_CLASSIFIERS) <= set(C.DEFAULT_BATTERY)
    assert isinstance(C.BATTERY_VERSION, int)


def test_select_and_exclude():
    assert C.select_classifiers("SVC, XGBClassifier,SVC") == ["SVC", "XGBClassifier"]
    left = C.select_classifiers("-GaussianNB,-KNeighborsClassifier")
    assert len(left) == 10 and "GaussianNB" not in left and left[0] == "SVC"
    with pytest.raises(KeyError, match="unknown classifier.*Nope.*available: SVC") as err:
        C.select_classifiers("SVC,Nope")
    assert str(err.value).startswith("unknown classifier(s) Nope; available: SVC, XGBClassifier")
    with pytest.raises(C.UnknownClassifierError, match="unknown classifier 'Nope'"):
        C.make_classifier("Nope")
    assert C.select_classifiers(["SVC", " GaussianNB "]) == ["SVC", "GaussianNB"]
    assert C.select_classifiers("svc,xgbclassifier") == ["SVC", "XGBClassifier"]  # any case
    assert "GaussianNB" not in C.select_classifiers("-gaussiannb")
    assert C.select_classifiers(None) == C.select_classifiers("") == list(C.DEFAULT_BATTERY)
    with pytest.raises(ValueError, match="not both"):
        C.select_classifiers("SVC,-GaussianNB")
    with pytest.raises(ValueError, match="unknown battery"):
        C.select_classifiers(battery="huge")


def test_scaling_where_needed():
    assert C.describe_pipeline("SVC") == "StandardScaler -> SVC"
    assert C.describe_pipeline("LinearDiscriminantAnalysis") == "StandardScaler -> LinearDiscriminantAnalysis"
    assert C.describe_pipeline("RandomForestClassifier") == "RandomForestClassifier"


def test_register_classifier():
    from sklearn.dummy import DummyClassifier

    C.register_classifier("TestDummy", lambda seed: DummyClassifier(), replace=True)
    assert "TestDummy" in C.available_classifiers()
    assert C.select_classifiers("TestDummy") == ["TestDummy"]
    with pytest.raises(ValueError, match="already registered"):
        C.register_classifier("TestDummy", lambda seed: DummyClassifier())
    with pytest.raises(TypeError):
        C.register_classifier("Bad", "not callable")
    for bad in ("", "-Neg", "a,b", " padded"):
        with pytest.raises(ValueError, match="invalid classifier name"):
            C.register_classifier(bad, lambda seed: DummyClassifier())


@pytest.mark.parametrize("name", C.DEFAULT_BATTERY)
def test_each_default_classifier_learns_a_separable_problem(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP models crawl on a busy 2-core machine with 2 threads
        est = C.make_classifier(name, seed=0).fit(X[:60], y[:60])
        assert (est.predict(X[60:]) == y[60:]).mean() >= 0.75


def test_seed_is_passed_on():
    a, b = C.make_classifier("RandomForestClassifier", 3), C.make_classifier("XGBClassifier", 3)
    assert a.random_state == 3 and b.get_params()["random_state"] == 3


def test_battery_all_is_lazypredicts_list():
    Supervised = pytest.importorskip("lazypredict.Supervised")
    names = C.select_classifiers(battery="all")
    assert names == [n for n, _ in Supervised.CLASSIFIERS]
    assert len(names) > 20
    est = C.make_classifier(names[0], 0)
    assert [type(s).__name__ for _, s in est.steps][:2] == ["SimpleImputer", "StandardScaler"]
    # lazypredict's random_state logic: the run's seed wherever the model has one
    # (meta-estimators that need arguments fail to build, as in lazypredict: their rows say so)
    seeded = []
    for n in names:
        if n not in C.DEFAULT_BATTERY:
            try:
                seeded.append(C.make_classifier(n, 7).steps[-1][1])
            except TypeError:
                pass
    assert len(seeded) >= 10 and all(m.get_params().get("random_state", 7) == 7 for m in seeded)
    assert C.select_classifiers("-SVC", battery="all") == [n for n in names if n != "SVC"]


def test_mistakes_are_leukbench_errors_with_the_same_messages():
    from sklearn.dummy import DummyClassifier

    from leukbench.exceptions import InvalidParameterError, LeukbenchError

    for call, kind, message in (
        (lambda: C.select_classifiers(battery="huge"), InvalidParameterError,
         "unknown battery 'huge'; use 'default' or 'all'"),
        (lambda: C.select_classifiers("SVC,-GaussianNB"), InvalidParameterError,
         "classifiers: either names to run or -names to exclude, not both"),
        (lambda: C.select_classifiers("Nope"), C.UnknownClassifierError, "unknown classifier(s) Nope; available: SVC"),
        (lambda: C.make_classifier("Nope"), C.UnknownClassifierError, "unknown classifier 'Nope'; available: SVC"),
        (lambda: C.register_classifier("a,b", lambda seed: DummyClassifier()), InvalidParameterError,
         "invalid classifier name 'a,b': a non-empty name without commas"),
        (lambda: C.register_classifier("Bad", "not callable"), InvalidParameterError,
         "factory for 'Bad' must be callable: seed -> estimator"),
        (lambda: C.register_classifier("SVC", lambda seed: DummyClassifier()), InvalidParameterError,
         "classifier 'SVC' is already registered; pass replace=True"),
    ):
        with pytest.raises(kind) as err:
            call()
        assert isinstance(err.value, LeukbenchError) and str(err.value).startswith(message), str(err.value)


def test_batteries_are_the_ones_select_classifiers_knows():
    assert C.BATTERIES == ("default", "all", "batches")
    assert C.select_classifiers(battery=C.BATTERIES[0]) == list(C.DEFAULT_BATTERY)
    assert C.select_classifiers(battery="batches") == list(C.BATCH_BATTERY)
    assert not set(C.BATCH_BATTERY) & set(C.DEFAULT_BATTERY)  # the default table is unchanged
