"""Train/test splits of an evaluation, and the sentence that says how they were made.

Folds are built by subject (``StratifiedGroupKFold``) when subjects are known,
after the leakage audit has merged subjects that share identical or
near-identical images; when a class has fewer subjects (groups) than folds,
the number of folds is reduced to what the data allows and the run says so.

Example
-------
>>> import numpy as np
>>> y = np.array(["all"] * 6 + ["hem"] * 6, dtype=object)
>>> groups = np.array(["A1", "A1", "A2", "A2", "A3", "A3", "H1", "H1", "H2", "H2", "H3", "H3"], dtype=object)
>>> splits, description, notes = plan_splits(y, groups, cv=3, seed=0)
>>> [(s.fold, len(s.train), len(s.test)) for s in splits]
[(0, 8, 4), (1, 8, 4), (2, 8, 4)]
>>> description.split(":")[0]
'StratifiedGroupKFold(3) (seed 0)'
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from ..exceptions import EvaluationError
from ..schema import DEFAULT_SEED
from .options import check_scheme

if TYPE_CHECKING:
    from ..featureset import FeatureSet

__all__ = ["Split", "plan_splits"]


@dataclasses.dataclass(frozen=True)
class Split:
    """One train/test split: indices into the labelled images."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def plan_splits(
    y: np.ndarray,
    groups: Optional[np.ndarray],
    splits: Optional[np.ndarray] = None,
    *,
    scheme: str = "cv",
    cv: int = 5,
    repeats: int = 1,
    seed: int = DEFAULT_SEED,
    n_without_subject: int = 0,
) -> Tuple[List[Split], str, List[str]]:
    """Plan the train/test splits of an evaluation.

    Parameters
    ----------
    y : ndarray
        Class labels of the labelled images.
    groups : ndarray or None
        Group (merged subject) of each image; ``None`` when subjects are unknown.
    splits : ndarray, optional
        ``"train"``/``"test"`` per image, for ``scheme="predefined"``.
    scheme : {"cv", "predefined"}
    cv, repeats, seed
        Folds, repetitions (each with seed ``seed + r``) and base seed
        (default :data:`leukbench.schema.DEFAULT_SEED`, as for :func:`compare`).
    n_without_subject : int
        Images without a subject id among ``groups`` (each its own group,
        unless the audit linked it to others); only used in the description.

    Returns
    -------
    splits : list of Split
    description : str
        One or two sentences saying which scheme was used and why.
    notes : list of str
        Warnings (fewer folds than asked...).

    Raises
    ------
    EvaluationError
        When fewer than 2 folds are possible, or the predefined split lacks
        a train or test part.
    InvalidParameterError
        For an unknown ``scheme``, ``cv < 2`` or ``repeats < 1``.

    Example
    -------
    >>> y = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    >>> parts = np.array(["train", "train", "test", "train", "train", "test"], dtype=object)
    >>> [s.test.tolist() for s in plan_splits(y, None, parts, scheme="predefined")[0]]
    [[2, 5]]
    """
    check_scheme(scheme, cv, repeats)
    y = np.asarray(y, dtype=object)
    if scheme == "predefined":
        return _predefined_split(y, groups, splits)
    k, notes = _fold_count(y, groups, cv, splits)
    out, kept = _cv_partitions(y, groups, k, repeats, seed)
    if len(kept) < repeats:
        notes.append(
            f"{repeats - len(kept)} of the {repeats} repeats gave folds identical to an earlier repeat and "
            f"were dropped, leaving {len(kept)} distinct partition(s)"
            + (" (StratifiedGroupKFold's shuffle only reorders subject groups of equal size, and "
               "few groups here have equal sizes)" if groups is not None else "")
        )
    desc = _describe_cv(k, [seed + r for r in kept], groups, n_without_subject, len(y), seed)
    if notes:
        desc += " Note: " + "; ".join(notes) + "."
    return out, desc, notes


def _predefined_split(y: np.ndarray, groups: Optional[np.ndarray],
                      splits: Optional[np.ndarray]) -> Tuple[List[Split], str, List[str]]:
    """The dataset's own train/test split as one fold, with what it lacks as warnings."""
    if splits is None:
        raise EvaluationError("split='predefined' needs the dataset's train/test split")
    splits = np.asarray(splits, dtype=object)
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if len(train) == 0 or len(test) == 0:
        raise EvaluationError(
            "split='predefined' needs labelled images in both the train and the test split "
            f"(found {len(train)} train, {len(test)} test); use split='cv' (--split cv)"
        )
    missing = sorted(set(y) - set(y[train]))
    if missing:
        raise EvaluationError(f"split='predefined': the train split has no image of class(es) "
                              f"{', '.join(map(str, missing))}; use split='cv' (--split cv)")
    notes: List[str] = []
    desc = (f"Predefined split: trained on the {len(train)} labelled images of the train split, "
            f"scored on the {len(test)} of the test split (one fold).")
    absent = sorted(set(y) - set(y[test]))
    if absent:
        notes.append(f"the test split has no image of class(es) {', '.join(map(str, absent))}, "
                     "so balanced accuracy and ROC AUC cover the other classes only")
        desc += f" Warning: {notes[-1]}."
    if groups is not None:
        shared = sorted(set(groups[train]) & set(groups[test]))
        if shared:
            notes.append(f"{len(shared)} subject group(s) are in both the train and the test split: "
                         f"{', '.join(map(str, shared[:5]))}")
            desc += f" Warning: {notes[-1]}."
    return [Split(0, 0, train, test)], desc, notes


