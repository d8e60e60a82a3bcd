"""Discovery of an image folder and the leakage audit, at 10k to 100k images.

Usage::

    python benchmarks/bench_bookkeeping.py --sizes 10000,100000 --out benchmarks/out/bookkeeping.json

Two stages of every run that do not touch pixels, timed on synthetic input:

``discover``
    :func:`leukbench.datasets.discover` on a C-NMC-style class-folder tree of
    empty files (``all/UID_<subject>_<i>_1_all.bmp``, 97 subjects), built in a
    temporary folder — file-name parsing and ``os.scandir`` only;
``audit``
    :func:`leukbench.audit.audit_leakage` on random 256-bit difference hashes
    (300 subjects, 5 planted copies), i.e. the near-duplicate search.

Each figure is the best of ``--repeat`` runs.
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


def make_tree(root: Path, n: int) -> Path:
    """``n`` empty files in ``all/`` and ``hem/`` with C-NMC names."""
    for k, cls in enumerate(("all", "hem")):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(k, n, 2):
            (d / f"UID_{i % 97}_{i}_1_{cls}.bmp").touch()
    return root


def random_hashes(n: int, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    packed = np.packbits(rng.random((n, 256)) < 0.5, axis=1)
    packed[-5:] = packed[:5]
    return [r.tobytes().hex() for r in packed]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated image counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default="discover,audit", help="comma-separated: discover, audit")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    from leukbench.audit import audit_leakage
    from leukbench.datasets import discover

    sizes = [int(s) for s in args.sizes.split(",")]
    stages = set(args.stages.split(","))
    rows = []
    for n in sizes:
        row = {"images": n}
        if "discover" in stages:
            with tempfile.TemporaryDirectory() as tmp:
                root = make_tree(Path(tmp) / "tree", n)
                row["discover_seconds"] = best_of(args.repeat, lambda root=root: discover(root))
                row["found"] = len(discover(root))
        if "audit" in stages:
            hashes = random_hashes(n)
            ids = [str(i) for i in range(n)]
            subjects = [str(i % 300) for i in range(n)]
            row["audit_seconds"] = best_of(args.repeat, lambda ids=ids, subjects=subjects, hashes=hashes:
                                          audit_leakage(ids=ids, subjects=subjects, dhashes=hashes))
            row["audit_pairs"] = len(audit_leakage(ids=ids, subjects=subjects, dhashes=hashes).pairs)
        rows.append(row)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# bookkeeping stages ({machine}; best of {args.repeat})")
    print("| images | discover | audit (pairs found) |")
    print("|---:|---:|---:|")
    for r in rows:
        disc = f"{r['discover_seconds']:.2f} s" if "discover_seconds" in r else "—"
        audit = f"{r['audit_seconds']:.2f} s ({r['audit_pairs']})" if "audit_seconds" in r else "—"
        print(f"| {r['images']:,} | {disc} | {audit} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": " ".join(["python", *sys.argv]),
                                              "machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
