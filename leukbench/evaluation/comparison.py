""":func:`compare`: every (feature set, classifier, repeat, fold) task of an honest comparison.

The steps, each in its own module: check the options and the data
(:mod:`.options`), audit for leakage and plan the splits once per distinct
image set (:mod:`.splits`), build one task per fit with its fold-cache key
(:mod:`.fold_cache`), run what the cache does not hold (:mod:`.workers`),
and turn the outcomes into tables (:mod:`.tables`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..cluster import connect
from ..finetune._config import FineTuneConfig
from ..schema import DEFAULT_SEED, DEFAULT_SORT, default_positive_label
from .finetuned import add_finetuned
from .fits import FitOutcome, PreparedSet, Task, error_text
from .fold_cache import FoldCache, digest, estimator_signature, task_key
from .matrix_files import shared_matrices
from .options import check_dataset, check_options, labelled_sets, resolve_n_jobs
from .result import ComparisonResult
from .splits import Split, audit_sentence, cv_groups, plan_splits
from .statistics import DEFAULT_ALPHA, DEFAULT_RESAMPLES
from .tables import fold_tables, summarise
from .uncertainty import add_statistics
from .workers import run_in_process, run_killable

if TYPE_CHECKING:
    from ..featureset import FeatureSet

__all__ = ["compare"]


def compare(feature_sets, *, classifiers: Union[str, Sequence[str], None] = None, battery: str = "default",
            cv: int = 5, repeats: int = 1, split: str = "cv", seed: int = DEFAULT_SEED,
            sort: str = DEFAULT_SORT, positive_label: Optional[str] = None, timeout: Optional[float] = None,
            n_jobs: int = -1, audit: bool = True, merge_duplicates: bool = True, cache_dir=None,
            progress: bool = True, alpha: float = DEFAULT_ALPHA, n_bootstrap: int = DEFAULT_RESAMPLES,
            tune: bool = False, tune_trials: int = 20, tune_budget: Optional[float] = None,
            finetune=None, finetune_epochs: int = FineTuneConfig.epochs,
            finetune_patience: int = FineTuneConfig.patience, finetune_size: Optional[int] = None,
            finetune_freeze: int = 0, finetune_max_minutes: Optional[float] = None, finetune_battery: bool = True,
            finetune_options: Optional[Dict[str, Any]] = None,
            scheduler: Optional[str] = None, client=None, reduce: str = "none",
            normalize: str = "none") -> ComparisonResult:
    """Compare classifiers over one or more feature sets, honestly.

    Parameters
    ----------
    feature_sets : FeatureSet, list of FeatureSet or dict name -> FeatureSet
        Unlabelled images are ignored.
    classifiers : str, estimator, list of str or estimators, or dict name -> estimator, optional
        Names to run or ``-names`` to exclude, and scikit-learn estimators,
        cloned for each fold (see :func:`leukbench.classifiers.select_classifiers`);
        default: the battery.
    battery : {"default", "all", "batches"}
        leukbench's 12 classifiers, lazypredict's list, or the classifiers that learn
        from batches of rows (:data:`leukbench.classifiers.BATCH_BATTERY`: for a
        memory-mapped matrix larger than memory, docs/scaling.md).
    cv, repeats, seed
        Folds, repetitions (repeat r uses ``seed + r``) and seed of the
        cross-validation and the classifiers; the seed defaults to
        :data:`leukbench.schema.DEFAULT_SEED` (42), as on the command line.
    split : {"cv", "predefined"}
        Cross-validation, or train on the ``train`` split and score ``test``.
    sort : str
        Table column to sort by, descending (``"ROC AUC"`` or ``"roc_auc"``);
        ``"Fit Time"`` and ``"Time Taken"`` sort ascending.
    positive_label : str, optional
        Positive class of binary F1/precision/recall/ROC; default ``"all"``
        for C-NMC labels, else the second class in sorted order.
    timeout : float, optional
        Seconds after which one fit is killed and recorded as ``timeout``; with
        it every task runs in a (reused) worker process, without it in this
        process (``n_jobs=1``) or through joblib.
    n_jobs : int
        Tasks run in parallel: ``-1`` (the default) all the cores this process may use,
        ``-2`` all but one, 1 none; 0 is an error. Each fit runs on one thread wherever it
        runs, so the results do not depend on ``n_jobs``.
    audit, merge_duplicates : bool
        Run the leakage audit; merge the subjects of flagged images into one
        cross-validation group.
    cache_dir : path, optional
        Fold cache root (``<cache_dir>/folds``); ``None`` uses
        :func:`leukbench.cache.default_cache_dir`, ``False`` disables it.
    progress : bool
        Show a progress bar on stderr.
    alpha : float
        Level of the statistics: ``1 - alpha`` intervals, and a row is tied
        with the best when its test against the best gives a p-value of at least ``alpha``.
    n_bootstrap : int
        Subject-level bootstrap resamples of the intervals (0: none).
    tune : bool
        Also run every classifier that has a search space
        (:data:`leukbench.classifiers.SEARCH_SPACES`) tuned, as a row
        ``"<name> (tuned)"``: on each outer training fold a random search over
        its space, scored by balanced accuracy on inner subject-aware folds of
        that training fold only (:mod:`leukbench.evaluation.tuning`); the
        parameters chosen per fold are in ``folds["params"]``.
    tune_trials : int
        Candidates each search tries (at most).
    tune_budget : float, optional
        Seconds each search (one classifier, one outer fold) may take, checked
        between candidates (the first always runs; the refit comes on top);
        ``timeout`` still kills the whole tuned fit.
    finetune : str, FineTuner or list of them, optional
        Backbones to fine-tune on each outer training fold (``"efficientnet_lite0"``, or
        :class:`leukbench.finetune.FineTuner` objects): rows ``finetuned:<backbone>`` x
        ``end-to-end`` (the network's softmax on the test fold) and, with ``finetune_battery``,
        the classifiers over that fold's fine-tuned features (:mod:`.finetuned`; docs/finetuning.md).
    finetune_epochs, finetune_patience, finetune_size, finetune_freeze, finetune_max_minutes
        ``epochs``, ``patience``, ``size``, ``freeze`` and ``max_train_minutes`` of the
        fine-tuners named by ``finetune`` (:class:`~leukbench.finetune.FineTuneConfig`).
    finetune_battery : bool
        Also run the classifiers over each fold's fine-tuned features.
    finetune_options : dict, optional
        Further keyword arguments of the named fine-tuners (``weights``, ``device``, ``lr`` ...).
    scheduler, client
        Run the fits on a Dask cluster: ``"tcp://HOST:PORT"`` of a running
        scheduler, ``"local:N"`` (a local cluster of N worker processes), or a
        ``dask.distributed.Client`` (:mod:`leukbench.cluster`); the features
        are scattered once, ``timeout`` still kills a fit there, and the
        results are those of a local run. ``n_jobs`` is then unused.
    reduce, normalize : str
        Post-processing of the features before every classifier, fitted on
        each training fold only: ``"none"``, ``"pca:K"`` or ``"pca-whiten:K"``;
        ``"none"``, ``"l2"`` or ``"power"`` (signed square root, then L2). Rows
        are named ``"<classifier> [<steps>]"`` (no tuned rows for them).

    Returns
    -------
    ComparisonResult

    Example
    -------
    >>> import leukbench
    >>> fs = leukbench.extract(features="handcrafted")  # doctest: +SKIP
    >>> result = leukbench.compare(fs, classifiers="LinearDiscriminantAnalysis,GaussianNB")  # doctest: +SKIP
    >>> result.table[["Model", "Balanced Accuracy", "Status"]]  # doctest: +SKIP
    """
    sets = labelled_sets(feature_sets)
    names, table_sort = check_options(classifiers=classifiers, battery=battery, split=split, cv=cv,
                                      repeats=repeats, sort=sort, timeout=timeout, n_jobs=n_jobs,
                                      alpha=alpha, n_bootstrap=n_bootstrap, tune=tune, tune_trials=tune_trials,
                                      tune_budget=tune_budget, reduce=reduce, normalize=normalize)
    classes = check_dataset(sets, split=split, positive_label=positive_label)
    if positive_label is None:
        positive_label = default_positive_label(classes)
    n_jobs = resolve_n_jobs(n_jobs)
    tuners = _finetuners(finetune, finetune_options, seed=seed, cache_dir=cache_dir, progress=progress,
                         epochs=finetune_epochs, patience=finetune_patience, size=finetune_size,
                         freeze=finetune_freeze, max_train_minutes=finetune_max_minutes)
    if not tuners and all(fs.X.shape[1] == 0 for fs in sets):
        from ..exceptions import InvalidParameterError

        raise InvalidParameterError("feature_sets hold no feature column (the images alone): name a fine-tuned "
                                    "network (finetune=) or pass extracted features", parameter="feature_sets")
    plans = _ImageSetPlans.make(sets, split=split, cv=cv, repeats=repeats, seed=seed, audit=audit,
                                merge_duplicates=merge_duplicates)
    encoding = {c: i for i, c in enumerate(classes)}
    prepared = [_prepare(fs, encoding) for fs in sets]
    set_splits = [plans.splits_of(i) for i in range(len(sets))]
    tasks, outcomes = _build_tasks(prepared, set_splits, names, seed, len(classes))
    notes, rows, tuned = plans.notes, list(names), None
    if tune:
        tuned = _TunedTasks.add(tasks, outcomes, prepared, set_splits, [plans.groups_of(i) for i in range(len(sets))],
                                names, seed=seed, n_classes=len(classes), n_trials=tune_trials, budget=tune_budget)
        rows, notes = tuned.rows, notes + tuned.notes
    ft = add_finetuned(tuners, sets, prepared, set_splits, [plans.groups_of(i) for i in range(len(sets))], names,
                       tasks, outcomes, seed=seed, n_classes=len(classes), battery=finetune_battery, progress=progress)
    prepared = prepared + ft.prepared
    with connect(scheduler, client) as dask_client:
        n_cached, n_computed = _run_tasks(tasks, outcomes, prepared, FoldCache(_fold_cache_root(cache_dir)),
                                          seed=seed, n_jobs=n_jobs, n_classes=len(classes), timeout=timeout,
                                          progress=progress, client=dask_client)
    if tuned is not None:
        notes += tuned.notes_after(outcomes)
    folds, preds = fold_tables(sets + ft.sets, prepared, tasks, outcomes, classes, encoding.get(positive_label))
    groups = {**plans.groups_by_image(sets), **ft.groups}
    notes = notes + _bootstrap_notes(sets, n_bootstrap)
    params = _run_params(names, battery, split, cv, repeats, seed, table_sort, positive_label, timeout,
                         n_jobs, audit, merge_duplicates, sets, notes)
    params.update(alpha=alpha, n_bootstrap=n_bootstrap, tune=tune, tune_trials=tune_trials, tune_budget=tune_budget)
    params.update({k: v for k, v in (("reduce", reduce), ("normalize", normalize)) if v != "none"})
    if tuned is not None:
        params.update(tuned.params)
    if tuners:
        params["finetune"] = ft.params
    table = add_statistics(summarise(folds, sets + ft.table_sets, rows + ft.rows, table_sort), folds, preds,
                           classes=classes,
                           positive_label=positive_label, groups=groups, alpha=alpha,
                           n_bootstrap=n_bootstrap, seed=seed, sort=table_sort)
    return ComparisonResult(
        table=table, folds=folds, predictions=preds,
        audit=plans.audit_output(sets), cv_description=plans.description, classes=classes,
        positive_label=positive_label, params=params, feature_sets_info=_sets_info(sets),
        n_cached=n_cached, n_computed=n_computed, notes=notes, training=ft.training, finetune_ids=ft.ids,
    )


@dataclasses.dataclass(frozen=True)
class _SplitPlan:
    """The audit and the splits of one distinct image set, and the sentence describing them."""

    audit: Any  # AuditReport or None
    splits: List[Split]
    groups: Optional[np.ndarray]  # the cross-validation group of each image, None: images alone
    description: str
    notes: List[str]


@dataclasses.dataclass(frozen=True)
class _ImageSetPlans:
    """Split plans, made once per distinct image set: feature sets of one dataset share them."""

    set_keys: List[str]  # per feature set: the key of its image set
    plans: Dict[str, _SplitPlan]  # image-set key -> its plan, in order of appearance

    @classmethod
    def make(cls, sets: Sequence[FeatureSet], *, split: str, cv: int, repeats: int, seed: int,
             audit: bool, merge_duplicates: bool) -> "_ImageSetPlans":
        set_keys, plans = [], {}
        for fs in sets:
            key = digest(*(np.asarray(a, dtype=str).astype("U")
                           for a in (fs.ids, fs.y, fs.subjects, fs.splits)))
            set_keys.append(key)
            if key not in plans:
                plans[key] = _plan(fs, split=split, cv=cv, repeats=repeats, seed=seed, audit=audit,
                                   merge_duplicates=merge_duplicates)
        return cls(set_keys, plans)

    def splits_of(self, set_index: int) -> List[Split]:
        return self.plans[self.set_keys[set_index]].splits

    def groups_of(self, set_index: int) -> Optional[np.ndarray]:
        """The cross-validation group of each image of a feature set (``None``: images alone)."""
        return self.plans[self.set_keys[set_index]].groups

    def groups_by_image(self, sets: Sequence[FeatureSet]) -> Dict[str, Dict[str, str]]:
        """Feature-set name -> (image id -> cross-validation group); images without one are left out."""
        out = {}
        for i, fs in enumerate(sets):
            groups = self.plans[self.set_keys[i]].groups
            out[fs.name] = ({} if groups is None else
                            {str(image): str(g) for image, g in zip(fs.ids, groups) if g is not None})
        return out

    @property
    def description(self) -> str:
        return " | ".join(dict.fromkeys(p.description for p in self.plans.values()))

    @property
    def notes(self) -> List[str]:
        return list(dict.fromkeys(n for p in self.plans.values() for n in p.notes))

    def audit_output(self, sets: Sequence[FeatureSet]):
        """The one audit report, or a dict feature-set name -> report when image sets differ."""
        reports = [p.audit for p in self.plans.values()]
        if len(reports) == 1:
            return reports[0]
        if any(r is not None for r in reports):
            return {sets[self.set_keys.index(k)].name: p.audit for k, p in self.plans.items()}
        return None


def _plan(fs: FeatureSet, *, split: str, cv: int, repeats: int, seed: int, audit: bool,
          merge_duplicates: bool) -> _SplitPlan:
    """Audit one image set for leakage (when it has image hashes) and plan its splits."""
    report = None
    if audit and (fs.pixel_hashes is not None or fs.dhashes is not None):
        from ..audit import audit_leakage

        # merging only shapes cross-validation folds; a predefined split is
        # fixed, so there the audit reports and does not merge
        report = audit_leakage(fs, merge=merge_duplicates and split == "cv")
    groups, n_unknown = cv_groups(fs, report)
    splits, desc, notes = plan_splits(np.asarray(fs.y, dtype=object), groups, fs.splits, scheme=split, cv=cv,
                                      repeats=repeats, seed=seed, n_without_subject=n_unknown)
    return _SplitPlan(report, splits, groups, desc + audit_sentence(report, merge_duplicates, split), notes)


def _prepare(fs: FeatureSet, encoding: Dict[str, int]) -> PreparedSet:
    X = fs.X  # a memory map stays one (the workers map its file)
    if X.dtype != np.float32 or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.array([encoding[str(c)] for c in fs.y], dtype=np.int64)
    return PreparedSet(X, y, digest(X, y, np.asarray(fs.ids, dtype=str).astype("U")))


def _signature_or_failure(name: str, seed: int) -> Tuple[str, Optional[FitOutcome]]:
    """The estimator signature of a classifier (for fold-cache keys), or the failure its factory raised.

    A broken factory fails the tasks of its own row only.
    """
    from ..classifiers import make_classifier

    try:
        return estimator_signature(make_classifier(name, seed)), None
    except Exception as exc:  # noqa: BLE001 - a broken factory fails its own row only
        return "", FitOutcome.failed(error_text(exc))


def _build_tasks(prepared: Sequence[PreparedSet], set_splits: Sequence[List[Split]], names: Sequence[str],
                 seed: int, n_classes: int) -> Tuple[List[Task], Dict[int, FitOutcome]]:
    """One task per feature set x classifier x split, with its fold-cache key.

    A classifier whose factory raises fails its own tasks (returned as
    outcomes) and leaves the others alone.
    """
    from ..classifiers import classifier_version

    tasks: List[Task] = []
    outcomes: Dict[int, FitOutcome] = {}
    for si, data in enumerate(prepared):
        if data.X.shape[1] == 0:  # the images alone (finetune._images.image_set): fine-tuned rows only
            continue
        for name in names:
            signature, build_error = _signature_or_failure(name, seed)
            for sp in set_splits[si]:
                key = task_key(data.digest, name, signature, classifier_version(name), seed, n_classes, sp)
                tasks.append(Task(len(tasks), si, name, sp, key))
                if build_error is not None:
                    outcomes[tasks[-1].index] = build_error
    return tasks, outcomes


@dataclasses.dataclass
class _TunedTasks:
    """The tuned tasks of a run: the table rows they add, their tasks, and what the run says of them."""

    rows: List[str]  # the table's classifier names: each classifier, then its tuned row when it has one
    tasks: List[Task]
    notes: List[str]
    settings: Any  # tuning.TuningSettings

    @classmethod
    def add(cls, tasks: List[Task], outcomes: Dict[int, FitOutcome], prepared: Sequence[PreparedSet],
            set_splits: Sequence[List[Split]], set_groups: Sequence[Optional[np.ndarray]], names: Sequence[str],
            *, seed: int, n_classes: int, n_trials: int, budget: Optional[float]) -> "_TunedTasks":
        """Append one tuned task per feature set x classifier with a search space x split to ``tasks``.

        Each search is planned from the outer training rows alone (their labels and groups); a
        classifier whose factory raises, or a split that allows no inner folds, fails its own task.
        """
        from ..classifiers import classifier_version, search_space
        from ..exceptions import LeukbenchError
        from .tuning import TuningSettings, plan_fit, tuned_name, tuning_notes

        settings = TuningSettings(n_trials, budget)
        spaced = [n for n in names if search_space(n) is not None]
        mine: List[Task] = []
        for si, data in enumerate(prepared):
            groups = set_groups[si]
            for name in spaced:
                signature, build_error = _signature_or_failure(name, seed)
                for sp in set_splits[si]:
                    fit, error = None, build_error
                    try:
                        fit = plan_fit(name, search_space(name), settings, data.y[sp.train],
                                       None if groups is None else groups[sp.train], seed)
                    except LeukbenchError as exc:  # no inner folds possible, a malformed space
                        error = error or FitOutcome.failed(error_text(exc))
                    key = task_key(data.digest, tuned_name(name), signature + (fit.key_part() if fit else ""),
                                   classifier_version(name), seed, n_classes, sp)
                    mine.append(Task(len(tasks), si, tuned_name(name), sp, key, tuning=fit))
                    tasks.append(mine[-1])
                    if error is not None:
                        outcomes[mine[-1].index] = error
        rows = [r for n in names for r in ([n, tuned_name(n)] if n in spaced else [n])]
        notes = tuning_notes([n for n in names if n not in spaced], [t.tuning for t in mine], settings)
        return cls(rows, mine, notes, settings)

    def notes_after(self, outcomes: Dict[int, FitOutcome]) -> List[str]:
        """What the run says of its searches once they ran (how far the budget let them go)."""
        from .tuning import budget_note

        note = budget_note([(t.tuning, outcomes.get(t.index)) for t in self.tasks], self.settings)
        return [note] if note else []

    @property
    def params(self) -> Dict[str, Any]:
        from .tuning import INNER_FOLDS, TUNING_VERSION

        return {"tune_inner_folds": INNER_FOLDS, "tuning_version": TUNING_VERSION,
                "tuned_classifiers": sorted({t.classifier for t in self.tasks}, key=self.rows.index)}


def _run_tasks(tasks: Sequence[Task], outcomes: Dict[int, FitOutcome], prepared: Sequence[PreparedSet],
               fold_cache: FoldCache, *, seed: int, n_jobs: int, n_classes: int, timeout: Optional[float],
               progress: bool, client=None) -> Tuple[int, int]:
    """Fill ``outcomes`` from the fold cache, then run the rest; returns (from cache, computed)."""
    from tqdm.auto import tqdm

    from ..classifiers import COST_HINTS, make_classifier

    todo, n_cached = [], 0  # fine-tunings (end-to-end outcomes, given) are counted apart (params["finetune"])
    for task in tasks:
        if task.index not in outcomes:
            hit = fold_cache.get(task.key)
            if hit is not None:
                outcomes[task.index] = hit
                n_cached += 1
            else:
                todo.append(task)
    for task in todo:  # built here so that classifiers registered at run time also work in workers
        task.estimator = make_classifier(task.classifier, seed) if task.tuning is None else task.tuning.build(seed)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="compare", unit="fit",
               disable=not progress, dynamic_ncols=True, leave=False)

    def on_done(task: Task, outcome: FitOutcome) -> None:
        outcomes[task.index] = outcome
        fold_cache.put(task.key, outcome)
        task.estimator = None
        bar.update(1)

    # slowest fits first (stable within a classifier): a long fit started last
    # would leave the other workers idle at the end of the run
    jobs = sorted(todo, key=lambda t: -(COST_HINTS.get(t.classifier, 1.0) if t.tuning is None else
                                        t.tuning.cost(COST_HINTS.get(t.tuning.classifier, 1.0))))
    try:
        if client is not None:
            from .dask_tasks import run_on_cluster

            run_on_cluster(jobs, prepared, n_classes, timeout, on_done, client)
        else:  # worker processes share each large matrix as one memory-mapped file
            separate = bool(timeout) or (n_jobs > 1 and len(jobs) > 1)
            with shared_matrices(prepared, {t.set_index for t in jobs} if separate else ()) as data:
                if timeout:
                    run_killable(jobs, data, n_jobs, n_classes, float(timeout), on_done)
                else:
                    run_in_process(jobs, data, n_jobs, n_classes, on_done)
    finally:
        bar.close()
    return n_cached, len(todo)


def _bootstrap_notes(sets: Sequence[FeatureSet], n_bootstrap: int) -> List[str]:
    """Say when the bootstrap had to resample images, not subjects (no subject ids)."""
    alone = [fs.name for fs in sets if n_bootstrap and not any(s for s in fs.subjects if s is not None)]
    if not alone:
        return []
    return [f"no subject ids for {', '.join(alone)}: the confidence intervals resample images, not "
            "subjects, and are narrower than a subject-level interval would be"]


def _finetuners(finetune, options, *, seed: int, cache_dir, progress: bool, **config):
    """The fine-tuners of ``finetune`` (checked now, before any work); names get ``config`` and ``options``."""
    from .._validation import Interval, validate_params
    from ..finetune._folds import tuners_of

    names = {"max_train_minutes": "finetune_max_minutes"}  # compare's parameter of each config field
    validate_params({names.get(k, f"finetune_{k}"): v for k, v in config.items()}, {
        "finetune_epochs": [Interval(int, 1, None)], "finetune_patience": [Interval(int, 1, None)],
        "finetune_size": [Interval(int, 16, 1024), None], "finetune_freeze": [Interval(int, 0, None)],
        "finetune_max_minutes": [Interval(float, 0, None, open_low=True), None]})
    base = {"cache_dir": cache_dir, "progress": progress, **config}
    return tuners_of(finetune, {**base, **(options or {})}, seed=seed)


def _fold_cache_root(cache_dir):
    """``None``: the default cache folder; ``False``: no fold cache."""
    if cache_dir is None:
        from ..cache import default_cache_dir

        return default_cache_dir()
    return cache_dir if cache_dir is not False else None


def _run_params(names, battery, split, cv, repeats, seed, sort, positive_label, timeout, n_jobs, audit,
                merge_duplicates, sets, notes) -> Dict[str, Any]:
    """Every parameter of the run, as ``ComparisonResult.params`` (and run.json) show them."""
    from ..classifiers import BATTERY_VERSION

    return {
        "classifiers": names, "battery": battery, "battery_version": BATTERY_VERSION,
        "split": split, "cv": cv, "repeats": repeats, "seed": seed, "sort": sort,
        "positive_label": positive_label, "timeout": timeout, "n_jobs": n_jobs, "audit": audit,
        "merge_duplicates": merge_duplicates, "feature_sets": [fs.name for fs in sets],
        "warnings": notes,
    }


def _sets_info(sets: Sequence[FeatureSet]) -> List[Dict[str, Any]]:
    return [{"name": fs.name, "n_images": len(fs), "n_features": int(fs.X.shape[1]),
             "provenance": fs.provenance} for fs in sets]
