"""Training a row of the table on all labelled images: :func:`train` and :func:`train_best`.

The pipeline is the battery's own (:func:`leukbench.classifiers.make_classifier`
with the run's seed), fitted as the comparison fits it: float32 features in
the feature set's column order, the classes encoded in sorted order. A tuned
row (``"SVC (tuned)"``) runs its nested search once on all the data, on
subject-aware folds, and keeps the refitted best pipeline. The features come
from the feature cache (:func:`leukbench.extract_all`): nothing is extracted
twice.

Example
-------
>>> model = train(features="handcrafted", classifier="LinearDiscriminantAnalysis")  # doctest: +SKIP
>>> model  # doctest: +SKIP
Model(handcrafted / LinearDiscriminantAnalysis, classes=['all', 'hem'], trained on 159 images, not cross-validated)
"""

from __future__ import annotations

import datetime
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pandas as pd

from .._validation import invalid
from ..extraction import DEFAULT_FEATURES
from ..finetune._config import FineTuneConfig
from ..schema import DEFAULT_SEED, STATUS_OK, default_positive_label
from ._features import extractor_specs
from .finetuned import END_TO_END, fit_network, is_finetuned, network_tuner
from .model import Model

__all__ = ["DEFAULT_CLASSIFIER", "best_row", "check_train", "fit_model", "train", "train_best"]

#: The classifier ``train`` fits when none is named (the first of the original study's five).
DEFAULT_CLASSIFIER = "SVC"


def train(data=None, features=DEFAULT_FEATURES, classifier=DEFAULT_CLASSIFIER, *, seed: int = DEFAULT_SEED,
          positive_label: Optional[str] = None, comparison=None, progress: bool = True,
          finetune_epochs: int = FineTuneConfig.epochs, finetune_patience: int = FineTuneConfig.patience,
          finetune_size: Optional[int] = None, finetune_freeze: int = 0, finetune_max_minutes: Optional[float] = None,
          **extract_options) -> Model:
    """Fit one row -- a feature set and a classifier of the battery, or a fine-tuned network -- on all
    labelled images.

    Parameters
    ----------
    data : path, DataFrame, FeatureSet or None
        A dataset (folder, CSV manifest, discovery table; ``None`` for the
        bundled sample), whose features are taken from the cache or extracted;
        or a :class:`~leukbench.featureset.FeatureSet` made by
        :func:`leukbench.extract` (then ``features`` is not used).
    features : str
        One feature set, e.g. ``"efficientnet_lite0+handcrafted"``, or a
        fine-tuned network ``"finetuned:<backbone>"`` (with ``classifier="end-to-end"``).
    classifier : str or estimator
        A registered classifier (``"SVC"``), a tuned row (``"SVC (tuned)"``),
        a scikit-learn estimator, or ``"end-to-end"`` for a fine-tuned network.
    seed : int
        Seed of the classifier (and of a tuned row's search), as in :func:`leukbench.compare`.
    positive_label : str, optional
        Positive class of a binary problem (default as in the comparison).
    comparison : ComparisonResult, optional
        The comparison the row comes from: the card then carries its
        cross-validated performance; without it the card says "not cross-validated".
    progress : bool
        Show extraction (or fine-tuning) progress.
    finetune_epochs, finetune_patience, finetune_size, finetune_freeze, finetune_max_minutes
        A fine-tuned network's training, as in :func:`leukbench.compare`
        (the :class:`~leukbench.finetune.FineTuneConfig` fields ``epochs``,
        ``patience``, ``size``, ``freeze``, ``max_train_minutes``).
    **extract_options
        Passed to :func:`leukbench.extract_all` (``weights``, ``segment``,
        ``cache_dir``, ``device``, ``layout`` ...); a fine-tuned network takes
        ``weights``, ``device``, ``precision``, ``cache_dir``, ``num_workers``,
        ``layout`` and ``subject_regex``.

    Returns
    -------
    Model

    Example
    -------
    >>> fs = leukbench.extract(features="handcrafted")  # doctest: +SKIP
    >>> train(fs, classifier="LogisticRegression").save("model_dir")  # doctest: +SKIP
    """
    from ..featureset import FeatureSet

    if is_finetuned(features):
        return _train_network(data, features, classifier, seed=seed, positive_label=positive_label,
                              comparison=comparison, progress=progress, **{
                                  "finetune_epochs": finetune_epochs, "finetune_patience": finetune_patience,
                                  "finetune_size": finetune_size, "finetune_freeze": finetune_freeze,
                                  "finetune_max_minutes": finetune_max_minutes, **extract_options})
    if isinstance(data, FeatureSet):
        check_train(None, classifier)
        if extract_options:
            raise invalid(next(iter(extract_options)), "is an extraction option; a FeatureSet is already extracted")
        fs = data
    else:
        from ..extraction import extract_all

        check_train(features, classifier)  # before any extraction
        fs = next(iter(extract_all(data, features, progress=progress, **extract_options).feature_sets.values()))
    return fit_model(fs, classifier, seed=seed, positive_label=positive_label, comparison=comparison)


