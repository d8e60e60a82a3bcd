"""What :func:`~leukbench.evaluation.compare` accepts, checked before any work.

Two public checks, shared by the library and the command line:

* :func:`check_options`: the parameters of a run (classifiers, scheme, folds,
  repeats, sort column, timeout, parallel jobs);
* :func:`check_dataset`: whether the labelled images -- a discovery table
  before extraction, or the feature sets after it -- can be compared as asked
  (two classes or more, a positive class among them, a train and a test split
  for ``split="predefined"``, no class lost to unreadable images).

Messages name the library's parameters (``positive_label``, ``classifiers``);
the command line shows an :class:`~leukbench.exceptions.InvalidParameterError`
with its flag instead (``InvalidParameterError.renamed``).

Example
-------
>>> check_dataset(["all", "hem"], positive_label="all")
['all', 'hem']
>>> check_dataset(["all", "hem"], positive_label="x")
Traceback (most recent call last):
...
leukbench.exceptions.InvalidParameterError: positive label 'x' is not a class; classes are ['all', 'hem']
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from .._validation import Interval, invalid, validate_params
from ..exceptions import EvaluationError, InvalidParameterError
from ..schema import DEFAULT_SORT, TABLE_NAMES, TIME_COLUMNS
from .statistics import DEFAULT_ALPHA, DEFAULT_RESAMPLES

if TYPE_CHECKING:
    from ..featureset import FeatureSet

__all__ = ["CheckedOptions", "SCHEMES", "check_options", "check_dataset"]

SCHEMES = ("cv", "predefined")


class CheckedOptions(NamedTuple):
    """What :func:`check_options` resolved (unpacks as ``names, sort``)."""

    classifiers: List[str]
    sort: str


def check_options(*, classifiers=None, battery: str = "default", split: str = "cv", cv: int = 5,
                  repeats: int = 1, sort: str = DEFAULT_SORT, timeout: Optional[float] = None,
                  n_jobs: Optional[int] = -1, alpha: float = DEFAULT_ALPHA,
                  n_bootstrap: int = DEFAULT_RESAMPLES, tune: bool = False, tune_trials: int = 20,
                  tune_budget: Optional[float] = None, reduce: str = "none",
                  normalize: str = "none") -> CheckedOptions:
    """Validate :func:`compare`'s options before any work.

    Parameters
    ----------
    classifiers, battery, split, cv, repeats, sort, timeout, n_jobs, alpha, n_bootstrap
        As in :func:`~leukbench.evaluation.compare`.
    tune, tune_trials, tune_budget
        As in :func:`~leukbench.evaluation.compare`: a bool, at least 1
        candidate, a positive number of seconds or ``None``.
    reduce, normalize
        As in :func:`~leukbench.evaluation.compare`: each name of the result
        becomes ``"<name> [<steps>]"`` when either asks for a step.

    Returns
    -------
    CheckedOptions
        ``classifiers``: the names to run; ``sort``: the table column to sort by.

    Raises
    ------
    InvalidParameterError, UnknownClassifierError, MissingDependencyError
        With a one-line message naming the parameter and what to pass instead.

    Example
    -------
    >>> check_options(classifiers="svc,GaussianNB", sort="roc_auc")
    CheckedOptions(classifiers=['SVC', 'GaussianNB'], sort='ROC AUC')
    >>> check_options(classifiers="-")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leukbench.exceptions.InvalidParameterError: classifiers is empty; name classifiers to run, ...
    >>> check_options(tune=True, tune_trials=0)
    Traceback (most recent call last):
    ...
    leukbench.exceptions.InvalidParameterError: tune_trials must be an integer of at least 1 (got 0)
    """
    from .._estimators import with_postprocessing
    from ..classifiers import select_classifiers

    if _is_empty_selection(classifiers):
        raise invalid("classifiers", "is empty; name classifiers to run, or leave it out for the battery")
    names = select_classifiers(classifiers, battery)
    if not names:
        raise invalid("classifiers", f"{classifiers!r} leaves no classifier to run; "
                                     "check the names asked for")
    check_scheme(split, cv, repeats)
    validate_params({"timeout": timeout, "n_jobs": n_jobs}, {"timeout": [Interval(float, None, None), None],
                                                             "n_jobs": [Interval(int, None, None), None]})
    if timeout is not None and not timeout > 0:
        raise invalid("timeout", f"must be a positive number of seconds or None (got {timeout!r})")
    if n_jobs == 0:
        raise invalid("n_jobs", "is 0, which is not a number of jobs; use 1, N, or -1 for all cores")
    validate_params({"alpha": alpha, "n_bootstrap": n_bootstrap},
                    {"alpha": [Interval(float, 0, 0.5, open_low=True)], "n_bootstrap": [Interval(int, 0, None)]})
    validate_params({"tune": tune, "tune_trials": tune_trials, "tune_budget": tune_budget},
                    {"tune": [bool], "tune_trials": [Interval(int, 1, None)],
                     "tune_budget": [Interval(float, 0, None, open_low=True), None]})
    if tune_budget is not None and not tune_budget > 0:  # NaN
        raise invalid("tune_budget", f"must be a positive number of seconds or None (got {tune_budget!r})")
    return CheckedOptions(with_postprocessing(names, reduce, normalize), sort_column(sort))


def _is_empty_selection(classifiers) -> bool:
    """``""``, ``"-"``, ``" , "``, ``[]`` or ``{}``: names asked for, but none given (``None`` is the
    battery; an estimator, alone or in a list, is something to run)."""
    if classifiers is None or callable(getattr(classifiers, "fit", None)):  # the battery, or one estimator
        return False
    items = classifiers.split(",") if isinstance(classifiers, str) else list(classifiers)
    return not any(not isinstance(c, str) or c.strip().lstrip("-") for c in items)


def check_scheme(scheme: str, cv: int, repeats: int) -> None:
    """``split`` is ``"cv"`` or ``"predefined"``; for ``"cv"``, ``cv >= 2`` folds and ``repeats >= 1``."""
    if scheme not in SCHEMES:
        raise InvalidParameterError(f"unknown split {scheme!r}; use 'cv' or 'predefined'", parameter="split")
    if scheme != "cv":
        return
    validate_params({"cv": cv, "repeats": repeats},
                    {"cv": [Interval(int, None, None)], "repeats": [Interval(int, None, None)]})
    if cv < 2:
        raise invalid("cv", f"must be at least 2 (got {cv})")
    if repeats < 1:
        raise invalid("repeats", f"must be at least 1 (got {repeats})")


def sort_column(sort: str) -> str:
    """The table column for ``sort`` (a column name or a metric key, any case).

    Example
    -------
    >>> sort_column("roc_auc"), sort_column("fit time")
    ('ROC AUC', 'Fit Time')
    """
    columns = list(TABLE_NAMES.values()) + list(TIME_COLUMNS)
    lookup = {c.lower(): c for c in columns}
    lookup.update(TABLE_NAMES)
    lookup.update({"fit_time": "Fit Time", "time_taken": "Time Taken"})
    key = str(sort).strip()
    found = lookup.get(key) or lookup.get(key.lower())
    if found is None:
        raise InvalidParameterError(f"cannot sort by {sort!r}; use one of {', '.join(columns)}",
                                    parameter="sort")
    return found


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one, else all).

    Example
    -------
    >>> 1 <= usable_cores() <= (os.cpu_count() or 1)
    True
    """
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:  # pragma: no cover - a system that lists it but refuses
            pass
    return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: Optional[int]) -> int:
    """Parallel tasks for ``n_jobs``: ``None`` is 1, ``-1`` all usable cores (:func:`usable_cores`),
    ``-2`` all but one ...

    Example
    -------
    >>> resolve_n_jobs(3), resolve_n_jobs(None), resolve_n_jobs(-1) == usable_cores()
    (3, 1, True)
    """
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, usable_cores() + 1 + n_jobs)
    return n_jobs


