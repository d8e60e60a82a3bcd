"""Nested, subject-aware tuning: a budgeted random search inside each outer training fold.

With ``compare(tune=True)`` every classifier that has a search space
(:data:`leukbench.classifiers.SEARCH_SPACES`) gets a second row,
``"<name> (tuned)"``. On each outer split its fit is a
:class:`BudgetedRandomSearch`: the candidates scikit-learn's
``RandomizedSearchCV`` would draw (``ParameterSampler``, ``n_iter=tune_trials``,
``random_state=seed``), each scored by balanced accuracy on inner folds, the
best refitted on the whole outer training fold and scored on the outer test
fold like any other fit.

The inner folds (:func:`inner_folds`) are made from the outer training rows
alone: ``StratifiedGroupKFold`` on their cross-validation groups (the subjects,
after the leakage audit's merging), so no subject is on both sides of an inner
fold, and they reach the search as a ``PredefinedSplit`` of those rows. The
search is fitted on ``X[train]`` only: the outer test fold is never seen.

Example
-------
>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> rng = np.random.default_rng(0)
>>> y = np.repeat([0, 1], 12)
>>> X = rng.normal(size=(24, 3)) + y[:, None]
>>> groups = np.repeat([f"s{i}" for i in range(8)], 3)
>>> folds = inner_folds(y, groups, n_folds=3, seed=0)
>>> search = BudgetedRandomSearch(LogisticRegression(), {"C": ("loguniform", 1e-2, 1e2)}, n_iter=4,
...                               cv=folds.splitter(), random_state=0).fit(X, y)
>>> search.n_candidates_, sorted(search.best_params_)
(4, ['C'])
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from sklearn.model_selection import ParameterSampler, PredefinedSplit
from sklearn.model_selection._search import BaseSearchCV

from ..exceptions import EvaluationError, InvalidParameterError
from ..schema import DEFAULT_SEED
from .fold_cache import digest

__all__ = ["BudgetedRandomSearch", "INNER_FOLDS", "InnerFolds", "TunedFit", "TuningSettings", "budget_note",
           "distributions", "inner_folds", "plan_fit", "tuned_name", "tuning_notes"]

#: Inner folds of each search (fewer when a class of the outer training fold has fewer groups).
INNER_FOLDS = 3

#: What the search of a tuned row scores candidates by.
SCORING = "balanced_accuracy"

#: Bumped when the search or its inner folds change (part of the fold-cache key of tuned fits).
TUNING_VERSION = 1

_SUFFIX = " (tuned)"
_KINDS = ("loguniform", "uniform", "randint")


def tuned_name(name: str) -> str:
    """The table name of a classifier's tuned row.

    Example
    -------
    >>> tuned_name("SVC")
    'SVC (tuned)'
    """
    return name + _SUFFIX


def base_name(name: str) -> str:
    """The classifier behind a table name: ``"SVC (tuned)"`` -> ``"SVC"`` (other names unchanged).

    Example
    -------
    >>> base_name("SVC (tuned)"), base_name("GaussianNB")
    ('SVC', 'GaussianNB')
    """
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name


def distributions(space: Mapping[str, Any]) -> Dict[str, Any]:
    """A declared search space as ``ParameterSampler`` takes it (scipy distributions and lists).

    Parameters
    ----------
    space : dict
        Parameter -> ``("loguniform", low, high)``, ``("uniform", low, high)``,
        ``("randint", low, high)`` (integers ``low..high``, both included) or a
        non-empty list of choices.

    Raises
    ------
    InvalidParameterError
        For an entry of any other form (the message names the parameter).

    Example
    -------
    >>> d = distributions({"C": ("loguniform", 0.1, 10.0), "k": ("randint", 1, 3), "w": ["a", "b"]})
    >>> sorted(set(d["k"].rvs(size=50, random_state=0).tolist())), d["w"]
    ([1, 2, 3], ['a', 'b'])
    """
    from scipy import stats

    if not isinstance(space, Mapping) or not space:
        raise InvalidParameterError(f"a search space must be a non-empty dict parameter -> entry (got {space!r})",
                                    parameter="space")
    out: Dict[str, Any] = {}
    for param, entry in space.items():
        if isinstance(entry, list) and entry:
            out[param] = list(entry)
            continue
        kind, low, high = _range_of(param, entry)
        if kind == "loguniform":
            out[param] = stats.loguniform(low, high)
        elif kind == "uniform":
            out[param] = stats.uniform(low, high - low)
        else:
            out[param] = stats.randint(int(low), int(high) + 1)
    return out


def _range_of(param: str, entry: Any):
    """``(kind, low, high)`` of a range entry, checked."""
    ok = (isinstance(entry, tuple) and len(entry) == 3 and entry[0] in _KINDS
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in entry[1:]))
    if ok:
        kind, low, high = entry
        ok = low <= high if kind == "randint" else low < high
        ok = ok and (kind != "loguniform" or low > 0)
        ok = ok and (kind != "randint" or (float(low).is_integer() and float(high).is_integer()))
        if ok:
            return kind, low, high
    raise InvalidParameterError(
        f"search space entry {param!r} is {entry!r}; use ('loguniform', low, high) with 0 < low < high, "
        "('uniform', low, high), ('randint', low, high) with integers or a non-empty list of choices",
        parameter="space")


class InnerFolds(NamedTuple):
    """The inner folds of one search: the inner fold of each outer training row."""

    test_fold: np.ndarray
    n_folds: int
    by_subject: bool  # False: no groups, folds split by image

    def splitter(self) -> PredefinedSplit:
        return PredefinedSplit(self.test_fold)


def inner_folds(y, groups=None, n_folds: int = INNER_FOLDS, seed: int = DEFAULT_SEED) -> InnerFolds:
    """Subject-aware inner folds of an outer training part (its labels and groups only).

    ``StratifiedGroupKFold(shuffle=True, random_state=seed)`` on ``groups``
    (``StratifiedKFold`` when ``groups`` is ``None``); fewer than ``n_folds``
    when a class has fewer groups (images) than that, so that every inner
    test fold can hold every class.

    Raises
    ------
    EvaluationError
        When a class has fewer than 2 groups (images): no search can be honest.

    Example
    -------
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> folds = inner_folds(y, np.array(list("aabbccdd")), n_folds=3, seed=0)
    >>> folds.n_folds, sorted(set(folds.test_fold.tolist()))
    (2, [0, 1])
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y).astype(str)
    classes = sorted(set(y))
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        per_class = {c: len(set(groups[y == c])) for c in classes}
    else:
        per_class = {c: int((y == c).sum()) for c in classes}
    k = min([n_folds, *per_class.values()])
    if len(classes) < 2 or k < 2:
        unit = "subject group" if groups is not None else "image"
        counts = ", ".join(f"{c}: {n}" for c, n in per_class.items())
        raise EvaluationError(f"cannot tune: the outer training part needs 2 {unit}s or more of each of 2 "
                              f"classes for inner folds ({counts}); add data or leave tune off")
    if groups is not None:
        parts = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups)
    else:
        parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y)
    test_fold = np.full(len(y), -1, dtype=np.int64)
    for f, (_, test) in enumerate(parts):
        test_fold[test] = f
    return InnerFolds(test_fold, k, groups is not None)


