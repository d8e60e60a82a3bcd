"""The training loop: AdamW, warm-up then cosine, class-balanced cross-entropy, the best epoch by
validation balanced accuracy, early stopping, one checkpoint per finished epoch.

Each epoch draws its randomness (batch order, augmentation, dropout) from seeds of its own
(:func:`~leukbench.finetune._data.epoch_seed`), so a run resumed from its last finished epoch
learns exactly what the uninterrupted run does.

Example
-------
>>> from leukbench.finetune._loop import lr_factor
>>> [round(lr_factor(s, warmup=2, total=6), 3) for s in range(6)]
[0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ._data import AugmentedImages, epoch_seed

__all__ = ["TrainData", "TrainOutcome", "train", "lr_factor", "evaluate"]


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Learning-rate multiplier of ``step``: linear warm-up over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, rest) / rest))


@dataclasses.dataclass
class TrainData:
    """Decoded images and encoded labels of one run, and which rows train and which validate."""

    images: np.ndarray  # (n, H, W, 3) uint8
    y: np.ndarray  # encoded labels
    train: np.ndarray
    val: np.ndarray
    n_classes: int


@dataclasses.dataclass
class TrainOutcome:
    history: List[Dict[str, Any]]
    best_epoch: int
    stopped: str
    seconds: float
    resumed_from: int = 0


class _EpochSampler:
    """Indices of one epoch in a seeded order, offset by ``epoch * n`` so that workers know the epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = np.random.default_rng(epoch_seed(self.seed, self.epoch, -1)).permutation(self.n)
        return iter((order + self.epoch * self.n).tolist())


class _EpochImages(AugmentedImages):
    def __getitem__(self, k: int):
        self.epoch, i = divmod(int(k), len(self.images))
        return super().__getitem__(i)


def _worker_init(_worker_id: int) -> None:
    """In an augmentation worker: one torch thread, and SIGTERM left to the parent (the command line
    turns it into Ctrl-C and stops the workers itself; a worker killed first would make the
    parent's DataLoader fail instead of keeping the finished epochs)."""
    import signal

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _loader(data: TrainData, cfg, device: str):
    import torch

    ds = _EpochImages(data.images[data.train], data.y[data.train], augment=cfg.augment, seed=cfg.seed)
    sampler = _EpochSampler(len(ds), cfg.seed)
    workers = 0 if not cfg.augment else (1 if device == "cpu" else 4)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, drop_last=len(ds) > cfg.batch_size,
        persistent_workers=workers > 0, worker_init_fn=_worker_init if workers else None,
        pin_memory=device.startswith("cuda"))
    return loader, sampler


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (k * count)`` per class (scikit-learn's ``"balanced"``); a missing class weighs 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (max(1, (counts > 0).sum()) * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


class _Runner:
    """Model, normalisation and arithmetic of one run: the forward pass as training and evaluation share it."""

    def __init__(self, model, pre, device: str, precision: str):
        import torch

        self.model, self.device, self.precision = model, device, precision
        self.cuda = device.startswith("cuda")
        self.scale, self.shift = pre.scale_shift(device)
        self.autocast = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision)

    def inputs(self, x):
        import torch

        x = x.to(self.device, non_blocking=True) if self.device != "cpu" else x
        x = x.to(torch.float32)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.mul_(self.scale).sub_(self.shift)

    def forward(self, x, features: bool = False):
        import contextlib

        import torch

        ctx = (torch.autocast(self.device.split(":")[0], dtype=self.autocast) if self.autocast is not None
               else contextlib.nullcontext())
        with ctx:
            return self.model.features(x) if features else self.model(x)


def evaluate(runner: _Runner, images: np.ndarray, batch_size: int, *, features: bool = False) -> np.ndarray:
    """Logits (or pooled features) of ``images`` in eval mode, as float32 ``(n, k)``."""
    import torch

    from ._network import set_train_mode

    set_train_mode(runner.model, False)
    outs = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).permute(0, 3, 1, 2)
            outs.append(runner.forward(runner.inputs(x), features=features).float().cpu().numpy())
    k = outs[0].shape[1] if outs else 0
    return np.concatenate(outs) if outs else np.zeros((0, k), np.float32)


def _val_row(runner: _Runner, data: TrainData, cfg, weights: np.ndarray) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    logits = evaluate(runner, data.images[data.val], max(cfg.batch_size, 64))
    yv = data.y[data.val]
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    w = weights[yv]
    loss = float(-(w * logp[np.arange(len(yv)), yv]).sum() / max(w.sum(), 1e-12))
    pred = logits.argmax(1)
    return {"val_loss": loss, "val_balanced_accuracy": float(balanced_accuracy_score(yv, pred)),
            "val_accuracy": float(accuracy_score(yv, pred))}


def _optimisation(model, cfg, steps_per_epoch: int, runner: _Runner):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup=warmup, total=total))
    scaler = torch.amp.GradScaler("cuda", enabled=runner.cuda and runner.precision == "float16")
    return opt, sched, scaler


