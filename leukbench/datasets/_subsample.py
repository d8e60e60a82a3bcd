"""The reduced-data mode: a stratified, subject-preserving, seeded subsample of a discovery table.

:func:`subsample` keeps part of the labelled images of a table before any
image is read, in three steps applied in this order (each optional):

1. ``max_per_subject``: at most N images per subject (a seeded random choice
   of its images); an image without a subject is its own subject.
2. ``fraction``: about F of each class, by whole subjects, at least one
   subject per class.
3. ``max_per_class``: at most N images per class, by whole subjects.

Steps 2 and 3 walk the subjects of each class in a seeded random order and
take each whole subject that still fits, so no subject is split — except
when every subject of a class holds more than ``max_per_class`` images: then
the first subject of the order is cut to N images (the only split, so that
the class keeps N images). Unlabelled images (C-NMC's final test set) are
kept as they are. The same seed gives the same images; the result records
what was done in ``table.attrs["subsample"]``.

Example
-------
>>> from leukbench.datasets import discover, sample_root, subsample, subsample_line
>>> small = subsample(discover(sample_root()), max_per_subject=3)
>>> len(small), int(small["subject"].value_counts().max())
(48, 3)
>>> subsample_line(small.attrs["subsample"])
'subsample: kept 48 of 159 images (at most 3 per subject; seed 42; all 24 of 80, hem 24 of 79)'
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from .._validation import Interval, validate_params
from ..schema import DEFAULT_SEED

__all__ = ["subsample", "subsample_line", "SUBSAMPLE_CONSTRAINTS"]

#: The checks of the reduced-data parameters, by the name ``extract_all`` gives them
#: (``None``: that step is not done).
SUBSAMPLE_CONSTRAINTS = {
    "max_per_subject": [Interval(int, 1, None), None],
    "max_per_class": [Interval(int, 1, None), None],
    "fraction": [Interval(float, 0, 1, open_low=True), None],
    "subsample_seed": [Interval(int, 0, None)],
}
_OWN_CONSTRAINTS = {**{k: v for k, v in SUBSAMPLE_CONSTRAINTS.items() if k != "subsample_seed"},
                    "seed": SUBSAMPLE_CONSTRAINTS["subsample_seed"]}


def _subject_keys(table: pd.DataFrame) -> pd.Series:
    """The subject of each row; an image without one is its own subject (keyed by its id)."""
    subjects = table["subject"].astype(str)
    return subjects.where(subjects != "", "\0" + table["id"].astype(str))


def _cap_subjects(table: pd.DataFrame, keys: pd.Series, n: int, rng) -> List[Any]:
    """Index labels of at most ``n`` images per subject, chosen at random."""
    keep: List[Any] = []
    for _, group in table.groupby(keys, sort=True):
        index = sorted(group.index, key=lambda i: table.at[i, "id"])
        if len(index) > n:
            index = [index[j] for j in sorted(rng.choice(len(index), n, replace=False))]
        keep += index
    return keep


def _subject_order(group: pd.DataFrame, keys: pd.Series, rng) -> List[List[Any]]:
    """The subjects of ``group`` (one class) in a seeded random order, each as its index labels."""
    members = {k: sorted(g.index, key=lambda i: group.at[i, "id"])
               for k, g in group.groupby(keys.loc[group.index], sort=True)}
    names = sorted(members)
    return [members[names[j]] for j in rng.permutation(len(names))]


def _take_fraction(order: List[List[Any]], fraction: float) -> List[Any]:
    """Whole subjects, in ``order``, while they bring the count nearer ``fraction`` of the class."""
    target = fraction * sum(len(s) for s in order)
    keep: List[Any] = []
    for subject in order:
        if not keep or len(keep) + len(subject) / 2 <= target:
            keep += subject
    return keep


def _take_at_most(order: List[List[Any]], n: int, rng) -> List[Any]:
    """Whole subjects, in ``order``, that still fit under ``n``; one cut subject if none fits."""
    keep: List[Any] = []
    for subject in order:
        if len(keep) + len(subject) <= n:
            keep += subject
    if not keep:  # every subject is larger than n: the first one, cut to n images
        first = order[0]
        keep = [first[j] for j in sorted(rng.choice(len(first), n, replace=False))]
    return keep


def _per_class(table: pd.DataFrame, keys: pd.Series, step, rng) -> pd.DataFrame:
    """``table`` with ``step(subject order, rng)`` applied to each class."""
    keep: List[Any] = []
    for _, group in table.groupby("label", sort=True):
        keep += step(_subject_order(group, keys, rng), rng)
    return table.loc[sorted(keep)]


def _record(before: pd.DataFrame, after: pd.DataFrame, params: Dict[str, Any]) -> Dict[str, Any]:
    """What ``table.attrs["subsample"]`` says: the parameters, the counts kept, per class."""
    keys_before, keys_after = _subject_keys(before), _subject_keys(after)
    classes = {}
    labelled = before["label"].notna() & (before["label"].astype(str) != "")
    for label in sorted(before.loc[labelled, "label"].unique()):
        was, now = before["label"] == label, after["label"] == label
        classes[str(label)] = {"images": int(now.sum()), "of": int(was.sum()),
                               "subjects": int(keys_after[now].nunique()),
                               "of_subjects": int(keys_before[was].nunique())}
    return {**params, "n_kept": len(after), "n_images": len(before),
            "n_unlabeled": int((~labelled).sum()), "classes": classes}


def subsample(table: pd.DataFrame, *, max_per_subject: Optional[int] = None,
              max_per_class: Optional[int] = None, fraction: Optional[float] = None,
              seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """A stratified, subject-preserving, seeded subsample of a discovery table.

    Parameters
    ----------
    table : DataFrame
        A table of :func:`leukbench.datasets.discover`.
    max_per_subject, max_per_class : int, optional
        At most this many images per subject / per class (see the module).
    fraction : float, optional
        About this share of each class's images, by whole subjects, in (0, 1].
    seed : int
        The same seed chooses the same images.

    Returns
    -------
    DataFrame
        The rows kept, in the table's order, with the table's ``attrs`` plus
        ``attrs["subsample"]`` (parameters, ``n_kept``, ``n_images`` and the
        counts per class); ``table`` itself when no step is asked for.

    Raises
    ------
    InvalidParameterError
        Naming the parameter that is out of range.

    Example
    -------
    >>> from leukbench.datasets import load_sample
    >>> small = subsample(load_sample(), max_per_class=30, seed=1)
    >>> small["label"].value_counts().to_dict()
    {'all': 30, 'hem': 30}
    """
    params = {"max_per_subject": max_per_subject, "max_per_class": max_per_class,
              "fraction": fraction, "seed": seed}
    validate_params(params, _OWN_CONSTRAINTS)
    if max_per_subject is None and max_per_class is None and fraction is None:
        return table
    attrs, table = dict(table.attrs), table.reset_index(drop=True)
    unlabelled = table["label"].isna() | (table["label"].astype(str) == "")
    labelled = table[~unlabelled]
    keys = _subject_keys(labelled)
    kept = labelled
    if max_per_subject is not None:
        kept = kept.loc[sorted(_cap_subjects(kept, keys.loc[kept.index], max_per_subject,
                                             np.random.default_rng([seed, 1])))]
    if fraction is not None:
        kept = _per_class(kept, keys, lambda order, rng: _take_fraction(order, fraction),
                          np.random.default_rng([seed, 2]))
    if max_per_class is not None:
        kept = _per_class(kept, keys, lambda order, rng: _take_at_most(order, max_per_class, rng),
                          np.random.default_rng([seed, 3]))
    out = table.loc[table.index.isin(kept.index) | unlabelled].reset_index(drop=True)
    out.attrs = {**attrs, "subsample": _record(table, out, params)}
    return out


def subsample_line(info: Dict[str, Any]) -> str:
    """The summary line of a subsample record (``table.attrs["subsample"]``).

    Example
    -------
    >>> subsample_line({"n_kept": 5, "n_images": 9, "fraction": 0.5, "seed": 42, "n_unlabeled": 0,
    ...                 "classes": {"a": {"images": 5, "of": 9}}})
    'subsample: kept 5 of 9 images (about 0.5 of each class; seed 42; a 5 of 9)'
    """
    rules = []
    if info.get("max_per_subject") is not None:
        rules.append(f"at most {info['max_per_subject']} per subject")
    if info.get("fraction") is not None:
        rules.append(f"about {info['fraction']} of each class")
    if info.get("max_per_class") is not None:
        rules.append(f"at most {info['max_per_class']} per class")
    parts = [", ".join(rules), f"seed {info.get('seed')}",
             ", ".join(f"{c} {n['images']} of {n['of']}" for c, n in info.get("classes", {}).items())]
    if info.get("n_unlabeled"):
        parts.append(f"{info['n_unlabeled']} unlabelled kept")
    return f"subsample: kept {info['n_kept']} of {info['n_images']} images ({'; '.join(p for p in parts if p)})"
