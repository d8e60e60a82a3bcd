"""Fine-tuning a CNN backbone on the cell images themselves (the field's main method).

:class:`FineTuner` builds a registered backbone through the deep-feature builder (so every
backbone of :mod:`leukbench.features.deep`, ``timm:<model>`` and ``weights=`` work), adds a
dropout + linear head and trains it: AdamW, warm-up then cosine, class-balanced cross-entropy,
augmentation suited to single cells, the best epoch by validation balanced accuracy on an inner
split by subject, early stopping, and one checkpoint per finished epoch in the cache.
:func:`leukbench.compare` runs it on each outer fold (``finetune=``).

Modules
-------
``_config``      :class:`FineTuneConfig`, the checked settings
``_network``     the backbone + head, its stages (``freeze``), its input transform
``_data``        decoding once to ``uint8``, the inner split, the seeded augmentation
``_loop``        the training loop
``_checkpoint``  ``<cache>/finetune/<key>/``: last epoch, best weights (safetensors), done
``_estimator``   :class:`FineTuner`
``_folds``       fine-tuning on each outer fold of a split plan (what ``compare`` calls)
``_names``       ``finetuned:<backbone>``, the name of a fine-tuned network's rows
``_images``      the images alone as a feature set (``--features finetuned:<backbone>`` by itself)

Importing this package does not import torch.

Example
-------
>>> from leukbench.finetune import FineTuneConfig
>>> FineTuneConfig().epochs, FineTuneConfig().patience, FineTuneConfig().size
(15, 4, None)
"""

from ._checkpoint import FINETUNE_VERSION
from ._config import FineTuneConfig
from ._estimator import FineTuner
from ._names import FINETUNED_PREFIX, finetuned_backbone, finetuned_name

__all__ = ["FINETUNED_PREFIX", "FINETUNE_VERSION", "FineTuneConfig", "FineTuner", "finetuned_backbone",
           "finetuned_name"]