class BudgetedRandomSearch(BaseSearchCV):
    """``RandomizedSearchCV``'s candidates, tried one at a time until a time budget is used up.

    The candidates are those of ``RandomizedSearchCV(n_iter=n_iter,
    random_state=random_state)`` on ``distributions(space)``, in its order;
    without a budget the search is the same as RandomizedSearchCV's. With
    one, the time is checked after each candidate (all its inner folds): the
    first always runs, and the one running when the budget ends finishes.
    The refit of the best candidate on all of ``X`` comes on top.

    Parameters
    ----------
    estimator : estimator
    space : dict
        The declared search space (see :func:`distributions`).
    n_iter : int
        Candidates to try at most.
    budget : float, optional
        Seconds of search (``None``: no limit).
    cv : cross-validation splitter
        The inner folds (``compare`` gives :meth:`InnerFolds.splitter`).
    scoring : str
    random_state : int
    n_jobs : int
        Parallel inner fits (``compare`` parallelises over tasks instead: 1).

    Attributes
    ----------
    best_params_, best_estimator_, cv_results_
        As for ``RandomizedSearchCV``.
    n_candidates_ : int
        Candidates tried.
    budget_exhausted_ : bool
        The budget stopped the search before all candidates.

    Example
    -------
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> X, y = np.arange(20.0).reshape(-1, 1), np.repeat([0, 1], 10)
    >>> s = BudgetedRandomSearch(KNeighborsClassifier(), {"n_neighbors": ("randint", 1, 5)}, n_iter=3,
    ...                          budget=1e-9, cv=3, random_state=0).fit(X, y)
    >>> s.n_candidates_, s.budget_exhausted_
    (1, True)
    """

    _parameter_constraints: dict = {**BaseSearchCV._parameter_constraints, "space": [dict],
                                    "n_iter": [numbers.Integral], "budget": [numbers.Real, None],
                                    "random_state": ["random_state"]}

    def __init__(self, estimator, space, *, n_iter: int = 20, budget: Optional[float] = None, cv=None,
                 scoring: str = SCORING, random_state=None, n_jobs: Optional[int] = 1):
        super().__init__(estimator, scoring=scoring, n_jobs=n_jobs, refit=True, cv=cv, error_score=np.nan,
                         return_train_score=False)
        self.space = space
        self.n_iter = n_iter
        self.budget = budget
        self.random_state = random_state

    def _run_search(self, evaluate_candidates):
        """BaseSearchCV's hook: the candidates, one call each, while the budget lasts."""
        start = time.perf_counter()
        sampler = ParameterSampler(distributions(self.space), self.n_iter, random_state=self.random_state)
        n_planned = len(sampler)
        self.budget_exhausted_ = False
        for i, params in enumerate(sampler):
            evaluate_candidates([params])
            if (self.budget is not None and i + 1 < n_planned
                    and time.perf_counter() - start >= self.budget):
                self.budget_exhausted_ = True
                break

    def fit(self, X, y=None, **params):
        super().fit(X, y, **params)
        self.n_candidates_ = len(self.cv_results_["params"])
        return self


