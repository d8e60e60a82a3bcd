"""The feature ablation: what each feature option buys over the plain EfficientNet-Lite0 baseline.

Usage::

    python benchmarks/bench_features.py [--data ../shared/data/cnmc-subset]
        [--options baseline,lite1,flip,last2,reinhard,nucleus] [--classifiers LIST]
        [--cv 5] [--n-jobs 2] [--cost-images 32] [--out results/cnmc-subset-features]

For each option, one at a time against the baseline (``efficientnet_lite0``, ImageNet weights,
no option), it extracts the feature set (the cache makes re-runs cheap), runs
``leukbench.compare`` with subject-aware ``--cv``-fold cross-validation and the subject-level
bootstrap, and keeps the best row: its balanced accuracy, fold standard deviation and 95 %
interval. The extraction cost per image is measured apart, on the first ``--cost-images``
and ``2 x --cost-images`` images with an empty cache (the difference over the difference in
images, so neither the cache nor building the network counts). Each option's result is
written to ``<out>/<option>.json`` as soon as it is done (an interrupted run keeps what it
finished; the JSON records the command, the option's wall time and the load average), and
``<out>/table.md`` is rebuilt from all of them **and from the rows of the table already there**
that have no JSON (a fresh checkout has only the committed ``table.md``): each earlier row is kept
with the command that measured it, so a run adds options instead of re-measuring the others.

Options (``--options``; ``all`` for every one) are listed by ``--help``; the table below the
command in ``benchmarks/README.md`` says what each measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnmc-subset"

#: What each option runs: the feature spec, the extraction settings, the compare settings.
OPTIONS = {
    "baseline": dict(features="efficientnet_lite0", what="EfficientNet-Lite0, ImageNet, pooled last layer"),
    "lite1": dict(features="efficientnet_lite1", what="EfficientNet-Lite1 (240 px)"),
    "lite2": dict(features="efficientnet_lite2", what="EfficientNet-Lite2 (260 px)"),
    "flip": dict(features="efficientnet_lite0", extract=dict(tta="flip"), what="Lite0, --tta flip"),
    "d4": dict(features="efficientnet_lite0", extract=dict(tta="d4"), what="Lite0, --tta d4 (8x the work)"),
    "last2": dict(features="efficientnet_lite0", extract=dict(layers="last2"), what="Lite0, --layers last2"),
    "last3": dict(features="efficientnet_lite0", extract=dict(layers="last3"), what="Lite0, --layers last3"),
    "gem": dict(features="efficientnet_lite0", extract=dict(pooling="gem"), what="Lite0, --pooling gem"),
    "reinhard": dict(features="efficientnet_lite0", extract=dict(stain_norm="reinhard"),
                     what="Lite0, --stain-norm reinhard"),
    "macenko": dict(features="efficientnet_lite0", extract=dict(stain_norm="macenko"),
                    what="Lite0, --stain-norm macenko"),
    "pca-whiten": dict(features="efficientnet_lite0", compare=dict(reduce="pca-whiten:128"),
                       what="Lite0, --reduce pca-whiten:128"),
    "power": dict(features="efficientnet_lite0", compare=dict(normalize="power"), what="Lite0, --normalize power"),
    "handcrafted": dict(features="handcrafted", what="the handcrafted set (reference)"),
    "nucleus": dict(features="nucleus", what="the nucleus descriptors alone"),
    "handcrafted+nucleus": dict(features="handcrafted+nucleus", what="handcrafted + nucleus"),
    "handcrafted-reinhard": dict(features="handcrafted", extract=dict(stain_norm="reinhard"),
                                 what="handcrafted, --stain-norm reinhard"),
    "reinhard-dataset": dict(features="efficientnet_lite0",
                             extract=dict(stain_norm="reinhard", stain_reference="dataset"),
                             what="Lite0, --stain-norm reinhard --stain-reference dataset"),
    "handcrafted-reinhard-dataset": dict(features="handcrafted",
                                         extract=dict(stain_norm="reinhard", stain_reference="dataset"),
                                         what="handcrafted, --stain-norm reinhard --stain-reference dataset"),
    # the combinations: the best handcrafted row (handcrafted+nucleus) with the deep features
    # concatenated, plain and with the best deep option measured (pca-whiten); see benchmarks/README.md
    "combo": dict(features="handcrafted+nucleus+efficientnet_lite0", what="handcrafted + nucleus + Lite0"),
    "combo-pca-whiten": dict(features="handcrafted+nucleus+efficientnet_lite0", compare=dict(reduce="pca-whiten:128"),
                             what="handcrafted + nucleus + Lite0, --reduce pca-whiten:128"),
}

#: A battery that fits the time on 2 cores: the best rows of results/cnmc-subset/table.md for
#: Lite0 (SVC) and handcrafted (LogisticRegression, near the best LinearSVC), and three others.
DEFAULT_CLASSIFIERS = "SVC,LogisticRegression,RidgeClassifierCV,KNeighborsClassifier,ExtraTreesClassifier"


def _cost_per_image(data, spec: dict, n_images: int) -> float:
    """Seconds per image of extracting ``spec`` with an empty cache: the time on the first
    ``2 n`` images minus the time on the first ``n``, over ``n`` (which leaves out the fixed
    costs: building the network, starting the decoders)."""
    from leukbench import datasets
    from leukbench.extraction import extract_all

    table = datasets.discover(data)
    times = []
    for n in (n_images, 2 * n_images):
        part = table.groupby("label").head(max(1, n // 2))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            extract_all(part, spec["features"], cache_dir=tmp, progress=False, **spec.get("extract", {}))
            times.append((time.perf_counter() - t0, len(part)))
    (t1, n1), (t2, n2) = times
    return max(t2 - t1, 0.0) / max(n2 - n1, 1)


def interleaved_costs(data, names, n_images: int = 16, repeats: int = 3) -> dict:
    """ms per image of ``prepare`` + ``compute`` of each option's extractors on the same
    ``n_images`` decoded images, the options interleaved ``repeats`` times (the median kept):
    ratios between options survive a loaded machine better than separate runs. Networks are
    built before timing; decoding is left out (it is the same for every option)."""
    import statistics

    from leukbench import datasets
    from leukbench.extraction import parse_feature_spec
    from leukbench.features import create_extractor, extractor_options
    from leukbench.images import load_image

    table = datasets.discover(data).groupby("label").head(max(1, n_images // 2))
    images = [load_image(p) for p in table["path"]]
    built = {}
    for name in names:
        spec = OPTIONS[name]
        settings = dict(spec.get("extract", {}), device="cpu")
        parts = []
        for part in parse_feature_spec(spec["features"])[0]:
            accepted = extractor_options(part)
            ex = create_extractor(part, **{k: v for k, v in settings.items() if accepted is None or k in accepted})
            if hasattr(ex, "load_model"):
                ex.load_model()
            parts.append(ex)
        built[name] = parts
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            t0 = time.perf_counter()
            for ex in built[name]:
                ex.compute([ex.prepare(im) for im in images])
            times[name].append((time.perf_counter() - t0) / len(images))
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def _run_option(name: str, data, args) -> dict:
    from leukbench import compare
    from leukbench.extraction import extract_all

    spec = OPTIONS[name]
    t0 = time.perf_counter()
    result = extract_all(data, spec["features"], progress=False, **spec.get("extract", {}))
    extract_s = time.perf_counter() - t0
    sets = list(result.feature_sets.values())
    t0 = time.perf_counter()
    res = compare(sets, classifiers=args.classifiers, cv=args.cv, seed=args.seed, n_jobs=args.n_jobs,
                  progress=False, **spec.get("compare", {}))
    compare_s = time.perf_counter() - t0
    table = res.table[res.table["Status"] == "ok"]
    best = table.sort_values("Balanced Accuracy", ascending=False).iloc[0]
    return {
        "option": name, "what": spec["what"], "features": spec["features"],
        "extract": spec.get("extract", {}), "compare": spec.get("compare", {}),
        "n_images": int(len(sets[0])), "n_columns": int(sets[0].X.shape[1]),
        "best_model": str(best["Model"]),
        "balanced_accuracy": float(best["Balanced Accuracy"]),
        "balanced_accuracy_std": float(best["Balanced Accuracy Std"]),
        "ci_low": float(best.get("Balanced Accuracy CI Low", float("nan"))),
        "ci_high": float(best.get("Balanced Accuracy CI High", float("nan"))),
        "roc_auc": float(best["ROC AUC"]),
        "rows": {str(r["Model"]): round(float(r["Balanced Accuracy"]), 4) for _, r in table.iterrows()},
        "cost_s_per_image": _cost_per_image(data, spec, args.cost_images),
        "extract_run_s": round(extract_s, 1), "compare_s": round(compare_s, 1),
        "extracted_now": int(sum(s.n_extracted for s in result.summaries)),
    }


def _run_cost(r: dict) -> str:
    """ms per image of the extraction in the run itself (``cached`` when nothing was extracted)."""
    if not r["extracted_now"]:
        return "cached"
    return f"{1000 * r['extract_run_s'] / r['extracted_now']:.0f}"


_HEAD = ("| option | what | columns | best row | balanced accuracy ± fold std [95 % CI] | Δ vs baseline "
         "| extraction ms/image (apart) | ms/image (whole run) | wall s | load avg | run |")
_COMMANDS = "Commands (the `run` column of the table names the one that measured each row):"


def _cells(r: dict) -> list:
    """The table cells of a measured option (its JSON), from ``option`` to ``ms/image (whole run)``."""
    return [r["option"], r["what"], str(r["n_columns"]), r["best_model"],
            f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            "", f"{1000 * r['cost_s_per_image']:.0f}", _run_cost(r)]


def _earlier_rows(path: Path) -> dict:
    """The rows of an existing ``table.md``, by option: ``{"cells", "wall", "load", "command"}``.

    Both layouts are read: this one (a numbered command per row) and the first one (one
    command above the table, no ``wall s`` / ``load avg`` / ``run`` columns).
    """
    if not path.exists():
        return {}
    text = path.read_text()
    commands, rows = {}, {}
    blocks = text.split("```")
    if _COMMANDS in text:
        for line in blocks[1].splitlines():
            if line.startswith("[") and "] " in line:
                commands[line[1:line.index("]")]] = line[line.index("] ") + 2:]
    elif len(blocks) > 1:
        commands["legacy"] = blocks[1].removeprefix("bash").strip().splitlines()[0]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] not in OPTIONS or len(cells) < 8:
            continue
        wall, load, run = (cells[8:11] if len(cells) >= 11 else ("—", "—", "legacy"))
        rows[cells[0]] = {"cells": cells[:8], "wall": wall, "load": load, "command": commands.get(run, "")}
    return rows


def _balanced_accuracy(cell: str) -> float:
    return float(cell.split()[0])


def _table(out: Path, command: str) -> str:
    """Rebuild ``<out>/table.md``: the options measured in ``<out>/*.json``, and the rows of the
    earlier table that have no JSON here (each kept with the command that measured it)."""
    rows = _earlier_rows(out / "table.md")
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("option") in OPTIONS:
            load = r.get("load_average")
            rows[r["option"]] = {"cells": _cells(r), "wall": f"{r['wall_s']:.0f}" if "wall_s" in r else "—",
                                 "load": f"{load[0]:.1f}" if load else "—", "command": r.get("command", command),
                                 "json": r, "ba": r["balanced_accuracy"]}
    base = rows.get("baseline")
    commands: list = []
    lines = [_HEAD, "|:---|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in [n for n in OPTIONS if n in rows]:
        row = rows[name]
        cells = list(row["cells"])
        ba, base_ba = (row.get("ba", _balanced_accuracy(cells[4])),
                       None if base is None else base.get("ba", _balanced_accuracy(base["cells"][4])))
        if "ba" in row or (base is not None and "ba" in base) or not cells[5]:
            cells[5] = "—" if base is None or name == "baseline" else f"{ba - base_ba:+.3f}"
        # else both rows are from the earlier table: its difference, of the unrounded values, stays
        if row["command"] not in commands:
            commands.append(row["command"])
        cells += [row["wall"], row["load"], str(commands.index(row["command"]) + 1)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    first = next((r["json"] for r in rows.values() if "json" in r), {})
    header = (f"Feature ablation on `{Path(first.get('data', '')).name}`: subject-aware {first.get('cv')}-fold CV "
              f"(stratified where the data has no subjects), seed {first.get('seed')}, the best row of "
              f"{first.get('classifiers')} per option, its fold std and 95 % bootstrap interval (over subjects "
              f"where there are any). Written by `benchmarks/bench_features.py` (see "
              f"benchmarks/README.md#feature-ablation for the reading and the machine). `wall s`: the option's "
              f"whole run (extraction, cost measurement, comparison); `load avg`: the 1-minute load average "
              f"when it ended (a machine shared with other jobs).\n\n{_COMMANDS}\n\n```\n"
              + "".join(f"[{i + 1}] {c}\n" for i, c in enumerate(commands)) + "```\n\n")
    missing = [n for n in OPTIONS if n not in rows]
    if missing:
        text += f"\nNot measured in this folder: {', '.join(missing)}.\n"
    (out / "table.md").write_text(header + text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The feature ablation (see the module docstring).",
                                 epilog="options: " + "; ".join(f"{k}: {v['what']}" for k, v in OPTIONS.items()))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--options", default="baseline,lite1,flip,last2,reinhard,nucleus")
    ap.add_argument("--classifiers", default=DEFAULT_CLASSIFIERS)
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cost-images", type=int, default=32)
    ap.add_argument("--out", default="results/cnmc-subset-features")
    ap.add_argument("--redo", action="store_true", help="run options whose JSON exists again")
    ap.add_argument("--costs-only", action="store_true",
                    help="only measure the interleaved cost per image of --options (written to <out>/costs.md)")
    args = ap.parse_args(argv)
    names = list(OPTIONS) if args.options == "all" else [o.strip() for o in args.options.split(",") if o.strip()]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        ap.error(f"unknown option(s) {unknown}; choose from {', '.join(OPTIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_features.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.costs_only:
        costs = interleaved_costs(args.data, names, args.cost_images)
        base = costs.get("baseline")
        lines = [f"Interleaved cost (prepare + compute, decoding excluded), {args.cost_images} images, median of 3:",
                 "", "```bash", command, "```", "", "| option | ms/image | × baseline |", "|:---|---:|---:|"]
        lines += [f"| {n} | {c:.1f} | {c / base:.2f} |" if base else f"| {n} | {c:.1f} | — |"
                  for n, c in costs.items()]
        text = "\n".join(lines) + "\n"
        (out / "costs.md").write_text(text)
        print(text)
        return 0
    for name in names:
        path = out / f"{name}.json"
        if path.exists() and not args.redo:
            print(f"{name}: done before ({path})", flush=True)
            continue
        t0 = time.perf_counter()
        r = _run_option(name, args.data, args)
        r.update(data=str(args.data), classifiers=args.classifiers, cv=args.cv, seed=args.seed, command=command,
                 wall_s=round(time.perf_counter() - t0, 1), load_average=[round(v, 2) for v in os.getloadavg()],
                 machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        path.write_text(json.dumps(r, indent=1))
        print(f"{name}: best {r['best_model']} {r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f} "
              f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}], {1000 * r['cost_s_per_image']:.0f} ms/image "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        _table(out, command)
    print(_table(out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
