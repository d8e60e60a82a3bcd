"""Feature extractors: deep backbones and handcrafted descriptors."""

from .base import (
    FEATURE_VERSION,
    Extractor,
    ExtractorConfig,
    create_extractor,
    list_extractors,
    register_extractor,
)

__all__ = [
    "FEATURE_VERSION",
    "Extractor",
    "ExtractorConfig",
    "create_extractor",
    "list_extractors",
    "register_extractor",
]
