"""A fit's result does not depend on ``n_jobs``, on where it runs, or on the threads around it.

Each fit runs with the BLAS and OpenMP pools limited to one thread
(:func:`leukbench.evaluation.fits.one_thread`): before that, LDA's and
RidgeClassifier's scores on the bundled sample's deep features differed in the
sixth digit between ``n_jobs=1`` (this process, two BLAS threads) and
``n_jobs=2`` (joblib workers, one thread each).
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import leukbench
from leukbench.classifiers import DEFAULT_BATTERY, make_classifier
from leukbench.evaluation.fits import run_task

#: The classifiers whose fits use BLAS reductions or OpenMP sums.
THREADED = ("LinearDiscriminantAnalysis", "RidgeClassifier", "RidgeClassifierCV", "LogisticRegression",
            "HistGradientBoostingClassifier", "KNeighborsClassifier")


def _wide(n=240, d=400, seed=0):
    """Two overlapping classes in many float32 columns, like deep features."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d)).astype(np.float32) + 0.15 * y[:, None].astype(np.float32)
    return X, y


@pytest.mark.parametrize("name", THREADED)
def test_a_fit_gives_the_same_bits_whatever_the_threads_around_it(name):
    X, y = _wide()
    train, test = np.arange(0, len(X), 2), np.arange(1, len(X), 2)
    outs = []
    for threads in (1, 4):
        with threadpool_limits(limits=threads):
            outs.append(run_task(X, y, make_classifier(name, 0), train, test, n_classes=2))
    assert all(o.ok for o in outs)
    np.testing.assert_array_equal(outs[0].y_pred, outs[1].y_pred)
    np.testing.assert_array_equal(outs[0].scores, outs[1].scores)


@pytest.fixture(scope="module")
def sample_handcrafted(tmp_path_factory):
    return leukbench.extract(features="handcrafted", progress=False,
                             cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_the_default_battery_gives_the_same_folds_with_any_n_jobs(sample_handcrafted):
    runs = {}
    for label, kw in (("in process", {"n_jobs": 1}), ("joblib", {"n_jobs": 2}),
                      ("killable workers", {"n_jobs": 2, "timeout": 600})):
        res = leukbench.compare(sample_handcrafted, cv=3, cache_dir=False, progress=False, n_bootstrap=0, **kw)
        assert (res.table.Status == "ok").all(), label
        runs[label] = res.predictions.sort_values(["classifier", "fold", "id"]).reset_index(drop=True)
    first = runs.pop("in process")
    assert set(first.classifier) == set(DEFAULT_BATTERY)
    for label, other in runs.items():
        for column in first.columns:  # y_pred and every score column, bit for bit
            np.testing.assert_array_equal(first[column].to_numpy(), other[column].to_numpy(),
                                          err_msg=f"{column}: {label} differs from n_jobs=1")


def _small_set():
    from leukbench.featureset import FeatureSet

    X, y = _wide(n=60, d=12, seed=1)
    subjects = np.array([f"s{i % 12}" for i in range(len(X))], dtype=object)
    return FeatureSet(name="wide", X=X, y=np.where(y == 1, "all", "hem").astype(object),
                      ids=np.array([f"c{i}.png" for i in range(len(X))], dtype=object), subjects=subjects,
                      splits=np.full(len(X), None, dtype=object), feature_names=[f"f{i}" for i in range(X.shape[1])])


def test_changing_one_classifier_recomputes_its_fits_only(tmp_path, monkeypatch):
    import leukbench.classifiers as C

    fs, kw = _small_set(), dict(classifiers="GaussianNB,LinearSVC", cv=3, n_jobs=1, progress=False,
                                n_bootstrap=0, cache_dir=tmp_path)
    first = leukbench.compare(fs, **kw)
    assert (first.n_cached, first.n_computed) == (0, 6)
    monkeypatch.setitem(C.CLASSIFIER_VERSIONS, "LinearSVC", C.BATTERY_VERSION + 1)  # as a later change would do
    again = leukbench.compare(fs, **kw)
    assert (again.n_cached, again.n_computed) == (3, 3)  # GaussianNB from the cache, LinearSVC anew
    assert again.params["n_jobs"] == 1


def test_n_jobs_defaults_to_the_usable_cores_on_the_command_line_too():
    import inspect

    from leukbench._parser import build_parser
    from leukbench.evaluation.options import resolve_n_jobs, usable_cores

    assert inspect.signature(leukbench.compare).parameters["n_jobs"].default == -1
    assert build_parser().parse_args(["compare"]).n_jobs == -1
    assert resolve_n_jobs(-1) == usable_cores() >= 1
