"""Fine-tuning throughput: leukbench's training loop against the plain PyTorch loop.

The plain loop is what a user would write: ``torchvision.datasets.ImageFolder`` with
``Resize + CenterCrop + PILToTensor`` decoding every image in every epoch inside a
``DataLoader`` (the same number of workers as leukbench's loop uses), the same network
(``build_network``), AdamW, warm-up + cosine schedule, class-balanced cross-entropy, batch and
input size. leukbench's loop (``leukbench.finetune._loop.train``) decodes each image once to
``uint8`` at the input size and trains from memory.

So that the final weights can be compared, both loops see the images in the same order
(leukbench's per-epoch permutation, given to the plain loader as its sampler), without
augmentation and without dropout; the validation images (a handful) are scored after each epoch
by both. The script prints training images/s of each loop (decoding included: once for
leukbench, every epoch for the plain loop), the ratio, and the largest weight difference.

Example
-------
    python benchmarks/bench_finetune.py --data ../shared/data/cnmc-subset --limit 256 --size 64 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="class-folder dataset (default: the bundled sample)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--limit", type=int, default=128, help="images (a fixed subset, both classes)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=1, help="interleaved rounds (leukbench, plain, ...); best kept")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    return p.parse_args(argv)


def _subset(root: Path, limit: int, seed: int = 0):
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root))
    rng = np.random.default_rng(seed)
    take = np.sort(rng.permutation(len(folder.samples))[:limit])
    return folder, take


def _config(args):
    from leukbench.finetune import FineTuneConfig

    # patience = epochs: neither loop stops early, both keep the best epoch by validation balanced accuracy
    return FineTuneConfig(epochs=args.epochs, size=args.size, batch_size=args.batch_size, augment=False,
                          dropout=0.0, device="cpu", precision="float32", patience=max(1, args.epochs))


def run_leukbench(args, paths, y, val):
    """leukbench: decode once, train from memory. Returns (seconds, state_dict)."""

    from leukbench.finetune._data import decode_images
    from leukbench.finetune._loop import TrainData, train
    from leukbench.finetune._network import build_network, input_preprocessing

    cfg, pre = _config(args), input_preprocessing(args.backbone, args.size)
    model, _ = build_network(args.backbone, args.weights, 2, dropout=0.0, freeze=0, seed=cfg.seed)
    t0 = time.perf_counter()
    images = decode_images(paths, pre, num_workers=cfg.num_workers)  # threads by core count, as in fit()
    train_idx = np.setdiff1d(np.arange(len(paths)), val)
    train(model, TrainData(images, y, train_idx, val, 2), cfg, pre, "cpu", "float32")
    return time.perf_counter() - t0, {k: v.detach().clone() for k, v in model.state_dict().items()}, len(train_idx)


class _ListSampler:
    def __init__(self):
        self.order = []

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


def run_plain(args, folder, take, y, val):
    """The plain loop: ImageFolder + DataLoader, decoding every epoch. Returns (seconds, state_dict)."""
    import torch
    from sklearn.metrics import balanced_accuracy_score
    from torchvision import transforms as T

    from leukbench.finetune._data import epoch_seed
    from leukbench.finetune._loop import class_weights, lr_factor
    from leukbench.finetune._network import build_network, input_preprocessing

    cfg, pre = _config(args), input_preprocessing(args.backbone, args.size)
    model, _ = build_network(args.backbone, args.weights, 2, dropout=0.0, freeze=0, seed=cfg.seed)
    # Resize + CenterCrop, as the backbone's eval transform; leukbench's resize_crop gives the same pixels
    # up to one grey level in rare pixels (it resamples only the cropped box), which Adam amplifies over
    # the steps, so the plain loop calls it too and the two loops' weights can be compared
    folder.transform = T.Compose([T.Lambda(lambda img: pre.resize_crop(np.asarray(img.convert("RGB")))),
                                  T.Lambda(lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous())])
    train_idx = np.setdiff1d(np.arange(len(take)), val)
    ds = torch.utils.data.Subset(folder, take[train_idx].tolist())
    sampler = _ListSampler()
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=1,
                                         drop_last=len(ds) > cfg.batch_size)
    scale, shift = pre.scale_shift("cpu")
    steps = len(ds) // cfg.batch_size if len(ds) > cfg.batch_size else 1
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    warm = int(round(cfg.warmup_epochs * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup=warm, total=cfg.epochs * steps))
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(class_weights(y[train_idx], 2)))
    val_ds = torch.utils.data.Subset(folder, take[val].tolist())
    best_score, best = -1.0, None
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        sampler.order = np.random.default_rng(epoch_seed(cfg.seed, epoch, -1)).permutation(len(ds)).tolist()
        model.train()
        for x, target in loader:
            x = x.to(torch.float32).mul_(scale).sub_(shift)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), target)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            xs = torch.stack([val_ds[i][0] for i in range(len(val_ds))]).to(torch.float32).mul_(scale).sub_(shift)
            score = balanced_accuracy_score(y[val], model(xs).argmax(1).numpy())
        if score > best_score:  # the best epoch's weights, kept as leukbench keeps them
            best_score, best = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
    return time.perf_counter() - t0, best


def _warm_up(args) -> None:
    """Two untimed steps at the benchmark's shapes (oneDNN builds its kernels on first use), and the
    modules both loops use imported (scikit-learn's metrics, tqdm: seconds that the first timed round
    would otherwise pay)."""
    import sklearn.metrics  # noqa: F401 - leukbench's validation row
    import torch
    import tqdm.auto  # noqa: F401 - leukbench's progress bar
    from torchvision import transforms  # noqa: F401 - the plain loop's transform

    from leukbench.finetune._network import build_network

    model, _ = build_network(args.backbone, args.weights, 2, dropout=0.0, freeze=0, seed=1)
    opt = torch.optim.AdamW(model.parameters())
    for _ in range(2):
        x = torch.randn(args.batch_size, 3, args.size, args.size)
        torch.nn.functional.cross_entropy(model(x), torch.zeros(args.batch_size, dtype=torch.long)).backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        model(torch.randn(4, 3, args.size, args.size))


def main(argv=None) -> int:
    args = _parse(argv)
    import torch

    from leukbench import datasets

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data) if args.data else datasets.sample_root()
    folder, take = _subset(root, args.limit)
    paths = [folder.samples[i][0] for i in take]
    y = np.array([folder.samples[i][1] for i in take], dtype=np.int64)
    val = np.sort(np.random.default_rng(1).permutation(len(take))[:max(2, len(take) // 32)])
    _warm_up(args)
    ours, plain = [], []
    for _ in range(max(1, args.repeat)):  # interleaved: the machine's load changes over minutes
        t, w_ours, n_train = run_leukbench(args, paths, y, val)
        ours.append(t)
        t, w_plain = run_plain(args, folder, take, y, val)
        plain.append(t)
    t_ours, t_plain = min(ours), min(plain)
    params = [k for k in w_ours if w_ours[k].dtype.is_floating_point]
    diff = max(float((w_ours[k] - w_plain[k]).abs().max()) for k in params)
    rel = max(float((w_ours[k] - w_plain[k]).abs().max() / w_plain[k].abs().max().clamp_min(1e-12)) for k in params)
    out = {"data": str(root), "backbone": args.backbone, "images": len(take), "train_images": n_train,
           "size": args.size, "epochs": args.epochs, "batch_size": args.batch_size,
           "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
           "leukbench_images_per_second": n_train * args.epochs / t_ours,
           "plain_images_per_second": n_train * args.epochs / t_plain,
           "leukbench_seconds": t_ours, "plain_seconds": t_plain, "leukbench_rounds": ours, "plain_rounds": plain,
           "speedup": t_plain / t_ours, "max_weight_difference": diff, "max_relative_difference": rel}
    for k, v in out.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
