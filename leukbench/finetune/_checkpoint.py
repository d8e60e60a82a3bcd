"""Checkpoints of a fine-tuning run in the cache: ``<cache>/finetune/<key>/``.

``last.pt``
    The last finished epoch: model, optimizer, scheduler and loss-scaler states, the torch random
    state, the history so far and the best epoch; what an interrupted run resumes from.
``best.safetensors``
    The weights of the best epoch (by validation balanced accuracy), in a safe format.
``done.json``
    Written last, when training has finished: the history and the best epoch. A run whose key
    has it trains nothing and loads ``best.safetensors``.

Every file is written to a temporary name and renamed, so a kill leaves the previous epoch intact.

Example
-------
>>> from leukbench.finetune._checkpoint import checkpoint_key
>>> len(checkpoint_key({"backbone": "efficientnet_lite0", "epochs": 2}))
20
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from .._atomic import write_atomically

__all__ = ["CheckpointDir", "checkpoint_key", "FINETUNE_VERSION"]

#: Bumped whenever the training loop changes what a configuration learns (old checkpoints are ignored).
FINETUNE_VERSION = 1


def checkpoint_key(parts: Dict[str, Any]) -> str:
    """Digest of everything that decides what is learnt (backbone, weights id, config, seed, ids)."""
    text = json.dumps({"version": FINETUNE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class CheckpointDir:
    """The checkpoint folder of one key (``None``: no folder, nothing kept)."""

    def __init__(self, root: Optional[Path], key: str, description: Dict[str, Any]):
        self.path = None if root is None else Path(root) / "finetune" / key
        self.description = description

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def done(self) -> Optional[Dict[str, Any]]:
        """The record of a finished run with this key, when its best weights are there too."""
        if self.path is None or not all((self.path / f).is_file() for f in ("done.json", "best.safetensors")):
            return None
        return json.loads((self.path / "done.json").read_text())

    def last(self) -> Optional[Dict[str, Any]]:
        """The state of the last finished epoch (``None``: start from scratch)."""
        import torch

        if self.path is None or not (self.path / "last.pt").is_file():
            return None
        return torch.load(self.path / "last.pt", map_location="cpu", weights_only=True)

    def save_epoch(self, state: Dict[str, Any], best_weights: Optional[Dict[str, Any]]) -> None:
        """Keep one finished epoch: the best weights first (when this epoch is the best), then the state."""
        import torch

        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "config.json").is_file():
            text = json.dumps(self.description, indent=1, default=str)
            write_atomically(self.path / "config.json", lambda p: p.write_text(text))
        if best_weights is not None:
            self.save_best(best_weights)
        write_atomically(self.path / "last.pt", lambda p: torch.save(state, p))

    def save_best(self, weights: Dict[str, Any]) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        write_atomically(self.path / "best.safetensors", lambda p: save_file(tensors, str(p)))

    def load_best(self) -> Dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.path / "best.safetensors"))

    def finish(self, record: Dict[str, Any]) -> None:
        if self.path is not None:
            write_atomically(self.path / "done.json", lambda p: p.write_text(json.dumps(record, indent=1, default=str)))
