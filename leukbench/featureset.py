"""The :class:`FeatureSet`: a feature matrix with its labels, subjects and provenance.

Example
-------
>>> import numpy as np
>>> from leukbench.featureset import FeatureSet
>>> fs = FeatureSet("demo", X=np.eye(3), y=["all", "hem", None], ids=["a", "b", "c"],
...                 subjects=["P1", "H1", ""], splits=["train", "train", "unlabeled"],
...                 feature_names=["f0", "f1", "f2"])
>>> fs
FeatureSet('demo', 3 images x 3 features, all: 1, hem: 1, 2 subjects)
>>> fs.labeled().ids.tolist()
['a', 'b']
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from ._mapped import hstack_rows, take_rows
from .exceptions import DatasetError, InvalidParameterError


@dataclasses.dataclass
class FeatureSet:
    """Features of a set of images, ready for classification.

    Attributes
    ----------
    name : str
        Name of the feature set (``"efficientnet_lite0"``, ``"handcrafted"``,
        ``"efficientnet_lite0+handcrafted"``).
    X : ndarray of shape (n_images, n_features), float32
    y : ndarray of shape (n_images,), object
        Class labels as strings (``None`` for unlabeled images).
    ids : ndarray of shape (n_images,), object
        Image identifiers: the path relative to the dataset root (POSIX).
    subjects : ndarray of shape (n_images,), object
        Subject (patient) id per image, ``""`` when unknown.
    splits : ndarray of shape (n_images,), object
        ``"train"``, ``"test"`` or ``"unlabeled"``.
    feature_names : list of str
    paths : ndarray of shape (n_images,), object
        Absolute paths of the images (for reports).
    pixel_hashes : ndarray of shape (n_images,), object
        Hex digest of the decoded pixels (exact-duplicate detection).
    dhashes : ndarray of shape (n_images,), object
        Perceptual difference hash as a hex string (near-duplicate detection).
    provenance : dict
        Extractor configuration(s), dataset root and fingerprint, versions.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    subjects: np.ndarray
    splits: np.ndarray
    feature_names: List[str]
    paths: Optional[np.ndarray] = None
    pixel_hashes: Optional[np.ndarray] = None
    dhashes: Optional[np.ndarray] = None
    provenance: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        self.X = np.asanyarray(self.X, dtype=np.float32)  # a memory map stays one
        for attr in ("y", "ids", "subjects", "splits", "paths", "pixel_hashes", "dhashes"):
            val = getattr(self, attr)
            if val is None:
                if attr in ("paths", "pixel_hashes", "dhashes"):
                    continue
                val = [""] * n
            arr = np.asarray(val, dtype=object)
            if arr.shape != (n,):
                raise InvalidParameterError(f"FeatureSet.{attr} has shape {arr.shape}, expected ({n},)")
            setattr(self, attr, arr)
        if self.X.shape != (n, len(self.feature_names)):
            raise InvalidParameterError(
                f"FeatureSet.X has shape {self.X.shape}, expected ({n}, {len(self.feature_names)})"
            )

    # ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        classes = ", ".join(f"{k}: {v}" for k, v in self.class_counts().items())
        n_subj = len({s for s in self.subjects if s})
        return (
            f"FeatureSet({self.name!r}, {len(self)} images x {self.X.shape[1]} features, "
            f"{classes or 'no labels'}, {n_subj} subjects)"
        )

    @property
    def classes(self) -> List[str]:
        return sorted({str(v) for v in self.y if v is not None and v == v and v != ""})

    def class_counts(self) -> Dict[str, int]:
        """Images per label, labels sorted; unlabelled images are not counted."""
        s = pd.Series([v for v in self.y if v is not None and v == v and v != ""], dtype=object)
        return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}

    @property
    def has_subjects(self) -> bool:
        return bool(len(self)) and all(bool(s) for s in self.subjects)

    def subset(self, mask_or_index) -> "FeatureSet":
        """A new FeatureSet with the selected rows (boolean mask or indices).

        When every row is selected in order (``labeled()`` of a set without
        unlabelled images), the new set shares this one's matrix instead of
        copying it: a large (or memory-mapped) matrix is not held twice.
        """
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        every_row = len(idx) == len(self) and bool(np.array_equal(idx, np.arange(len(self))))
        return FeatureSet(
            name=self.name,
            X=self.X if every_row else take_rows(self.X, idx),
            y=self.y[idx],
            ids=self.ids[idx],
            subjects=self.subjects[idx],
            splits=self.splits[idx],
            feature_names=list(self.feature_names),
            paths=take(self.paths),
            pixel_hashes=take(self.pixel_hashes),
            dhashes=take(self.dhashes),
            provenance=dict(self.provenance),
        )

    def labeled(self) -> "FeatureSet":
        """Only the images that carry a class label."""
        mask = np.array([v is not None and v == v and v != "" for v in self.y], dtype=bool)
        return self.subset(mask)

    def to_frame(self) -> pd.DataFrame:
        """Features as a DataFrame indexed by image id, with label/subject/split columns."""
        df = pd.DataFrame(self.X, columns=self.feature_names, index=pd.Index(self.ids, name="id"))
        df.insert(0, "split", self.splits)
        df.insert(0, "subject", self.subjects)
        df.insert(0, "label", self.y)
        return df

    def save(self, path) -> Path:
        """Write the feature set to one Parquet file that pandas can read.

        Columns: ``id, label, subject, split, path, pixel_hash, dhash`` and one
        per feature; the name, feature names and provenance go in the file's
        metadata (key ``leukbench``).  :meth:`load` reads it back.
        """
        from .cache import arrow_table, string_column, write_table_atomically

        path = Path(path)
        none = [None] * len(self)
        table = arrow_table({
            "id": string_column(self.ids), "label": string_column(self.y),
            "subject": string_column(self.subjects), "split": string_column(self.splits),
            "path": string_column(self.paths if self.paths is not None else none),
            "pixel_hash": string_column(self.pixel_hashes if self.pixel_hashes is not None else none),
            "dhash": string_column(self.dhashes if self.dhashes is not None else none),
        }, self.X, self.feature_names)
        info = {"name": self.name, "feature_names": list(self.feature_names),
                "provenance": self.provenance, "format": 1}
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}),
            b"leukbench": json.dumps(info, default=str).encode(),
        })
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table_atomically(table, path)
        return path

    @classmethod
    def load(cls, path) -> "FeatureSet":
        """Read a feature set written by :meth:`save`.

        Raises
        ------
        DatasetError
            When ``path`` is not a readable Parquet file, or not one written by
            :meth:`save` (the message names the file).
        """
        import pyarrow.parquet as pq

        from .cache import feature_matrix

        path = Path(path)
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
        raw = (table.schema.metadata or {}).get(b"leukbench")
        if raw is None:
            raise DatasetError(f"{path}: not a leukbench feature set (no 'leukbench' metadata); "
                               "write it with FeatureSet.save or `leukbench extract --out`")
        info = json.loads(raw)
        col = lambda c: np.array(table.column(c).to_pylist(), dtype=object)  # noqa: E731
        opt = lambda c: None if table.column(c).null_count == table.num_rows else col(c)  # noqa: E731
        return cls(
            name=info["name"],
            X=feature_matrix(table, info["feature_names"]),
            y=col("label"),
            ids=col("id"),
            subjects=np.array([s or "" for s in col("subject")], dtype=object),
            splits=np.array([s or "" for s in col("split")], dtype=object),
            feature_names=list(info["feature_names"]),
            paths=opt("path"),
            pixel_hashes=opt("pixel_hash"),
            dhashes=opt("dhash"),
            provenance=info.get("provenance", {}),
        )

    @staticmethod
    def combine(sets: Sequence["FeatureSet"], name: Optional[str] = None) -> "FeatureSet":
        """Concatenate the columns of several feature sets on their common images.

        Raises
        ------
        InvalidParameterError
            When ``sets`` is empty or two of them share a column name.

        Example
        -------
        >>> import numpy as np
        >>> a = FeatureSet("a", np.ones((2, 1)), ["all", "hem"], ["x", "y"], ["P1", "H1"],
        ...                ["train", "train"], ["a.f"])
        >>> b = FeatureSet("b", np.zeros((1, 2)), ["hem"], ["y"], ["H1"], ["train"], ["b.f0", "b.f1"])
        >>> ab = FeatureSet.combine([a, b])
        >>> ab.name, ab.ids.tolist(), ab.feature_names
        ('a+b', ['y'], ['a.f', 'b.f0', 'b.f1'])
        """
        if not sets:
            raise InvalidParameterError("FeatureSet.combine needs at least one feature set")
        if len(sets) == 1:
            return sets[0]
        common = set(sets[0].ids)
        for fs in sets[1:]:
            common &= set(fs.ids)
        first = sets[0]
        names = [n for fs in sets for n in fs.feature_names]
        twice = sorted(n for n, k in Counter(names).items() if k > 1)
        if twice:
            raise InvalidParameterError(f"cannot combine {[fs.name for fs in sets]}: columns {twice[:3]}"
                                        f"{' ...' if len(twice) > 3 else ''} would appear twice")
        order = np.array([i for i, id_ in enumerate(first.ids) if id_ in common], dtype=np.int64)
        ids = first.ids[order]
        rows = [order]  # each set's rows of the common images, in the first set's order
        for fs in sets[1:]:
            pos = {id_: i for i, id_ in enumerate(fs.ids)}
            rows.append(np.array([pos[i] for i in ids], dtype=np.int64))
        take = lambda a: None if a is None else a[order]  # noqa: E731
        return FeatureSet(
            name=name or "+".join(fs.name for fs in sets),
            X=hstack_rows([fs.X for fs in sets], rows),
            y=first.y[order],
            ids=ids,
            subjects=first.subjects[order],
            splits=first.splits[order],
            feature_names=names,
            paths=take(first.paths),
            pixel_hashes=take(first.pixel_hashes),
            dhashes=take(first.dhashes),
            provenance={"combined": [fs.provenance for fs in sets]},
        )
