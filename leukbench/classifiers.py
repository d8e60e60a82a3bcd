"""The classifier battery: a fixed, versioned registry of named pipelines.

The default battery is deliberately a fixed list (not scikit-learn's
``all_estimators()``, which drifts with the installed version), so that a
results table names the same models next year. Each entry is a factory
``seed -> estimator`` that returns a fresh scikit-learn pipeline with the
scaling that model needs. ``battery="all"`` runs lazypredict's own list of
classifiers through leukbench's evaluation instead.

Example
-------
>>> from leukbench.classifiers import DEFAULT_BATTERY, select_classifiers
>>> select_classifiers("svc,GaussianNB")
['SVC', 'GaussianNB']
>>> len(select_classifiers("-GaussianNB")) == len(DEFAULT_BATTERY) - 1
True
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ._estimators import CustomClassifier, PostProcessed, named_estimators, split_estimators
from ._validation import invalid
from .exceptions import InvalidParameterError, MissingDependencyError, UnknownClassifierError

__all__ = [
    "BATTERY_VERSION",
    "BATTERIES",
    "UnknownClassifierError",
    "DEFAULT_BATTERY",
    "BATCH_BATTERY",
    "SEED_CLASSIFIERS",
    "classifier_version",
    "register_classifier",
    "unregister_classifier",
    "available_classifiers",
    "make_classifier",
    "select_classifiers",
    "CustomClassifier",
    "lazypredict_battery",
    "describe_pipeline",
    "SEARCH_SPACES",
    "search_space",
]

#: Bumped whenever a default pipeline or its parameters change (in run.json; the fold cache
#: keys each fit by :func:`classifier_version`). 2: LinearSVC stops at liblinear's default 1,000
#: iterations instead of 5,000 (issue 9: same result wherever it converged). 3:
#: HistGradientBoosting stops early on a 10 % validation split of its training fold (scikit-learn
#: does so by itself only above 10,000 rows) -- issue 9, docs/evaluation.md.
BATTERY_VERSION = 3

#: The battery version in which each built-in classifier last changed (the others: 2). A fit's
#: fold-cache key holds its classifier's version, so a change to one classifier recomputes that
#: classifier's fits only.
CLASSIFIER_VERSIONS: Dict[str, int] = {"HistGradientBoostingClassifier": 3, "BatchSGDLogistic": 3,
                                       "BatchSGDLinearSVM": 3, "BatchGaussianNB": 3}

#: The five classifiers of the original study.
SEED_CLASSIFIERS = ("SVC", "XGBClassifier", "LinearDiscriminantAnalysis", "RidgeClassifierCV",
                    "RidgeClassifier")

#: The batteries ``select_classifiers`` and ``compare`` know: leukbench's
#: fixed list (:data:`DEFAULT_BATTERY`) and lazypredict's list.
BATTERIES = ("default", "all", "batches")

Factory = Callable[[int], object]

_REGISTRY: Dict[str, Factory] = {}


def register_classifier(name: str, factory: Factory, *, replace: bool = False) -> None:
    """Add a classifier to the registry.

    Parameters
    ----------
    name : str
        Name used in ``classifiers=`` and in the results table.
    factory : callable
        ``factory(seed)`` returns a fresh unfitted scikit-learn estimator
        (usually a pipeline).
    replace : bool
        Allow replacing an existing name.

    Raises
    ------
    InvalidParameterError
        For a name that cannot be written in ``classifiers=``, a factory that
        is not callable, or a name already taken (without ``replace=True``).

    Example
    -------
    >>> from sklearn.dummy import DummyClassifier
    >>> register_classifier("Majority", lambda seed: DummyClassifier(), replace=True)
    >>> select_classifiers("Majority")
    ['Majority']
    >>> unregister_classifier("Majority")
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip() or "," in name \
            or name.startswith("-"):
        raise InvalidParameterError(f"invalid classifier name {name!r}: a non-empty name without commas, "
                                    "surrounding spaces or a leading '-'")
    if not callable(factory):
        raise InvalidParameterError(f"factory for {name!r} must be callable: seed -> estimator")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise InvalidParameterError(f"classifier {name!r} is already registered; pass replace=True")
    _REGISTRY[name] = factory


def unregister_classifier(name: str) -> None:
    """Remove a classifier added with :func:`register_classifier` (the built-ins stay).

    Raises
    ------
    UnknownClassifierError
        For a name that is not registered.
    InvalidParameterError
        For a built-in classifier of the battery.
    """
    if name not in _REGISTRY:
        raise UnknownClassifierError(f"unknown classifier {name!r}; nothing to unregister")
    if name in _BUILTIN:
        raise InvalidParameterError(f"{name!r} is a built-in classifier of the battery and stays registered")
    del _REGISTRY[name]


