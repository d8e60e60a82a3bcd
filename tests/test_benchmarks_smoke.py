"""Tiny smoke runs of the benchmark scripts (the real runs are in benchmarks/README.md)."""

from __future__ import annotations

import csv
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


def test_bench_extraction_helpers(tmp_path):
    bench = load("bench_extraction")
    runs = [{"images_per_second": 2.0, "x": 1}, {"images_per_second": 4.0, "x": 2},
            {"images_per_second": 3.0, "x": 3}]
    best = bench.summarise(runs)
    assert best["x"] == 2 and best["median_images_per_second"] == 3.0 and len(best["runs"]) == 3
    ratios = bench.ratios_of({"naive": {"images_per_second": 10.0}, "model": {"images_per_second": 40.0},
                              "leukbench": {"images_per_second": 36.0}})
    assert ratios["leukbench / naive"]["value"] == pytest.approx(3.6)
    assert ratios["leukbench / model ceiling"]["value"] == pytest.approx(0.9)
    for label, name, value in (("a", "x", 0), ("b", "y", 9)):
        (tmp_path / "src" / label).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / "src" / label / f"{name}.png")
    rep = bench.replicate(tmp_path / "src", 3, 0, tmp_path / "rep")
    assert len(list(rep.rglob("*.png"))) == 6
    bmp = bench.to_bmp(tmp_path / "src", 0, tmp_path / "bmp")
    assert sorted(p.name for p in bmp.rglob("*.bmp")) == ["x.bmp", "y.bmp"]


