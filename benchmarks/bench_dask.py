"""Extraction and the battery on a Dask LocalCluster against the local run, on this machine.

Usage::

    python benchmarks/bench_dask.py [--data ../shared/data/cnmc-subset] [--limit 320]
        [--features handcrafted] [--workers 1,2] [--classifiers LIST] [--cv 5]
        [--out benchmarks/out/dask.json]

What it measures, each in a fresh cache (no run reads another's features):

``extraction``
    images/s of ``leukbench.extract_all`` in this process (the local run),
    then on a LocalCluster of 1 and of 2 worker processes (one thread each):
    ``cold`` is the first extraction on a fresh cluster (the workers import
    leukbench and build the extractor), ``warm`` a second one on the same
    cluster into another fresh cache (the steady state of a long run). The
    matrix of every Dask run is compared with the local one, bit for bit.
``battery``
    wall time of ``leukbench.compare`` on those features: locally
    (``n_jobs`` 1 and 2) and on the clusters (warm: a first, untimed run
    imports the classifiers in the workers), without and with ``--timeout``.
``engine``
    the cost of Dask itself: the round trip of an empty task (submit ->
    result, ms per task, 200 tasks on the 2-worker cluster), and the
    scheduler + transfer cost of the features of 1,000 images returned by
    the workers (a (1000, n_features) float32 array per task, as extraction
    returns it; 1280 features is EfficientNet-Lite0's width).

All clusters run on this machine: nothing here measures a network between
machines (see docs/scaling.md for what is extrapolated from these figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cnmc-subset"
DEFAULT_CLASSIFIERS = "LogisticRegression,LinearDiscriminantAnalysis,GaussianNB,KNeighborsClassifier,RidgeClassifier"


def _table(args):
    from leukbench import datasets

    table = datasets.discover(args.data)
    if args.limit and len(table) > args.limit:
        table = table.sample(n=args.limit, random_state=0).sort_index()
    table.attrs.update(datasets.discover(args.data).attrs)
    return table


def _extract(table, features, client=None, num_workers=None):
    import leukbench

    t0 = time.perf_counter()
    result = leukbench.extract_all(table, features, cache_dir=tempfile.mkdtemp(prefix="bench-dask-"),
                                   progress=False, client=client, num_workers=num_workers)
    return time.perf_counter() - t0, next(iter(result.feature_sets.values())), result.summaries[0]


def _compare(fs, args, **kw):
    import leukbench

    t0 = time.perf_counter()
    result = leukbench.compare(fs, classifiers=args.classifiers, cv=args.cv, n_bootstrap=0, cache_dir=False,
                               progress=False, **kw)
    return time.perf_counter() - t0, result


def _best(repeat: int, run, *a, **kw):
    """``run(*a, **kw)`` ``repeat`` times: the fastest time and the last result (the rest of its tuple)."""
    outs = [run(*a, **kw) for _ in range(max(1, repeat))]
    return (min(o[0] for o in outs), *outs[-1][1:])


def _same(a, b) -> bool:
    timeless = [c for c in a.table.columns if "Time" not in c]
    return a.table[timeless].equals(b.table[timeless]) and a.predictions.equals(b.predictions)


def _round_trip_ms(client, n: int = 200) -> float:
    """Median ms of submit -> result of an empty task, one at a time."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.submit(int, i, pure=False).result()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _make_rows(n: int, width: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, width), dtype=np.float32)


def _transfer_s_per_1000(client, width: int, tasks: int = 8) -> float:
    """Seconds per 1,000 images to bring (1000, width) float32 results from the workers to the client,
    beyond the round trip of an empty task."""
    empty = [client.submit(_make_rows, 0, width, pure=False) for _ in range(tasks)]
    client.gather(empty)
    t0 = time.perf_counter()
    client.gather([client.submit(_make_rows, 0, width, pure=False) for _ in range(tasks)])
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.gather([client.submit(_make_rows, 1000, width, pure=False) for _ in range(tasks)])
    return max(0.0, time.perf_counter() - t0 - base) / tasks


def _cluster(n: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=40)
    return cluster, Client(cluster)