# ---------------------------------------------------------------------------
# feature sets and datasets
# ---------------------------------------------------------------------------


def labelled_sets(feature_sets) -> List[FeatureSet]:
    """``feature_sets`` (a FeatureSet, a list of them or a dict name -> FeatureSet) as a list of
    their labelled images; each must have some."""
    sets = [fs.labeled() for fs in _as_sets(feature_sets)]
    for fs in sets:
        if len(fs) == 0:
            raise EvaluationError(f"feature set {fs.name!r} has no labelled image")
    return sets


def _as_sets(feature_sets) -> List[FeatureSet]:
    from ..featureset import FeatureSet

    if isinstance(feature_sets, FeatureSet):
        return [feature_sets]
    if isinstance(feature_sets, Mapping):
        sets = []
        for name, fs in feature_sets.items():
            if fs.name != name:
                fs = dataclasses.replace(fs, name=str(name))
            sets.append(fs)
        return sets
    sets = list(feature_sets)
    if not sets or not all(isinstance(fs, FeatureSet) for fs in sets):
        raise invalid("feature_sets", "must be a FeatureSet, a list of them or a dict name -> FeatureSet")
    names = [fs.name for fs in sets]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"feature set names must be unique, got {names}",
                                    parameter="feature_sets")
    return sets


@dataclasses.dataclass(frozen=True)
class _Labels:
    """The labelled images of one part of a dataset: a feature set, or the whole discovery table."""

    name: str
    labels: np.ndarray  # str, one per labelled image
    splits: Optional[np.ndarray]  # "train"/"test"/... per labelled image; None when unknown

    @property
    def classes(self) -> List[str]:
        return sorted(set(self.labels))


def _is_label(value) -> bool:
    return value is not None and value == value and value != ""


def _part(name: str, labels, splits) -> _Labels:
    """The labelled images among ``labels`` (and their ``splits``, when known)."""
    labels = np.asarray(labels, dtype=object)
    keep = np.array([_is_label(v) for v in labels], dtype=bool)
    return _Labels(name, np.array([str(v) for v in labels[keep]], dtype=object),
                   None if splits is None else np.asarray(splits, dtype=object)[keep])


