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

__all__ = ["CustomClassifier", "NORMALIZE_METHODS", "PostProcessed", "check_postprocessing", "named_estimators",
           "signed_sqrt", "split_estimators", "with_postprocessing"]


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


#: Accepted values of ``normalize=`` (``reduce=`` is ``"none"``, ``"pca:K"`` or ``"pca-whiten:K"``).
NORMALIZE_METHODS = ("none", "l2", "power")


def signed_sqrt(X):
    """``sign(x) * sqrt(|x|)``, element-wise: the power normalisation of ``normalize="power"``."""
    import numpy as np

    return np.sign(X) * np.sqrt(np.abs(X))


def check_postprocessing(reduce: str = "none", normalize: str = "none") -> str:
    """The row-name suffix of ``reduce`` and ``normalize`` (``""`` when both are ``"none"``).

    Raises
    ------
    InvalidParameterError
        For a value that is not one of the accepted ones (naming ``reduce`` or ``normalize``).

    Example
    -------
    >>> check_postprocessing("pca-whiten:64", "power")
    'power, pca-whiten:64'
    >>> check_postprocessing()
    ''
    """
    if normalize not in NORMALIZE_METHODS:
        raise invalid("normalize", f"must be one of {', '.join(NORMALIZE_METHODS)} (got {normalize!r})")
    text = str(reduce).strip()
    if text != "none":
        kind, _, k = text.partition(":")
        if kind not in ("pca", "pca-whiten") or not k.isdigit() or int(k) < 1:
            raise invalid("reduce", f"must be none, pca:K or pca-whiten:K with K a whole number of at least 1 "
                                    f"(got {reduce!r})")
    return ", ".join(p for p, on in ((normalize, normalize != "none"), (text, text != "none")) if on)


class PostProcessed(str):
    """The row name of a classifier run after post-processing steps fitted on each training fold.

    ``"SVC [l2, pca:64]"``: :func:`leukbench.classifiers.make_classifier` builds
    ``make_pipeline(<normalisation>, <PCA>, <the SVC pipeline>)``, so the steps are fitted
    inside each training fold only and their parameters are part of the fold-cache key.

    Example
    -------
    >>> from leukbench.classifiers import make_classifier
    >>> name = PostProcessed("GaussianNB", "pca:2", "l2")
    >>> name, [type(s).__name__ for _, s in make_classifier(name).steps]
    ('GaussianNB [l2, pca:2]', ['Normalizer', 'PCA', 'GaussianNB'])
    """

    base: str
    reduce: str
    normalize: str

    def __new__(cls, base: str, reduce: str = "none", normalize: str = "none") -> "PostProcessed":
        self = super().__new__(cls, f"{base} [{check_postprocessing(reduce, normalize)}]")
        self.base, self.reduce, self.normalize = base, str(reduce).strip(), normalize
        return self

    def __reduce__(self):
        return (PostProcessed, (self.base, self.reduce, self.normalize))

    def steps(self, seed: int = 0) -> list:
        """Fresh, unfitted post-processing steps (normalisation, then reduction)."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import FunctionTransformer, Normalizer

        steps = []
        if self.normalize == "power":
            steps.append(FunctionTransformer(signed_sqrt))
        if self.normalize != "none":
            steps.append(Normalizer("l2"))
        if self.reduce != "none":
            kind, _, k = self.reduce.partition(":")
            steps.append(PCA(int(k), whiten=kind == "pca-whiten", svd_solver="full", random_state=seed))
        return steps


def with_postprocessing(names: List[str], reduce: str = "none", normalize: str = "none") -> List[str]:
    """``names`` as :class:`PostProcessed` rows when ``reduce`` or ``normalize`` asks for a step, else as given."""
    if not check_postprocessing(reduce, normalize):
        return list(names)
    return [PostProcessed(n, reduce, normalize) for n in names]