def _train_network(data, features, classifier, *, seed, positive_label, comparison, progress, layout="auto",
                   subject_regex=None, **options) -> Model:
    """:func:`train` of a fine-tuned network: checked first, then fitted on the images of ``data``."""
    from .. import datasets
    from ..featureset import FeatureSet
    from .finetuned import featureset_table

    tuner = network_tuner(features, classifier, seed=seed, progress=progress, options=options)
    if isinstance(data, FeatureSet):
        table = featureset_table(data)
    elif isinstance(data, pd.DataFrame):
        table = data
    else:
        table = datasets.discover(data if data is not None else datasets.sample_root(), layout=layout,
                                  subject_regex=subject_regex)
    return fit_network(tuner, table, positive_label=positive_label, comparison=comparison, progress=progress)


def check_train(features, classifier) -> None:
    """Raise now what :func:`train` would refuse after extracting: several feature sets, an unknown classifier.

    Example
    -------
    >>> from leukbench.exceptions import InvalidParameterError
    >>> try:
    ...     check_train("efficientnet_lite0,handcrafted", "SVC")
    ... except InvalidParameterError as exc:
    ...     print(exc.parameter)
    features
    """
    from ..extraction import parse_feature_spec

    if is_finetuned(features):
        network_tuner(features, classifier, seed=DEFAULT_SEED, progress=False, options={})
        return
    if features is not None and len(parse_feature_spec(features)) != 1:
        raise invalid("features", f"names {len(parse_feature_spec(features))} feature sets ({features!r}); a "
                                  "model has one: join extractors with + (e.g. efficientnet_lite0+handcrafted)")
    _classifier_name(classifier)


def _classifier_name(classifier):
    """The registered (or custom) name of ``classifier`` and whether it is a tuned row."""
    from ..classifiers import select_classifiers
    from ..evaluation.tuning import base_name, tuned_name

    if isinstance(classifier, str) and not callable(getattr(classifier, "steps", None)):
        classifier = _post_processed(classifier)
    if isinstance(classifier, str) and callable(getattr(classifier, "steps", None)):
        select_classifiers(classifier.base)  # a registered classifier, or the error naming the choices
        return str(classifier), classifier, False  # a post-processed row: make_classifier builds its steps
    if isinstance(classifier, str):
        if not classifier.strip() or "," in classifier or classifier.strip().startswith("-"):
            raise invalid("classifier", f"{classifier!r} is not one classifier name; name one, e.g. SVC")
        base = base_name(classifier.strip())
        name = select_classifiers(base)[0]
        return (tuned_name(name), name, True) if base != classifier.strip() else (name, name, False)
    name = select_classifiers([classifier])[0]
    return str(name), name, False


def _post_processed(name: str):
    """A table row name with post-processing (``"GaussianNB [power, pca:3]"``) as the
    :class:`~leukbench._estimators.PostProcessed` that made it; other names as they are."""
    import re

    from .._estimators import PostProcessed

    match = re.fullmatch(r"\s*(.+?)\s*\[([^\]]*)\]\s*", name)
    if not match:
        return name
    parts = [p.strip() for p in match.group(2).split(",") if p.strip()]
    reduce = [p for p in parts if p.startswith("pca")]
    normalize = [p for p in parts if not p.startswith("pca")]
    if len(reduce) > 1 or len(normalize) > 1 or not parts:
        raise invalid("classifier", f"{name!r}: the part in brackets must be [NORMALIZE, pca:K] as in the table "
                                    "(e.g. 'GaussianNB [power, pca:3]')")
    made = PostProcessed(match.group(1), reduce[0] if reduce else "none", normalize[0] if normalize else "none")
    if str(made) != name.strip():
        raise invalid("classifier", f"{name!r} is not a row name of the table; write it as {str(made)!r}")
    return made


