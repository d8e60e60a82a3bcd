"""leukbench: honest, subject-aware comparisons of features and classifiers for blood-cell images.

The public API is imported lazily, so ``import leukbench`` is cheap and has no
side effects (torch, scikit-learn and friends load on first use)::

    import leukbench
    fs = leukbench.extract(features="efficientnet_lite0")   # bundled sample
    result = leukbench.compare(fs)
    result.table
"""

from ._version import __version__

_LAZY = {
    "extract": ("leukbench.extraction", "extract"),
    "extract_all": ("leukbench.extraction", "extract_all"),
    "ExtractionResult": ("leukbench.extraction", "ExtractionResult"),
    "ExtractionSummary": ("leukbench.extraction", "ExtractionSummary"),
    "compare": ("leukbench.evaluation", "compare"),
    "check_dataset": ("leukbench.evaluation", "check_dataset"),
    "ComparisonResult": ("leukbench.evaluation", "ComparisonResult"),
    "FeatureSet": ("leukbench.featureset", "FeatureSet"),
    "FeatureCache": ("leukbench.cache", "FeatureCache"),
    "discover": ("leukbench.datasets", "discover"),
    "load_sample": ("leukbench.datasets", "load_sample"),
    "load_image": ("leukbench.images", "load_image"),
    "create_extractor": ("leukbench.features.base", "create_extractor"),
    "list_extractors": ("leukbench.features.base", "list_extractors"),
    "audit_leakage": ("leukbench.audit", "audit_leakage"),
    "write_report": ("leukbench.reporting", "write_report"),
    "summarize": ("leukbench.reporting", "summarize"),
    "LeukbenchError": ("leukbench.exceptions", "LeukbenchError"),
    "train": ("leukbench.models", "train"),
    "load_model": ("leukbench.models", "load_model"),
    "Model": ("leukbench.models", "Model"),
    "FineTuner": ("leukbench.finetune", "FineTuner"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leukbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
