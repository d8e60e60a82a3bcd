"""Tiny smoke runs of the benchmark scripts (the real runs are in benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukbench.datasets import load_sample

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpg")
    table = load_sample()
    for _, row in table.groupby("label").head(4).iterrows():
        out = root / row.label / (Path(row.path).stem + ".jpg")
        out.parent.mkdir(exist_ok=True)
        Image.open(row.path).convert("RGB").save(out, quality=90)
    return root


def test_bench_handcrafted(capsys):
    assert load("bench_handcrafted").main(["--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "| cell mask |" in out and "images/s" in out


@pytest.mark.slow
def test_bench_extraction(jpeg_folder, tmp_path, capsys):
    out_json = tmp_path / "x.json"
    rc = load("bench_extraction").main(["--data", str(jpeg_folder), "--limit", "8", "--variants",
                                        "model,decode,leukbench", "--out", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert set(res["results"]) == {"model", "decode", "leukbench"}
    assert res["results"]["leukbench"]["images"] == 8
    assert all(r["images_per_second"] > 0 for r in res["results"].values())


@pytest.mark.slow
def test_bench_gpu_cpu_fallback(jpeg_folder, tmp_path, capsys):
    rc = load("bench_gpu").main(["--data", str(jpeg_folder), "--out", str(tmp_path / "g.json")])
    assert rc == 0
    res = json.loads((tmp_path / "g.json").read_text())
    assert "smoke" in res["device"] or "NVIDIA" in res["device"] or res["device"]
    assert res["gpu_decode_images_per_second"] > 0 and res["leukbench_images_per_second"] > 0


@pytest.mark.slow
def test_bench_battery(tmp_path, capsys):
    pytest.importorskip("lazypredict")
    out_json = tmp_path / "b.json"
    sample = Path(load_sample().attrs["root"])
    rc = load("bench_battery").main(["--data", str(sample), "--features", "handcrafted", "--classifiers",
                                     "RidgeClassifier,LinearDiscriminantAnalysis", "--n-jobs", "1",
                                     "--cache-dir", str(tmp_path / "c"), "--out", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert res["max_abs_diff"]["acc"] < 1e-9 and res["max_abs_diff"]["bacc"] < 1e-9
    assert res["leukbench_seconds"] > 0 and res["lazypredict_seconds"] > 0
    assert np.isfinite(res["ratio"])