@pytest.mark.slow
def test_bench_extraction(jpeg_folder, tmp_path, capsys):
    """Every variant in its own process, as the real benchmark runs them (a few seconds each)."""
    bench = load("bench_extraction")
    out_json = tmp_path / "x.json"
    rc = bench.main(["--data", str(jpeg_folder), "--limit", "8", "--variants",
                     "model,decode,stages,leukbench,model-bf16,leukbench-bf16", "--out", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert set(res["results"]) == {"model", "decode", "stages", "leukbench", "model-bf16", "leukbench-bf16"}
    stages = res["results"]["stages"]["stages_ms"]
    assert list(stages) == ["decode", "pixel hash", "difference hash", "resize + crop"]
    assert all(v > 0 for v in stages.values())
    assert res["results"]["leukbench"]["images"] == 8
    assert res["results"]["leukbench"]["cache_bytes"] > 0
    assert all(r["images_per_second"] > 0 and r["rss_mb"] > 0 for r in res["results"].values())
    assert "leukbench / model ceiling" in res["ratios"]
    assert "leukbench --precision bfloat16 / bfloat16 model ceiling" in res["ratios"]
    out = capsys.readouterr().out
    assert "| leukbench | 8 |" in out
    # CSV output: one row per run
    out_csv = tmp_path / "x.csv"
    assert bench.main(["--data", str(jpeg_folder), "--limit", "8", "--variants", "decode",
                       "--repeat", "2", "--out", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["variant"] for r in rows] == ["decode", "decode"]


def test_bench_gpu_cpu_fallback(jpeg_folder, tmp_path, capsys):
    """The CPU smoke run: the model ceiling and leukbench --decode gpu (torchvision's CPU decoder)."""
    rc = load("bench_gpu").main(["--data", str(jpeg_folder), "--smoke", "--out", str(tmp_path / "g.json")])
    assert rc == 0
    res = json.loads((tmp_path / "g.json").read_text())
    out = capsys.readouterr().out
    assert "No CUDA device" in out and "VERDICT: none" in out and res["verdict"].startswith("VERDICT: none")
    assert "smoke" in res["environment"]["gpu"] and res["command"].startswith("python benchmarks/bench_gpu.py")
    lite0 = res["results"]["efficientnet_lite0"]
    assert lite0["model"]["images_per_second"] > 0
    assert lite0["leukbench-gpu"]["images"] == 4 and lite0["leukbench-gpu"]["images_per_second"] > 0
    assert "JPEGs decoded by torchvision" in res["descriptions"]["efficientnet_lite0/gpu"]
    verdict = load("bench_gpu").verdict
    rows = {"model": {"images_per_second": 6000.0}, "leukbench-gpu": {"images_per_second": 5100.0}}
    assert verdict({"resnet50": rows}, True).startswith("VERDICT: MET")
    rows["leukbench-gpu"]["images_per_second"] = 4500.0  # 0.75 of the ceiling and under 5,000
    assert verdict({"resnet50": rows}, True).startswith("VERDICT: NOT MET")


@pytest.mark.slow
def test_bench_gpu_every_variant(jpeg_folder, tmp_path):
    bench = load("bench_gpu")
    variants = ",".join(v for v in bench.VARIANTS)
    rc = bench.main(["--data", str(jpeg_folder), "--bmp-data", str(jpeg_folder), "--smoke",
                     "--plan", f"efficientnet_lite0:{variants}", "--out", str(tmp_path / "g.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "g.json").read_text())["results"]["efficientnet_lite0"]
    assert set(rows) == set(bench.VARIANTS)
    for name, row in rows.items():
        assert row.get("images_per_second", 0) > 0, (name, row)


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
    assert 0 < res["lower_bound_seconds"] <= res["work_seconds"]
    assert set(res["work_by_classifier"]) == {"RidgeClassifier", "LinearDiscriminantAnalysis"}


@pytest.mark.slow
def test_bench_precision(tmp_path, capsys):
    out_json = tmp_path / "p.json"
    sample = Path(load_sample().attrs["root"])
    rc = load("bench_precision").main(["--data", str(sample), "--limit", "48", "--cv", "3", "--classifiers",
                                       "RidgeClassifier,LogisticRegression", "--n-jobs", "1",
                                       "--cache-dir", str(tmp_path / "c"), "--out", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert res["n_images"] == 48 and res["n_features"] == 1280
    sim = res["feature_similarity"]
    assert 0.98 < sim["cosine_min"] <= sim["cosine_median"] < 1.0  # close, but autocast really ran
    assert [r["classifier"] for r in res["per_classifier"]] == ["RidgeClassifier", "LogisticRegression"]
    assert all(0 <= r["predictions_changed"] <= 1 for r in res["per_classifier"])
    # two caches: float32 and bfloat16 features are never mixed
    assert len(list((tmp_path / "c").glob("features/*/efficientnet_lite0-*"))) == 2
    assert "| RidgeClassifier |" in capsys.readouterr().out


def test_bench_bookkeeping(capsys, tmp_path):
    out = tmp_path / "b.json"
    assert load("bench_bookkeeping").main(["--sizes", "300", "--repeat", "1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["found"] == 300 and row["audit_pairs"] == 5  # the planted copies, nothing else
    assert "| 300 |" in capsys.readouterr().out


def test_bench_segmentation(capsys, tmp_path):
    sample = load_sample().attrs["root"]
    out = tmp_path / "s.json"
    assert load("bench_segmentation").main(["--data", str(sample), "--step", "20", "--out", str(out)]) == 0
    (res,) = json.loads(out.read_text())["results"]
    assert res["images"] == 8 and res["found"] == 8  # C-NMC cells on black: always found
    assert "| sample | 8 | 8 |" in capsys.readouterr().out


def test_bench_scaling_grows_without_duplicates_and_interpolates_on_a_log_log_line():
    bench = load("bench_scaling")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5)).astype(np.float32)
    y, groups = np.arange(20) % 2, np.array([f"s{i // 4}" for i in range(20)])
    X4, y4, g4 = bench.grown(X, y, groups, 4, seed=1)
    assert X4.shape == (80, 5) and len(y4) == len(g4) == 80
    np.testing.assert_array_equal(X4[:20], X)  # the real rows first, unchanged
    assert len(np.unique(X4, axis=0)) == 80  # every bootstrap copy is jittered
    assert not set(g4[20:]) & set(groups)  # copies are new subjects, never merged with the real ones
    # a quadratic cost measured at 1,000 and 4,000 rows is 25x the 1,000-row cost at 5,000 (extrapolated)
    seconds, beyond = bench.at_rows([(1000, 1.0), (4000, 16.0)], 5000)
    assert seconds == pytest.approx(25.0) and beyond
    seconds, beyond = bench.at_rows([(1000, 1.0), (4000, 16.0), (16000, 256.0)], 8000)
    assert seconds == pytest.approx(64.0) and not beyond


def test_bench_compare_memory_mapped_mode(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = load("bench_compare_memory").main(["--rows", "300", "--modes", "mapped", "--classifiers", "BatchGaussianNB",
                                           "--out", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())
    assert row["mode"] == "mapped" and row["status"] == "ok" and row["parent_anon_mb"] > 0
    assert "| 300 | mapped |" in capsys.readouterr().out
