"""What bfloat16 autocast on the CPU changes: features, predictions and scores.

Usage::

    python benchmarks/bench_precision.py [--data ../shared/data/cnmc-subset]
        [--features efficientnet_lite0] [--classifiers SVC,LogisticRegression,...]
        [--n-jobs 2] [--out precision.json]

Extracts ``--features`` of ``--data`` twice, in float32 (the default) and with
``precision="bfloat16"`` (each into its own cache, timed), then runs
``leukbench.compare`` on both with the same subject-aware folds (fold cache
off) and reports

- how close the two feature matrices are (cosine similarity per image, the
  largest absolute difference against the largest value),
- the share of out-of-fold predictions that differ,
- per classifier, the mean balanced accuracy and ROC AUC of both and their
  difference, next to the fold-to-fold standard deviation of the float32 run.

bfloat16 is fast only on CPUs with native support (AVX-512 BF16 or AMX); the
output says whether this one has it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnmc-subset"
DEFAULT_CLASSIFIERS = ("SVC,LogisticRegression,LinearDiscriminantAnalysis,RidgeClassifierCV,"
                       "RidgeClassifier,KNeighborsClassifier")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--features", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--classifiers", default=DEFAULT_CLASSIFIERS)
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--limit", type=int, default=None, help="use a random subset of N images (smoke runs)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)

    import leukbench
    from leukbench.evaluation import compare
    from leukbench.features.deep import cpu_has_native_bfloat16

    table = leukbench.discover(args.data)
    if args.limit:
        table = table.sample(n=min(args.limit, len(table)), random_state=0).sort_index()
    names = [n.strip() for n in args.classifiers.split(",") if n.strip()]
    runs = {}
    for precision in ("float32", "bfloat16"):
        t0 = time.perf_counter()
        fs = leukbench.extract(table, args.features, weights=args.weights, precision=precision,
                               device="cpu", cache_dir=args.cache_dir, progress=False).labeled()
        seconds = time.perf_counter() - t0
        res = compare(fs, classifiers=names, cv=args.cv, seed=args.seed, n_jobs=args.n_jobs,
                      cache_dir=False, progress=False)
        runs[precision] = {"fs": fs, "res": res, "extract_seconds": seconds}

    a, b = runs["float32"]["fs"], runs["bfloat16"]["fs"]
    if list(a.ids) != list(b.ids):
        raise SystemExit("the two extractions read different images; see their skipped lists")
    cos = (a.X * b.X).sum(1) / (np.linalg.norm(a.X, axis=1) * np.linalg.norm(b.X, axis=1))
    features = {"cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
                "max_abs_diff": float(np.abs(a.X - b.X).max()), "max_abs_value": float(np.abs(a.X).max())}
    pa, pb = runs["float32"]["res"].predictions, runs["bfloat16"]["res"].predictions
    m = pa.merge(pb, on=["classifier", "repeat", "fold", "id"], suffixes=("_f32", "_bf16"))
    changed = float((m["y_pred_f32"] != m["y_pred_bf16"]).mean())
    fa, fb = runs["float32"]["res"].folds, runs["bfloat16"]["res"].folds
    f = fa.merge(fb, on=["classifier", "repeat", "fold"], suffixes=("_f32", "_bf16"))
    per_clf = []
    for name, g in f.groupby("classifier", sort=False):
        row = {"classifier": name, "predictions_changed": float(
            (m.loc[m.classifier == name, "y_pred_f32"] != m.loc[m.classifier == name, "y_pred_bf16"]).mean())}
        for metric in ("balanced_accuracy", "roc_auc"):
            row[f"{metric}_float32"] = float(g[f"{metric}_f32"].mean())
            row[f"{metric}_bfloat16"] = float(g[f"{metric}_bf16"].mean())
            row[f"{metric}_diff"] = row[f"{metric}_bfloat16"] - row[f"{metric}_float32"]
            row[f"{metric}_fold_std_float32"] = float(g[f"{metric}_f32"].std(ddof=1))
        per_clf.append(row)

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"native bfloat16: {'yes' if cpu_has_native_bfloat16() else 'no (emulated, slow)'}")
    cmd = "python benchmarks/bench_precision.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# float32 vs bfloat16 features — {args.features} on {args.data}\n\n{machine}\n\n`{cmd}`\n")
    print(f"{len(a)} images x {a.X.shape[1]} features; {runs['float32']['res'].cv_description}\n")
    print("| | float32 | bfloat16 |\n|---|---:|---:|")
    print(f"| extraction (s, fresh or cached) | {runs['float32']['extract_seconds']:.1f} | "
          f"{runs['bfloat16']['extract_seconds']:.1f} |\n")
    print(f"Features: cosine similarity per image min {features['cosine_min']:.4f}, median "
          f"{features['cosine_median']:.4f}; largest absolute difference {features['max_abs_diff']:.3g} "
          f"(largest value {features['max_abs_value']:.3g}). Out-of-fold predictions that differ: "
          f"{100 * changed:.1f} %.\n")
    print("| classifier | predictions changed | bal. acc. float32 | bal. acc. bfloat16 | diff | fold std (float32) "
          "| ROC AUC float32 | ROC AUC bfloat16 | diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in per_clf:
        print(f"| {r['classifier']} | {100 * r['predictions_changed']:.1f} % | {r['balanced_accuracy_float32']:.4f} "
              f"| {r['balanced_accuracy_bfloat16']:.4f} | {r['balanced_accuracy_diff']:+.4f} "
              f"| {r['balanced_accuracy_fold_std_float32']:.4f} | {r['roc_auc_float32']:.4f} "
              f"| {r['roc_auc_bfloat16']:.4f} | {r['roc_auc_diff']:+.4f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "command": cmd, "machine": machine, "data": args.data, "features": args.features,
            "n_images": len(a), "n_features": int(a.X.shape[1]),
            "extract_seconds": {p: r["extract_seconds"] for p, r in runs.items()},
            "feature_similarity": features, "predictions_changed": changed, "per_classifier": per_clf,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