def run(args) -> dict:
    table = _table(args)
    n = len(table)
    out = {"images": n, "features": args.features, "repeat": args.repeat, "classifiers": args.classifiers,
           "cv": args.cv, "load_average_start": os.getloadavg()[0], "extraction": [], "battery": [], "engine": {}}
    seconds, local_fs, _ = _extract(table, args.features)
    out["extraction"].append({"engine": "local", "run": "cold", "seconds": seconds, "images_per_s": n / seconds})
    seconds, local_fs, _ = _best(args.repeat, _extract, table, args.features)
    out["extraction"].append({"engine": "local", "run": "warm", "seconds": seconds, "images_per_s": n / seconds})
    seconds, _, _ = _best(args.repeat, _extract, table, args.features, num_workers=0)
    out["extraction"].append({"engine": "local num_workers=0", "run": "warm", "seconds": seconds,
                              "images_per_s": n / seconds})
    for jobs in (1, 2):
        seconds, local_cmp = _best(args.repeat, _compare, local_fs, args, n_jobs=jobs)
        out["battery"].append({"engine": f"local n_jobs={jobs}", "timeout": None, "seconds": seconds})
    seconds, local_timed = _best(args.repeat, _compare, local_fs, args, timeout=args.timeout, n_jobs=2)
    out["battery"].append({"engine": "local n_jobs=2", "timeout": args.timeout, "seconds": seconds})
    for workers in args.workers:
        cluster, client = _cluster(workers)
        try:
            for run_name, repeat in (("cold", 1), ("warm", args.repeat)):
                seconds, fs, summary = _best(repeat, _extract, table, args.features, client)
                out["extraction"].append({"engine": f"dask {workers} worker(s)", "run": run_name,
                                          "seconds": seconds, "images_per_s": n / seconds,
                                          "identical": bool(np.array_equal(fs.X, local_fs.X)),
                                          "note": summary.engine_note})
            _compare(fs, args, client=client)  # imports the classifiers in the workers
            seconds, result = _best(args.repeat, _compare, fs, args, client=client)
            out["battery"].append({"engine": f"dask {workers} worker(s)", "timeout": None, "seconds": seconds,
                                   "identical": _same(local_cmp, result)})
            _compare(fs, args, client=client, timeout=args.timeout)  # starts the killable children
            seconds, result = _best(args.repeat, _compare, fs, args, client=client, timeout=args.timeout)
            out["battery"].append({"engine": f"dask {workers} worker(s)", "timeout": args.timeout,
                                   "seconds": seconds, "identical": _same(local_timed, result)})
            if workers == max(args.workers):
                out["engine"] = {"workers": workers, "empty_task_round_trip_ms": _round_trip_ms(client),
                                 "transfer_s_per_1000_images": {str(w): _transfer_s_per_1000(client, w)
                                                                for w in (76, 1280)}}
        finally:
            client.close()
            cluster.close()
    out["load_average_end"] = os.getloadavg()[0]
    return out


def report(out: dict) -> str:
    lines = [f"{out['images']} images, {out['features']}, best of {out['repeat']} warm run(s); "
             f"load average {out['load_average_start']:.2f} at the "
             f"start, {out['load_average_end']:.2f} at the end", "",
             "| extraction | run | s | images/s | identical to local |", "|---|---|---:|---:|---|"]
    for r in out["extraction"]:
        same = {True: "yes", False: "NO"}.get(r.get("identical"), "(reference)")
        lines.append(f"| {r['engine']} | {r['run']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | {same} |")
    lines += ["", f"| battery ({out['classifiers']}, cv={out['cv']}) | timeout | s | identical to local |",
              "|---|---|---:|---|"]
    for r in out["battery"]:
        same = {True: "yes", False: "NO"}.get(r.get("identical"), "(reference)")
        lines.append(f"| {r['engine']} | {r['timeout'] or '-'} | {r['seconds']:.1f} | {same} |")
    by = {(r["engine"], r["run"]): r["seconds"] for r in out["extraction"]}
    if ("dask 1 worker(s)", "warm") in by:
        per_image = (by[("dask 1 worker(s)", "warm")] - by[("local num_workers=0", "warm")]) / out["images"]
        lines += ["", f"engine overhead per image (dask 1 worker, warm, minus local num_workers=0): "
                      f"{per_image * 1000:.2f} ms"]
    e = out["engine"]
    if e:
        t = e["transfer_s_per_1000_images"]
        lines += ["", f"empty task round trip ({e['workers']} workers): {e['empty_task_round_trip_ms']:.1f} ms; "
                      f"features of 1,000 images from the workers: {t['76']:.3f} s at 76 columns, "
                      f"{t['1280']:.3f} s at 1280 columns"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=320, help="images (a fixed random subset; 0: all)")
    p.add_argument("--features", default="handcrafted")
    p.add_argument("--workers", default="1,2", help="cluster sizes (comma-separated)")
    p.add_argument("--classifiers", default=DEFAULT_CLASSIFIERS)
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--repeat", type=int, default=1, help="warm runs of each variant; the fastest is reported")
    p.add_argument("--out", type=Path, default=None, help="also write the raw numbers as JSON")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    out = run(args)
    print(report(out))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