def _fit(name, tuned: bool, X: np.ndarray, y: np.ndarray, groups, seed: int, comparison) -> Tuple[Any, str]:
    """The fitted estimator of a row and the parameters its search chose (``""`` for an untuned row)."""
    from ..classifiers import make_classifier, search_space
    from ..evaluation.fits import search_record

    with warnings.catch_warnings():  # as the comparison fits: quietly
        warnings.simplefilter("ignore")
        if not tuned:
            return make_classifier(name, seed).fit(X, y), ""
        from ..evaluation.tuning import TuningSettings, plan_fit

        space = search_space(name)
        if space is None:
            raise invalid("classifier", f"{name} has no search space, so there is no tuned row; train {name}")
        params = comparison.params if comparison is not None else {}
        settings = TuningSettings(n_trials=int(params.get("tune_trials", 20)), budget=params.get("tune_budget"))
        search = plan_fit(name, space, settings, y, groups, seed).build(seed).fit(X, y)
        return search.best_estimator_, search_record(search)[0]


def fit_model(fs, classifier, *, seed: int = DEFAULT_SEED, positive_label: Optional[str] = None,
              comparison=None) -> Model:
    """The :class:`Model` of ``classifier`` fitted on the labelled images of the feature set ``fs``.

    Example
    -------
    >>> fs = leukbench.extract(features="handcrafted")  # doctest: +SKIP
    >>> fit_model(fs, "GaussianNB [power, pca:3]").classifier  # doctest: +SKIP
    'GaussianNB [power, pca:3]'
    """
    from .._version import __version__
    from ..evaluation.fold_cache import digest
    from ..evaluation.options import check_dataset, labelled_sets
    from .card import cross_validated, not_cross_validated, training_data

    specs = extractor_specs(fs)
    fs = labelled_sets(fs)[0]
    classes = check_dataset([fs], positive_label=positive_label)
    positive = positive_label if positive_label is not None else default_positive_label(classes)
    row_name, name, tuned = _classifier_name(classifier)
    encoding = {c: i for i, c in enumerate(classes)}
    X = np.ascontiguousarray(fs.X, dtype=np.float32)
    y = np.array([encoding[str(c)] for c in fs.y], dtype=np.int64)
    groups = np.array([s or f"image:{i}" for s, i in zip(fs.subjects, fs.ids)], dtype=object)
    performance = (cross_validated(comparison, fs.name, row_name) if comparison is not None
                   else not_cross_validated())
    estimator, chosen = _fit(name, tuned, X, y, groups, seed, comparison)
    card: Dict[str, Any] = {
        "model": {"feature_set": fs.name, "classifier": row_name, "pipeline": _pipeline_text(estimator),
                  "seed": seed, "params": chosen},
        "features": [_describe(s) for s in specs],
        "classes": classes, "positive_label": positive,
        "training_data": training_data(fs, digest(X, y, np.asarray(fs.ids, dtype=str).astype("U"))),
        "performance": performance,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return Model(estimator=estimator, feature_set=fs.name, classifier=row_name, extractors=specs,
                 feature_names=list(fs.feature_names), classes=classes, positive_label=positive, card=card,
                 trained_with=__version__)


def _pipeline_text(est) -> str:
    steps = getattr(est, "steps", None)
    return " -> ".join(type(s).__name__ for _, s in steps) if steps else type(est).__name__


def _describe(spec: Dict[str, Any]) -> str:
    """One line of the card per extractor: its description and weights identity."""
    config = spec["config"]
    weights = config.get("weights_id") or config.get("weights")
    return (f"{spec['name']} ({config.get('kind')}, weights {weights}, feature version "
            f"{config.get('feature_version')}, segment {config.get('segment')}, grayscale {config.get('grayscale')})")


def best_row(result, bundlable: bool = False) -> Dict[str, Any]:
    """The table's first row with status ok (the table is sorted best first), as a dict.

    With ``bundlable``, the first such row that a bundle can hold: a battery
    row, or a fine-tuned network's own (``end-to-end``) row; the battery over a
    fine-tuned network's features (feature set ``finetuned:<backbone>``, a
    classifier of the battery) is passed over.

    Raises
    ------
    EvaluationError
        When no (bundlable) row finished.

    Example
    -------
    >>> best_row(leukbench.compare(sets))["Model"]  # doctest: +SKIP
    'SVC'
    """
    from ..exceptions import EvaluationError

    ok = result.table[result.table["Status"] == STATUS_OK]
    if bundlable:
        ok = ok[~ok["Feature Set"].map(is_finetuned).astype(bool) | (ok["Model"] == END_TO_END)]
    if ok.empty:
        what = "battery or end-to-end row" if bundlable else "row"
        raise EvaluationError(f"no {what} of the comparison finished (status ok), so there is no best row to save")
    return ok.iloc[0].to_dict()


def train_best(result, feature_sets) -> Model:
    """Train the best battery row of a comparison on all labelled images of its feature set.

    The best row is :func:`best_row` with ``bundlable=True``. A fine-tuned
    network's ``end-to-end`` row is fine-tuned again, with the comparison's
    configuration, on all labelled images of the first feature set (its own
    inner split by subject stops it early); the battery over fine-tuned
    features is passed over for the best bundlable row (compare
    ``best_row(result)`` to tell). ``feature_sets`` are the feature sets the
    comparison ran on (a list or a dict by name); the seed and positive
    class are the comparison's.

    Example
    -------
    >>> result = leukbench.compare(sets)  # doctest: +SKIP
    >>> train_best(result, sets).save("best_model")  # doctest: +SKIP
    """
    row = best_row(result, bundlable=True)
    sets = list(feature_sets.values() if isinstance(feature_sets, dict) else feature_sets)
    by_name = {fs.name: fs for fs in sets}
    name = row["Feature Set"]
    if row["Model"] == END_TO_END and is_finetuned(name):
        return _retrain_network(result, name, sets)
    if name not in by_name:
        raise invalid("feature_sets", f"lacks {name!r}, the feature set of the best row; pass the feature sets "
                                      "the comparison ran on")
    return fit_model(by_name[name], _row_classifier(result, row["Model"]),
                     seed=int(result.params.get("seed", DEFAULT_SEED)), positive_label=result.positive_label,
                     comparison=result)


def _row_classifier(result, row_name: str):
    """The classifier of a table row: the post-processed one (``"SVC [l2, pca:64]"``) when the
    comparison ran with ``reduce`` or ``normalize``, else the name itself."""
    reduce, normalize = result.params.get("reduce", "none"), result.params.get("normalize", "none")
    if reduce == "none" and normalize == "none":
        return row_name
    from .._estimators import PostProcessed

    name = PostProcessed(str(row_name).rsplit(" [", 1)[0], reduce, normalize)
    return name if str(name) == row_name else row_name


def _retrain_network(result, name: str, sets) -> Model:
    """The end-to-end row ``name`` of ``result`` fine-tuned again on all labelled images, same configuration."""
    from ..finetune import FineTuner
    from .finetuned import featureset_table

    params = (result.params.get("finetune") or {}).get(name)
    if not params:
        raise invalid("result", f"does not record how {name} was fine-tuned (no params['finetune']); train it "
                                f"with leukbench.train(data, features={name!r}, classifier={END_TO_END!r})")
    with_paths = [fs for fs in sets if fs.paths is not None and all(p for p in fs.paths)]
    if not with_paths:
        raise invalid("feature_sets", f"have no image paths, which fine-tuning {name} needs; pass the feature sets "
                                      "the comparison ran on")
    tuner = FineTuner(**{**params["config"], "progress": False})
    return fit_network(tuner, featureset_table(with_paths[0]), positive_label=result.positive_label,
                       comparison=result, progress=False)
