"""Cost of the statistics of a comparison: the subject-level bootstrap and the tie test.

Synthetic out-of-fold predictions of a binary problem (images spread over
subjects, 5 folds by subject), timed per row: the resample weights once, then
the three bootstrapped metrics fold by fold, as ``compare`` computes them.

    python benchmarks/bench_statistics.py --images 10000 --subjects 100 --resamples 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from leukbench.evaluation.statistics import BOOTSTRAP_METRICS, subject_resamples
from leukbench.evaluation.uncertainty import _RowPredictions


def predictions(n_images: int, n_subjects: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subject = rng.integers(0, n_subjects, n_images)
    y = np.where(subject % 2 == 0, "all", "hem")
    score = np.clip(rng.normal(np.where(y == "all", 0.65, 0.35), 0.2), 0, 1)
    return pd.DataFrame({"repeat": 0, "fold": subject % 5, "id": [f"i{i}" for i in range(n_images)],
                         "subject": subject.astype(str), "y_true": y,
                         "y_pred": np.where(score > 0.5, "all", "hem"),
                         "score_all": score, "score_hem": 1 - score})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--subjects", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N")
    args = ap.parse_args()
    preds = predictions(args.images, args.subjects)
    row = _RowPredictions.of(preds, ["all", "hem"])
    groups = dict(zip(preds["id"], preds["subject"]))
    best_w = best_m = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        weights = subject_resamples([groups[i] for i in row.ids], args.resamples, seed=0)
        t1 = time.perf_counter()
        row.bootstrap(BOOTSTRAP_METRICS, weights, 2, 0)
        t2 = time.perf_counter()
        best_w, best_m = min(best_w, t1 - t0), min(best_m, t2 - t1)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# bootstrap cost ({machine}; best of {args.repeat})")
    print(f"images {args.images}, subjects {args.subjects}, resamples {args.resamples}")
    print(f"resample weights (once per image set): {best_w:.3f} s")
    print(f"balanced accuracy + ROC AUC + F1, per row: {best_m:.3f} s ({best_m / 3:.3f} s per metric)")


if __name__ == "__main__":
    main()
