"""GPU extraction throughput: leukbench end to end (``--decode gpu`` and ``cpu``) against the model alone.

Usage, on a machine with a CUDA GPU (the runbook is in benchmarks/README.md, "GPU")::

    python benchmarks/bench_gpu.py --out gpu.json

Variants, each repeated (the image list symlinked again under new names) until one run lasts
``--min-seconds`` (30 by default), for each backbone of the plan (ResNet-50 and
EfficientNet-Lite0, random weights: speed only, nothing to download):

``model``
    the network alone on a batch already on the device, in leukbench's own forward
    (channels-last, the precision ``auto`` gives: float16 autocast on CUDA): the ceiling;
``leukbench-gpu``
    ``leukbench.extract(..., decode="gpu")`` end to end on JPEG files: bytes read by
    worker processes (which also decode with PIL for the audit's fingerprints), batches
    decoded by nvJPEG, resized, cropped and normalised on the GPU, cache writes included;
``leukbench-cpu``
    the same with ``decode="cpu"`` (PIL decodes and resizes in the workers);
``leukbench-gpu-bmp``
    ``decode="gpu"`` on BMP files (``--bmp-data``, converted to BMP first): PIL decodes them
    in the workers, the GPU resizes;
``imagefolder``
    the plain loop a user writes: ``torchvision.datasets.ImageFolder`` + ``Resize`` +
    ``CenterCrop`` + ``ToTensor`` + ``Normalize`` in a ``DataLoader(num_workers=N)``;
``gpu-loop``
    a minimal hand-written nvJPEG loop (bytes -> ``decode_jpeg(device=...)`` -> resize ->
    network), not leukbench (opt-in);
``finetune``
    leukbench's fine-tuning step (``leukbench.finetune._loop.train``, images decoded once to
    memory) for one epoch on the device (opt-in where that module is missing).

It prints the device, driver, torch/torchvision versions, the exact command, one JSON of the
figures (also written to ``--out`` after every variant, so a run cut short keeps what it
measured) and a verdict line: ResNet-50 ``leukbench-gpu`` at >= 5,000 images/s and >= 0.8 of
the model-alone ceiling. Without CUDA (or with ``--smoke``) it says so and runs a tiny CPU
smoke run of the same code paths (``decode="gpu"`` runs with torchvision's CPU decoder): no
GPU figure, no verdict. That smoke run is what the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
PACK = ROOT / ".benchdata"  # what --pack writes: the data that travels to a lent device

#: Backbone -> variants of the default plan (9 variants of >= 30 s on a GPU, ~7 minutes in all).
DEFAULT_PLAN = ("resnet50:model,leukbench-gpu,leukbench-cpu,leukbench-gpu-bmp,imagefolder,finetune;"
                "efficientnet_lite0:model,leukbench-gpu,leukbench-cpu")
VARIANTS = ("model", "leukbench-gpu", "leukbench-cpu", "leukbench-gpu-bmp", "imagefolder", "gpu-loop", "finetune")
TARGET_IMAGES_PER_SECOND, TARGET_RATIO = 5000.0, 0.8


def _default_data(name: str) -> str:
    packed = PACK / name
    return str(packed if packed.is_dir() else SHARED / name)


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=_default_data("pbc-subset"), help="class folders of JPEG files")
    ap.add_argument("--bmp-data", default=_default_data("cnmc-subset"),
                    help="class folders of images converted to BMP for leukbench-gpu-bmp (cnmc-subset's PNGs)")
    ap.add_argument("--plan", default=DEFAULT_PLAN, help="backbone:variant,...;backbone:variant,... (%(default)s)")
    ap.add_argument("--min-seconds", type=float, default=30.0, help="each variant runs at least this long")
    ap.add_argument("--batch-size", type=int, default=None, help="default: leukbench's for the device")
    ap.add_argument("--workers", type=int, default=None, help="decoding workers (default: leukbench's)")
    ap.add_argument("--limit", type=int, default=0, help="images of --data to use (0: all)")
    ap.add_argument("--smoke", action="store_true", help="the CPU smoke run, even where CUDA is present")
    ap.add_argument("--pack", default=None, metavar="DIR",
                    help="only copy a subset of ../shared/data to DIR (pbc-subset: every other JPEG; cnmc-subset: "
                         "240 PNGs) so that it can travel to a device, then exit")
    ap.add_argument("--compare-decoders", type=int, default=0, metavar="N",
                    help="only measure, on the CPU, how decode='gpu' (torchvision) differs from PIL on N images of "
                         "--data: decoded pixels, resized pixels, EfficientNet-Lite0 (ImageNet) features; then exit")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


# -- environment --------------------------------------------------------------

def _environment(device: str) -> dict:
    import torch
    import torchvision

    env = {"device": device, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "cpu_cores": os.cpu_count(), "machine": f"{platform.machine()}, {platform.processor() or '?'}",
           "load_average_at_start": os.getloadavg()[0]}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), driver=_driver())
    else:
        env["gpu"] = "none: CPU smoke run, not a benchmark"
    return env


def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- data ---------------------------------------------------------------------

def pack(target: Path) -> None:
    """Copy what the device run reads into ``target`` (every other pbc JPEG, 240 cnmc PNGs: ~35 MB)."""
    from PIL import Image  # noqa: F401 - fail here, not on the device, when PIL is missing

    for name, step, cap in (("pbc-subset", 2, None), ("cnmc-subset", 8, 240)):
        files = sorted(p for p in (SHARED / name).rglob("*") if p.suffix.lower() in (".jpg", ".png", ".bmp"))
        for p in files[::step][:cap]:
            dst = target / name / p.relative_to(SHARED / name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dst)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"packed {target}: {sum(1 for p in target.rglob('*') if p.is_file())} files, {size / 1e6:.1f} MB")


def _table(folder, suffixes, limit):
    from leukbench.datasets import discover

    table = discover(str(folder))
    table = table[table["path"].str.lower().str.endswith(suffixes)]
    return table.iloc[:limit] if limit else table


def _as_bmp(table, where: Path):
    """The images of ``table`` saved as BMP under ``where`` (the real C-NMC files are BMP)."""
    from PIL import Image

    from leukbench.datasets import discover

    for path, label in zip(table["path"], table["label"]):
        dst = where / str(label) / (Path(path).stem + ".bmp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(dst)
    return discover(str(where))


def _replicated(table, repeat: int, where: Path):
    """``repeat`` symlinked copies of every image, under new names (so that none is cached)."""
    from leukbench.datasets import discover

    for k in range(repeat):
        for path, label in zip(table["path"], table["label"]):
            link = where / str(label) / f"r{k}_{Path(path).name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(path), link)
    return discover(str(where))


# -- variants: each returns (images, seconds) for ``repeat`` passes over the table ----------

def run_model(backbone, table, repeat, ctx):
    import torch

    from leukbench.features.base import create_extractor

    ex = create_extractor(backbone, weights="none", device=ctx["device"], batch_size=ctx["batch_size"])
    model, bs = ex.load_model(), ex.batch_size
    autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(ex.precision)
    n_batches = max(2, math.ceil(len(table) * repeat / bs))
    x = torch.randint(0, 256, (bs, 3, *ex.preprocessing.crop), dtype=torch.uint8, device=ex.device)
    with torch.inference_mode(), ex._ieee_float32():
        ex._forward(model, ex.preprocessing.normalize(x, ex._norm), autocast)  # warm-up (cuDNN plans)
        _sync(ex.device)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            ex._forward(model, ex.preprocessing.normalize(x, ex._norm), autocast).cpu()
        _sync(ex.device)
    return n_batches * bs, time.perf_counter() - t0


def _run_leukbench(backbone, table, repeat, ctx, decode):
    import leukbench

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as copies:
        repeated = _replicated(table, repeat, Path(copies))
        t0 = time.perf_counter()
        fs = leukbench.extract(repeated, backbone, weights="none", device=ctx["device"], decode=decode,
                               batch_size=ctx["batch_size"], num_workers=ctx["workers"], cache_dir=cache,
                               progress=False)
        seconds = time.perf_counter() - t0
        ctx.setdefault("descriptions", {})[f"{backbone}/{decode}"] = fs.provenance["description"]
    return len(fs), seconds


def run_leukbench_gpu(backbone, table, repeat, ctx):
    return _run_leukbench(backbone, table, repeat, ctx, "gpu")


def run_leukbench_cpu(backbone, table, repeat, ctx):
    return _run_leukbench(backbone, table, repeat, ctx, "cpu")


def run_leukbench_gpu_bmp(backbone, table, repeat, ctx):
    return _run_leukbench(backbone, ctx["bmp_table"], repeat, ctx, "gpu")


def run_imagefolder(backbone, table, repeat, ctx):
    """The plain loop: ImageFolder + torchvision transforms in DataLoader workers, then the network."""
    import torch
    from torch.utils.data import ConcatDataset, DataLoader, Subset
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    from leukbench.features.base import create_extractor

    ex = create_extractor(backbone, weights="none", device=ctx["device"], batch_size=ctx["batch_size"])
    pre, model = ex.preprocessing, ex.load_model()
    autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(ex.precision)
    tf = T.Compose([T.Resize(pre.resize, interpolation=T.InterpolationMode(pre.interpolation)),
                    T.CenterCrop(pre.crop), T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    folder = ImageFolder(ctx["data_root"], transform=tf)
    keep = set(map(os.path.abspath, table["path"]))
    sub = Subset(folder, [i for i, (p, _) in enumerate(folder.samples) if os.path.abspath(p) in keep])
    workers = ctx["workers"] if ctx["workers"] is not None else min(8, max(1, (os.cpu_count() or 2) - 1))
    loader = DataLoader(ConcatDataset([sub] * repeat), batch_size=ex.batch_size, num_workers=workers,
                        pin_memory=ex.device.startswith("cuda"), shuffle=False)
    where = ex.device.split(":")[0]
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            x = x.to(ex.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(where, dtype=autocast, enabled=autocast is not None):
                model(x).float().cpu()
            n += len(x)
    return n, time.perf_counter() - t0


def run_gpu_loop(backbone, table, repeat, ctx):
    """A minimal nvJPEG loop: bytes in workers, decode + resize + network on the device."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision.io import ImageReadMode, decode_jpeg

    from leukbench.features.base import create_extractor
    from leukbench.features.deep._decode import resize_crop_batch

    ex = create_extractor(backbone, weights="none", device=ctx["device"], batch_size=ctx["batch_size"])
    model, pre = ex.load_model(), ex.preprocessing
    autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(ex.precision)
    loader = DataLoader(_Bytes(table["path"].tolist() * repeat), batch_size=ex.batch_size,
                        num_workers=ctx["workers"] or 0, collate_fn=_as_list)
    target = ex.device if ex.device.startswith("cuda") else "cpu"
    warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for raw in loader:
            imgs = decode_jpeg(raw, mode=ImageReadMode.RGB, device=target)
            x = torch.cat([resize_crop_batch([im], pre, *im.shape[-2:]) for im in imgs])
            ex._forward(model, pre.normalize(x, ex._norm), autocast).cpu()
            n += len(raw)
    _sync(ex.device)
    return n, time.perf_counter() - t0