def _scaled(estimator):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), estimator)


def _svc(seed):
    from sklearn.svm import SVC

    return _scaled(SVC(random_state=seed))


def _xgb(seed):
    from xgboost import XGBClassifier

    return XGBClassifier(random_state=seed, n_jobs=1, tree_method="hist", verbosity=0)


def _lda(seed):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return _scaled(LinearDiscriminantAnalysis())


def _ridge_cv(seed):
    from sklearn.linear_model import RidgeClassifierCV

    return _scaled(RidgeClassifierCV())


def _ridge(seed):
    from sklearn.linear_model import RidgeClassifier

    return _scaled(RidgeClassifier(random_state=seed))


def _logreg(seed):
    from sklearn.linear_model import LogisticRegression

    return _scaled(LogisticRegression(max_iter=2000, random_state=seed))


def _linear_svc(seed):
    from sklearn.svm import LinearSVC

    return _scaled(LinearSVC(random_state=seed, max_iter=1000))


def _knn(seed):
    from sklearn.neighbors import KNeighborsClassifier

    return _scaled(KNeighborsClassifier(n_jobs=1))


def _rf(seed):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(random_state=seed, n_jobs=1)


def _et(seed):
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(random_state=seed, n_jobs=1)


def _hgb(seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(early_stopping=True, random_state=seed)


def _gnb(seed):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _batch_sgd(loss: str):
    def factory(seed):
        from sklearn.linear_model import SGDClassifier

        from .batch_learning import BatchLearner

        return BatchLearner(SGDClassifier(loss=loss, random_state=seed), random_state=seed)

    return factory


def _batch_gnb(seed):
    from sklearn.naive_bayes import GaussianNB

    from .batch_learning import BatchLearner

    return BatchLearner(GaussianNB(), epochs=1, scale=False, balanced=False, random_state=seed)


#: Classifiers that learn from batches of rows (:mod:`leukbench.batch_learning`): the battery
#: ``"batches"``, for matrices larger than memory (docs/scaling.md). Logistic regression and a
#: linear SVM by stochastic gradient descent (5 epochs), and Gaussian naive Bayes (one pass).
BATCH_BATTERY = ("BatchSGDLogistic", "BatchSGDLinearSVM", "BatchGaussianNB")


#: Rough relative cost of one fit (higher is slower), measured on 1,280 deep
#: features (benchmarks/README.md); used only to start the slowest fits first
#: so that parallel workers finish together. Unknown names count as 1.
COST_HINTS: Dict[str, float] = {
    "XGBClassifier": 20.0, "HistGradientBoostingClassifier": 10.0, "LinearSVC": 10.0,
    "RandomForestClassifier": 4.0, "ExtraTreesClassifier": 3.0, "SVC": 2.0,
    "RidgeClassifierCV": 2.0, "LinearDiscriminantAnalysis": 1.5, "LogisticRegression": 1.0,
    "KNeighborsClassifier": 0.5, "RidgeClassifier": 0.3, "GaussianNB": 0.1,
    "BatchSGDLogistic": 1.0, "BatchSGDLinearSVM": 1.0, "BatchGaussianNB": 0.2,
}

#: The default battery, in table order before sorting.
DEFAULT_BATTERY = (
    "SVC", "XGBClassifier", "LinearDiscriminantAnalysis", "RidgeClassifierCV", "RidgeClassifier",
    "LogisticRegression", "LinearSVC", "KNeighborsClassifier", "RandomForestClassifier",
    "ExtraTreesClassifier", "HistGradientBoostingClassifier", "GaussianNB",
)

_FACTORIES = (_svc, _xgb, _lda, _ridge_cv, _ridge, _logreg, _linear_svc, _knn, _rf, _et, _hgb, _gnb)
for _name, _factory in zip(DEFAULT_BATTERY, _FACTORIES):
    register_classifier(_name, _factory)
for _name, _factory in zip(BATCH_BATTERY, (_batch_sgd("log_loss"), _batch_sgd("hinge"), _batch_gnb)):
    register_classifier(_name, _factory)
_BUILTIN = frozenset(DEFAULT_BATTERY + BATCH_BATTERY)


#: The search space of each classifier's nested tuning (``compare(tune=True)``), by parameter of
#: its estimator (``<step>__<param>`` inside a pipeline). An entry is ``("loguniform", low, high)``,
#: ``("uniform", low, high)``, ``("randint", low, high)`` (integers low..high, both included) or a
#: list of choices. A classifier without an entry gets no tuned row: RidgeClassifierCV chooses
#: its alpha by its own internal cross-validation, GaussianNB has nothing worth tuning. Add an
#: entry for a classifier of your own with ``SEARCH_SPACES["Mine"] = {...}``. The space is part
#: of the fold-cache key of the tuned fits: editing it recomputes them.
SEARCH_SPACES: Dict[str, Dict[str, Any]] = {
    "SVC": {"svc__C": ("loguniform", 1e-2, 1e3), "svc__gamma": ("loguniform", 1e-5, 1e-1)},
    "XGBClassifier": {"max_depth": ("randint", 2, 8), "learning_rate": ("loguniform", 0.01, 0.3),
                      "n_estimators": ("randint", 50, 400)},
    "LinearDiscriminantAnalysis": {"lineardiscriminantanalysis__solver": ["lsqr"],
                                   "lineardiscriminantanalysis__shrinkage": ("uniform", 0.0, 1.0)},
    "RidgeClassifier": {"ridgeclassifier__alpha": ("loguniform", 1e-3, 1e3)},
    "LogisticRegression": {"logisticregression__C": ("loguniform", 1e-3, 1e2)},
    "LinearSVC": {"linearsvc__C": ("loguniform", 1e-4, 1e1)},
    "KNeighborsClassifier": {"kneighborsclassifier__n_neighbors": ("randint", 1, 30),
                             "kneighborsclassifier__weights": ["uniform", "distance"]},
    "RandomForestClassifier": {"max_features": ["sqrt", "log2", 0.1, 0.3, 0.5],
                               "min_samples_leaf": ("randint", 1, 5)},
    "ExtraTreesClassifier": {"max_features": ["sqrt", "log2", 0.1, 0.3, 0.5],
                             "min_samples_leaf": ("randint", 1, 5)},
    "HistGradientBoostingClassifier": {"learning_rate": ("loguniform", 0.01, 0.3),
                                       "max_leaf_nodes": ("randint", 8, 63),
                                       "l2_regularization": ("loguniform", 1e-4, 10.0)},
}


def search_space(name: str) -> Optional[Dict[str, Any]]:
    """The search space of classifier ``name`` for nested tuning, or ``None`` when it has none.

    Example
    -------
    >>> search_space("LogisticRegression")
    {'logisticregression__C': ('loguniform', 0.001, 100.0)}
    >>> search_space("GaussianNB") is None
    True
    """
    return SEARCH_SPACES.get(name)


def classifier_version(name: str) -> int:
    """The battery version in which classifier ``name`` last changed (part of its fold-cache key).

    A built-in classifier's own version (:data:`CLASSIFIER_VERSIONS`, else 2); a classifier with
    ``--reduce`` / ``--normalize`` steps, that of its base; any other (registered at run time, an
    estimator of the user's) :data:`BATTERY_VERSION`.

    Example
    -------
    >>> classifier_version("HistGradientBoostingClassifier"), classifier_version("SVC")
    (3, 2)
    """
    if isinstance(name, PostProcessed):
        return classifier_version(name.base)
    if name in _BUILTIN and not isinstance(name, CustomClassifier):
        return CLASSIFIER_VERSIONS.get(name, 2)
    return BATTERY_VERSION


def available_classifiers() -> List[str]:
    """Registered classifier names (default battery first)."""
    return list(_REGISTRY)


def make_classifier(name: str, seed: int = 0):
    """A fresh, unfitted estimator of the registered classifier ``name``.

    Raises
    ------
    UnknownClassifierError
        When ``name`` is not registered (the message lists the names that are).

    Example
    -------
    >>> make_classifier("RandomForestClassifier", seed=3).random_state
    3
    """
    if isinstance(name, PostProcessed):  # --reduce / --normalize: steps fitted in each training fold
        from sklearn.pipeline import make_pipeline

        return make_pipeline(*name.steps(seed), make_classifier(name.base, seed))
    if isinstance(name, CustomClassifier):  # the user's own estimator: a fresh copy for each fit
        from sklearn.base import clone

        return clone(name.estimator)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownClassifierError(
            f"unknown classifier {name!r}; available: {', '.join(available_classifiers())}"
        ) from None
    return factory(seed)


def lazypredict_battery() -> List[str]:
    """Register lazypredict's list of classifiers and return their names.

    The list is taken from ``lazypredict.Supervised.CLASSIFIERS`` (what
    ``LazyClassifier`` would run: scikit-learn's classifiers minus
    lazypredict's removed ones, plus the boosting libraries it found). Each
    model is wrapped in lazypredict's numeric preprocessing (mean imputation
    + standard scaling) and built with the arguments ``LazyClassifier``
    gives it (``random_state``, quiet boosting libraries), plus ``n_jobs=1``.
    Names already in the registry (e.g. ``SVC``, ``XGBClassifier``) keep
    leukbench's pipeline.
    """
    try:
        from lazypredict import Supervised
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "battery='all' needs lazypredict: pip install 'leukbench[lazypredict]'"
        ) from exc
    names = []
    for name, cls in Supervised.CLASSIFIERS:
        if name not in _REGISTRY:
            register_classifier(name, _lazy_factory(cls))
        names.append(name)
    return names