def _fold_count(y: np.ndarray, groups: Optional[np.ndarray], cv: int,
                splits: Optional[np.ndarray]) -> Tuple[int, List[str]]:
    """Folds the data allows (every class in every test fold), and a note when under ``cv``."""
    classes = sorted(set(y))
    if len(classes) < 2:
        raise EvaluationError(f"need at least two classes to compare classifiers, found {classes}")
    if groups is not None:
        per_class = {c: len(set(groups[y == c])) for c in classes}
        unit = "subject group"
    else:
        per_class = {c: int((y == c).sum()) for c in classes}
        unit = "image"
    k = min(cv, min(per_class.values()))
    notes: List[str] = []
    if k < cv:
        poor = ", ".join(f"{c}: {n}" for c, n in per_class.items() if n < cv)
        notes.append(
            f"asked for {cv} folds, but some class has fewer {unit}s than that ({poor}); "
            f"folds without that class would make balanced accuracy and ROC AUC meaningless, "
            f"so {k} folds are used"
        )
    if k < 2:
        has_test = splits is not None and "test" in set(np.asarray(splits, dtype=object))
        raise EvaluationError(
            f"cannot cross-validate honestly: a class has fewer than 2 {unit}s "
            f"({', '.join(f'{c}: {n}' for c, n in per_class.items())}); add data for that class"
            + (" or use split='predefined' (--split predefined), since the data has a test split"
               if has_test else "")
        )
    return k, notes


def _cv_partitions(y: np.ndarray, groups: Optional[np.ndarray], k: int, repeats: int,
                   seed: int) -> Tuple[List[Split], List[int]]:
    """The folds of each repeat (seed ``seed + r``); a repeat that gives folds identical to an
    earlier one adds no evidence and is dropped. Also returns the repeats kept."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    out: List[Split] = []
    idx = np.arange(len(y))
    seen: Dict[frozenset, int] = {}  # partition (its test folds) -> the repeat that made it first
    for r in range(repeats):
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = list(splitter.split(idx, y.astype(str), groups.astype(str)))
        else:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
            folds = list(splitter.split(idx, y.astype(str)))
        partition = frozenset(tuple(np.sort(te)) for _, te in folds)
        if partition in seen:
            continue
        seen[partition] = r
        for f, (tr, te) in enumerate(folds):  # repeat r keeps its number: it used seed + r
            out.append(Split(r, f, np.asarray(tr), np.asarray(te)))
    return out, sorted(seen.values())


def _describe_cv(k: int, seeds: List[int], groups: Optional[np.ndarray], n_without_subject: int,
                 n_images: int, seed: int) -> str:
    """The sentence naming the splitter, its seeds and what the groups mean for the scores."""
    rep = (f", repeated {len(seeds)} times (seeds {', '.join(map(str, seeds))})"
           if len(seeds) > 1 else f" (seed {seed})")
    if groups is None:
        return (f"StratifiedKFold({k}){rep}: subject ids are unknown, so folds are split by image; "
                "cells of one patient may be on both sides, which makes the scores optimistic.")
    n_groups = len(set(groups))
    if n_without_subject >= n_images:
        return (f"StratifiedGroupKFold({k}){rep}: subject ids are unknown, so folds are split by image, "
                f"except that images the leakage audit found duplicated are kept together ({n_groups} "
                "groups); cells of one patient may be on both sides, which makes the scores optimistic.")
    desc = (f"StratifiedGroupKFold({k}){rep}: subjects are known, so no subject (group) is ever in "
            f"both the train and the test part of a fold; {n_groups} groups.")
    if n_without_subject:
        desc = desc[:-1] + (f"; {n_without_subject} image(s) have no subject id and form groups of their "
                            "own (with their copies, when the audit found any), so they may share a "
                            "patient with others.")
    return desc


def cv_groups(fs: FeatureSet, report) -> Tuple[Optional[np.ndarray], int]:
    """Cross-validation groups of a labelled feature set, and its images without subject.

    Subjects known (some or all): the audit's groups (duplicates merged), or
    the subjects with one group per image that has none. No subject at all:
    ``None`` (folds by image), unless the audit linked duplicate images, whose
    groups then keep each duplicate with its original.
    """
    subjects = np.array(["" if s is None else str(s) for s in fs.subjects], dtype=object)
    known = subjects != ""
    n_unknown = int((~known).sum())
    if report is not None:
        groups = np.asarray(report.groups, dtype=object)
        if known.any() or len(set(groups)) < len(groups):
            return groups, n_unknown
        return None, n_unknown
    if not known.any():
        return None, n_unknown
    fill = np.array([f"image-{i}" for i in range(len(fs))], dtype=object)
    return np.where(known, subjects, fill), n_unknown


def audit_sentence(report, merged: bool, scheme: str) -> str:
    """What the leakage audit found and did about the folds, as a sentence (or "")."""
    if report is None or report.pairs is None or len(report.pairs) == 0:
        return ""
    n = len(report.pairs)
    found = f"leakage audit found {n} identical or near-identical image pair(s) across subjects or splits"
    if scheme == "predefined":
        cross = int((report.pairs["split_a"] != report.pairs["split_b"]).sum())
        if cross:
            return f" Warning: the {found}, {cross} of them across the train and test splits."
        return f" Note: the {found}, none across the train and test splits."
    if merged:
        how = (f"the subjects involved were merged into {len(report.merged_subjects)} group(s)"
               if report.merged_subjects else "they were grouped together")
        return f" The {found}; {how}, so a cell and its copy are never on both sides of a fold."
    return (f" Warning: the {found} that were not merged (keep-duplicates); "
            "copies of a cell may be on both sides of a fold.")