def _labels_of(data) -> List[_Labels]:
    """A discovery table, FeatureSet(s) or class names as :class:`_Labels` parts."""
    if hasattr(data, "columns") and "label" in data.columns:  # a discovery table
        return [_part("", data["label"], data["split"] if "split" in data.columns else None)]
    from ..featureset import FeatureSet

    if isinstance(data, (FeatureSet, Mapping)) or (
            not isinstance(data, str) and data and all(isinstance(d, FeatureSet) for d in data)):
        return [_part(fs.name, fs.y, fs.splits) for fs in _as_sets(data)]
    if isinstance(data, str) or not all(isinstance(c, str) for c in data):
        raise invalid("data", "must be a discovery table, FeatureSet(s) or a list of class names")
    return [_part("", list(data), None)]


def check_dataset(data, *, split: str = "cv", positive_label: Optional[str] = None,
                  classes: Optional[Sequence[str]] = None, source: Optional[str] = None) -> List[str]:
    """Check that labelled images can be compared as asked, before any work.

    Parameters
    ----------
    data : DataFrame, FeatureSet, list or dict of FeatureSet, or list of str
        A discovery table (``label`` and ``split`` columns, see
        :func:`leukbench.discover`), the feature sets of a run, or just the
        class names. Unlabelled images are ignored.
    split : {"cv", "predefined"}
        ``"predefined"`` needs labelled images in both a train and a test split.
    positive_label : str, optional
        Must be one of the two classes; given for more than two it is an error.
    classes : list of str, optional
        The classes the images should have (e.g. those of the discovery table,
        checked before extraction); a part of ``data`` left with fewer than two
        of them lost the others to unreadable images. Default: the classes of
        all parts of ``data`` together.
    source : str, optional
        The dataset (folder or manifest) named in the messages.

    Returns
    -------
    list of str
        The classes, sorted.

    Raises
    ------
    EvaluationError
        Fewer than two classes, a class lost to unreadable images, or no
        train or test images for ``split="predefined"``.
    InvalidParameterError
        ``positive_label`` is not a class of the binary problem, or is given
        for more than two classes.

    Example
    -------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"label": ["all", "hem", ""], "split": ["train", "train", "unlabeled"]})
    >>> check_dataset(table, source="data/")
    ['all', 'hem']
    >>> check_dataset(table, split="predefined", source="data/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leukbench.exceptions.EvaluationError: data/: split='predefined' needs ... (found 2 train, 0 test): ...
    """
    parts = _labels_of(data)
    found = sorted({c for part in parts for c in part.classes})
    expected = sorted({str(c) for c in classes}) if classes is not None else found
    prefix = f"{source}: " if source else ""
    for part in parts:
        _check_no_class_lost(part, expected, prefix)
    if len(found) < 2:
        raise EvaluationError(f"need at least two classes to compare classifiers, found {found}")
    if split == "predefined":
        for part in parts:
            _check_train_and_test(part, prefix)
    if positive_label is not None:
        _check_positive_label(positive_label, found, source)
    return found


def _check_no_class_lost(part: _Labels, expected: List[str], prefix: str) -> None:
    lost = sorted(set(expected) - set(part.classes))
    if lost and len(expected) - len(lost) < 2:  # a class whose every image was unreadable: say so
        where = f" for {part.name}" if part.name else ""
        raise EvaluationError(f"{prefix}no image of class {', '.join(lost)} could be read{where} "
                              "(see the skipped images of the extraction); fix or replace them")


def _check_train_and_test(part: _Labels, prefix: str) -> None:
    if part.splits is None:
        return
    n_train, n_test = int((part.splits == "train").sum()), int((part.splits == "test").sum())
    if n_train == 0 or n_test == 0:
        raise EvaluationError(
            f"{prefix}split='predefined' needs labelled images in both a train and a test split "
            f"(found {n_train} train, {n_test} test): give a C-NMC release with its test set or a "
            "manifest with a split column, or use split='cv'"
        )


def _check_positive_label(label: Any, classes: List[str], source: Optional[str]) -> None:
    """``label`` must be one of two classes; the messages keep the library's and the CLI's wording."""
    if len(classes) == 2 and label not in classes:
        if source:
            requirement = f"{label!r} is not a class of {source}; its classes are {', '.join(classes)}"
        else:
            requirement = f"{label!r} is not a class; classes are {classes}"
        raise InvalidParameterError(f"positive label {requirement}", parameter="positive_label",
                                    requirement=requirement)
    if len(classes) != 2:  # F1/precision/recall are weighted over the classes, ROC AUC one-vs-rest
        fix = "leave it out (F1, precision and recall are then weighted over the classes)"
        requirement = f"applies to two classes, and {source or 'the data'} has {len(classes)}; {fix}"
        message = (f"positive label {requirement}" if source else
                   f"positive label {label!r}: there are {len(classes)} classes, and a positive class "
                   f"applies to two; {fix}")
        raise InvalidParameterError(message, parameter="positive_label", requirement=requirement)
