"""Issue 9, items 3, 5 and 7: SIGTERM keeps finished work, a full disk at the end of ``compare``
keeps the table and the files already written, and ``classifiers=`` takes scikit-learn estimators."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import leukbench
from leukbench import datasets
from leukbench._signals import EXIT_TERMINATED, Terminated, terminate_as_interrupt
from leukbench.exceptions import InvalidParameterError, ReportError

from .test_evaluation import make_fs

REPO = Path(__file__).resolve().parents[1]
RESUME = "interrupted; finished work is cached, run the same command to resume"


# ---------------------------------------------------------------------------
# item 3: SIGTERM
# ---------------------------------------------------------------------------


def _extract_command(data: Path, cache: Path, out: Path):
    return [sys.executable, "-m", "leukbench", "extract", str(data), "--features", "handcrafted",
            "--cache-dir", str(cache), "--chunk-size", "8", "--num-workers", "2", "-q", "--out", str(out)]


def test_sigterm_during_extract_keeps_the_cached_rows_and_exits_143(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(datasets.sample_root(), data)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(_extract_command(data, cache, tmp_path / "out1"), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(cache.rglob("chunk-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the extraction ended before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED == 143, err
    assert RESUME in err and "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # no decoding worker outlives it
        os.killpg(proc.pid, 0)
    assert list(cache.rglob("chunk-*.parquet")), "the finished rows were not kept"

    resumed = subprocess.run(_extract_command(data, cache, tmp_path / "out2"), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    n_cached = int(resumed.stdout.split("from cache ")[1].split(",")[0])
    assert 0 < n_cached < 159
    clean = subprocess.run(_extract_command(data, tmp_path / "clean-cache", tmp_path / "out3"), cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    a = pd.read_parquet(tmp_path / "out2" / "handcrafted.parquet")
    b = pd.read_parquet(tmp_path / "out3" / "handcrafted.parquet")
    pd.testing.assert_frame_equal(a, b)


def _compare_command(data: Path, cache: Path, out: Path):
    return [sys.executable, "-m", "leukbench", "compare", str(data), "--features", "handcrafted",
            "--classifiers", "SVC,RandomForestClassifier,ExtraTreesClassifier,KNeighborsClassifier",
            "--cv", "5", "--timeout", "120", "--n-jobs", "2", "--n-bootstrap", "0",
            "--cache-dir", str(cache), "-q", "--out", str(out)]


def test_sigterm_during_compare_keeps_the_finished_fits_stops_the_workers_and_exits_143(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(datasets.sample_root(), data)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    warm = subprocess.run(_extract_command(data, cache, tmp_path / "features"), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr
    proc = subprocess.Popen(_compare_command(data, cache, tmp_path / "out1"), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((cache / "folds").rglob("*.npz"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the comparison ended before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err
    assert RESUME in err and "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # no fit worker outlives it
        os.killpg(proc.pid, 0)
    kept = len(list((cache / "folds").rglob("*.npz")))
    assert 2 <= kept < 20, "the finished fits were not kept"

    resumed = subprocess.run(_compare_command(data, cache, tmp_path / "out2"), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    fits = json.loads((tmp_path / "out2" / "run.json").read_text())["fits"]
    assert fits["from_fold_cache"] >= kept and fits["total"] == 20
    table = pd.read_csv(tmp_path / "out2" / "table.csv")
    assert len(table) == 4 and (table["Status"] == "ok").all()  # every fit ran or came back, once


def test_terminate_as_interrupt_restores_the_previous_handler():
    def mine(signum, frame):  # a library user's own handler
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(Terminated), terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert issubclass(Terminated, KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_importing_leukbench_installs_no_sigterm_handler():
    code = "import signal, leukbench, leukbench.cli; print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert done.stdout.strip() == "True", done.stderr


# ---------------------------------------------------------------------------
# item 5: a full disk at the end of compare
# ---------------------------------------------------------------------------


def _full_disk_for(name: str, monkeypatch):
    """Writing a file called ``name`` (its temporary copy) fails with ENOSPC."""
    real_to_csv, real_write_text = pd.DataFrame.to_csv, Path.write_text

    def to_csv(self, path=None, *a, **kw):
        if path is not None and str(path).endswith(name):
            Path(path).write_bytes(b"half a fi")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_to_csv(self, path, *a, **kw)

    def write_text(self, *a, **kw):
        if str(self).endswith(name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_full_disk_names_the_folder_and_leaves_no_half_written_file(tmp_path, monkeypatch):
    result = leukbench.compare(make_fs(), classifiers="GaussianNB", cv=2, cache_dir=False, progress=False,
                               n_bootstrap=0)
    out = tmp_path / "results"
    result.save(out, plots=False)
    before = (out / "predictions.csv").read_bytes()
    _full_disk_for("predictions.csv", monkeypatch)
    with pytest.raises(ReportError) as info:
        result.save(out, plots=False)
    message = str(info.value)
    assert message.startswith(f"{out}: cannot write predictions.csv (")
    assert "free some space" in message and "\n" not in message
    assert (out / "predictions.csv").read_bytes() == before  # the earlier file, whole
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_a_full_disk_while_saving_a_plot_names_it_and_leaves_no_half_written_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    result = leukbench.compare(make_fs(), classifiers="GaussianNB", cv=2, cache_dir=False, progress=False,
                               n_bootstrap=0)
    out = tmp_path / "results"
    real_savefig = Figure.savefig

    def savefig(self, fname, *a, **kw):
        if str(fname).endswith("roc_curves.png"):
            Path(fname).write_bytes(b"\x89PNG half")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))
        return real_savefig(self, fname, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", savefig)
    with pytest.raises(ReportError) as info:
        result.save(out)
    assert str(info.value).startswith(f"{out / 'plots'}: cannot write roc_curves.png (")
    assert "free some space" in str(info.value)
    assert not (out / "plots" / "roc_curves.png").exists()
    assert not [p for p in (out / "plots").iterdir() if p.name.startswith(".tmp-")]
    assert (out / "plots" / "metric_bars.png").exists()  # the plots before it are whole


def test_compare_prints_the_table_when_the_results_cannot_be_saved(tmp_path, monkeypatch, capsys):
    from leukbench.cli import main

    out = tmp_path / "results"
    _full_disk_for("folds.csv", monkeypatch)
    status = main(["compare", "--features", "handcrafted", "--classifiers", "GaussianNB", "--cv", "2",
                   "--n-bootstrap", "0", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert status == 2
    assert "| GaussianNB" in captured.out or "GaussianNB |" in captured.out
    assert f"leukbench: error: {out}: cannot write folds.csv (" in captured.err
    assert "Traceback" not in captured.err
    assert not (out / "folds.csv").exists() and (out / "table.md").exists()


# ---------------------------------------------------------------------------
# item 7: estimators in classifiers=
# ---------------------------------------------------------------------------


class NearestMean(ClassifierMixin, BaseEstimator):
    """A small estimator of the user's own (picklable: defined at module level)."""

    def __init__(self, shrink: float = 0.0):
        self.shrink = shrink

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.array([X[y == c].mean(axis=0) * (1 - self.shrink) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((X[:, None, :] - self.means_[None]) ** 2).sum(axis=2)
        return self.classes_[d.argmin(axis=1)]


@pytest.mark.parametrize("timeout", [None, 120])
def test_compare_runs_estimators_next_to_registered_names(tmp_path, timeout):
    fs = make_fs()
    mine = NearestMean()
    kw = dict(cv=3, cache_dir=tmp_path / "cache", progress=False, n_bootstrap=0, timeout=timeout)
    result = leukbench.compare(fs, classifiers=["GaussianNB", mine, NearestMean(shrink=0.5)], **kw)
    table = result.table.set_index("Model")
    assert set(table.index) == {"GaussianNB", "NearestMean", "NearestMean_2"}
    assert (table["Status"] == "ok").all(), table["Status"]
    assert not hasattr(mine, "means_")  # cloned for each fold, the user's object left unfitted
    assert result.n_computed == 9

    again = leukbench.compare(fs, classifiers={"nm": NearestMean(), "nm-shrunk": NearestMean(shrink=0.5)}, **kw)
    assert set(again.table["Model"]) == {"nm", "nm-shrunk"}
    assert again.n_computed == 6  # other names: other keys
    same = leukbench.compare(fs, classifiers={"nm": NearestMean(), "nm-shrunk": NearestMean(shrink=0.9)}, **kw)
    assert same.n_cached == 3 and same.n_computed == 3  # the key follows the parameters


def test_a_pipeline_is_one_estimator_and_named_by_its_class(tmp_path):
    result = leukbench.compare(make_fs(), classifiers=make_pipeline(StandardScaler(), LogisticRegression()),
                               cv=2, cache_dir=False, progress=False, n_bootstrap=0)
    assert result.table["Model"].tolist() == ["Pipeline"]
    assert result.table["Status"].tolist() == ["ok"]


@pytest.mark.parametrize("item, says", [
    (3, "item 3 is neither a classifier name nor a scikit-learn estimator"),
    (NearestMean, "pass an instance, NearestMean()"),
    ({"x": "GaussianNB"}, "item 'GaussianNB' is neither"),
])
def test_a_non_estimator_is_a_parameter_error_naming_it(item, says):
    items = item if isinstance(item, dict) else ["GaussianNB", item]
    with pytest.raises(InvalidParameterError) as info:
        leukbench.compare(make_fs(), classifiers=items, cv=2, cache_dir=False, progress=False)
    assert info.value.parameter == "classifiers" and says in str(info.value)
