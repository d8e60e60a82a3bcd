"""How each classifier of the default battery grows with the number of images (issue 9, item 9).

Usage::

    python benchmarks/bench_scaling.py [--data ../shared/data/cnmc-subset] [--features efficientnet_lite0]
        [--scales 1,2,4,8] [--classifiers all] [--max-seconds 300] [--out benchmarks/out/scaling.json]

What it does:

1. loads the cached feature matrix of ``--data`` (extracting it first when missing) — by default
   EfficientNet-Lite0 features (1,280 columns) of cnmc-subset, 1,936 images;
2. for each scale ``s`` builds a matrix of ``s`` times as many rows: the real rows once, then
   bootstrap copies with a small Gaussian jitter (1 % of each column's standard deviation) so that no
   row is an exact duplicate (duplicates would flatter k-NN and the trees);
3. times one fit and one prediction of each classifier, exactly as the battery builds it
   (:func:`leukbench.classifiers.make_classifier`), on a random 80 % / 20 % split of that matrix, one
   process, one thread per fit (as ``compare`` runs it);
4. stops growing a classifier once one fit took more than ``--max-seconds`` (its larger scales are
   reported as not run, never guessed);
5. prints a Markdown table (seconds per fit and the growth exponent between the last two scales
   measured), and the estimated wall time of the default battery with 5-fold CV at 10,000 rows on
   ``--cores`` cores: the sum of each classifier's five fits, interpolated on a log-log line between
   the two scales around 10,000 rows (extrapolated beyond the last measured scale, and said so),
   divided by the cores (the fits are independent tasks).

The estimate is arithmetic on measured fits, marked as such; ``--full-battery ROWS`` also runs
``leukbench.compare`` on the default battery with 5 subject-aware folds at that size and times it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnmc-subset"
TARGET_ROWS = 10_000


def grown(X: np.ndarray, y: np.ndarray, groups: np.ndarray, scale: float, seed: int):
    """The real rows, then jittered bootstrap rows up to ``scale`` times as many (new subject ids)."""
    n = int(round(len(X) * scale))
    if n <= len(X):
        return X[:n], y[:n], groups[:n]
    rng = np.random.default_rng(seed)
    extra = rng.integers(0, len(X), size=n - len(X))
    noise = rng.normal(0.0, 1.0, size=(len(extra), X.shape[1])).astype(X.dtype) * (0.01 * X.std(axis=0))
    copy_round = 1 + np.arange(len(extra)) // len(X)
    new_groups = np.array([f"{g}~{r}" for g, r in zip(groups[extra], copy_round)], dtype=object)
    return (np.vstack([X, X[extra] + noise]), np.concatenate([y, y[extra]]),
            np.concatenate([groups.astype(object), new_groups]))


def time_one(name: str, X, y, seed: int):
    """Seconds to fit and to predict ``name`` on a random 80 / 20 split, and its balanced accuracy."""
    from sklearn.metrics import balanced_accuracy_score

    from leukbench.classifiers import make_classifier

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    cut = int(0.8 * len(X))
    train, test = order[:cut], order[cut:]
    est = make_classifier(name, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        est.fit(X[train], y[train])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = est.predict(X[test])
        predict_s = time.perf_counter() - start
    converged = not any("converge" in str(w.message).lower() for w in caught)
    return {"fit_s": fit_s, "predict_s": predict_s, "converged": converged,
            "balanced_accuracy": float(balanced_accuracy_score(y[test], pred))}


def at_rows(points, rows: int):
    """Seconds at ``rows`` on the log-log line through the measured ``(rows, seconds)`` points
    around it; ``(seconds, extrapolated)``."""
    points = sorted(points)
    if len(points) == 1:
        (r, s), = points
        return s * rows / r, rows > r
    below = [p for p in points if p[0] <= rows]
    above = [p for p in points if p[0] > rows]
    if below and above:
        (r0, s0), (r1, s1) = below[-1], above[0]
    else:
        (r0, s0), (r1, s1) = points[-2], points[-1]
    slope = math.log(max(s1, 1e-6) / max(s0, 1e-6)) / math.log(r1 / r0)
    return s0 * (rows / r0) ** slope, rows > points[-1][0]


def _load(args):
    import leukbench

    fs = leukbench.extract(args.data, features=args.features, progress=False, cache_dir=args.cache_dir)
    y = np.asarray(fs.y, dtype=object)
    keep = np.array([label is not None and label == label for label in y])
    codes = np.unique(y[keep].astype(str), return_inverse=True)[1]  # 0..k-1, as compare encodes them
    return (np.asarray(fs.X, dtype=np.float32)[keep], codes,
            np.asarray(fs.subjects, dtype=object)[keep].astype(str))


def _table(results, scales, n0):
    head = "| classifier | " + " | ".join(f"{s:g}x ({int(round(n0 * s)):,} rows)" for s in scales) + " | growth |"
    lines = [head, "|---" * (len(scales) + 2) + "|"]
    for name, runs in results.items():
        cells, points = [], []
        for s in scales:
            run = runs.get(str(s))
            if run is None:
                cells.append("not run")
                continue
            points.append((int(round(n0 * s)), run["fit_s"] + run["predict_s"]))
            cells.append(f"{run['fit_s']:.1f} s" + ("" if run["converged"] else " (not converged)"))
        growth = (f"n^{math.log(points[-1][1] / points[-2][1]) / math.log(points[-1][0] / points[-2][0]):.2f}"
                  if len(points) >= 2 and points[-2][1] > 0.05 else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {growth} |")
    return "\n".join(lines)


def _estimate(results, n0, cores):
    total, extrapolated = 0.0, []
    for name, runs in results.items():
        points = [(int(round(n0 * float(s))), r["fit_s"] + r["predict_s"]) for s, r in runs.items()]
        seconds, beyond = at_rows(points, TARGET_ROWS)
        total += 5 * seconds
        if beyond:
            extrapolated.append(name)
    return total / cores, extrapolated


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--features", default="efficientnet_lite0")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--scales", default="1,2,4,8")
    ap.add_argument("--classifiers", default="all", help="comma-separated names, or 'all' (the default battery)")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from leukbench.classifiers import BATTERY_VERSION, DEFAULT_BATTERY

    names = list(DEFAULT_BATTERY) if args.classifiers == "all" else args.classifiers.split(",")
    scales = [float(s) for s in args.scales.split(",")]
    X0, y0, g0 = _load(args)
    results = {name: {} for name in names}
    for scale in scales:
        X, y, _ = grown(X0, y0, g0, scale, args.seed)
        for name in names:
            runs = results[name]
            if runs and max(r["fit_s"] for r in runs.values()) > args.max_seconds:
                continue
            runs[str(scale)] = time_one(name, X, y, args.seed)
            print(f"{name:32s} {len(X):6d} rows  fit {runs[str(scale)]['fit_s']:8.2f} s", file=sys.stderr, flush=True)
    seconds, extrapolated = _estimate(results, len(X0), args.cores)
    print(f"\n{X0.shape[1]} features ({args.features}), battery version {BATTERY_VERSION}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print(_table(results, scales, len(X0)))
    print(f"\nEstimated default battery, 5-fold CV at {TARGET_ROWS:,} rows on {args.cores} cores: "
          f"{seconds / 60:.1f} min (sum of measured fits / cores"
          + (f"; extrapolated beyond the last measured scale for {', '.join(extrapolated)}" if extrapolated else "")
          + ")")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": len(X0), "features": X0.shape[1], "results": results,
                                              "estimate_minutes": seconds / 60, "extrapolated": extrapolated,
                                              "battery_version": BATTERY_VERSION}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
