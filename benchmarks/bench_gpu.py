"""GPU extraction throughput: ResNet-50, JPEG files to features, with autocast.

Usage (on a machine with a CUDA GPU)::

    python benchmarks/bench_gpu.py --data ../shared/data/pbc-subset --repeat 8 \
        --batch-size 256 --out benchmarks/out/gpu.json

Three figures, same images, same backbone (``resnet50``, random weights —
speed only, no download needed):

``model``
    the network alone on a pre-decoded batch already on the GPU
    (channels-last, float16 autocast): the ceiling;
``gpu-decode``
    JPEG bytes read by DataLoader workers, decoded on the GPU in batches
    (``torchvision.io.decode_jpeg(device="cuda")``), resized on the GPU
    (antialiased bilinear to 232, centre crop 224), normalised, then the
    network — files to features;
``leukbench``
    ``leukbench.extract(..., device="cuda")`` end to end (CPU decoding in
    worker processes, cache writes included).

The image list is repeated ``--repeat`` times so the run lasts long enough
to measure. Without CUDA the script says so and runs a tiny CPU smoke run of
the same code path (used by the test suite), reporting no GPU figure.
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

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class _Bytes:
    """Dataset of raw file bytes (decoding happens on the device)."""

    def __init__(self, paths):
        self.paths = list(paths)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import torch

        with open(self.paths[i], "rb") as fh:
            return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)


def _collate(batch):
    return batch


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(model, device, batch_size, n_batches):
    import torch

    x = torch.randn(batch_size, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.float16,
                                                enabled=device.startswith("cuda")):
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            model(x)
        _sync(device)
    return batch_size * n_batches / (time.perf_counter() - t0)


def bench_gpu_decode(model, paths, device, batch_size, workers):
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision.io import ImageReadMode, decode_jpeg

    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    loader = DataLoader(_Bytes(paths), batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        pin_memory=False, prefetch_factor=4 if workers else None, persistent_workers=False)
    n = 0
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.float16,
                                                enabled=device.startswith("cuda")):
        for raw in loader:
            imgs = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
            resized = []
            for im in imgs:  # resize shorter side to 232 (antialiased), centre crop 224
                h, w = im.shape[-2:]
                s = 232 / min(h, w)
                r = F.interpolate(im[None].float(), size=(round(h * s), round(w * s)), mode="bilinear",
                                  antialias=True, align_corners=False)
                top, left = (r.shape[-2] - 224) // 2, (r.shape[-1] - 224) // 2
                resized.append(r[..., top:top + 224, left:left + 224])
            x = ((torch.cat(resized) - mean) / std).contiguous(memory_format=torch.channels_last)
            out.append(model(x).float())
            n += len(raw)
        _sync(device)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "pbc-subset"))
    ap.add_argument("--repeat", type=int, default=8, help="repeat the image list (default 8)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--limit", type=int, default=0, help="images of --data to use (0: all)")
    ap.add_argument("--skip-leukbench", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch

    from leukbench.datasets import discover
    from leukbench.features.deep import build_model

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    table = discover(args.data)
    table = table[table["path"].str.lower().str.endswith((".jpg", ".jpeg"))]
    if args.limit:
        table = table.iloc[: args.limit]
    if table.empty:
        print(f"{args.data}: no JPEG image found; this benchmark measures JPEG files to features")
        return 2
    if not cuda:
        print("No CUDA device here: no GPU figure. Running a tiny CPU smoke run of the same code path.")
        table, args.repeat, args.batch_size, args.workers = table.groupby("label").head(1).iloc[:2], 1, 2, 0
    paths = table["path"].tolist() * args.repeat
    model = build_model("resnet50", "none").to(device).to(memory_format=torch.channels_last).eval()
    results = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke run, not a benchmark)",
               "images": len(paths), "batch_size": args.batch_size, "workers": args.workers}
    results["model_images_per_second"] = bench_model(model, device, args.batch_size,
                                                     max(2 if cuda else 1, len(paths) // args.batch_size))
    results["gpu_decode_images_per_second"] = bench_gpu_decode(model, paths, device, args.batch_size,
                                                               args.workers)
    if not args.skip_leukbench:
        import leukbench

        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as copies:
            # the same number of images as the other figures: symlinked copies under new names
            for k in range(args.repeat):
                for path, label in zip(table["path"], table["label"]):
                    link = Path(copies) / str(label) / f"r{k}_{Path(path).name}"
                    link.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(os.path.abspath(path), link)
            repeated = discover(copies)
            t0 = time.perf_counter()
            fs = leukbench.extract(repeated, "resnet50", weights="none", device=device, batch_size=args.batch_size,
                                   num_workers=args.workers, cache_dir=cache, progress=False)
            results["leukbench_images_per_second"] = len(fs) / (time.perf_counter() - t0)
        if cuda:
            results["leukbench_vs_model"] = (results["leukbench_images_per_second"]
                                             / results["model_images_per_second"])
    if cuda:
        results["gpu_decode_vs_model"] = (results["gpu_decode_images_per_second"]
                                          / results["model_images_per_second"])
        results["target_3000_images_per_second_met"] = max(
            results["gpu_decode_images_per_second"], results.get("leukbench_images_per_second", 0.0)) >= 3000
    cmd = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results.update(command=cmd, machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
