"""SIGTERM during fine-tuning, as SLURM or Kubernetes send it: ``leukbench compare`` stops with 143 and
the resume message, keeps the finished epochs in the cache, leaves no worker process behind, and the
same command then resumes (it does not train the finished epochs again) to the metrics of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from leukbench import datasets

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process groups from /proc")

NAME = "finetuned:efficientnet_lite0"
#: Two folds of the bundled sample, three epochs each at 32 px: about half a second an epoch on one thread.
ARGS = ["compare", str(datasets.sample_root()), "--features", f"color,{NAME}", "--epochs", "3", "--patience", "3",
        "--finetune-size", "32", "--cv", "2", "--classifiers", "GaussianNB", "--n-bootstrap", "0", "-q",
        "--num-workers", "0"]


def _start(cache: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "leukbench", *ARGS, "--cache-dir", str(cache), "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the workers can be found


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    _, err = proc.communicate(timeout=timeout)
    return err


def _alive(pgid: int):
    """The processes of group ``pgid`` that are still running (zombies waiting to be reaped do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while being read
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _progress(folder: Path) -> int:
    import torch

    return int(torch.load(folder / "last.pt", map_location="cpu", weights_only=True)["progress"]["epoch"])


@pytest.mark.slow  # three runs of compare in subprocesses: about 40 s on 2 idle cores
def test_sigterm_mid_training_keeps_the_finished_epochs_and_the_rerun_resumes(tmp_path):
    cache = tmp_path / "cache"
    proc = _start(cache, tmp_path / "interrupted")
    deadline = time.monotonic() + 240
    while not list(cache.glob("finetune/*/last.pt")):  # the first fold's first epoch is checkpointed
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint before the run ended (exit {proc.poll()}): {_finish(proc)[-2000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as SLURM does: the augmentation worker too
    err = _finish(proc)
    try:
        assert proc.returncode == 143, err[-2000:]
        assert "interrupted; finished work is cached, run the same command to resume" in err
        assert "Traceback" not in err
        for _ in range(100):  # the workers end with the main process (5 s for them to be reaped)
            if not _alive(proc.pid):
                break
            time.sleep(0.05)
        assert not _alive(proc.pid), "a worker process outlived the terminated run"
    finally:
        for pid in _alive(proc.pid):
            os.kill(pid, signal.SIGKILL)
    folders = [p.parent for p in cache.glob("finetune/*/last.pt")]
    unfinished = [f for f in folders if not (f / "done.json").is_file()]
    assert len(unfinished) == 1 and 1 <= _progress(unfinished[0]) < 3  # killed mid-training, epochs kept
    kept = {unfinished[0].name: _progress(unfinished[0])}

    rerun = _start(cache, tmp_path / "resumed")
    err = _finish(rerun)
    assert rerun.returncode == 0, err[-2000:]
    shutil.copytree(cache / "features", tmp_path / "cache-ref" / "features")  # the color features, not the networks
    reference = _start(tmp_path / "cache-ref", tmp_path / "uninterrupted")
    err = _finish(reference)
    assert reference.returncode == 0, err[-2000:]

    resumed, whole = ({**json.loads((tmp_path / d / "run.json").read_text())["params"]["finetune"][NAME]}
                      for d in ("resumed", "uninterrupted"))
    by_key = dict(zip(resumed["checkpoints"], resumed["resumed_from"]))
    assert by_key[next(iter(kept))] == kept[next(iter(kept))]  # continued from its last finished epoch
    assert resumed["checkpoints"] == whole["checkpoints"] and whole["resumed_from"] == [0, 0]
    assert resumed["epochs_run"] == whole["epochs_run"] == [3, 3] and resumed["best_epoch"] == whole["best_epoch"]
    a, b = (pd.read_csv(tmp_path / d / "folds.csv").sort_values(["feature_set", "classifier", "fold"])
            for d in ("resumed", "uninterrupted"))
    metrics = ["balanced_accuracy", "roc_auc", "accuracy", "mcc"]
    assert len(a) == len(b) == 6 and (a["feature_set"] == NAME).sum() == 4
    pd.testing.assert_frame_equal(a[metrics].reset_index(drop=True), b[metrics].reset_index(drop=True), atol=1e-9)
    ta, tb = (pd.read_csv(tmp_path / d / "training.csv") for d in ("resumed", "uninterrupted"))
    pd.testing.assert_series_equal(ta["train_loss"], tb["train_loss"], atol=1e-6)
    pd.testing.assert_series_equal(ta["val_balanced_accuracy"], tb["val_balanced_accuracy"])