def _as_list(batch):
    return batch


class _Bytes:
    def __init__(self, paths):
        self.paths = list(paths)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import torch

        with open(self.paths[i], "rb") as fh:
            return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)


def run_finetune(backbone, table, repeat, ctx):
    """``repeat`` epochs of leukbench's fine-tuning loop on the device over the table's images, decoded
    once to memory first (that decoding is timed apart, in ``ctx["finetune_decode_seconds"]``)."""
    import numpy as np

    from leukbench.finetune import FineTuneConfig
    from leukbench.finetune._data import decode_images
    from leukbench.finetune._loop import TrainData, train
    from leukbench.finetune._network import build_network, input_preprocessing

    device = ctx["device"]
    size = 224 if device.startswith("cuda") else 64
    paths = table["path"].tolist()
    y = (np.arange(len(paths)) % 2).astype(np.int64)
    val = np.arange(min(len(paths), 2))
    cfg = FineTuneConfig(epochs=repeat, patience=repeat, size=size, batch_size=ctx["batch_size"] or 128,
                         augment=False, dropout=0.0, device=device,
                         precision="auto" if device.startswith("cuda") else "float32")
    pre = input_preprocessing(backbone, size)
    model, _ = build_network(backbone, "none", 2, dropout=0.0, freeze=0, seed=0)
    t0 = time.perf_counter()
    images = decode_images(paths, pre, num_workers=cfg.num_workers)
    ctx["finetune_decode_seconds"] = time.perf_counter() - t0
    train_idx = np.setdiff1d(np.arange(len(paths)), val)
    precision = "float16" if device.startswith("cuda") else "float32"
    t0 = time.perf_counter()
    train(model.to(device), TrainData(images, y, train_idx, val, 2), cfg, pre, device, precision)
    _sync(device)
    return len(train_idx) * repeat, time.perf_counter() - t0


