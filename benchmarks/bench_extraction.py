"""Extraction throughput: leukbench against the loop a user would write.

Usage::

    python benchmarks/bench_extraction.py [--data ../shared/data/pbc-subset]
        [--backbone efficientnet_lite0] [--weights imagenet] [--limit 640]
        [--repeat 2] [--bmp] [--rss-scaling] [--out benchmarks/out/extraction.json]

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
``model-folded``
    the same with the batch norms folded into the convolutions, as
    leukbench runs the network on the CPU (``fold_batchnorm``).
``model-nchw``
    the same in the default (contiguous NCHW) memory format, for reference.
``model-bf16``
    ``model-folded`` under ``torch.autocast("cpu", bfloat16)``: the ceiling
    of ``leukbench-bf16`` (fast only on CPUs with native bfloat16).
``decode``
    decoding + resizing alone (PIL, one process): the cost to hide.
``stages``
    what leukbench does to each image before the network, timed stage by
    stage in one thread: decode, the two audit fingerprints, resize + crop.
``leukbench``
    ``leukbench.extract`` end to end into a fresh cache (decoding in worker
    processes, fingerprints, cache writes, building the model).
``leukbench-bf16``
    ``leukbench.extract(..., precision="bfloat16")`` end to end (features
    differ from float32 ones by bfloat16 rounding and have their own cache).
``handcrafted``
    ``leukbench.extract(..., "handcrafted")`` end to end into a fresh cache.

``--repeat N`` runs the whole list of variants N times, interleaved
(``naive, model, ..., naive, model, ...``), so that a load that comes and
goes on the machine hits every variant alike; the table gives the best run
of each variant (and the median). Every run also records the CPU time it
used (process and workers) per image, the 1-minute load average when it
started and the CPU pressure (``/proc/pressure/cpu``, share of time some
task waited for a CPU over the last 10 s) when it ended: figures taken on a
busy machine say so.

``--bmp`` first converts the images to uncompressed BMP in a temporary folder
(cnmc-subset's original 450x450 BMP format, where decoding costs more).
``--rss-scaling`` runs the leukbench variant on 1x, 2x and 4x the images
(``--scaling-times``; symlinked copies under new names) to show that peak
memory does not grow with the number of images, with the cache's size and
file count (chunks are merged every 64). ``--out`` writes JSON, or CSV (one row per run)
when the name ends in ``.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SHARED = HERE.parents[1].parent / "shared" / "data"

#: Batch of the model-alone variants (set by ``--model-batch``): leukbench's
#: own CPU default, so that the ceiling is the network as leukbench runs it.
MODEL_BATCH = [16]

#: Targets of issue #4 on a 2-core machine.
TARGET_VS_NAIVE = 2.0
TARGET_VS_MODEL = 0.85


# ---------------------------------------------------------------------------
# measurement helpers
# ---------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_pressure() -> float:
    """``some avg10`` of ``/proc/pressure/cpu`` (percent), NaN where absent."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(dict(kv.split("=") for kv in first.split()[1:])["avg10"])
    except (OSError, KeyError, ValueError, IndexError):
        return float("nan")


