"""The types a model bundle may hold: an explicit list, and the check of a skops file against it.

A bundle's pipeline is stored with :mod:`skops.io`, which never unpickles: it
rebuilds only objects whose types it is told to trust. leukbench trusts
exactly :data:`TRUSTED_TYPES` -- the types that the battery's pipelines
(:data:`leukbench.classifiers.DEFAULT_BATTERY`, fitted on two and on three
classes, and the post-processing steps of ``compare(reduce=, normalize=)``)
are made of, as :func:`battery_types` lists them -- and refuses any other
type by name before anything is built. XGBoost models never go through
skops: they are stored in XGBoost's own JSON model format.

``tests/test_models.py`` checks that :func:`battery_types` stays inside the
list, so a scikit-learn release that changes the insides of a pipeline
shows up as a failing test, not as a bundle that cannot be read.

Example
-------
>>> "sklearn.svm._classes.SVC" in TRUSTED_TYPES, "builtins.eval" in TRUSTED_TYPES
(True, False)
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Iterable, List, Set

from ..exceptions import BundleError

__all__ = ["TRUSTED_TYPES", "battery_types", "check_trusted", "types_in"]

#: Every type a pipeline of the battery is built from (see :func:`battery_types`).
TRUSTED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.str", "builtins.tuple", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64", "numpy.uint64", "numpy.ndarray",
    "numpy.random._generator.Generator",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval", "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.ensemble._forest.ExtraTreesClassifier", "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._ridge.RidgeClassifierCV",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.neighbors._classification.KNeighborsClassifier", "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler", "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.svm._classes.LinearSVC", "sklearn.svm._classes.SVC",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
    # the post-processing steps of compare(reduce=..., normalize=...), fitted in front of a classifier
    "sklearn.decomposition._pca.PCA", "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._function_transformer.FunctionTransformer", "leukbench._estimators.signed_sqrt",
})


def _walk(node, out: Set[str]) -> None:
    if isinstance(node, dict):  # a type or a function node: {"__module__": ..., "__class__": ...}
        if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
            out.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            _walk(value, out)
    elif isinstance(node, list):
        for value in node:
            _walk(value, out)


def types_in(data: bytes) -> List[str]:
    """Every type (and function) named in the schema of a skops file, sorted; nothing is built.

    Together with :func:`skops.io.get_untrusted_types` this is what
    :func:`check_trusted` compares with the trusted list.

    Raises
    ------
    BundleError
        When ``data`` is not a skops file (a zip archive with a ``schema.json``).

    Example
    -------
    >>> import skops.io
    >>> types_in(skops.io.dumps({"a": [1, 2]}))
    ['builtins.dict', 'builtins.list', 'builtins.str']
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"not a skops file ({type(exc).__name__})") from None
    out: Set[str] = set()
    _walk(schema, out)
    return sorted(out)


def check_trusted(data: bytes, extra: Iterable[str] = ()) -> List[str]:
    """The types of a skops file that skops itself does not trust, once all are known to be trusted.

    Parameters
    ----------
    data : bytes
        The skops file.
    extra : iterable of str
        Further types the caller vouches for (``load_model(..., trusted=[...])``).

    Returns
    -------
    list of str
        What to pass as ``trusted=`` to :func:`skops.io.loads`.

    Raises
    ------
    BundleError
        Naming the first type that is neither in :data:`TRUSTED_TYPES` nor in ``extra``
        (the caller adds the file's name), or when ``data`` is no skops file.

    Example
    -------
    >>> import skops.io
    >>> from sklearn.naive_bayes import GaussianNB
    >>> check_trusted(skops.io.dumps(GaussianNB()))
    []
    """
    import skops.io

    allowed = TRUSTED_TYPES | set(extra)
    named = types_in(data)
    untrusted = sorted(skops.io.get_untrusted_types(data=data))
    refused = [t for t in dict.fromkeys(untrusted + named) if t not in allowed]
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise BundleError(f"holds the type {refused[0]}{more}, which is not one of leukbench's trusted types; "
                          "load it only if you trust where it came from, with "
                          f"leukbench.load_model(path, trusted={refused!r})")
    return untrusted


def battery_types() -> List[str]:
    """The types of the battery's pipelines fitted on two and on three classes (XGBoost apart), and of
    the post-processing steps that ``compare(reduce=..., normalize=...)`` puts in front of them.

    How :data:`TRUSTED_TYPES` was made, and what a test keeps it honest with.

    Example
    -------
    >>> set(battery_types()) <= TRUSTED_TYPES  # doctest: +SKIP
    True
    """
    import warnings

    import numpy as np
    import skops.io

    from .._estimators import PostProcessed
    from ..classifiers import DEFAULT_BATTERY, make_classifier
    from ._kinds import is_xgboost

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    out: Set[str] = set()
    post = [PostProcessed("GaussianNB", "pca-whiten:2", "power"), PostProcessed("GaussianNB", "pca:2", "l2")]
    for name in list(DEFAULT_BATTERY) + post:
        for n_classes in (2, 3):
            est = make_classifier(name, 0)
            if is_xgboost(est):
                continue
            # a few trees make the same types as a hundred, in a fraction of the time
            est.set_params(**{k: 3 for k in est.get_params() if k.endswith("n_estimators")})
            if type(est).__name__.startswith("HistGradientBoosting"):
                est.set_params(max_iter=3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, np.arange(30) % n_classes)
            data = skops.io.dumps(est)
            out |= set(types_in(data)) | set(skops.io.get_untrusted_types(data=data))
    return sorted(out)