@dataclasses.dataclass(frozen=True)
class TuningSettings:
    """The tuning options of a run: candidates per search, seconds per search, inner folds."""

    n_trials: int = 20
    budget: Optional[float] = None
    n_inner: int = INNER_FOLDS


@dataclasses.dataclass(frozen=True, eq=False)  # an array inside
class TunedFit:
    """The search of one tuned task: which classifier, its space, the settings and inner folds."""

    classifier: str
    space: Dict[str, Any]
    settings: TuningSettings
    folds: InnerFolds

    def build(self, seed: int) -> BudgetedRandomSearch:
        """A fresh, unfitted search around a fresh ``classifier``."""
        from ..classifiers import make_classifier

        return BudgetedRandomSearch(make_classifier(self.classifier, seed), self.space,
                                    n_iter=self.settings.n_trials, budget=self.settings.budget,
                                    cv=self.folds.splitter(), random_state=seed)

    def key_part(self) -> str:
        """What the fold-cache key of the task adds to the classifier's own signature."""
        return json.dumps({"tuning": TUNING_VERSION, "search": BudgetedRandomSearch.__name__,
                           "scoring": SCORING, "space": self.space, "n_trials": self.settings.n_trials,
                           "budget": self.settings.budget, "inner_folds": self.folds.n_folds,
                           "inner_assignment": digest(self.folds.test_fold)}, sort_keys=True, default=repr)

    @property
    def n_planned(self) -> int:
        """Candidates the search tries without a budget (fewer than ``n_trials`` for a small grid)."""
        return len(ParameterSampler(distributions(self.space), self.settings.n_trials, random_state=0))

    def cost(self, base_cost: float) -> float:
        """Relative cost of the task: the candidates' inner fits and the refit."""
        return base_cost * (self.settings.n_trials * self.folds.n_folds + 1)


def plan_fit(classifier: str, space: Dict[str, Any], settings: TuningSettings, y_train, groups_train,
             seed: int) -> TunedFit:
    """The :class:`TunedFit` of one outer training part, from its labels and groups only.

    Raises
    ------
    EvaluationError, InvalidParameterError
        No inner folds are possible, or the space is malformed.
    """
    distributions(space)  # a malformed space fails here, before any fit
    folds = inner_folds(y_train, groups_train, settings.n_inner, seed)
    return TunedFit(classifier, space, settings, folds)


def tuning_notes(untuned: Sequence[str], fits: Sequence[Optional[TunedFit]],
                 settings: TuningSettings) -> List[str]:
    """What a run should say about its tuning before the fits: classifiers without a space,
    inner folds fewer than asked, inner folds by image."""
    notes = []
    if untuned:
        notes.append(f"tuning: {', '.join(untuned)} ha{'s' if len(untuned) == 1 else 've'} no search space "
                     "(leukbench.classifiers.SEARCH_SPACES), so no tuned row")
    planned = [f for f in fits if f is not None]
    fewer = sorted({f.folds.n_folds for f in planned if f.folds.n_folds < settings.n_inner})
    if fewer:
        n = sum(1 for f in planned if f.folds.n_folds < settings.n_inner)
        notes.append(f"tuning: asked for {settings.n_inner} inner folds, but in {n} search(es) a class of the outer "
                     f"training fold has fewer groups than that, so those use {'/'.join(map(str, fewer))}")
    if any(not f.folds.by_subject for f in planned):
        notes.append("tuning: subject ids are unknown, so the inner folds of the search are split by image "
                     "(StratifiedKFold); cells of one patient may be on both sides of an inner fold")
    return notes


def budget_note(searches: Sequence[Tuple[Optional[TunedFit], Any]], settings: TuningSettings) -> Optional[str]:
    """After the fits: how far the budget let the searches go, when it stopped any.

    ``searches`` pairs each tuned task's :class:`TunedFit` (``None`` when it
    could not be planned) with its :class:`~leukbench.evaluation.fits.FitOutcome`.
    """
    if settings.budget is None:
        return None
    stopped = [o.n_candidates for f, o in searches
               if f is not None and o is not None and o.ok and o.n_candidates < f.n_planned]
    if not stopped:
        return None
    return (f"tuning: the budget of {settings.budget:g} s per search stopped {len(stopped)} search(es) "
            f"after {min(stopped)}-{max(stopped)} of {settings.n_trials} candidates (n_candidates in folds)")
