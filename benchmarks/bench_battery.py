"""leukbench's classifier battery against lazypredict, on the same folds.

Usage::

    python benchmarks/bench_battery.py [--data ../shared/data/cnmc-subset]
        [--features efficientnet_lite0] [--n-jobs 2] [--out benchmarks/out/battery.json]

What it does, in one run:

1. loads the cached feature matrix of ``--data`` (extracting it first when
   missing) — by default EfficientNet-Lite0 features of cnmc-subset, with
   subject ids;
2. runs ``leukbench.compare`` with the five seed classifiers (SVC,
   XGBClassifier, LinearDiscriminantAnalysis, RidgeClassifierCV,
   RidgeClassifier), subject-aware 5-fold CV, the fold cache disabled, and
   times it (wall clock);
3. re-runs the same work with lazypredict 0.3's ``LazyClassifier`` on exactly
   the folds leukbench used (one ``fit(X_train, X_test, y_train, y_test)``
   per fold, the same five classifiers) and times it;
4. compares the per-fold Accuracy, Balanced Accuracy and weighted F1 of the
   two (the diff is printed) — ROC AUC is compared too where lazypredict
   computes it from scores;
5. with ``--scaling``, times one fit of each classifier on 1x, 2x and 4x
   training samples (a quarter, half and all of the training part of fold 0).

Results go to stdout as Markdown and to ``--out`` as JSON.
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
import pandas as pd

SEED_FIVE = ["SVC", "XGBClassifier", "LinearDiscriminantAnalysis", "RidgeClassifierCV", "RidgeClassifier"]
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnmc-subset"


def _lazy_fold(Supervised, names, X, y, train, test, seed):
    wanted = [c for n, c in Supervised.CLASSIFIERS if n in names]
    lazy = Supervised.LazyClassifier(classifiers=wanted, random_state=seed, ignore_warnings=True,
                                     verbose=0, predictions=False)
    cols = [f"f{i}" for i in range(X.shape[1])]
    Xtr = pd.DataFrame(X[train], columns=cols)
    Xte = pd.DataFrame(X[test], columns=cols)
    out = lazy.fit(Xtr, Xte, y[train], y[test])
    return out[0] if isinstance(out, tuple) else out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--features", default="efficientnet_lite0")
    ap.add_argument("--classifiers", default=",".join(SEED_FIVE))
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images (smoke runs)")
    ap.add_argument("--scaling", action="store_true", help="also time each classifier at 1x/2x/4x samples")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)

    import lazypredict
    from lazypredict import Supervised

    import leukbench
    from leukbench.evaluation import compare

    names = [n.strip() for n in args.classifiers.split(",") if n.strip()]
    table = leukbench.discover(args.data)
    if args.limit:
        table = table.sample(n=min(args.limit, len(table)), random_state=0).sort_index()
    fs = leukbench.extract(table, args.features, cache_dir=args.cache_dir, progress=False)
    fs = fs.labeled()

    # 1. leukbench
    t0 = time.perf_counter()
    res = compare(fs, classifiers=names, cv=args.cv, seed=args.seed, n_jobs=args.n_jobs,
                  cache_dir=False, progress=False)
    t_leuk = time.perf_counter() - t0

    # 2. lazypredict on the same folds
    classes = res.classes
    y = np.array([classes.index(str(c)) for c in fs.y])
    id_pos = {i: k for k, i in enumerate(fs.ids)}
    rows = []
    t_lazy = 0.0
    for (rep, fold), p in res.predictions.groupby(["repeat", "fold"]):
        test = np.array(sorted(id_pos[i] for i in set(p["id"])))
        train = np.setdiff1d(np.arange(len(fs)), test)
        t1 = time.perf_counter()
        lazy = _lazy_fold(Supervised, names, fs.X, y, train, test, args.seed)
        t_lazy += time.perf_counter() - t1
        for name in names:
            f = res.folds[(res.folds.classifier == name) & (res.folds.fold == fold)
                          & (res.folds.repeat == rep)].iloc[0]
            pr = p[p.classifier == name]
            from sklearn.metrics import f1_score

            f1w = f1_score(pr.y_true, pr.y_pred, average="weighted")
            lz = lazy.loc[name] if name in lazy.index else None
            rows.append({
                "fold": int(fold), "classifier": name,
                "acc_leukbench": f.accuracy, "acc_lazypredict": None if lz is None else lz["Accuracy"],
                "bacc_leukbench": f.balanced_accuracy,
                "bacc_lazypredict": None if lz is None else lz["Balanced Accuracy"],
                "f1w_leukbench": f1w, "f1w_lazypredict": None if lz is None else lz["F1 Score"],
                "auc_leukbench": f.roc_auc, "auc_lazypredict": None if lz is None else lz["ROC AUC"],
                "fit_seconds_leukbench": f.fit_time,
                "seconds_lazypredict": None if lz is None else lz["Time Taken"],
            })
    per_fold = pd.DataFrame(rows)
    diffs = {m: float(np.nanmax(np.abs(per_fold[f"{m}_leukbench"].astype(float)
                                         - per_fold[f"{m}_lazypredict"].astype(float))))
             for m in ("acc", "bacc", "f1w", "auc")}

    scaling = []
    if args.scaling:
        from leukbench.classifiers import make_classifier

        sp0 = res.predictions[res.predictions.fold == 0]
        test = np.array(sorted(id_pos[i] for i in set(sp0["id"])))
        train = np.setdiff1d(np.arange(len(fs)), test)
        rng = np.random.default_rng(0)
        order = rng.permutation(train)
        for name in names:
            row = {"classifier": name}
            for mult, frac in (("1x", 0.25), ("2x", 0.5), ("4x", 1.0)):
                idx = np.sort(order[: max(10, int(round(frac * len(order))))])
                est = make_classifier(name, args.seed)
                t = time.perf_counter()
                est.fit(fs.X[idx], y[idx])
                row[f"{mult} ({len(idx)} images)"] = time.perf_counter() - t
            scaling.append(row)

    # the work itself: every fit and prediction as timed inside leukbench's run, by classifier
    work = res.folds.groupby("classifier", sort=False)[["fit_time", "predict_time"]].sum()
    work_seconds = float(work.to_numpy().sum())
    bound = work_seconds / max(1, args.n_jobs)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = {
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "machine": machine,
        "data": str(args.data), "features": args.features, "n_images": len(fs), "n_features": fs.X.shape[1],
        "classifiers": names, "cv_description": res.cv_description, "n_jobs": args.n_jobs,
        "leukbench_seconds": t_leuk, "lazypredict_seconds": t_lazy, "ratio": t_leuk / t_lazy,
        "lazypredict_version": getattr(lazypredict, "__version__", "?"),
        "max_abs_diff": diffs, "per_fold": per_fold.to_dict("records"), "scaling": scaling,
        "work_seconds": work_seconds, "work_by_classifier": work.sum(axis=1).to_dict(),
        "lower_bound_seconds": bound, "lower_bound_ratio": bound / t_lazy,
    }
    print(f"# Battery vs lazypredict — {machine}\n")
    print(f"`{out['command']}`\n")
    print(f"{len(fs)} images x {fs.X.shape[1]} features ({args.features}); {res.cv_description}\n")
    print("| | wall time (s) |\n|---|---:|")
    print(f"| leukbench compare (n_jobs={args.n_jobs}) | {t_leuk:.1f} |")
    print(f"| lazypredict {out['lazypredict_version']} LazyClassifier, same folds | {t_lazy:.1f} |")
    print(f"| **ratio** | **{t_leuk / t_lazy:.2f}x** |\n")
    shares = ", ".join(f"{k} {v:.1f} s" for k, v in work.sum(axis=1).sort_values(ascending=False).items())
    print(f"The fits and predictions themselves, timed inside leukbench's run, are {work_seconds:.1f} s of "
          f"work ({shares}); on {args.n_jobs} worker(s) no schedule can take less than "
          f"{bound:.1f} s = {bound / t_lazy:.2f}x lazypredict's time.\n")
    print("Largest absolute per-fold difference: "
          + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()) + "\n")
    show = per_fold[["fold", "classifier", "bacc_leukbench", "bacc_lazypredict", "auc_leukbench", "auc_lazypredict"]]
    print(show.to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else show.to_string(index=False))
    if scaling:
        print("\nFit time of one fit (s) by training-set size:\n")
        s = pd.DataFrame(scaling)
        print(s.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else s.to_string(index=False))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