def compare_decoders(folder, n: int) -> dict:
    """Pixels and features of ``decode="gpu"`` (torchvision's decoder on the CPU) against PIL's path."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    import leukbench
    from leukbench.features.base import create_extractor
    from leukbench.features.deep._decode import resize_crop_batch
    from leukbench.images import load_image

    table = _table(folder, (".jpg", ".jpeg"), 0)
    table = table.iloc[np.linspace(0, len(table) - 1, min(n, len(table))).astype(int)]
    pre = create_extractor("efficientnet_lite0", device="cpu").preprocessing
    decoded, resized, changed = 0, 0, []
    warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
    for path in table["path"]:
        pil = load_image(path)
        with open(path, "rb") as fh:
            raw = torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)
        tv = decode_jpeg(raw, mode=ImageReadMode.RGB)
        decoded = max(decoded, int(np.abs(tv.permute(1, 2, 0).numpy().astype(int) - pil.astype(int)).max()))
        ours = resize_crop_batch([tv], pre, *tv.shape[-2:])[0].permute(1, 2, 0).numpy().astype(int)
        d = np.abs(ours - pre.resize_crop(pil).astype(int))
        resized, changed = max(resized, int(d.max())), changed + [float((d > 0).mean())]
    with tempfile.TemporaryDirectory() as cache:
        a = leukbench.extract(table, "efficientnet_lite0", device="cpu", decode="cpu", cache_dir=cache, progress=False)
        b = leukbench.extract(table, "efficientnet_lite0", device="cpu", decode="gpu", cache_dir=cache, progress=False)
    cos = (a.X * b.X).sum(1) / np.linalg.norm(a.X, axis=1) / np.linalg.norm(b.X, axis=1)
    diff = np.abs(a.X - b.X)
    return {"images": len(table), "data": str(folder),
            "decoded_max_abs_grey_levels": decoded, "resized_max_abs_grey_levels": resized,
            "resized_fraction_of_pixels_changed_median": float(np.median(changed)),
            "resized_fraction_of_pixels_changed_max": float(np.max(changed)),
            "features": "efficientnet_lite0, ImageNet weights, float32",
            "feature_cosine_min": float(cos.min()), "feature_cosine_median": float(np.median(cos)),
            "feature_max_abs_difference": float(diff.max()),
            "feature_max_abs_difference_relative_to_largest_feature": float(diff.max() / np.abs(a.X).max()),
            "feature_mean_abs_difference": float(diff.mean()), "feature_mean_abs_value": float(np.abs(a.X).mean()),
            "fingerprints_identical": bool((a.pixel_hashes == b.pixel_hashes).all()
                                           and (a.dhashes == b.dhashes).all())}


RUNNERS = {"model": run_model, "leukbench-gpu": run_leukbench_gpu, "leukbench-cpu": run_leukbench_cpu,
           "leukbench-gpu-bmp": run_leukbench_gpu_bmp, "imagefolder": run_imagefolder, "gpu-loop": run_gpu_loop,
           "finetune": run_finetune}


def timed(runner, backbone, table, ctx, min_seconds: float) -> dict:
    """Runs of 1, then more passes over the images, until one lasts ``min_seconds``.

    The start-up (model build, workers) is paid by every run, so the number of passes of the
    next run comes from the per-pass time between the last two runs. The figures are those of
    the last run, end to end; ``marginal_images_per_second`` is between the last two (start-up
    excluded).
    """
    runs = []
    repeat = 1
    while True:
        n, s = runner(backbone, table, repeat, ctx)
        runs.append({"repeat": repeat, "images": n, "seconds": s})
        if s >= min_seconds or len(runs) == 4:
            break
        if len(runs) == 1:
            repeat = 4 if s > 0.5 * min_seconds / 4 else max(4, math.ceil(min_seconds / max(s, 1e-3) * 1.1))
            continue
        (r0, s0), (r1, s1) = [(r["repeat"], r["seconds"]) for r in runs[-2:]]
        per_pass = max((s1 - s0) / max(r1 - r0, 1), 1e-3)
        repeat = max(repeat + 1, math.ceil(r1 + (1.1 * min_seconds - s1) / per_pass))
    out = {"images": n, "seconds": s, "images_per_second": n / s, "runs": runs}
    if len(runs) > 1 and runs[-1]["seconds"] > runs[-2]["seconds"]:
        a, b = runs[-2], runs[-1]
        out["marginal_images_per_second"] = (b["images"] - a["images"]) / (b["seconds"] - a["seconds"])
    return out


def parse_plan(plan: str):
    """``"a:x,y;b:z"`` -> ``[("a", "x"), ("a", "y"), ("b", "z")]`` (unknown variants refused)."""
    out = []
    for part in filter(None, (p.strip() for p in plan.split(";"))):
        backbone, _, variants = part.partition(":")
        for v in filter(None, (v.strip() for v in variants.split(","))):
            if v not in RUNNERS:
                raise SystemExit(f"--plan: unknown variant {v!r}; use {', '.join(VARIANTS)}")
            out.append((backbone.strip(), v))
    return out


def verdict(results: dict, cuda: bool) -> str:
    """The line that says whether issue 15's target is met (ResNet-50, leukbench-gpu)."""
    if not cuda:
        return "VERDICT: none — CPU smoke run, no GPU figure measured"
    r = results.get("resnet50", {})
    if "images_per_second" not in r.get("leukbench-gpu", {}) or "images_per_second" not in r.get("model", {}):
        return "VERDICT: none — the ResNet-50 model and leukbench-gpu variants did not both run"
    ips, ceiling = r["leukbench-gpu"]["images_per_second"], r["model"]["images_per_second"]
    ok = ips >= TARGET_IMAGES_PER_SECOND and ips >= TARGET_RATIO * ceiling
    return (f"VERDICT: {'MET' if ok else 'NOT MET'} — ResNet-50 leukbench --decode gpu {ips:,.0f} images/s "
            f"(target >= {TARGET_IMAGES_PER_SECOND:,.0f}), {ips / ceiling:.2f} of the model alone "
            f"{ceiling:,.0f} images/s (target >= {TARGET_RATIO})")


