"""benchmarks/bench_scaling.py --rows: the real battery through compare, and where its time goes."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scaling.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scaling", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_runs_compare_on_the_grown_matrix_and_says_where_the_time_goes(capsys):
    bench = _bench()
    rng = np.random.default_rng(0)
    y0 = np.arange(60) % 2
    X0 = (rng.normal(size=(60, 8)) + y0[:, None]).astype(np.float32)
    g0 = np.array([f"s{i % 10}" for i in range(60)])
    args = argparse.Namespace(rows=150, cv=3, n_jobs=1, seed=0, features="toy",
                              classifiers="GaussianNB,LinearDiscriminantAnalysis")
    out = bench.run_battery(args, X0, y0, g0)
    assert out["rows"] == 150 and out["cv"] == 3 and out["n_jobs"] == 1
    per = {r["classifier"]: r for r in out["per_classifier"]}
    assert set(per) == {"GaussianNB", "LinearDiscriminantAnalysis"} and all(r["fits"] == 3 for r in per.values())
    assert abs(sum(r["share"] for r in per.values()) - 1) < 1e-9
    assert out["wall_s"] > 0 and out["cpu_s"] > 0 and len(out["load_before"]) == 3
    assert all(0 < b <= 1 for b in out["balanced_accuracy"].values())
    text = capsys.readouterr().out
    assert "150 rows x 8 features" in text and "load average" in text and "LinearDiscriminantAnalysis" in text
