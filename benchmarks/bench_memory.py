"""Peak memory of extraction on huge images: large images decoded downscaled, or at full size.

Usage::

    python benchmarks/bench_memory.py [--n 6] [--side 12000] [--variants lite0,lite0-full,handcrafted]

Writes ``--n`` generated ``--side`` x ``--side`` RGB PNGs (smooth noise and a
bright disc, compressed) into a temporary folder, then extracts their features
in one fresh Python process per variant and prints each process's peak RSS
(``ru_maxrss`` of the process and of its decoding workers, the larger), wall
time and the shape of the matrix. Variants:

* ``lite0``: ``efficientnet_lite0`` (random weights) as leukbench runs it:
  large images are decoded at twice the network input;
* ``lite0-full``: the same with the downscaling switched off (every image at
  its own size, as before issue 9 item 8);
* ``handcrafted``: the handcrafted descriptors as leukbench runs them: large
  images are decoded at a shorter side of
  ``leukbench.features.handcrafted.DECODE_SIDE`` (2,048 px);
* ``handcrafted-full``: the same at full size (as before issue 9 item 8 was
  done for them).

The memory of ``leukbench compare`` is measured by ``bench_compare_memory.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"lite0": ("efficientnet_lite0", False), "lite0-full": ("efficientnet_lite0", True),
            "handcrafted": ("handcrafted", False), "handcrafted-full": ("handcrafted", True)}


def generate(root: Path, n: int, side: int, seed: int = 0) -> Path:
    """``n`` compressible ``side`` x ``side`` PNGs under ``root/<class>/``, two classes."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = rng.integers(0, 256, (max(2, side // 64), max(2, side // 64), 3), dtype=np.uint8)
        im = Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR)
        r = side // 4
        ImageDraw.Draw(im).ellipse((side // 2 - r, side // 2 - r, side // 2 + r, side // 2 + r),
                                   fill=(150, 60, 170))
        out = root / ("a" if i % 2 else "b") / f"img{i:02d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        im.save(out, compress_level=1)
        del im
    return root


def child(variant: str, data: str, cache: str) -> None:
    """Extract one variant in this process and print its peak RSS as JSON."""
    import resource

    import leukbench
    import leukbench.images

    feature, full = VARIANTS[variant]
    if full:
        leukbench.images.LARGE_IMAGE_SIDE = 10**9  # no image counts as large
    t0 = time.perf_counter()
    fs = leukbench.extract(data, feature, weights="none", cache_dir=cache, progress=False)
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"variant": variant, "peak_rss_mb": round(max(own, kids)), "main_mb": round(own),
                      "workers_mb": round(kids), "wall_s": round(wall, 1), "shape": list(fs.X.shape)}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6, help="images (default: 6)")
    ap.add_argument("--side", type=int, default=12000, help="side of each image in px (default: 12000)")
    ap.add_argument("--variants", default="lite0,lite0-full,handcrafted", help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.cache)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        t0 = time.perf_counter()
        data = generate(Path(tmp) / "data", args.n, args.side)
        print(f"{args.n} PNGs of {args.side}x{args.side} written in {time.perf_counter() - t0:.1f} s; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
        for variant in args.variants.split(","):
            cmd = [sys.executable, __file__, "--child", variant, "--data", str(data),
                   "--cache", str(Path(tmp) / f"cache-{variant}")]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return proc.returncode
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| variant | peak RSS (MB) | main / workers (MB) | wall (s) | matrix |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['peak_rss_mb']} | {r['main_mb']} / {r['workers_mb']} | "
              f"{r['wall_s']} | {r['shape'][0]} x {r['shape'][1]} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