class Timer:
    """Wall and CPU seconds of a ``with`` block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu
        return False

    def result(self, images: int, **extra) -> dict:
        return {"images": images, "seconds": self.wall, "cpu_seconds": self.cpu, **extra}


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
    n = 0
    with Timer() as t:  # like leukbench's figure, this includes building the model
        model = _build(backbone, weights).eval()
        with torch.no_grad():
            for x, _ in DataLoader(ds, batch_size=32):
                model(x)
                n += len(x)
    return t.result(n)


def _model_alone(root: Path, backbone: str, weights: str, limit: int, channels_last: bool,
                 folded: bool = False, bfloat16: bool = False) -> dict:
    import contextlib

    import numpy as np
    import torch

    from leukbench.features.deep import preprocess_for
    from leukbench.images import load_image

    pre = preprocess_for(backbone)
    bs = MODEL_BATCH[0]
    table = _images(root, min(limit or bs, bs))
    arrays = [pre.resize_crop(load_image(p)) for p in table["path"]]
    arrays = (arrays * bs)[:bs]
    n_target = limit or len(_images(root, 0))
    model = _build(backbone, weights)
    if folded:
        from leukbench.features.deep import fold_batchnorm

        fold_batchnorm(model)
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    norm = pre.scale_shift("cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        prep = lambda b: pre.normalize(b, norm)  # noqa: E731 - channels-last float
    else:
        prep = lambda b: pre.normalize(b, norm).contiguous()  # noqa: E731
    n = 0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        model(prep(batch))  # warm-up
        with Timer() as t:
            while n < n_target:
                model(prep(batch))
                n += len(batch)
    return t.result(n)


def variant_model(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _model_alone(root, backbone, weights, limit, channels_last=True)


def variant_model_folded(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _model_alone(root, backbone, weights, limit, channels_last=True, folded=True)


def variant_model_bf16(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _model_alone(root, backbone, weights, limit, channels_last=True, folded=True, bfloat16=True)


def variant_model_nchw(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _model_alone(root, backbone, weights, limit, channels_last=False)


def variant_decode(root: Path, backbone: str, weights: str, limit: int) -> dict:
    from leukbench.features.deep import preprocess_for
    from leukbench.images import load_image

    pre = preprocess_for(backbone)
    paths = _images(root, limit)["path"].tolist()
    with Timer() as t:
        for p in paths:
            pre.resize_crop(load_image(p))
    return t.result(len(paths))


def variant_stages(root: Path, backbone: str, weights: str, limit: int) -> dict:
    """Everything leukbench does to an image before the network, stage by stage, one thread."""
    from leukbench.audit import difference_hash, pixel_hash
    from leukbench.features.deep import preprocess_for
    from leukbench.images import load_image

    pre = preprocess_for(backbone)
    paths = _images(root, limit)["path"].tolist()
    spent = dict.fromkeys(("decode", "pixel hash", "difference hash", "resize + crop"), 0.0)
    clock = time.perf_counter
    with Timer() as t:
        for p in paths:
            t0 = clock()
            image = load_image(p)
            t1 = clock()
            pixel_hash(image)
            t2 = clock()
            difference_hash(image)
            t3 = clock()
            pre.resize_crop(image)
            t4 = clock()
            for k, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                spent[k] += dt
    return t.result(len(paths), stages_ms={k: 1000 * v / max(1, len(paths)) for k, v in spent.items()})


def _extract(root: Path, features: str, weights: str, limit: int, precision: str = "auto") -> dict:
    import timm  # noqa: F401 - torch, torchvision and timm are imported before timing,
    import torchvision  # noqa: F401 - as in the other variants (naive imports them first too)

    import leukbench
    import leukbench.features.deep  # noqa: F401

    table = _images(root, limit)
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as t:
            fs, summaries = leukbench.extract(table, features, weights=weights, cache_dir=cache,
                                              precision=precision, progress=False, return_summaries=True)
        cache_bytes = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
        cache_files = sum(1 for _ in Path(cache).rglob("*.parquet"))
    return t.result(len(fs), cache_bytes=cache_bytes, cache_files=cache_files, extract_seconds=summaries[0].seconds,
                    skipped=int(sum(len(s.skipped) for s in summaries)))


def variant_leukbench(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _extract(root, backbone, weights, limit)


def variant_leukbench_bf16(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _extract(root, backbone, weights, limit, precision="bfloat16")


def variant_handcrafted(root: Path, backbone: str, weights: str, limit: int) -> dict:
    return _extract(root, "handcrafted", weights, limit)


VARIANTS = {"naive": variant_naive, "model": variant_model, "model-folded": variant_model_folded,
            "model-nchw": variant_model_nchw, "model-bf16": variant_model_bf16,
            "decode": variant_decode, "stages": variant_stages, "leukbench": variant_leukbench,
            "leukbench-bf16": variant_leukbench_bf16,
            "handcrafted": variant_handcrafted}


def _child_main(args) -> int:
    load1 = os.getloadavg()[0]
    out = VARIANTS[args.variant](Path(args.data), args.backbone, args.weights, args.limit)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["load1"] = load1
    out["cpu_pressure_avg10"] = cpu_pressure()
    print("RESULT " + json.dumps(out))
    return 0


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------


def run_variant(variant: str, data: Path, backbone: str, weights: str, limit: int) -> dict:
    cmd = [sys.executable, str(HERE), "--child", variant, "--data", str(data), "--backbone", backbone,
           "--weights", weights, "--limit", str(limit), "--model-batch", str(MODEL_BATCH[0])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-2000:]}")
    res = json.loads(line[-1][7:])
    res["images_per_second"] = res["images"] / res["seconds"]
    res["cpu_ms_per_image"] = 1000 * res["cpu_seconds"] / max(1, res["images"])
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


def summarise(runs: list) -> dict:
    """Best run (highest images/s) of a variant, with the median and all runs."""
    best = dict(max(runs, key=lambda r: r["images_per_second"]))
    best["median_images_per_second"] = statistics.median(r["images_per_second"] for r in runs)
    best["runs"] = runs
    return best


def ratios_of(results: dict) -> dict:
    out = {}
    lb = results.get("leukbench")
    if lb and "naive" in results:
        out["leukbench / naive"] = {"value": lb["images_per_second"] / results["naive"]["images_per_second"],
                                    "target": TARGET_VS_NAIVE}
    if lb and "model" in results:
        out["leukbench / model ceiling"] = {"value": lb["images_per_second"] / results["model"]["images_per_second"],
                                           "target": TARGET_VS_MODEL}
    if lb and "model-folded" in results:
        out["leukbench / model ceiling with folded batch norms"] = {
            "value": lb["images_per_second"] / results["model-folded"]["images_per_second"], "target": TARGET_VS_MODEL}
    lb16 = results.get("leukbench-bf16")
    if lb16 and "naive" in results:
        out["leukbench --precision bfloat16 / naive"] = {
            "value": lb16["images_per_second"] / results["naive"]["images_per_second"], "target": TARGET_VS_NAIVE}
    if lb16 and "model-bf16" in results:
        out["leukbench --precision bfloat16 / bfloat16 model ceiling"] = {
            "value": lb16["images_per_second"] / results["model-bf16"]["images_per_second"], "target": TARGET_VS_MODEL}
    if "model" in results and "model-nchw" in results:
        out["channels-last / NCHW (model alone)"] = {
            "value": results["model"]["images_per_second"] / results["model-nchw"]["images_per_second"],
            "target": None}
    return out


def write_out(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".csv":
        path.write_text(json.dumps(doc, indent=2))
        return
    cols = ["kind", "variant", "run", "images", "seconds", "images_per_second", "cpu_ms_per_image", "cache_files",
            "rss_mb", "children_rss_mb", "cache_bytes", "load1", "cpu_pressure_avg10"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for v, r in doc["results"].items():
            for i, run in enumerate(r["runs"]):
                w.writerow({"kind": "variant", "variant": v, "run": i, **run})
        for i, s in enumerate(doc["rss_scaling"]):
            w.writerow({"kind": "rss-scaling", "variant": "leukbench", "run": i, **s})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "pbc-subset"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet", help="imagenet | none (random, speed only)")
    ap.add_argument("--limit", type=int, default=640, help="images per variant (0: all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each variant, interleaved (best is reported)")
    ap.add_argument("--variants", default="naive,model,model-folded,model-nchw,decode,leukbench,handcrafted")
    ap.add_argument("--model-batch", type=int, default=None,
                    help="batch of the model-alone variants (default: leukbench's CPU batch, "
                         "leukbench.features.deep.default_batch_size('cpu'); the naive loop keeps 32)")
    ap.add_argument("--bmp", action="store_true", help="convert the images to BMP first")
    ap.add_argument("--rss-scaling", action="store_true", help="leukbench at 1x, 2x, 4x the images")
    ap.add_argument("--scaling-times", default="1,2,4", metavar="LIST",
                    help="multiples of --limit images for --rss-scaling (default: 1,2,4)")
    ap.add_argument("--out", default=None, help="JSON file for the results (CSV when it ends in .csv)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.model_batch is None:
        from leukbench.features.deep import default_batch_size

        args.model_batch = default_batch_size("cpu")
    MODEL_BATCH[0] = max(1, args.model_batch)
    if args.child:
        args.variant = args.child
        return _child_main(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="leukbench-bench-"))
    try:
        data = Path(args.data)
        if args.bmp:
            data = to_bmp(data, args.limit, tmp / "bmp")
        runs = {v: [] for v in variants}
        for _ in range(max(1, args.repeat)):
            for v in variants:
                runs[v].append(run_variant(v, data, args.backbone, args.weights, args.limit))
        results = {v: summarise(r) for v, r in runs.items()}
        scaling = []
        if args.rss_scaling:
            base = args.limit or 200
            for times in [int(t) for t in args.scaling_times.split(",") if t.strip()]:
                d = replicate(data, times, base, tmp / f"x{times}")
                r = run_variant("leukbench", d, args.backbone, args.weights, 0)
                scaling.append({"times": times, "images": r["images"], "rss_mb": r["rss_mb"],
                                "children_rss_mb": r["children_rss_mb"],
                                "images_per_second": r["images_per_second"],
                                "cpu_ms_per_image": r["cpu_ms_per_image"], "cache_bytes": r["cache_bytes"],
                                "cache_files": r.get("cache_files"), "seconds": r["seconds"],
                                "load1": r["load1"], "cpu_pressure_avg10": r["cpu_pressure_avg10"]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"{torch.get_num_threads()} intra-op threads, CPU")
    cmd = "python benchmarks/bench_extraction.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# Extraction throughput — {args.backbone} (weights {args.weights}) on {args.data}"
          f"{' as BMP' if args.bmp else ''}, {machine}\n\n`{cmd}`\n")
    rep = max(1, args.repeat)
    print(f"Best of {rep} interleaved run(s) per variant (median in brackets); model-alone variants "
          f"at batch {MODEL_BATCH[0]}, naive at 32.\n")
    print("| variant | images | seconds | images/s | CPU ms/image | peak RSS main (MB) | peak RSS workers (MB) "
          "| load avg at start | CPU pressure at end (%) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, r in results.items():
        med = f" ({r['median_images_per_second']:.1f})" if rep > 1 else ""
        print(f"| {v} | {r['images']} | {r['seconds']:.1f} | {r['images_per_second']:.1f}{med} | "
              f"{r['cpu_ms_per_image']:.0f} | {r['rss_mb']:.0f} | {r['children_rss_mb']:.0f} | "
              f"{r['load1']:.1f} | {r['cpu_pressure_avg10']:.0f} |")
    if "stages" in results:
        st = results["stages"]["stages_ms"]
        print("\nPer image before the network (`stages`, one thread, ms): "
              + ", ".join(f"{k} {v:.2f}" for k, v in st.items()) + f"; total {sum(st.values()):.2f}")
    ratios = ratios_of(results)
    if ratios:
        print()
    for k, v in ratios.items():
        verdict = "" if v["target"] is None else (
            f" (target ≥ {v['target']:g}: {'met' if v['value'] >= v['target'] else 'MISSED'})")
        print(f"- {k}: **{v['value']:.2f}**{verdict}")
    if scaling:
        print("\n| images | seconds | images/s | peak RSS main (MB) | peak RSS workers (MB) | cache MB "
              "| cache bytes/image | cache Parquet files |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in scaling:
            print(f"| {s['images']} | {s['seconds']:.1f} | {s['images_per_second']:.1f} | {s['rss_mb']:.0f} | "
                  f"{s['children_rss_mb']:.0f} | {s['cache_bytes'] / 1e6:.1f} | "
                  f"{s['cache_bytes'] / max(1, s['images']):.0f} | {s.get('cache_files')} |")
    if args.out:
        write_out(Path(args.out), {"command": cmd, "machine": machine, "data": args.data, "bmp": args.bmp,
                                   "backbone": args.backbone, "weights": args.weights,
                                   "model_batch": MODEL_BATCH[0], "results": results,
                                   "ratios": ratios, "rss_scaling": scaling})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