def _lazy_factory(cls):
    def factory(seed):
        import inspect

        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        with warnings.catch_warnings():  # probing a deprecated class warns; the fit will be silent too
            warnings.simplefilter("ignore")
            try:
                params = set(cls().get_params())
            except Exception:  # noqa: BLE001 - fall back to the signature
                params = set(inspect.signature(cls.__init__).parameters)
        kwargs = {"random_state": seed} if "random_state" in params else {}
        if "n_jobs" in params:
            kwargs["n_jobs"] = 1
        module = getattr(cls, "__module__", "") or ""
        if "catboost" in module:
            kwargs["verbose"] = 0
        if "lightgbm" in module:
            kwargs.update(verbose=-1, verbosity=-1)
        if "xgboost" in module:
            kwargs["verbosity"] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(**kwargs)
        return make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(), model)

    return factory


def select_classifiers(
    classifiers: Union[str, Sequence[str], None] = None, battery: str = "default"
) -> List[str]:
    """Resolve ``classifiers`` and ``battery`` into a list of registered names.

    Parameters
    ----------
    classifiers : str, estimator, list of str or estimators, or dict name -> estimator, optional
        Names to run (``"SVC,XGBClassifier"``), or names to drop from the
        battery when every item starts with ``-`` (``"-GaussianNB,-KNeighborsClassifier"``).
        ``None`` runs the whole battery. A scikit-learn estimator runs under
        its dict key, or its class name (``_2``, ``_3`` ... when taken), as a
        :class:`CustomClassifier`.
    battery : {"default", "all", "batches"}
        ``"default"``: leukbench's 12 (:data:`DEFAULT_BATTERY`); ``"all"``:
        lazypredict's list of classifiers; ``"batches"``: the classifiers that
        learn from batches of rows (:data:`BATCH_BATTERY`, for matrices larger
        than memory) (:data:`BATTERIES`).

    Raises
    ------
    UnknownClassifierError
        For names that are not registered.
    InvalidParameterError
        For an unknown battery, or names to run mixed with names to exclude.

    Example
    -------
    >>> select_classifiers("SVC, xgbclassifier,SVC")
    ['SVC', 'XGBClassifier']
    """
    base = _battery_names(battery)
    if not isinstance(classifiers, str) and classifiers is not None:
        names, custom = split_estimators(classifiers)
        if custom:
            if any(n.strip().startswith("-") for n in names):
                raise invalid("classifiers", "either names or estimators to run, or -names to exclude, not both")
            return named_estimators(select_classifiers(names, battery) if names else [], custom)
        classifiers = names
    if classifiers is None or classifiers == "" or classifiers == []:
        return base
    items = [c.strip() for c in (classifiers.split(",") if isinstance(classifiers, str) else classifiers)]
    items = [_registered_spelling(c) for c in items if c]
    minus = [c for c in items if c.startswith("-")]
    plus = [c for c in items if not c.startswith("-")]
    if minus and plus:
        raise InvalidParameterError("classifiers: either names to run or -names to exclude, not both")
    unknown = [c.lstrip("-") for c in items if c.lstrip("-") not in _REGISTRY]
    if unknown:
        raise UnknownClassifierError(
            f"unknown classifier(s) {', '.join(unknown)}; available: {', '.join(available_classifiers())}"
        )
    if minus:
        drop = {c[1:] for c in minus}
        return [c for c in base if c not in drop]
    out: List[str] = []
    for c in plus:
        if c not in out:
            out.append(c)
    return out


def _battery_names(battery: str) -> List[str]:
    """The classifier names of ``battery`` (one of :data:`BATTERIES`)."""
    if battery == "default":
        return list(DEFAULT_BATTERY)
    if battery == "all":
        return lazypredict_battery()
    if battery == "batches":
        return list(BATCH_BATTERY)
    choices = " or ".join(repr(b) for b in BATTERIES)
    raise InvalidParameterError(f"unknown battery {battery!r}; use {choices}")


def _registered_spelling(item: str) -> str:
    """``item`` (a name or ``-name``) spelt as registered: names match in any case, "svc" is SVC."""
    sign, bare = ("-", item[1:]) if item.startswith("-") else ("", item)
    if bare in _REGISTRY:
        return item
    return sign + {n.lower(): n for n in _REGISTRY}.get(bare.lower(), bare)


def describe_pipeline(name: str) -> str:
    """Short text of a classifier's pipeline, e.g. ``StandardScaler -> SVC``."""
    est = make_classifier(name, 0)
    steps = getattr(est, "steps", None)
    if steps:
        return " -> ".join(type(s).__name__ for _, s in steps)
    return type(est).__name__
