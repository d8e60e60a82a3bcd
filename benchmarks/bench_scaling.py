"""How each classifier of the default battery grows with the number of images (issue 9, item 9).

Usage::

    python benchmarks/bench_scaling.py [--data ../shared/data/cnmc-subset] [--features efficientnet_lite0]
        [--scales 1,2,4,8] [--classifiers all] [--max-seconds 300] [--out benchmarks/out/scaling.json]
    python benchmarks/bench_scaling.py --rows 10000 [--cv 5] [--n-jobs N] [--classifiers all]

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

The estimate is arithmetic on measured fits, marked as such. ``--rows N`` instead runs the real
thing: ``leukbench.compare`` on the default battery (or ``--classifiers``) with ``--cv`` subject-aware
folds (5) on the matrix grown to N rows, with compare's default ``n_jobs`` (all usable cores) unless
``--n-jobs`` says otherwise, and prints where the time goes: the run's wall time, the CPU seconds of
the whole process tree (this process and its joblib workers, measured by ``getrusage`` after the
workers exit), the load average before and after, and per classifier the seconds its fits and
predictions took (each on one thread) and that classifier's share of the CPU seconds.
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
    from leukbench.evaluation.fits import one_thread

    est = make_classifier(name, seed)
    with warnings.catch_warnings(record=True) as caught, one_thread():  # as compare runs a fit
        warnings.simplefilter("always")
        start, cpu0 = time.perf_counter(), time.thread_time()
        est.fit(X[train], y[train])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = est.predict(X[test])
        predict_s = time.perf_counter() - start
        cpu_s = time.thread_time() - cpu0  # on one thread: the fit's core-seconds, whatever the load
    converged = not any("converge" in str(w.message).lower() for w in caught)
    return {"fit_s": fit_s, "predict_s": predict_s, "cpu_s": cpu_s, "converged": converged,
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
            cpu = f", CPU {run['cpu_s']:.1f} s" if "cpu_s" in run else ""
            cells.append(f"{run['fit_s']:.1f} s{cpu}" + ("" if run["converged"] else " (not converged)"))
        growth = (f"n^{math.log(points[-1][1] / points[-2][1]) / math.log(points[-1][0] / points[-2][0]):.2f}"
                  if len(points) >= 2 and points[-2][1] > 0.05 else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {growth} |")
    return "\n".join(lines)


def _estimate(results, n0, cores, key=None):
    """Minutes of the battery's 5 x 10,000-row fits on ``cores`` cores, from wall seconds (``key``
    None) or from the fits' CPU seconds (``key="cpu_s"``), and the classifiers extrapolated."""
    total, extrapolated = 0.0, []
    for name, runs in results.items():
        points = [(int(round(n0 * float(s))), r[key] if key else r["fit_s"] + r["predict_s"])
                  for s, r in runs.items() if key is None or key in r]
        if not points:
            continue
        seconds, beyond = at_rows(points, TARGET_ROWS)
        total += 5 * seconds
        if beyond:
            extrapolated.append(name)
    return total / cores, extrapolated


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have exited."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _stop_joblib_workers() -> None:
    """Let joblib's reusable worker processes exit, so that their CPU time is counted."""
    try:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    except Exception:  # noqa: BLE001 - no executor was started
        pass


def where_the_time_goes(folds, cpu_s: float):
    """Per classifier: its fits' seconds (fit + predict, summed over folds), their share of all the
    fits' seconds, and that share of the measured CPU seconds; rows sorted slowest first."""
    import pandas as pd

    f = folds.assign(seconds=folds["fit_time"].astype(float) + folds["predict_time"].astype(float))
    per = f.groupby("classifier")["seconds"].agg(["sum", "count", "max"]).sort_values("sum", ascending=False)
    total = float(per["sum"].sum())
    per["share"] = per["sum"] / total if total > 0 else float("nan")
    per["cpu_s"] = per["share"] * cpu_s
    return pd.DataFrame({"fits": per["count"].astype(int), "fit seconds": per["sum"], "slowest fit": per["max"],
                         "share": per["share"], "CPU seconds (share)": per["cpu_s"]}), total