def _train_epoch(runner: _Runner, loader, opt, sched, scaler, loss_fn, bar) -> float:
    from ._network import set_train_mode

    set_train_mode(runner.model, True)
    total, n = 0.0, 0
    for x, y in loader:
        x = runner.inputs(x)
        y = y.to(runner.device, non_blocking=True) if runner.device != "cpu" else y
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(runner.forward(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        total += float(loss.detach()) * len(y)
        n += len(y)
        bar.update(len(y))
    return total / max(n, 1)


def _resume(ckpt, model, opt, sched, scaler) -> Dict[str, Any]:
    """The saved progress (epochs done, history, best) after loading the saved states; fresh when none."""
    state = ckpt.last() if ckpt is not None else None
    if state is None:
        return {"epoch": 0, "history": [], "best_epoch": 0, "best_score": -math.inf, "seconds": 0.0}
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return state["progress"]


def train(model, data: TrainData, cfg, pre, device: str, precision: str, ckpt=None, *, progress: bool = False,
          desc: str = "fine-tune", on_epoch_end: Optional[Callable[[int, Dict[str, Any]], None]] = None
          ) -> TrainOutcome:
    """Train ``model`` in place; the best epoch's weights are loaded into it at the end.

    ``ckpt`` (a :class:`~leukbench.finetune._checkpoint.CheckpointDir`) keeps each finished epoch and
    the best weights; a run with a saved epoch continues from it. ``on_epoch_end(epoch, row)`` is
    called after each epoch has been kept.
    """
    import torch
    from tqdm.auto import tqdm

    model.to(device)
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    runner = _Runner(model, pre, device, precision)
    loader, sampler = _loader(data, cfg, device)
    opt, sched, scaler = _optimisation(model, cfg, len(loader), runner)
    weights = class_weights(data.y[data.train], data.n_classes)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device))
    prog = _resume(ckpt, model, opt, sched, scaler)
    resumed_from, stopped = prog["epoch"], "epochs"
    bar = tqdm(total=len(loader) * cfg.batch_size if loader.drop_last else len(data.train), desc=desc,
               unit="img", disable=not progress, leave=False, dynamic_ncols=True)
    with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []):
        _as_if_running(loader, sampler, prog["epoch"])
        for epoch in range(prog["epoch"], cfg.epochs):
            if _should_stop(prog, cfg) is not None:
                break
            t0 = time.perf_counter()
            torch.manual_seed(epoch_seed(cfg.seed, epoch, -2))  # dropout
            sampler.epoch = epoch
            bar.reset()
            bar.set_description(f"{desc} epoch {epoch + 1}/{cfg.epochs}")
            train_loss = _train_epoch(runner, loader, opt, sched, scaler, loss_fn, bar)
            row = {"epoch": epoch + 1, "train_loss": train_loss, **_val_row(runner, data, cfg, weights),
                   "lr": float(sched.get_last_lr()[0]), "seconds": time.perf_counter() - t0}
            best = row["val_balanced_accuracy"] > prog["best_score"]
            if best:
                prog["best_score"], prog["best_epoch"] = row["val_balanced_accuracy"], epoch + 1
            prog["epoch"], prog["seconds"] = epoch + 1, prog["seconds"] + row["seconds"]
            prog["history"].append(row)
            _keep_epoch(ckpt, model, opt, sched, scaler, prog, best)
            if progress:
                tqdm.write(_epoch_line(desc, row, best))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
        stopped = _should_stop(prog, cfg) or stopped
    bar.close()
    _load_best(model, ckpt, prog)
    return TrainOutcome(_flag_best(prog["history"], prog["best_epoch"]), prog["best_epoch"], stopped,
                        prog["seconds"], resumed_from)


def _as_if_running(loader, sampler, epoch: int) -> None:
    """Before a resumed run's first epoch: make the loader's iterator now, as the uninterrupted run made it
    in its first epoch. A loader draws its iterator's base seed from torch's global generator when it
    makes one, and one with persistent workers makes it once; made in this epoch, after the epoch's
    dropout seed, that draw would shift the epoch's dropout masks and the resumed run would learn
    something else (a loader without workers makes one every epoch: nothing to do)."""
    if epoch > 0 and loader.persistent_workers:
        sampler.epoch = epoch
        iter(loader)


def _should_stop(prog: Dict[str, Any], cfg) -> Optional[str]:
    if prog["epoch"] and prog["epoch"] - prog["best_epoch"] >= cfg.patience:
        return f"early stopping (no better validation balanced accuracy in {cfg.patience} epochs)"
    if cfg.max_train_minutes is not None and prog["seconds"] >= 60.0 * cfg.max_train_minutes:
        return f"time limit ({cfg.max_train_minutes:g} min)"
    return None


def _state_copy(model) -> Dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _keep_epoch(ckpt, model, opt, sched, scaler, prog, best: bool) -> None:
    import torch

    if best:
        prog["best_state"] = _state_copy(model)
    if ckpt is None or not ckpt.enabled:
        return
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
             "progress": {k: v for k, v in prog.items() if k != "best_state"}}
    ckpt.save_epoch(state, prog["best_state"] if best else None)


def _load_best(model, ckpt, prog) -> None:
    best = prog.get("best_state")
    if best is None and ckpt is not None and ckpt.enabled and prog["best_epoch"]:
        best = ckpt.load_best()
    if best is not None:
        model.load_state_dict(best)


def _flag_best(history: List[Dict[str, Any]], best_epoch: int) -> List[Dict[str, Any]]:
    return [{**row, "best": row["epoch"] == best_epoch} for row in history]


def _epoch_line(desc: str, row: Dict[str, Any], best: bool) -> str:
    return (f"{desc} epoch {row['epoch']}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
            f"val balanced accuracy {row['val_balanced_accuracy']:.3f}{' (best)' if best else ''}, "
            f"{row['seconds']:.1f} s")
