"""Discover images, labels and subject ids into one tidy table.

Every loader returns a :class:`pandas.DataFrame` with one row per image and the
columns of :data:`COLUMNS`:

``path``    absolute path of the image file (str)
``id``      path relative to the dataset root, POSIX separators (the image key)
``label``   class label (str; ``""`` for unlabeled images)
``subject`` subject / patient id (str; ``""`` when unknown)
``split``   ``"train"``, ``"test"`` or ``"unlabeled"``
``fold``    original fold of the data set (str; ``""`` when none)

Three layouts are understood, picked automatically by :func:`discover` or by
name: class folders (``root/<class>/.../<image>``), the C-NMC 2019 release
(``training_data/fold_k/{all,hem}``, the preliminary test set with its labels
CSV and the unlabeled final test set) and a CSV manifest
(``path,label[,subject][,split]``).

Every problem with a dataset raises :class:`~leukbench.exceptions.DatasetError`
with one line naming the path and the fix.

Example
-------
>>> from leukbench.datasets import discover, sample_root, summarize
>>> summarize(discover(sample_root()))
'159 images (all 80, hem 79); 16 subjects; splits: train 159'
"""

from ..exceptions import DatasetError
from ._discover import (
    check_labels,
    detect_layout,
    discover,
    load_sample,
    sample_root,
    summarize,
)
from ._layouts import COLUMNS, LAYOUTS, load_cnmc, load_folders, load_manifest
from ._subjects import CNMC_NAME, subject_from_name
from ._subsample import SUBSAMPLE_CONSTRAINTS, subsample, subsample_line

__all__ = [
    "CNMC_NAME",
    "COLUMNS",
    "LAYOUTS",
    "DatasetError",
    "check_labels",
    "detect_layout",
    "discover",
    "load_cnmc",
    "load_folders",
    "load_manifest",
    "load_sample",
    "sample_root",
    "SUBSAMPLE_CONSTRAINTS",
    "subject_from_name",
    "subsample",
    "subsample_line",
    "summarize",
]