def _write(out, report) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")


def main(argv=None) -> int:
    args = _parse(argv)
    if args.pack:
        pack(Path(args.pack))
        return 0
    if args.compare_decoders:
        res = compare_decoders(args.data, args.compare_decoders)
        res["command"] = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        res["load_average"] = os.getloadavg()[0]
        print(json.dumps(res, indent=2))
        _write(args.out, res)
        return 0
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    device = "cuda" if cuda else "cpu"
    command = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = _table(args.data, (".jpg", ".jpeg"), args.limit)
    if table.empty:
        print(f"{args.data}: no JPEG image found; this benchmark measures JPEG files to features")
        return 2
    plan = parse_plan(args.plan)
    ctx = {"device": device, "batch_size": args.batch_size, "workers": args.workers,
           "data_root": str(Path(args.data).resolve())}
    if not cuda:
        print("No CUDA device here (or --smoke): no GPU figure. A tiny CPU smoke run of the same code paths.")
        table = table.groupby("label").head(2).iloc[:4]
        ctx.update(batch_size=2, workers=0)
        args.min_seconds = 0.0
        if args.plan == DEFAULT_PLAN:  # the smoke run of the test suite: the ceiling and the new decode path
            plan = [("efficientnet_lite0", "model"), ("efficientnet_lite0", "leukbench-gpu")]
    env = _environment(device)
    print(f"device: {env.get('gpu')}, driver {env.get('driver', '-')}, torch {env['torch']}, "
          f"torchvision {env['torchvision']}, {env['cpu_cores']} CPU cores\ncommand: {command}")
    report = {"environment": env, "command": command, "data": args.data, "images_per_pass": len(table),
              "min_seconds": args.min_seconds, "batch_size": args.batch_size or "leukbench default",
              "results": {}}
    with tempfile.TemporaryDirectory() as bmp:
        if any(v == "leukbench-gpu-bmp" for _, v in plan):
            src = _table(args.bmp_data, (".png", ".bmp", ".jpg", ".jpeg"), args.limit)
            ctx["bmp_table"] = _as_bmp(src if cuda else src.groupby("label").head(2), Path(bmp))
        for backbone, variant in plan:
            t0 = time.perf_counter()
            try:
                res = timed(RUNNERS[variant], backbone, table, ctx, args.min_seconds)
            except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others' figures
                res = {"error": f"{exc.__class__.__name__}: {exc}"}
            res["wall_seconds_with_calibration"] = time.perf_counter() - t0
            report["results"].setdefault(backbone, {})[variant] = res
            shown = f"{res['images_per_second']:,.1f} images/s" if "images_per_second" in res else res["error"]
            print(f"{backbone} {variant}: {shown}", flush=True)
            _write(args.out, report)
    for rows in report["results"].values():
        ceiling = rows.get("model", {}).get("images_per_second")
        for variant, res in rows.items():
            if ceiling and "images_per_second" in res and variant != "model":
                res["vs_model"] = res["images_per_second"] / ceiling
    report["descriptions"] = ctx.get("descriptions", {})
    report["finetune_decode_seconds"] = ctx.get("finetune_decode_seconds")
    report["verdict"] = verdict(report["results"], cuda)
    _write(args.out, report)
    print(json.dumps(report, indent=2, default=str))
    print(report["verdict"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