def run_battery(args, X0, y0, g0) -> dict:
    """``leukbench.compare`` at ``args.rows`` rows, timed (see the module docstring)."""
    import leukbench
    from leukbench.classifiers import BATTERY_VERSION
    from leukbench.featureset import FeatureSet

    X, y, g = grown(X0, y0, g0, args.rows / len(X0), args.seed)
    labels = np.array([f"class{c}" for c in y], dtype=object)
    fs = FeatureSet(name=f"{args.features} x{args.rows / len(X0):.2f}", X=X, y=labels,
                    ids=np.array([f"row{i}" for i in range(len(X))], dtype=object), subjects=g.astype(object),
                    splits=np.full(len(X), None, dtype=object),
                    feature_names=[f"f{i}" for i in range(X.shape[1])])
    kw = {} if args.n_jobs is None else {"n_jobs": args.n_jobs}
    classifiers = None if args.classifiers == "all" else args.classifiers
    load0, cpu0, t0 = os.getloadavg(), _cpu_seconds(), time.perf_counter()
    res = leukbench.compare(fs, classifiers=classifiers, cv=args.cv, seed=args.seed, cache_dir=False,
                            progress=False, **kw)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    _stop_joblib_workers()
    cpu = _cpu_seconds() - cpu0
    per, fit_total = where_the_time_goes(res.folds, cpu)
    n_jobs = res.params["n_jobs"]
    print(f"\n`python {' '.join(sys.argv)}`\n")
    print(f"{len(X):,} rows x {X.shape[1]} features ({args.features}, grown from {len(X0):,}), battery version "
          f"{BATTERY_VERSION}, {res.cv_description}; n_jobs={n_jobs}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()})\n")
    print(f"wall {wall:.0f} s ({wall / 60:.1f} min); CPU of the process tree {cpu:.0f} s "
          f"({cpu / max(wall, 1e-9):.2f} cores busy on average); the fits' own seconds {fit_total:.0f} s; "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after (1-minute)\n")
    print(per.to_markdown(floatfmt=".2f") if _has_tabulate() else per.round(2).to_string())
    bad = res.table[res.table.Status != "ok"]
    if len(bad):
        print("\nnot ok: " + ", ".join(f"{m}: {s}" for m, s in zip(bad.Model, bad.Status)))
    return {"rows": len(X), "features": X.shape[1], "cv": args.cv, "n_jobs": n_jobs, "wall_s": wall,
            "cpu_s": cpu, "fit_seconds": fit_total, "load_before": load0, "load_after": load1,
            "battery_version": BATTERY_VERSION, "per_classifier": per.reset_index().to_dict("records"),
            "balanced_accuracy": dict(zip(res.table.Model, res.table["Balanced Accuracy"].astype(float)))}


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


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
    ap.add_argument("--rows", type=int, default=None,
                    help="run leukbench.compare on the battery at this many rows instead (see above)")
    ap.add_argument("--cv", type=int, default=5, help="folds of --rows (default: 5)")
    ap.add_argument("--n-jobs", type=int, default=None, help="n_jobs of --rows (default: compare's, all cores)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.rows:
        out = run_battery(args, *_load(args))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=2, default=float))
        return 0

    from leukbench.classifiers import BATTERY_VERSION, DEFAULT_BATTERY

    names = list(DEFAULT_BATTERY) if args.classifiers == "all" else args.classifiers.split(",")
    scales = [float(s) for s in args.scales.split(",")]
    X0, y0, g0 = _load(args)
    load0 = os.getloadavg()
    results = {name: {} for name in names}
    for scale in scales:
        X, y, _ = grown(X0, y0, g0, scale, args.seed)
        for name in names:
            runs = results[name]
            if runs and max(r["fit_s"] for r in runs.values()) > args.max_seconds:
                continue
            runs[str(scale)] = time_one(name, X, y, args.seed)
            print(f"{name:32s} {len(X):6d} rows  fit {runs[str(scale)]['fit_s']:8.2f} s  CPU "
                  f"{runs[str(scale)]['cpu_s']:8.2f} s  load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    seconds, extrapolated = _estimate(results, len(X0), args.cores)
    cpu_seconds, _ = _estimate(results, len(X0), args.cores, key="cpu_s")
    print(f"\n{X0.shape[1]} features ({args.features}), battery version {BATTERY_VERSION}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1-minute)\n")
    print("Seconds per fit (wall, and the fit's own CPU seconds on its one thread):\n")
    print(_table(results, scales, len(X0)))
    print(f"\nEstimated default battery, 5-fold CV at {TARGET_ROWS:,} rows on {args.cores} cores: "
          f"{seconds / 60:.1f} min from the wall times, {cpu_seconds / 60:.1f} min from the CPU times "
          "(an idle machine) (sum of measured fits / cores"
          + (f"; extrapolated beyond the last measured scale for {', '.join(extrapolated)}" if extrapolated else "")
          + ")")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": len(X0), "features": X0.shape[1], "results": results,
                                              "estimate_minutes": seconds / 60, "extrapolated": extrapolated,
                                              "estimate_minutes_cpu": cpu_seconds / 60,
                                              "battery_version": BATTERY_VERSION}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
