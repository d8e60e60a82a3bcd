"""``extract_all`` and ``extract``: from a dataset and a feature spec to feature sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from .. import datasets
from .._mapped import mapped_matrix
from .._validation import validate_params
from ..cache import FeatureCache, default_cache_dir, stat_images
from ..cluster import connect
from ..exceptions import ExtractionError
from ..features.base import Extractor, create_extractor, extractor_options
from ..featureset import FeatureSet
from ..schema import DEFAULT_SEED, SKIPPED_COLUMNS
from ..stain import resolve_reference
from ._copy import copy_columns
from ._run import run_extractor
from ._spec import DEFAULT_FEATURES, parse_feature_spec
from ._summary import ExtractionResult, ExtractionSummary


def column_source(extractor: Extractor, others: Sequence[Extractor]) -> Optional[Extractor]:
    """Another extractor of the same run that computes all of ``extractor``'s columns.

    Asked of the extractor (:meth:`Extractor.column_source`): a handcrafted
    group (``morphology``, ``texture``, ``color``) names ``handcrafted``
    with the same settings, so that asking for both does not segment every
    cell twice.
    """
    return extractor.column_source(others)


def cached_column_source(extractor: Extractor, cache_dir, root) -> Optional[Tuple[Extractor, FeatureCache]]:
    """A cache of an earlier run that holds all of ``extractor``'s columns.

    Looks at the caches of :meth:`Extractor.cached_column_sources` (for a
    handcrafted group: ``handcrafted`` with the same settings) on this
    dataset. Returns ``(source extractor, its FeatureCache)`` or ``None``.
    """
    for source in extractor.cached_column_sources():
        if extractor.column_source([source]) is None:
            continue
        cache = FeatureCache(cache_dir, root, source.config, source.feature_names)
        if cache.chunk_files():
            return source, cache
    return None


def load_feature_set(table: pd.DataFrame, root: str, extractor: Extractor, cache_dir, layout: str = "",
                     *, cache: Optional[FeatureCache] = None, stats: Optional[tuple] = None,
                     skipped: Optional[pd.DataFrame] = None, memory_map: bool = False) -> FeatureSet:
    """Assemble a :class:`FeatureSet` from the cache for the images of ``table``.

    Images that are not cached (skipped as unreadable) are left out;
    ``skipped`` (an :class:`ExtractionSummary`'s table) says why, and goes
    into the provenance (``"skipped"``: id, kind, reason), so that reports
    can list what is missing. ``cache`` and ``stats`` are as in
    :func:`run_extractor`. ``memory_map``: the matrix is written to a
    memory-mapped file (:mod:`leukbench._mapped`) instead of RAM.
    """
    from .._version import __version__

    if cache is None:
        cache = FeatureCache(cache_dir, root, extractor.config, extractor.feature_names)
    stats = stat_images(table["path"].tolist()) if stats is None else stats
    present = cache.cached_mask(table["id"].tolist(), *stats)
    sub = table.loc[present]
    ids = sub["id"].tolist()
    rows = cache.rows(ids)
    shape = (len(ids), len(extractor.feature_names))
    X = mapped_matrix(shape, lambda out: cache.matrix(ids, out=out)) if memory_map else cache.matrix(ids)
    return FeatureSet(
        name=extractor.name,
        X=X,
        y=sub["label"].to_numpy(dtype=object),
        ids=sub["id"].to_numpy(dtype=object),
        subjects=sub["subject"].to_numpy(dtype=object),
        splits=sub["split"].to_numpy(dtype=object),
        feature_names=list(extractor.feature_names),
        paths=sub["path"].to_numpy(dtype=object),
        pixel_hashes=rows["pixel_hash"].to_numpy(dtype=object),
        dhashes=rows["dhash"].to_numpy(dtype=object),
        provenance={
            "extractor": extractor.config.to_dict(),
            "description": extractor.describe(),
            "cache_key": extractor.config.cache_key(),
            "cache_path": str(cache.path),
            "dataset_root": root,
            "layout": layout,
            "leukbench_version": __version__,
            "skipped": [] if skipped is None else
            skipped[list(SKIPPED_COLUMNS)].astype(str).to_dict("records"),
        },
    )


def _dataset_table(data, layout: str, subject_regex: Optional[str]) -> Tuple[pd.DataFrame, str, str]:
    """``(discovery table, dataset root, layout)`` of a folder, manifest, table or the sample."""
    if isinstance(data, pd.DataFrame):
        root = data.attrs.get("root") or os.path.commonpath(data["path"].tolist())
        return data, root, data.attrs.get("layout", layout)
    if data is None:
        data = datasets.sample_root()
    table = datasets.discover(data, layout=layout, subject_regex=subject_regex,
                              require_labels=False)  # one class is enough to extract
    return table, table.attrs["root"], table.attrs["layout"]


def _create_extractors(sets: List[List[str]], settings: Dict[str, Any]) -> Dict[str, Extractor]:
    """One checked extractor per name of ``sets``, each given the ``settings`` it takes.

    Each is checked (:meth:`Extractor.check`) before any image is read, so a
    bad device or a missing weights file fails the run at once.
    """
    names: List[str] = []
    for s in sets:
        names += [n for n in s if n not in names]
    extractors = {}
    for name in names:
        accepted = extractor_options(name)
        options = settings if accepted is None else {k: v for k, v in settings.items() if k in accepted}
        extractor = create_extractor(name, **options)
        extractor.check()
        extractors[name] = extractor
    return extractors


def _extract_each(table: pd.DataFrame, root: str, extractors: Dict[str, Extractor],
                  caches: Dict[str, FeatureCache], stats: tuple, cache_dir: Path,
                  **run_options) -> List[ExtractionSummary]:
    """Run every extractor (copying columns another one computes); summaries in the order asked."""
    ids = table["id"].tolist()
    # columns another extractor computes are copied from it: from this run's, or else
    # from its cache of an earlier run, instead of being computed again
    sources = {}
    for n, ex in extractors.items():
        src = column_source(ex, list(extractors.values()))
        sources[n] = (src, caches[src.name]) if src else cached_column_source(ex, cache_dir, root)
    in_run = {n: s is not None and s[0].name in extractors for n, s in sources.items()}
    by_name = {}
    for n in sorted(extractors, key=lambda n: in_run[n]):  # sources of this run go first
        src, src_cache = sources[n] or (None, None)
        copied = copy_columns(src_cache, caches[n], ids, stats, run_options["chunk_size"]) if src else 0
        summary = run_extractor(table, root, extractors[n], cache_dir, cache=caches[n], stats=stats,
                                **run_options)
        if copied:  # cached by the copy just made, not by an earlier run
            summary.n_copied, summary.copied_from = copied, src.name
            summary.n_cached -= copied
        by_name[n] = summary
    return [by_name[n] for n in extractors]


def extract_all(
    data=None,
    features: Union[str, Sequence[str], None] = DEFAULT_FEATURES,
    *,
    layout: str = "auto",
    weights: str = "imagenet",
    segment: bool = False,
    grayscale: bool = False,
    device: str = "auto",
    precision: str = "auto",
    decode: str = "auto",
    tta: str = "none",
    layers: str = "last",
    pooling: str = "avg",
    stain_norm: str = "none",
    stain_reference: str = "fixed",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache_dir=None,
    subject_regex: Optional[str] = None,
    chunk_size: int = 256,
    progress: bool = True,
    max_per_subject: Optional[int] = None,
    max_per_class: Optional[int] = None,
    fraction: Optional[float] = None,
    subsample_seed: int = DEFAULT_SEED,
    scheduler: Optional[str] = None,
    client=None,
    memory_map: bool = False,
) -> ExtractionResult:
    """Extract (or take from the cache) features of a dataset: every feature set and every summary.

    The parameters are those of :func:`extract`. Each extractor is given the
    settings it takes (``weights``, ``device``, ``precision`` and
    ``batch_size`` go to the deep backbones only).

    ``max_per_subject``, ``max_per_class`` and ``fraction`` (the reduced-data
    mode) first take :func:`leukbench.datasets.subsample` of the discovered
    table, with ``subsample_seed``; it is recorded in each feature set's
    ``provenance["subsample"]``.

    ``scheduler`` (``"tcp://HOST:PORT"`` or ``"local:N"``) or ``client`` (a
    ``dask.distributed.Client``) run the extraction on a Dask cluster
    (:mod:`leukbench.cluster`): the same cache and the same matrix.

    Returns
    -------
    ExtractionResult
        ``feature_sets`` (name -> FeatureSet, in the order asked, even for
        one) and ``summaries`` (one :class:`ExtractionSummary` per extractor).

    Raises
    ------
    ExtractionError
        When no image could be read (its ``summaries`` say why).

    Example
    -------
    >>> result = extract_all(features="morphology,color", progress=False)  # doctest: +SKIP
    >>> list(result.feature_sets), [s.extractor for s in result.summaries]  # doctest: +SKIP
    (['morphology', 'color'], ['morphology', 'color'])
    """
    reduce = dict(max_per_subject=max_per_subject, max_per_class=max_per_class, fraction=fraction)
    validate_params({**reduce, "subsample_seed": subsample_seed}, datasets.SUBSAMPLE_CONSTRAINTS)
    table, root, layout = _dataset_table(data, layout, subject_regex)
    table = datasets.subsample(table, **reduce, seed=subsample_seed)  # the cache is per image: shared
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sets = parse_feature_spec(features)
    settings = dict(weights=weights, segment=segment, grayscale=grayscale, device=device, precision=precision,
                    decode=decode, batch_size=batch_size, tta=tta, layers=layers, pooling=pooling,
                    stain_norm=stain_norm)
    reference = resolve_reference(stain_reference, stain_norm, table["path"])  # None: the fixed one
    if reference is not None:
        settings["stain_reference"] = reference
    extractors = _create_extractors(sets, settings)
    # one cache object per extractor and one stat of every file, shared by the
    # extraction and the assembly of the feature sets (the index is read once)
    caches = {n: FeatureCache(cache_dir, root, ex.config, ex.feature_names) for n, ex in extractors.items()}
    stats = stat_images(table["path"].tolist())
    with connect(scheduler, client) as dask_client:
        summaries = _extract_each(table, root, extractors, caches, stats, cache_dir, num_workers=num_workers,
                                  chunk_size=chunk_size, progress=progress, client=dask_client)
    by_name = dict(zip(extractors, summaries))
    singles = {n: load_feature_set(table, root, ex, cache_dir, layout, cache=caches[n], stats=stats,
                                   skipped=by_name[n].skipped, memory_map=memory_map)
               for n, ex in extractors.items()}
    for n, fs in singles.items():
        if len(fs) == 0:
            csv = by_name[n].skipped_csv
            raise ExtractionError(f"{root}: no image could be read for {n}; see the skipped list in "
                                  f"{csv or 'the cache folder'}", summaries)
    feature_sets = {"+".join(s): FeatureSet.combine([singles[n] for n in s]) for s in sets}
    for fs in feature_sets.values() if "subsample" in table.attrs else ():  # run.json, report.html
        fs.provenance["subsample"] = dict(table.attrs["subsample"])
    return ExtractionResult(feature_sets, summaries)


def extract(
    data=None,
    features: Union[str, Sequence[str], None] = DEFAULT_FEATURES,
    *,
    layout: str = "auto",
    weights: str = "imagenet",
    segment: bool = False,
    grayscale: bool = False,
    device: str = "auto",
    precision: str = "auto",
    decode: str = "auto",
    tta: str = "none",
    layers: str = "last",
    pooling: str = "avg",
    stain_norm: str = "none",
    stain_reference: str = "fixed",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache_dir=None,
    subject_regex: Optional[str] = None,
    chunk_size: int = 256,
    progress: bool = True,
    max_per_subject: Optional[int] = None,
    max_per_class: Optional[int] = None,
    fraction: Optional[float] = None,
    subsample_seed: int = DEFAULT_SEED,
    scheduler: Optional[str] = None,
    client=None,
    memory_map: bool = False,
    return_summaries: bool = False,
):
    """Extract (or take from the cache) features of a dataset.

    The notebook shortcut of :func:`extract_all`, which does the work: it
    returns the :class:`FeatureSet` itself when one feature set is asked for.
    Code that handles any number of feature sets, or needs the summaries,
    reads them from :func:`extract_all`'s :class:`ExtractionResult`.

    Parameters
    ----------
    data : path, DataFrame or None
        Dataset folder or CSV manifest; a table from
        :func:`leukbench.datasets.discover`; ``None`` for the bundled sample.
    features : str or list of str
        Feature sets, e.g. ``"efficientnet_lite0,handcrafted"``; ``a+b``
        concatenates the columns of two extractors.
    layout, subject_regex
        See :func:`leukbench.datasets.discover`.
    weights : str
        ``"imagenet"``, ``"none"`` (random init) or a path to a weights file
        (deep backbones only).
    segment, grayscale : bool
        Crop to the segmented cell / convert to grayscale before extraction.
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
    precision : {"auto", "float32", "float16", "bfloat16"}
        Arithmetic of the deep backbones (see
        :class:`leukbench.features.deep.DeepExtractor`); autocast features
        are cached apart from float32 ones.
    decode : {"auto", "cpu", "gpu"}
        Where the deep backbones' JPEGs are decoded and resized: PIL in the
        workers (``"cpu"``), or torchvision on the device (``"gpu"``: nvJPEG
        on CUDA, batches of file bytes); ``"auto"`` is ``"gpu"`` on CUDA and
        ``"cpu"`` elsewhere. ``"gpu"`` features have their own cache key.
    tta, layers, pooling
        Feature options of the deep backbones (see
        :class:`leukbench.features.deep.DeepExtractor`): ``"none"``, ``"flip"``
        or ``"d4"`` test-time symmetries; ``"last"``, ``"last2"``, ``"last3"``
        or stage names; ``"avg"`` or ``"gem"`` pooling.
    stain_norm : {"none", "reinhard", "macenko"}
        Colour normalisation (:mod:`leukbench.stain`) before deep and
        handcrafted features. Any non-default option has its own cache key.
    stain_reference : str
        The Reinhard reference: ``"fixed"`` (:data:`leukbench.stain.REINHARD_REFERENCE`),
        ``"dataset"`` (the same statistics over a seeded subsample of at most 256 of
        this dataset's images, label-free, test folds included) or the path of one
        image (see :func:`leukbench.stain.resolve_reference`); its numbers are in the
        cache key and the report. Only with ``stain_norm="reinhard"``.
    batch_size, num_workers, chunk_size, progress
        Execution settings (they do not change the numbers); ``batch_size``
        ``None`` is 16 images per network call on the CPU, 256 on CUDA.
    cache_dir : path, optional
        Defaults to :func:`leukbench.cache.default_cache_dir`.
    max_per_subject, max_per_class, fraction, subsample_seed
        The reduced-data mode: a stratified, subject-preserving, seeded
        subsample of the labelled images before extraction (see
        :func:`leukbench.datasets.subsample`); the cache is shared with
        the full dataset.
    scheduler, client
        Run on a Dask cluster: ``"tcp://HOST:PORT"`` of a running scheduler,
        ``"local:N"`` (a local cluster of N worker processes), or a
        ``dask.distributed.Client`` (see :mod:`leukbench.cluster`; needs
        ``pip install "leukbench[dask]"``).
    memory_map : bool
        Assemble each matrix in a memory-mapped file on disk instead of RAM
        (:mod:`leukbench._mapped`): for matrices near or above the machine's
        memory, with classifiers that learn from batches (docs/scaling.md).
        The values are the same.
    return_summaries : bool
        Also return the list of :class:`ExtractionSummary`.

    Returns
    -------
    FeatureSet, or dict name -> FeatureSet when several feature sets are asked
    for (plus the summaries when ``return_summaries``).

    Raises
    ------
    ExtractionError
        When no image could be read.

    Example
    -------
    >>> fs = extract(features="efficientnet_lite0", progress=False)  # doctest: +SKIP
    >>> fs.X.shape  # doctest: +SKIP
    (159, 1280)
    """
    result = extract_all(data, features, layout=layout, weights=weights, segment=segment, grayscale=grayscale,
                         device=device, precision=precision, decode=decode, tta=tta, layers=layers, pooling=pooling,
                         stain_norm=stain_norm, stain_reference=stain_reference, batch_size=batch_size,
                         num_workers=num_workers,
                         cache_dir=cache_dir, subject_regex=subject_regex, chunk_size=chunk_size,
                         progress=progress, max_per_subject=max_per_subject, max_per_class=max_per_class,
                         fraction=fraction, subsample_seed=subsample_seed, scheduler=scheduler, client=client,
                         memory_map=memory_map)
    sets = result.feature_sets
    out = next(iter(sets.values())) if len(sets) == 1 else sets
    return (out, result.summaries) if return_summaries else out
