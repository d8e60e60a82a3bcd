"""The name of a fine-tuned network's rows, ``finetuned:<backbone>``: made and read in one place.

The command line (``--features ...,finetuned:<backbone>``), :func:`leukbench.compare`
(``finetune=``), the model bundles and the best-row choice all read the prefix with
:func:`finetuned_backbone`; :func:`finetuned_name` writes it.

Example
-------
>>> finetuned_backbone("finetuned:efficientnet_lite0"), finetuned_backbone("efficientnet_lite0")
('efficientnet_lite0', None)
>>> finetuned_name("resnet50")
'finetuned:resnet50'
"""

from __future__ import annotations

from typing import Optional

__all__ = ["FINETUNED_PREFIX", "finetuned_backbone", "finetuned_name"]

#: What a feature-set name starts with when it names a fine-tuned network.
FINETUNED_PREFIX = "finetuned:"


def finetuned_backbone(name) -> Optional[str]:
    """The backbone of ``finetuned:<backbone>`` (surrounding spaces ignored); ``None`` when ``name``
    is not a fine-tuned network's name. ``"finetuned:"`` alone gives ``""`` (a name with no backbone).

    Example
    -------
    >>> finetuned_backbone(" finetuned:timm:resnet18 "), finetuned_backbone("finetuned:"), finetuned_backbone(3)
    ('timm:resnet18', '', None)
    """
    if not isinstance(name, str):
        return None
    text = name.strip()
    return text[len(FINETUNED_PREFIX):].strip() if text.startswith(FINETUNED_PREFIX) else None


def finetuned_name(backbone: str) -> str:
    """The feature-set name of ``backbone``'s fine-tuned rows (``finetuned:<backbone>``)."""
    return f"{FINETUNED_PREFIX}{backbone}"
