"""A tiny run of benchmarks/bench_features.py (the real runs are in benchmarks/README.md#feature-ablation)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from leukbench import datasets

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_features.py"

#: A table in the first layout (one command above it), as committed before rows were merged.
LEGACY = """Feature ablation on `x`.

Command:

```bash
python benchmarks/bench_features.py --options lite2 --out earlier
```

| option | what | columns | best row | balanced accuracy ± fold std [95 % CI] | Δ vs baseline \
| extraction ms/image (apart) | ms/image (whole run) |
|:---|:---|---:|:---|---:|---:|---:|---:|
| lite2 | EfficientNet-Lite2 (260 px) | 1280 | SVC | 0.701 ± 0.050 [0.600, 0.800] | — | 400 | 300 |
"""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_features", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_features_writes_measured_rows_and_keeps_earlier_ones(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEUKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "table.md").write_text(LEGACY)
    argv = ["--data", str(datasets.sample_root()), "--options", "handcrafted", "--classifiers", "LogisticRegression",
            "--cv", "3", "--cost-images", "4", "--n-jobs", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    measured = json.loads((out / "handcrafted.json").read_text())
    table = (out / "table.md").read_text()
    assert "[1] python benchmarks/bench_features.py --options lite2 --out earlier" in table  # kept, with its command
    assert "[2] python benchmarks/bench_features.py " + " ".join(argv) in table
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")]
            for line in table.splitlines() if re.match(r"^\| (handcrafted|lite2) \|", line)}
    assert rows["lite2"][4] == "0.701 ± 0.050 [0.600, 0.800]" and rows["lite2"][-1] == "1"
    hand = rows["handcrafted"]
    assert hand[3] == measured["best_model"] == "LogisticRegression" and hand[-1] == "2"
    assert float(hand[4].split()[0]) == pytest.approx(measured["balanced_accuracy"], abs=5e-4)
    assert 0.5 < measured["balanced_accuracy"] <= 1 and measured["n_columns"] == 76 and measured["n_images"] == 159
    assert measured["wall_s"] > 0 and len(measured["load_average"]) == 3
    assert re.search(r"Not measured in this folder: baseline, lite1, ", table)
    # a second run with another option keeps the first run's row and command
    capsys.readouterr()
    assert bench.main(argv[:2] + ["--options", "handcrafted,nucleus"] + argv[4:]) == 0
    assert "handcrafted: done before" in capsys.readouterr().out
    again = (out / "table.md").read_text()
    assert "| nucleus |" in again and "[2] python benchmarks/bench_features.py " + " ".join(argv) in again
    assert "| lite2 |" in again and "| handcrafted | the handcrafted set" in again
