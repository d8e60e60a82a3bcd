"""From images on disk to cached feature matrices: the ``extract`` step.

Images are decoded, fingerprinted, optionally segmented and prepared for the
extractor in worker processes (a :class:`torch.utils.data.DataLoader`), while
the main process runs the batched part (a network forward pass) and flushes
results to the :class:`~leukbench.cache.FeatureCache` in chunks.

:func:`extract_all` is the step itself and always returns an
:class:`ExtractionResult` (every feature set asked for, and a summary per
extractor); :func:`extract` is the notebook shortcut that returns the feature
set itself when one is asked for.

Nothing here knows a particular extractor: the options each takes, whether
it fell back to the whole image and which other extractor computes its
columns are asked of the extractors (:mod:`leukbench.features.base`).

Modules
-------
``_spec``     :func:`parse_feature_spec` (``"a,b,a+b"``)
``_summary``  :class:`ExtractionSummary`, :class:`ExtractionResult`
``_feed``     decoding and preparing images in workers or threads
``_run``      :func:`run_extractor`: one extractor, the images not cached yet
``_api``      :func:`extract_all`, :func:`extract`, :func:`load_feature_set`

Example
-------
>>> from leukbench.extraction import parse_feature_spec
>>> parse_feature_spec("efficientnet_lite0,handcrafted,efficientnet_lite0+handcrafted")
[['efficientnet_lite0'], ['handcrafted'], ['efficientnet_lite0', 'handcrafted']]
"""

from ..exceptions import ExtractionError
from ._api import (
    cached_column_source,
    column_source,
    extract,
    extract_all,
    load_feature_set,
)
from ._copy import copy_columns
from ._feed import default_num_workers
from ._run import run_extractor
from ._spec import DEFAULT_FEATURES, parse_feature_spec
from ._summary import ExtractionResult, ExtractionSummary

__all__ = [
    "DEFAULT_FEATURES",
    "ExtractionError",
    "ExtractionResult",
    "ExtractionSummary",
    "cached_column_source",
    "column_source",
    "copy_columns",
    "default_num_workers",
    "extract",
    "extract_all",
    "load_feature_set",
    "parse_feature_spec",
    "run_extractor",
]
