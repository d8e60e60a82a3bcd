"""The training curves of fine-tuned networks (``plots/training_curves.png``) and the report's
section on their training: loss and validation balanced accuracy per epoch, one line per fold,
the kept (best) epoch marked, and the training configuration.

Example
-------
>>> import pandas as pd
>>> from leukbench.reporting.training_plot import plot_training_curves
>>> rows = [{"feature_set": "finetuned:x", "repeat": 0, "fold": f, "epoch": e, "train_loss": 1 / e,
...          "val_loss": 1.2 / e, "val_balanced_accuracy": 0.5 + 0.1 * e, "best": e == 2}
...         for f in range(2) for e in (1, 2)]
>>> fig = plot_training_curves(pd.DataFrame(rows))
>>> len(fig.axes)
2
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pandas as pd

__all__ = ["TRAINING_PLOT", "plot_training_curves", "training_section"]

#: File name of the plot under ``plots/``.
TRAINING_PLOT = "training_curves.png"

#: The configuration fields the report states.
_SHOWN = ("epochs", "patience", "size", "batch_size", "lr", "weight_decay", "warmup_epochs", "dropout", "freeze",
          "augment", "val_folds", "seed", "max_train_minutes")


def plot_training_curves(training: pd.DataFrame):
    """Loss (training solid, validation dashed) and validation balanced accuracy per epoch, one
    colour per fold (and feature set), the kept epoch marked with a star.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plots import _new_figure

    fig = _new_figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    groups = list(training.groupby(["feature_set", "repeat", "fold"], sort=True))
    multi = training["feature_set"].nunique() > 1
    for k, ((name, repeat, fold), f) in enumerate(groups):
        f = f.sort_values("epoch")
        colour = f"C{k % 10}"
        label = (f"{name} " if multi else "") + f"fold {fold + 1}" + (f" r{repeat + 1}" if repeat else "")
        ax_loss.plot(f["epoch"], f["train_loss"], color=colour, label=label)
        ax_loss.plot(f["epoch"], f["val_loss"], color=colour, linestyle="--")
        ax_acc.plot(f["epoch"], f["val_balanced_accuracy"], color=colour, marker=".", label=label)
        best = f[f["best"].astype(bool)]
        ax_acc.plot(best["epoch"], best["val_balanced_accuracy"], "*", color=colour, markersize=12)
    ax_loss.set(xlabel="epoch", ylabel="loss (class-balanced)", title="Loss: training (solid), validation (dashed)")
    ax_acc.set(xlabel="epoch", ylabel="validation balanced accuracy", title="Validation balanced accuracy (* kept)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.legend(fontsize="small", loc="best")
    return fig


def _config_line(name: str, record: Dict[str, Any]) -> str:
    cfg = record.get("config", {})
    shown = ", ".join(f"{k}={cfg[k]}" for k in _SHOWN if k in cfg)
    epochs = record.get("epochs_run", [])
    best = record.get("best_epoch", [])
    return (f"<li><code>{html.escape(name)}</code>: weights {html.escape(str(record.get('weights', '')))}, "
            f"on {html.escape(str(record.get('device', '')))} in {html.escape(str(record.get('precision', '')))}; "
            f"{html.escape(shown)}. Epochs run per fold: {epochs}, kept epoch per fold: {best}, "
            f"training time {float(record.get('train_seconds', 0.0)) / 60:.1f} min. "
            f"{html.escape('; '.join(record.get('validation', [])))}.</li>")


def training_section(params: Optional[Dict[str, Any]], plots: Sequence[str], plots_dir: Path,
                     figure: Callable[[str, Path], str]) -> List[str]:
    """The report's "Fine-tuning" section (empty without fine-tuned networks); ``figure`` embeds a plot."""
    records = (params or {}).get("finetune") or {}
    if not records:
        return []
    parts = ["<h2>Fine-tuning</h2>",
             "<p>Each network was trained on the training images of each outer fold only; early stopping and "
             "the kept epoch used an inner validation split of those images (by subject when known). The "
             "<code>end-to-end</code> row scores the network's own softmax on the test fold; the other rows of "
             "a <code>finetuned:</code> feature set are the classifiers over that fold's fine-tuned features. "
             "Epochs: <code>training.csv</code>; images per fold and role: <code>finetune_ids.csv</code>.</p>",
             "<ul>"] + [_config_line(name, rec) for name, rec in records.items()] + ["</ul>"]
    if TRAINING_PLOT in plots:
        parts.append(figure(TRAINING_PLOT, plots_dir))
    return parts
