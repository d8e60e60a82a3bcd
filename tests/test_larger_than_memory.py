"""Issue 9 item 10: compare on a matrix larger than memory -- a memory-mapped matrix assembled from
the cache, and classifiers that learn from batches of its rows without copying the fold."""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest

from leukbench._mapped import is_mapped, mapped_file, mapped_matrix, take_rows
from leukbench.batch_learning import BatchLearner
from leukbench.evaluation.fits import run_task
from leukbench.featureset import FeatureSet

from .test_bounded_memory import _feature_set

#: Columns of the metrics compared between runs that must agree exactly.
METRICS = ["Feature Set", "Model", "Balanced Accuracy", "ROC AUC", "Accuracy", "F1 Score", "MCC"]


def _gaussian(n: int, d: int, mapped: bool = False, unlabelled: int = 0) -> FeatureSet:
    """test_bounded_memory's two Gaussian classes over 12 subjects, the matrix in a mapped file if asked."""
    fs = _feature_set(n, d, unlabelled=unlabelled)
    if mapped:
        X = fs.X
        fs.X = mapped_matrix(X.shape, lambda out: out.__setitem__(slice(None), X))
    return fs


def test_extract_memory_map_gives_the_same_matrix_from_a_file(tmp_path):
    import leukbench

    kw = dict(features="chanstats,chanstats+color", cache_dir=tmp_path / "cache", progress=False)
    in_ram = leukbench.extract(**kw)
    mapped = leukbench.extract(memory_map=True, **kw)
    for name, fs in mapped.items():
        assert mapped_file(fs.X) is not None, name  # a whole read-only map: the workers open its file
        assert not fs.X.flags.writeable
        assert np.array_equal(fs.X, in_ram[name].X), name
        assert fs.ids.tolist() == in_ram[name].ids.tolist()


def test_a_mapped_matrix_file_goes_when_its_array_goes():
    X = mapped_matrix((10, 3), lambda out: out.fill(1.0))
    path = mapped_file(X)
    view = X[2:5]
    del X
    gc.collect()
    assert os.path.exists(path) and view.sum() == 9.0  # a view keeps the file
    del view
    gc.collect()
    assert not os.path.exists(path)


def test_rows_taken_from_a_mapped_set_stay_mapped():
    fs = _gaussian(200, 16, mapped=True, unlabelled=20)
    lab = fs.labeled()
    assert len(lab) == 180 and mapped_file(lab.X) is not None and mapped_file(lab.X) != mapped_file(fs.X)
    assert np.array_equal(lab.X, np.asarray(fs.X)[20:])
    assert not is_mapped(take_rows(np.ones((4, 2)), [0, 1]))


def test_compare_on_a_mapped_matrix_equals_the_run_in_memory():
    import leukbench

    kw = dict(classifiers="BatchSGDLogistic,BatchGaussianNB,LinearDiscriminantAnalysis", cv=3,
              cache_dir=False, progress=False, n_bootstrap=0)
    base = leukbench.compare(_gaussian(900, 300), n_jobs=1, **kw)
    for mode in (dict(n_jobs=1), dict(n_jobs=2), dict(n_jobs=2, timeout=300)):
        res = leukbench.compare(_gaussian(900, 300, mapped=True), **mode, **kw)
        assert res.table[METRICS].equals(base.table[METRICS]), mode
    assert (base.table["Status"] == "ok").all()
    assert base.table.set_index("Model").loc["BatchSGDLogistic", "Balanced Accuracy"] > 0.75  # chance: 0.5


def test_a_batch_learner_fit_holds_a_batch_not_the_fold():
    fs = _gaussian(20000, 128, mapped=True)
    y = (fs.y == "all").astype(np.int64)
    train, test = np.arange(0, 16000), np.arange(16000, 20000)
    fold_bytes = fs.X[:16000].nbytes  # 8 MB of float32
    peaks = {}
    for name, est in {"batches": BatchLearner(_sgd(), batch_rows=256, epochs=2, random_state=0),
                      "whole fold": _sgd()}.items():
        tracemalloc.start()
        outcome = run_task(fs.X, y, est, train, test, n_classes=2)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert outcome.ok and (outcome.y_pred == y[test]).mean() > 0.8, name  # chance: 0.5
    assert peaks["whole fold"] > fold_bytes  # X[train] is copied (and converted to float64)
    assert peaks["batches"] < fold_bytes / 4, peaks


def _sgd():
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", random_state=0)


def test_batch_naive_bayes_learns_what_the_whole_fit_learns():
    from sklearn.naive_bayes import GaussianNB

    fs = _gaussian(3000, 20)
    y = (fs.y == "all").astype(np.int64)
    batched = BatchLearner(GaussianNB(), batch_rows=256, epochs=1, scale=False, balanced=False).fit(fs.X, y)
    whole = GaussianNB().fit(fs.X, y)
    np.testing.assert_allclose(batched.estimator_.theta_, whole.theta_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched.predict_proba(fs.X), whole.predict_proba(fs.X), rtol=1e-4, atol=1e-6)


def test_balanced_batches_give_a_rare_class_its_weight():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (1900, 5)), rng.normal(0.8, 1, (100, 5))]).astype(np.float32)
    y = np.repeat([0, 1], [1900, 100])
    recall = {}
    for balanced in (True, False):
        model = BatchLearner(_sgd(), batch_rows=128, balanced=balanced, random_state=0).fit(X, y)
        recall[balanced] = float((model.predict(X[y == 1]) == 1).mean())
    assert recall[True] > 0.6 > recall[False]


def test_batch_learner_parameters_are_checked_and_unfitted_use_is_named():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(ValueError, match="batch_rows"):
        BatchLearner(_sgd(), batch_rows=0).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="2 classes"):
        BatchLearner(_sgd()).fit(np.zeros((4, 2)), [1, 1, 1, 1])
    with pytest.raises(NotFittedError):
        BatchLearner(_sgd()).predict(np.zeros((1, 2)))
    assert not hasattr(BatchLearner(_gnb_like()), "decision_function")


def _gnb_like():
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def test_cli_compare_memory_map_with_the_batch_battery(tmp_path, capsys):
    from leukbench.cli import main

    code = main(["compare", "--features", "chanstats", "--memory-map", "--battery", "batches", "--cv", "3",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "-q",
                 "--n-bootstrap", "0"])
    assert code == 0
    table = (tmp_path / "out" / "table.md").read_text()
    for name in ("BatchSGDLogistic", "BatchSGDLinearSVM", "BatchGaussianNB"):
        assert name in table
