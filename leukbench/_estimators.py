"""The user's own scikit-learn estimators in ``classifiers=``, next to the registered names.

:func:`split_estimators` tells the names of ``classifiers`` from its
estimators (a list may mix both; a dict maps row names to estimators);
:func:`named_estimators` names each estimator -- its dict key, or its class
name with ``_2``, ``_3`` ... when taken -- as a :class:`CustomClassifier`, the
``str`` that :func:`leukbench.classifiers.make_classifier` clones for each fit.

Example
-------
>>> from sklearn.naive_bayes import GaussianNB
>>> names, custom = split_estimators(["SVC", GaussianNB(), GaussianNB(var_smoothing=0.1)])
>>> names, named_estimators(names, custom)
(['SVC'], ['SVC', 'GaussianNB', 'GaussianNB_2'])
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from ._validation import invalid
from .exceptions import InvalidParameterError

__all__ = ["CustomClassifier", "named_estimators", "split_estimators"]


class CustomClassifier(str):
    """The row name of a user's estimator in a run: a ``str`` that carries the estimator.

    :func:`leukbench.classifiers.make_classifier` returns a fresh ``sklearn.base.clone`` of it for
    every fit; the fold cache knows it by its name, class, parameters and
    library versions (its ``random_state`` is the user's, not ``seed``).

    Example
    -------
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from leukbench.classifiers import make_classifier
    >>> name = CustomClassifier("GaussianNB_2", GaussianNB(var_smoothing=1e-3))
    >>> name, make_classifier(name).var_smoothing, make_classifier(name) is name.estimator
    ('GaussianNB_2', 0.001, False)
    """

    estimator: Any

    def __new__(cls, name: str, estimator: Any) -> "CustomClassifier":
        self = super().__new__(cls, name)
        self.estimator = estimator
        return self

    def __reduce__(self):
        return (CustomClassifier, (str(self), self.estimator))


def _is_estimator(obj) -> bool:
    return not isinstance(obj, (str, type)) and all(
        callable(getattr(obj, a, None)) for a in ("fit", "predict", "get_params"))


def _not_a_classifier(item) -> InvalidParameterError:
    if isinstance(item, type):
        return invalid("classifiers", f"holds the class {item.__name__}; pass an instance, {item.__name__}()")
    text = repr(item)
    text = text if len(text) <= 60 else text[:57] + "..."
    return invalid("classifiers", f"item {text} is neither a classifier name nor a scikit-learn estimator "
                                  "(fit, predict, get_params); pass a name of available_classifiers() "
                                  "or an estimator")


def split_estimators(classifiers) -> Tuple[List[str], List[Tuple[Optional[str], Any]]]:
    """The names among ``classifiers`` and its estimators as ``(dict key or None, estimator)``."""
    if _is_estimator(classifiers):  # before iterating: a Pipeline is a sequence of its steps
        return [], [(None, classifiers)]
    if isinstance(classifiers, Mapping):
        for key, est in classifiers.items():
            if not isinstance(key, str) or not key.strip():
                raise invalid("classifiers", f"has the key {key!r}; the keys of a dict are the row names")
            if not _is_estimator(est):
                raise _not_a_classifier(est)
        return [], [(key.strip(), est) for key, est in classifiers.items()]
    names, custom = [], []
    for item in classifiers:
        if isinstance(item, str):
            names.append(item)
        elif _is_estimator(item):
            custom.append((None, item))
        else:
            raise _not_a_classifier(item)
    return names, custom


def named_estimators(names: List[str], custom: List[Tuple[Optional[str], Any]]) -> List[str]:
    """``names``, then each estimator as a :class:`CustomClassifier` with a name of its own."""
    from sklearn.base import clone

    out = list(names)
    for key, est in custom:
        name = key or type(est).__name__
        if key is None and name in out:
            name = next(f"{name}_{k}" for k in range(2, len(out) + 3) if f"{name}_{k}" not in out)
        try:
            clone(est)
        except Exception as exc:  # noqa: BLE001 - e.g. parameters that get_params does not return
            raise invalid("classifiers", f"item {name} cannot be copied by sklearn.base.clone "
                                         f"({type(exc).__name__}: {exc}); derive it from "
                                         "sklearn.base.BaseEstimator") from None
        out.append(CustomClassifier(name, est))
    return out
