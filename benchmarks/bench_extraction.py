"""Extraction throughput: leukbench against the loop a user would write.

Usage::

    python benchmarks/bench_extraction.py [--data ../shared/data/pbc-subset]
        [--backbone efficientnet_lite0] [--weights imagenet] [--limit 640]
        [--bmp] [--rss-scaling] [--out benchmarks/out/extraction.json]

Variants, each run in a fresh Python process so that its peak memory (RSS of
the process and of its decoding workers) is its own, on the same images and
the same backbone:

``naive``
    torchvision ``ImageFolder`` + ``DataLoader(batch_size=32)`` (default
    ``num_workers=0``) + the backbone in eval mode under ``torch.no_grad()``,
    with the weights' eval transform — the straightforward notebook loop.
``model``
    the backbone alone on pre-decoded, pre-resized tensors, channels-last,
    under ``torch.inference_mode()``: the ceiling of any extraction pipeline.
``decode``
    decoding + resizing alone (PIL, one process): the cost to hide.
``leukbench``
    ``leukbench.extract`` end to end into a fresh cache (decoding in worker
    processes, fingerprints, cache writes).

``--bmp`` first converts the images to uncompressed BMP in a temporary folder
(cnmc-subset's original 450x450 BMP format, where decoding costs more).
``--rss-scaling`` runs the leukbench variant on 1x, 2x and 4x the images to
show that peak memory does not grow with the number of images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SHARED = HERE.parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------------------
# variants (run inside a child process)
# ---------------------------------------------------------------------------


def _images(root: Path, limit: int):
    from leukbench.datasets import discover

    table = discover(root)
    if limit and limit < len(table):  # a fixed random subset with every class
        table = table.sample(n=limit, random_state=0).sort_index()
    return table


def _build(backbone: str, weights: str):
    from leukbench.features.deep import build_model

    return build_model(backbone, weights)


def variant_naive(root: Path, backbone: str, weights: str, limit: int) -> dict:
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from leukbench.features.deep import preprocess_for

    pre = preprocess_for(backbone)
    tf = transforms.Compose([
        transforms.Resize(pre.resize, interpolation=getattr(transforms.InterpolationMode, pre.interpolation.upper())),
        transforms.CenterCrop(pre.crop),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    ds = datasets.ImageFolder(str(root), transform=tf)
    if limit:
        wanted = {str(Path(p).resolve()) for p in _images(root, limit)["path"]}
        ds = Subset(ds, [i for i, (p, _) in enumerate(ds.samples) if str(Path(p).resolve()) in wanted])
    t0 = time.perf_counter()  # like leukbench's figure, this includes building the model
    model = _build(backbone, weights).eval()
    n = 0
    with torch.no_grad():
        for x, _ in DataLoader(ds, batch_size=32):
            model(x)
            n += len(x)
    return {"images": n, "seconds": time.perf_counter() - t0}


def variant_model(root: Path, backbone: str, weights: str, limit: int) -> dict:
    import numpy as np
    import torch

    from leukbench.features.deep import preprocess_for
    from leukbench.images import load_image

    pre = preprocess_for(backbone)
    table = _images(root, min(limit or 64, 64))
    arrays = [pre.resize_crop(load_image(p)) for p in table["path"]]
    n_target = limit or len(_images(root, 0))
    model = _build(backbone, weights).to(memory_format=torch.channels_last)
    batch = torch.from_numpy(np.stack(arrays[:32])).permute(0, 3, 1, 2)
    norm = pre.scale_shift("cpu")
    with torch.inference_mode():
        model(pre.normalize(batch, norm))  # warm-up
        t0 = time.perf_counter()
        n = 0
        while n < n_target:
            model(pre.normalize(batch, norm))
            n += len(batch)
    return {"images": n, "seconds": time.perf_counter() - t0}


def variant_decode(root: Path, backbone: str, weights: str, limit: int) -> dict:
    from leukbench.features.deep import preprocess_for
    from leukbench.images import load_image

    pre = preprocess_for(backbone)
    paths = _images(root, limit)["path"].tolist()
    t0 = time.perf_counter()
    for p in paths:
        pre.resize_crop(load_image(p))
    return {"images": len(paths), "seconds": time.perf_counter() - t0}


def variant_leukbench(root: Path, backbone: str, weights: str, limit: int) -> dict:
    import leukbench
    import leukbench.features.deep  # noqa: F401 - torch/timm imported before timing, as in the other variants

    table = _images(root, limit)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        fs, summaries = leukbench.extract(table, backbone, weights=weights, cache_dir=cache,
                                          progress=False, return_summaries=True)
        seconds = time.perf_counter() - t0
        cache_bytes = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
    return {"images": len(fs), "seconds": seconds, "cache_bytes": cache_bytes,
            "extract_seconds": summaries[0].seconds}


VARIANTS = {"naive": variant_naive, "model": variant_model, "decode": variant_decode,
            "leukbench": variant_leukbench}


def _child_main(args) -> int:
    out = VARIANTS[args.variant](Path(args.data), args.backbone, args.weights, args.limit)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))
    return 0


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------


def run_variant(variant: str, data: Path, backbone: str, weights: str, limit: int) -> dict:
    cmd = [sys.executable, str(HERE), "--child", variant, "--data", str(data), "--backbone", backbone,
           "--weights", weights, "--limit", str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-2000:]}")
    res = json.loads(line[-1][7:])
    res["images_per_second"] = res["images"] / res["seconds"]
    return res


def to_bmp(src: Path, limit: int, dst: Path) -> Path:
    from PIL import Image

    table = _images(src, limit)
    for path, label in zip(table["path"], table["label"]):
        out = dst / label / (Path(path).stem + ".bmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(out)
    return dst


def replicate(src: Path, times: int, limit: int, dst: Path) -> Path:
    """``times`` symlinked copies of the first ``limit`` images (distinct names)."""
    table = _images(src, limit)
    for k in range(times):
        for path, label in zip(table["path"], table["label"]):
            out = dst / label / f"r{k}_{Path(path).name}"
            out.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, out)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "pbc-subset"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet", help="imagenet | none (random, speed only)")
    ap.add_argument("--limit", type=int, default=640, help="images per variant (0: all)")
    ap.add_argument("--variants", default="naive,model,decode,leukbench")
    ap.add_argument("--bmp", action="store_true", help="convert the images to BMP first")
    ap.add_argument("--rss-scaling", action="store_true", help="leukbench at 1x, 2x, 4x the images")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.variant = args.child
        return _child_main(args)

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="leukbench-bench-"))
    try:
        data = Path(args.data)
        if args.bmp:
            data = to_bmp(data, args.limit, tmp / "bmp")
        results = {}
        for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
            results[v] = run_variant(v, data, args.backbone, args.weights, args.limit)
        scaling = []
        if args.rss_scaling:
            base = args.limit or 200
            for times in (1, 2, 4):
                d = replicate(data, times, base, tmp / f"x{times}")
                r = run_variant("leukbench", d, args.backbone, args.weights, 0)
                scaling.append({"images": r["images"], "rss_mb": r["rss_mb"],
                                "workers_rss_mb": r["children_rss_mb"],
                                "images_per_second": r["images_per_second"],
                                "cache_bytes": r["cache_bytes"]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"{torch.get_num_threads()} intra-op threads, CPU")
    cmd = "python benchmarks/bench_extraction.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# Extraction throughput — {args.backbone} (weights {args.weights}) on {args.data}"
          f"{' as BMP' if args.bmp else ''}, {machine}\n\n`{cmd}`\n")
    print("| variant | images | seconds | images/s | peak RSS main (MB) | peak RSS workers (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for v, r in results.items():
        print(f"| {v} | {r['images']} | {r['seconds']:.1f} | {r['images_per_second']:.1f} | "
              f"{r['rss_mb']:.0f} | {r['children_rss_mb']:.0f} |")
    ratios = {}
    if "leukbench" in results and "naive" in results:
        ratios["leukbench / naive"] = results["leukbench"]["images_per_second"] / results["naive"]["images_per_second"]
    if "leukbench" in results and "model" in results:
        ratios["leukbench / model ceiling"] = (results["leukbench"]["images_per_second"]
                                              / results["model"]["images_per_second"])
    for k, v in ratios.items():
        print(f"\n{k}: **{v:.2f}**", end="")
    print()
    if scaling:
        print("\n| images | peak RSS main (MB) | peak RSS workers (MB) | images/s | cache bytes/image |")
        print("|---:|---:|---:|---:|---:|")
        for s in scaling:
            print(f"| {s['images']} | {s['rss_mb']:.0f} | {s['workers_rss_mb']:.0f} | "
                  f"{s['images_per_second']:.1f} | {s['cache_bytes'] / max(1, s['images']):.0f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": cmd, "machine": machine, "results": results,
                                              "ratios": ratios, "rss_scaling": scaling}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
