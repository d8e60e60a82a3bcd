"""Peak memory of ``leukbench compare`` on a cached feature matrix, at 1x and 4x the rows.

Usage::

    python benchmarks/bench_compare_memory.py [--rows 5000,20000] [--columns 1280]
        [--modes in-process,joblib,killable] [--classifiers GaussianNB,RidgeClassifier]
        [--pythonpath DIR] [--out rows.json]

For each row count it writes that many tiny PNGs (C-NMC style names, 40
subjects, two classes) and a compacted feature cache for them under the cache
key of ``efficientnet_lite0 --weights none``: random float32 features, two
classes apart in a few columns. ``leukbench compare`` then finds every image
cached and extracts nothing: what it holds is the matrix. Each mode runs the
command in a fresh process:

* ``in-process``: ``--n-jobs 1`` (the fits in the compare process);
* ``joblib``: ``--n-jobs 2`` (two loky worker processes);
* ``killable``: ``--n-jobs 2 --timeout 600`` (leukbench's own worker processes).

Every 0.1 s the benchmark reads, from ``/proc``, the peak RSS (``VmHWM``) of
the compare process and of each of its worker processes, the sum of their PSS
(shared pages counted once) and the used bytes of ``/dev/shm`` (where joblib
puts the arrays it memory-maps itself; system-wide, less its value at the
start). It prints one row per mode and row count, and per mode the **matrix
copies** of the compare process: (peak RSS at 4x - at 1x) / (matrix at 4x -
at 1x), which cancels the fixed cost of the imports. ``--pythonpath`` runs
the same with another checkout of leukbench first on the path (the code
before a change); the cache is then written by that code too.

The modes ``mapped`` and ``mapped-killable`` (not run by default) are
``in-process`` and ``killable`` with ``--memory-map`` (the matrix in a
memory-mapped file, :mod:`leukbench._mapped`), to be used with classifiers
that learn from batches (``--classifiers BatchSGDLogistic,BatchGaussianNB``). Pages of a mapped
file count in RSS once read but the system can drop them, so the benchmark also
reports the peak **anonymous** RSS (``RssAnon``: memory that cannot be dropped)
of each process. ``--memory-limit MB`` runs every compare inside a new memory
cgroup (v1 or v2; needs root) limited to that many MB, swap included; a run
the limit kills is reported as such (and the benchmark goes on): with a matrix
larger than what the limit leaves beside the fixed cost of the process, a
``mapped`` run that completes shows compare on a matrix larger than its memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"in-process": ["--n-jobs", "1"], "joblib": ["--n-jobs", "2"],
         "killable": ["--n-jobs", "2", "--timeout", "600"],
         "mapped": ["--n-jobs", "1", "--memory-map"],
         "mapped-killable": ["--n-jobs", "2", "--timeout", "600", "--memory-map"]}
DEFAULT_MODES = "in-process,joblib,killable"
FEATURES = "efficientnet_lite0"
SUBJECTS = 40


def setup(root: Path, rows: int, columns: int, seed: int = 0) -> None:
    """The images and a compacted cache of random features for them (run with the code measured)."""
    import numpy as np
    from PIL import Image

    from leukbench import datasets
    from leukbench.cache import FeatureCache, stat_images
    from leukbench.features.base import create_extractor

    root.mkdir(parents=True, exist_ok=True)
    png = root / "one.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(png)
    data = png.read_bytes()
    for i in range(rows):
        cls = "all" if i % 2 else "hem"
        subject = f"{'P' if cls == 'all' else 'H'}{(i // 2) % (SUBJECTS // 2)}"
        out = root / "data" / cls / f"UID_{subject}_{i}_1_{cls}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    table = datasets.discover(root / "data")
    ex = create_extractor(FEATURES, weights="none")
    if len(ex.feature_names) != columns:
        raise SystemExit(f"{FEATURES} has {len(ex.feature_names)} columns, not {columns}")
    cache = FeatureCache(root / "cache", table.attrs["root"], ex.config, ex.feature_names)
    rng = np.random.default_rng(seed)
    ids, paths = table["id"].tolist(), table["path"].tolist()
    stats = stat_images(paths)
    for start in range(0, rows, 256):
        part = slice(start, min(start + 256, rows))
        n = part.stop - part.start
        X = rng.normal(size=(n, columns)).astype(np.float32)
        X[(table["label"].to_numpy()[part] == "all"), :16] += 0.5
        hashes = [rng.bytes(16).hex() for _ in range(n)]
        dhashes = [rng.bytes(32).hex() for _ in range(n)]
        cache.write_chunk(ids[part], stats[0][part], stats[1][part], hashes, dhashes, [False] * n, X,
                          ctimes=stats[2][part], inodes=stats[3][part])
    cache.compact()


def api_child(root: Path, mode: str, classifiers: str) -> None:
    """``leukbench.extract`` then ``compare`` and ``save`` in this process, as the command does;
    prints the RSS after the extraction and the peak above it during the rest (``VmHWM`` is reset
    through ``/proc/self/clear_refs`` once the matrix is loaded)."""
    import leukbench

    fs = leukbench.extract(root / "data", FEATURES, weights="none", cache_dir=root / "cache", progress=False,
                           memory_map="--memory-map" in MODES[mode])
    loaded = _read_kb("/proc/self/status", "VmRSS:")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    opts = {"n_jobs": int(MODES[mode][1])}  # MODES[mode]: --n-jobs N [--timeout S] [--memory-map]
    if "--timeout" in MODES[mode]:
        opts["timeout"] = float(MODES[mode][MODES[mode].index("--timeout") + 1])
    result = leukbench.compare(fs, classifiers=classifiers, cv=5, n_bootstrap=0, cache_dir=root / "cache",
                               progress=False, **opts)
    result.save(root / f"out-api-{mode}", feature_sets=[fs])
    peak = _read_kb("/proc/self/status", "VmHWM:")
    print(json.dumps({"after_extract_mb": round(loaded / 1024), "compare_extra_mb": round((peak - loaded) / 1024)}))


def _read_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _shm_used() -> int:
    try:
        return shutil.disk_usage("/dev/shm").used
    except OSError:
        return 0


def measure(cmd, env) -> dict:
    """Run ``cmd``; sample the memory of it and its worker processes until it exits."""
    import psutil

    if cgroup:
        cgroup.reset_peak()
    shm0, t0 = _shm_used(), time.perf_counter()
    # run from the temporary folder: from a checkout, `python -m leukbench` would import that
    # checkout's leukbench (the current directory comes first on the path), not --pythonpath's
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tempfile.gettempdir(), preexec_fn=cgroup.enter if cgroup else None)
    top = psutil.Process(proc.pid)
    hwm, anon, pss_peak, shm_peak = {}, {}, 0, 0
    while proc.poll() is None:
        try:
            tree = [top] + top.children(recursive=True)
        except psutil.Error:
            tree = [top]
        pss = 0
        for p in tree:
            hwm[p.pid] = max(hwm.get(p.pid, 0), _read_kb(f"/proc/{p.pid}/status", "VmHWM:"))
            anon[p.pid] = max(anon.get(p.pid, 0), _read_kb(f"/proc/{p.pid}/status", "RssAnon:"))
            pss += _read_kb(f"/proc/{p.pid}/smaps_rollup", "Pss:")
        pss_peak, shm_peak = max(pss_peak, pss), max(shm_peak, _shm_used() - shm0)
        time.sleep(0.1)
    out = proc.stdout.read()
    status = "ok"
    if proc.returncode in (-9, 137) and cgroup:
        status = "killed (over the limit)"
    elif proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    workers = [v for pid, v in hwm.items() if pid != proc.pid]
    workers_anon = [v for pid, v in anon.items() if pid != proc.pid]
    api = json.loads(out.strip().splitlines()[-1]) if "--api-child" in cmd and status == "ok" else {}
    return {**api, "status": status, "parent_mb": round(hwm.get(proc.pid, 0) / 1024),
            "worker_mb": round(max(workers, default=0) / 1024),
            "parent_anon_mb": round(anon.get(proc.pid, 0) / 1024),
            "worker_anon_mb": round(max(workers_anon, default=0) / 1024),
            "workers": len(workers), "pss_total_mb": round(pss_peak / 1024),
            "shm_mb": round(shm_peak / 2**20), "wall_s": round(time.perf_counter() - t0, 1),
            "cgroup_peak_mb": cgroup.peak_mb() if cgroup else None}


class MemoryCgroup:
    """A memory cgroup limited to ``limit_mb`` (swap included) for the compare runs (v1 or v2; root)."""

    def __init__(self, limit_mb: int):
        name = f"leukbench-bench-{os.getpid()}"
        v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
        limit = str(limit_mb * 2**20)
        try:
            if (v1 / "memory.limit_in_bytes").exists():
                self.path, self.peak_file = v1 / name, "memory.max_usage_in_bytes"
                self.path.mkdir()
                (self.path / "memory.limit_in_bytes").write_text(limit)
                if (self.path / "memory.memsw.limit_in_bytes").exists():
                    (self.path / "memory.memsw.limit_in_bytes").write_text(limit)
            else:
                self.path, self.peak_file = v2 / name, "memory.peak"
                self.path.mkdir()
                (self.path / "memory.max").write_text(limit)
                (self.path / "memory.swap.max").write_text("0")
        except OSError as exc:
            raise SystemExit(f"--memory-limit: cannot make a memory cgroup ({exc}); run as root on a "
                             "machine with cgroup v1 or v2 memory control") from None
        self.limit_mb = limit_mb

    def reset_peak(self) -> None:
        """Start the group's peak again (before each run; v2 kernels before 6.12 cannot)."""
        try:
            (self.path / self.peak_file).write_text("0")
        except OSError:
            pass

    def enter(self) -> None:
        """Move the calling process (the child, before its exec) into the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self):
        try:
            return round(int((self.path / self.peak_file).read_text()) / 2**20)
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


cgroup = None  # the MemoryCgroup of --memory-limit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="5000,20000", help="row counts, the first is 1x (default: 5000,20000)")
    ap.add_argument("--columns", type=int, default=1280, help="feature columns (efficientnet_lite0: 1280)")
    ap.add_argument("--modes", default=DEFAULT_MODES, help=f"of {', '.join(MODES)} (default: %(default)s)")
    ap.add_argument("--classifiers", default="GaussianNB,RidgeClassifier")
    ap.add_argument("--pythonpath", default=None, help="a leukbench checkout to put first on the path")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--api", action="store_true",
                    help="run extract + compare + save from Python and measure the peak above the RSS "
                         "once the matrix is loaded (the command's fixed cost left out)")
    ap.add_argument("--memory-limit", type=int, default=None, metavar="MB",
                    help="run each compare in a memory cgroup of MB megabytes, swap included (root)")
    ap.add_argument("--setup", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--api-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]
    if args.setup:
        setup(Path(args.setup), rows[0], args.columns)
        return 0
    if args.api_child:
        api_child(Path(args.api_child), args.mode, args.classifiers)
        return 0
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (args.pythonpath, env.get("PYTHONPATH")) if p)
    load = os.getloadavg()[0]
    where = subprocess.run([sys.executable, "-c", "import leukbench; print(leukbench.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.strip()
    print(f"{os.cpu_count()} cores, load average {load:.1f} at the start; modes {args.modes}; "
          f"classifiers {args.classifiers}; leukbench from {where}", flush=True)
    global cgroup
    if args.memory_limit:
        cgroup = MemoryCgroup(args.memory_limit)
        print(f"every compare runs in the memory cgroup {cgroup.path}, limited to {args.memory_limit} MB",
              flush=True)
    try:
        results = _run_all(args, rows, env)
    finally:
        if cgroup:
            cgroup.remove()
    _print_results(args, rows, results, argv)
    return 0


def _run_all(args, rows, env) -> list:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-memory-") as tmp:
        for n in rows:
            root = Path(tmp) / f"rows-{n}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, os.path.abspath(__file__), "--setup", str(root), "--rows", str(n),
                            "--columns", str(args.columns)], env=env, check=True, cwd=tempfile.gettempdir())
            print(f"{n} rows: images and cache written in {time.perf_counter() - t0:.1f} s", flush=True)
            for mode in args.modes.split(","):
                shutil.rmtree(root / "cache" / "folds", ignore_errors=True)  # every fit is done, every time
                cmd = [sys.executable, "-m", "leukbench", "compare", str(root / "data"), "--features", FEATURES,
                       "--weights", "none", "--cache-dir", str(root / "cache"), "--classifiers", args.classifiers,
                       "--cv", "5", "--n-bootstrap", "0", "-q", "--out", str(root / f"out-{mode}")] + MODES[mode]
                if args.api:
                    cmd = [sys.executable, os.path.abspath(__file__), "--api-child", str(root), "--mode", mode,
                           "--classifiers", args.classifiers]
                row = {"rows": n, "mode": mode, "matrix_mb": round(n * args.columns * 4 / 2**20, 1),
                       **measure(cmd, env)}
                results.append(row)
                print(json.dumps(row), flush=True)
    return results


def _print_results(args, rows, results, argv) -> None:
    limit = f"{cgroup.limit_mb} MB" if cgroup else "none"
    print(f"\nmemory limit (cgroup, swap included): {limit}")
    print("\n| rows | mode | matrix (MB) | compare process peak RSS (MB) | its peak anonymous RSS (MB) "
          "| largest worker peak RSS (MB) | its peak anonymous RSS (MB) | peak PSS, all processes (MB) "
          "| cgroup peak (MB) | /dev/shm (MB) | wall (s) | status |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['mode']} | {r['matrix_mb']} | {r['parent_mb']} | {r['parent_anon_mb']} | "
              f"{r['worker_mb']} | {r['worker_anon_mb']} | {r['pss_total_mb']} | {r['cgroup_peak_mb'] or '—'} | "
              f"{r['shm_mb']} | {r['wall_s']} | {r['status']} |")
    if args.api:
        print("\ncompare + save above the RSS with the matrix loaded (MB), and in matrices:")
        for r in results:
            print(f"  {r['rows']:,} {r['mode']}: loaded {r['after_extract_mb']}, +{r['compare_extra_mb']} "
                  f"(= {r['compare_extra_mb'] / r['matrix_mb']:.2f} matrices)")
    if len(rows) > 1:
        print("\nmatrix copies held (peak at the last row count - at the first) / (matrix difference):")
        for mode in args.modes.split(","):
            a, b = (next(r for r in results if r["rows"] == n and r["mode"] == mode) for n in (rows[0], rows[-1]))
            if a["status"] != "ok" or b["status"] != "ok":
                print(f"  {mode}: {b['status'] if a['status'] == 'ok' else a['status']}, not computed")
                continue
            dm = b["matrix_mb"] - a["matrix_mb"]
            print(f"  {mode}: compare process {(b['parent_mb'] - a['parent_mb']) / dm:.2f}, largest worker "
                  f"{(b['worker_mb'] - a['worker_mb']) / dm:.2f}, all processes (PSS) "
                  f"{(b['pss_total_mb'] - a['pss_total_mb']) / dm:.2f}; anonymous: compare process "
                  f"{(b['parent_anon_mb'] - a['parent_anon_mb']) / dm:.2f}, largest worker "
                  f"{(b['worker_anon_mb'] - a['worker_anon_mb']) / dm:.2f}")
    print(f"\ncommand: python benchmarks/bench_compare_memory.py {' '.join(argv or sys.argv[1:])}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
