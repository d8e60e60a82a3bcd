"""From images on disk to cached feature matrices: the ``extract`` step.

Images are decoded, fingerprinted, optionally segmented and prepared for the
extractor in worker processes (a :class:`torch.utils.data.DataLoader`), while
the main process runs the batched part (a network forward pass) and flushes
results to the :class:`~leukbench.cache.FeatureCache` in chunks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from . import datasets
from .cache import FeatureCache, default_cache_dir, stat_images
from .exceptions import ExtractionError
from .featureset import FeatureSet
from .features.base import Extractor, create_extractor

DEFAULT_FEATURES = "efficientnet_lite0"




@dataclasses.dataclass
class ExtractionSummary:
    """What one extractor did on one dataset."""

    extractor: str
    description: str
    n_found: int
    n_extracted: int
    n_cached: int
    skipped: pd.DataFrame
    n_segmentation_fallback: int
    seconds: float
    cache_path: str
    skipped_csv: Optional[str] = None
    #: images whose features were copied from another extractor's columns in
    #: this run (a handcrafted group next to ``handcrafted``), and its name
    n_copied: int = 0
    copied_from: Optional[str] = None
    #: ids of the images where segmentation found no cell (the whole image was used)
    segmentation_fallback_ids: List[str] = dataclasses.field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.n_extracted / self.seconds if self.seconds > 0 else float("nan")

    def lines(self) -> List[str]:
        """Human-readable summary lines (printed by the CLI)."""
        out = [
            f"{self.description}",
            f"  images found {self.n_found}, extracted {self.n_extracted}, from cache {self.n_cached}, "
            + (f"copied from {self.copied_from}'s columns {self.n_copied}, " if self.n_copied else "")
            + f"skipped {len(self.skipped)}",
        ]
        if self.n_extracted:
            out.append(f"  time {self.seconds:.1f} s, {self.images_per_second:.1f} images/s")
        if self.n_segmentation_fallback:
            ids = self.segmentation_fallback_ids
            example = (f" (e.g. {ids[0]}" + (f" and {len(ids) - 1} more" if len(ids) > 1 else "") + ")"
                       if ids else "")
            out.append(
                f"  segmentation found no cell in {self.n_segmentation_fallback} image(s){example}; "
                "the whole image was used for those"
            )
        if len(self.skipped):
            kinds = self.skipped["kind"]
            for kind, n in kinds.value_counts().head(5).items():
                example = self.skipped.loc[kinds == kind, "id"].iloc[0]
                more = f" and {n - 1} more" if n > 1 else ""
                out.append(f"  skipped {n}: {kind} (e.g. {example}{more})")
            if self.skipped_csv:
                out.append(f"  skipped images listed in {self.skipped_csv}")
        out.append(f"  features cached in {self.cache_path}")
        return out


# ---------------------------------------------------------------------------
# feature specs
# ---------------------------------------------------------------------------


def parse_feature_spec(spec: Union[str, Sequence[str], None]) -> List[List[str]]:
    """Parse ``"a,b,a+b"`` into feature sets ``[["a"], ["b"], ["a", "b"]]``."""
    if spec is None or spec == "":
        spec = DEFAULT_FEATURES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    sets = []
    for item in items:
        if not str(item).strip():
            continue
        parts = [p.strip() for p in str(item).split("+")]
        if not all(parts):
            raise ValueError(f"feature set {str(item).strip()!r} has an empty name; "
                             "write a+b to combine two extractors")
        _check_no_shared_columns("+".join(parts), parts)
        if parts not in sets:
            sets.append(parts)
    if not sets:
        raise ValueError(f"no feature extractor named in {spec!r}")
    return sets


def _check_no_shared_columns(item: str, parts: Sequence[str]) -> None:
    """Refuse ``a+a`` and a handcrafted group combined with ``handcrafted``:
    either would give the feature set the same columns twice."""
    from .features.handcrafted import GROUPS

    def columns(name):  # what a part contributes, as far as overlaps go
        return set(GROUPS) if name == "handcrafted" else {name}

    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            if a == b:
                raise ValueError(f"feature set {item!r} names {a} twice; write it once")
            if columns(a) & columns(b):
                group = a if a != "handcrafted" else b
                raise ValueError(f"feature set {item!r} has the {group} columns twice (they are part of "
                                 f"handcrafted); use handcrafted alone")


# ---------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------


class _ImageDataset:
    """Map-style dataset: decode, fingerprint, segment and prepare one image."""

    def __init__(self, paths: Sequence[str], extractor: Extractor, segment: bool, grayscale: bool):
        self.paths = list(paths)
        self.extractor = extractor
        self.segment = segment
        self.grayscale = grayscale

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from .audit import difference_hash, pixel_hash
        from .images import ImageReadError, load_image

        path = self.paths[i]
        try:
            image = load_image(path)
            hashes = (pixel_hash(image), difference_hash(image))
            fallback = False
            if self.grayscale:
                from .preprocessing import grayscale_rgb

                image = grayscale_rgb(image)
            if self.segment:
                from .preprocessing import segment_cell

                seg = segment_cell(image)
                image, fallback = seg.crop, not seg.found
            item = self.extractor.prepare(image)
            if isinstance(item, dict) and item.get("segmentation_fallback"):
                fallback = True
            return (i, item, hashes, fallback, None)
        except ImageReadError as exc:
            return (i, None, None, False, (exc.kind, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
            return (i, None, None, False, (f"{exc.__class__.__name__} while preparing the image",
                                           f"{path}: {exc.__class__.__name__}: {exc}"))


def _collate(batch):
    return batch


# ---------------------------------------------------------------------------
# main side
# ---------------------------------------------------------------------------


def default_num_workers(extractor: Extractor) -> int:
    """Decoding workers: all cores when batches alternate with the network
    (threads) or for handcrafted features; cores-1 (at most 8) processes
    beside a GPU."""
    n = os.cpu_count() or 1
    if extractor.config.kind == "handcrafted" or extractor.feed == "alternate":
        return n
    return max(1, min(n - 1, 8))


def _overlapped_batches(ds, batch_size: int, num_workers: int):
    """Batches decoded by worker processes while the caller computes (DataLoader)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    yield from loader


def _alternating_batches(ds, batch_size: int, num_workers: int):
    """Batches decoded by a thread pool, one at a time, between ``compute`` calls.

    Decoding, resizing and hashing release the GIL (PIL, hashlib, NumPy), so
    threads use every core for them; nothing decodes while the network runs,
    so the network's threads never wait on a core taken by a decoder.
    """
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    n, bs = len(ds), batch_size
    threads = ThreadPoolExecutor(num_workers, thread_name_prefix="leukbench-decode") if num_workers > 1 else None
    with threads or contextlib.nullcontext():
        decode = threads.map if threads else map
        for start in range(0, n, bs):
            yield list(decode(ds.__getitem__, range(start, min(start + bs, n))))


def run_extractor(
    table: pd.DataFrame,
    root: str,
    extractor: Extractor,
    cache_dir,
    *,
    num_workers: Optional[int] = None,
    chunk_size: int = 256,
    progress: bool = True,
    cache: Optional[FeatureCache] = None,
    stats: Optional[tuple] = None,
) -> ExtractionSummary:
    """Extract the images of ``table`` that are not cached yet.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`leukbench.datasets.discover`.
    root : str
        Dataset root (image ids are relative to it).
    extractor : Extractor
    cache_dir : path
    num_workers : int, optional
        Decoding workers: threads for an extractor whose ``feed`` is
        ``"alternate"`` (a network on the CPU), processes otherwise; 0 decodes
        in the main thread.
    chunk_size : int
        Images per cache chunk (what an interruption may lose at most).
    progress : bool
        Show a progress bar on stderr.
    cache, stats : optional
        The extractor's :class:`FeatureCache` and ``stat_images`` of the
        table's paths, when the caller already has them (``extract`` shares
        them with :func:`load_feature_set`, so the cache index is read and
        the files are stat'ed once).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if cache is None:
        cache = FeatureCache(cache_dir, root, extractor.config, extractor.feature_names)
    ids = table["id"].tolist()
    paths = table["path"].tolist()
    sizes, mtimes = stat_images(paths) if stats is None else stats
    cached = cache.cached_mask(ids, sizes, mtimes)
    todo = np.flatnonzero(~cached)
    skipped = []
    if len(todo):
        if num_workers is None:
            num_workers = default_num_workers(extractor)
        num_workers = min(num_workers, max(0, len(todo) // 8))
        ds = _ImageDataset([paths[i] for i in todo], extractor, extractor.config.segment, extractor.config.grayscale)
        # no batch larger than a chunk, and chunks of exactly chunk_size rows (the last one
        # smaller): a crash loses at most a chunk and a batch, Ctrl-C only the batch in flight
        batch_size = max(1, min(extractor.batch_size, chunk_size))
        if extractor.feed == "alternate":
            loader = _alternating_batches(ds, batch_size, num_workers)
        else:
            loader = _overlapped_batches(ds, batch_size, num_workers)
        buf: Dict[str, list] = {k: [] for k in ("ids", "sizes", "mtimes", "ph", "dh", "fb", "X")}

        def flush(limit: Optional[int] = None):
            """Write the first ``limit`` buffered rows (all by default) as one chunk."""
            n = len(buf["ids"]) if limit is None else min(limit, len(buf["ids"]))
            if n == 0:
                return
            X = np.concatenate(buf["X"], axis=0)
            cache.write_chunk(buf["ids"][:n], buf["sizes"][:n], buf["mtimes"][:n], buf["ph"][:n],
                              buf["dh"][:n], buf["fb"][:n], X[:n])
            for k in ("ids", "sizes", "mtimes", "ph", "dh", "fb"):
                del buf[k][:n]
            buf["X"][:] = [X[n:]] if n < len(X) else []

        bar = tqdm(total=len(todo), desc=extractor.name, unit="img", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True, leave=False)
        try:
            for batch in loader:
                good = [b for b in batch if b[4] is None]
                for b in batch:
                    if b[4] is not None:
                        j = todo[b[0]]
                        skipped.append((ids[j], paths[j], *b[4]))
                if good:
                    X = extractor.compute([b[1] for b in good])
                    for b in good:
                        j = todo[b[0]]
                        buf["ids"].append(ids[j])
                        buf["sizes"].append(sizes[j])
                        buf["mtimes"].append(mtimes[j])
                        buf["ph"].append(b[2][0])
                        buf["dh"].append(b[2][1])
                        buf["fb"].append(b[3])
                    buf["X"].append(np.asarray(X, dtype=np.float32))
                    while len(buf["ids"]) >= chunk_size:  # chunks of exactly chunk_size rows
                        flush(chunk_size)
                bar.update(len(batch))
        finally:
            # Keep whatever was computed, also on Ctrl-C or an unexpected error,
            # and stop the decoding workers (threads or processes) now, not at
            # garbage collection.
            flush()
            loader.close()
            bar.close()
    cache.compact()  # bounded number of chunk files, whatever the number of images
    skipped_df = pd.DataFrame(skipped, columns=["id", "path", "kind", "reason"])
    skipped_csv = cache.write_skipped(skipped_df) if len(skipped_df) or cache.path.exists() else None
    present = cache.cached_mask(ids, sizes, mtimes)
    fallback = cache.rows([i for i, ok in zip(ids, present) if ok])["seg_fallback"] if present.any() else None
    fallback_ids = [] if fallback is None else fallback.index[fallback.astype(bool)].tolist()
    return ExtractionSummary(
        extractor=extractor.name,
        description=extractor.describe(),
        n_found=len(ids),
        n_extracted=len(todo) - len(skipped),
        n_cached=int(cached.sum()),
        skipped=skipped_df,
        n_segmentation_fallback=len(fallback_ids),
        seconds=time.perf_counter() - t0,
        cache_path=str(cache.path),
        skipped_csv=str(skipped_csv) if skipped_csv and len(skipped_df) else None,
        segmentation_fallback_ids=fallback_ids,
    )


def column_source(extractor: Extractor, others: Sequence[Extractor]) -> Optional[Extractor]:
    """Another extractor of the same run that computes all of ``extractor``'s columns.

    Only the handcrafted groups qualify (``morphology``, ``texture`` and
    ``color`` are columns of ``handcrafted``, computed from one cell mask with
    the same settings), so that asking for a group next to ``handcrafted``
    does not segment every cell twice.
    """
    from .features.handcrafted import HandcraftedExtractor

    if not isinstance(extractor, HandcraftedExtractor):
        return None

    def settings(ex):
        c = ex.config
        return c.segment, c.grayscale, tuple(kv for kv in c.options if kv[0] != "groups")

    for other in others:
        if (other is not extractor and isinstance(other, HandcraftedExtractor)
                and set(extractor.groups) < set(other.groups) and settings(other) == settings(extractor)):
            return other
    return None


def cached_column_source(extractor: Extractor, cache_dir, root) -> Optional[tuple]:
    """A cache of an earlier run that holds all of ``extractor``'s columns.

    For a handcrafted group asked for without ``handcrafted``: the cache of
    ``handcrafted`` with the same settings, when one exists for this dataset.
    Returns ``(source extractor, its FeatureCache)`` or ``None``.
    """
    from .features.handcrafted import HandcraftedExtractor

    if not isinstance(extractor, HandcraftedExtractor):
        return None
    full = create_extractor("handcrafted", segment=extractor.config.segment,
                            grayscale=extractor.config.grayscale)
    if column_source(extractor, [full]) is None:
        return None
    cache = FeatureCache(cache_dir, root, full.config, full.feature_names)
    return (full, cache) if cache.chunk_files() else None


def copy_columns(source: FeatureCache, target: FeatureCache, ids: Sequence[str], stats: tuple,
                 chunk_size: int = 256) -> int:
    """Write into ``target`` the rows ``source`` has and ``target`` lacks, restricted to
    ``target``'s feature columns. Returns the number of images copied."""
    sizes, mtimes = stats
    want = source.cached_mask(ids, sizes, mtimes) & ~target.cached_mask(ids, sizes, mtimes)
    take = [i for i, ok in zip(ids, want) if ok]
    pos = {n: k for k, n in enumerate(source.feature_names)}
    cols = [pos[n] for n in target.feature_names]
    for start in range(0, len(take), chunk_size):
        part = take[start:start + chunk_size]
        meta = source.rows(part)
        target.write_chunk(part, meta["size"], meta["mtime_ns"], meta["pixel_hash"].tolist(),
                           meta["dhash"].tolist(), meta["seg_fallback"], source.matrix(part)[:, cols])
    return len(take)


def load_feature_set(table: pd.DataFrame, root: str, extractor: Extractor, cache_dir, layout: str = "",
                     *, cache: Optional[FeatureCache] = None, stats: Optional[tuple] = None,
                     skipped: Optional[pd.DataFrame] = None) -> FeatureSet:
    """Assemble a :class:`FeatureSet` from the cache for the images of ``table``.

    Images that are not cached (skipped as unreadable) are left out;
    ``skipped`` (an :class:`ExtractionSummary`'s table) says why, and goes
    into the provenance (``"skipped"``: id, kind, reason), so that reports
    can list what is missing. ``cache`` and ``stats`` are as in
    :func:`run_extractor`.
    """
    from . import __version__

    if cache is None:
        cache = FeatureCache(cache_dir, root, extractor.config, extractor.feature_names)
    sizes, mtimes = stat_images(table["path"].tolist()) if stats is None else stats
    present = cache.cached_mask(table["id"].tolist(), sizes, mtimes)
    sub = table.loc[present]
    rows = cache.rows(sub["id"].tolist())
    return FeatureSet(
        name=extractor.name,
        X=cache.matrix(sub["id"].tolist()),
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
            skipped[["id", "kind", "reason"]].astype(str).to_dict("records"),
        },
    )


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
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache_dir=None,
    subject_regex: Optional[str] = None,
    chunk_size: int = 256,
    progress: bool = True,
    return_summaries: bool = False,
):
    """Extract (or take from the cache) features of a dataset.

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
    batch_size, num_workers, chunk_size, progress
        Execution settings (they do not change the numbers); ``batch_size``
        ``None`` is 16 images per network call on the CPU, 32 on a GPU.
    cache_dir : path, optional
        Defaults to :func:`leukbench.cache.default_cache_dir`.
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
    """
    if isinstance(data, pd.DataFrame):
        table = data
        root = table.attrs.get("root") or os.path.commonpath(table["path"].tolist())
        layout = table.attrs.get("layout", layout)
    else:
        if data is None:
            data = datasets.sample_root()
        table = datasets.discover(data, layout=layout, subject_regex=subject_regex,
                                  require_labels=False)  # one class is enough to extract
        root, layout = table.attrs["root"], table.attrs["layout"]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sets = parse_feature_spec(features)
    names = []
    for s in sets:
        names += [n for n in s if n not in names]
    extractors = {
        n: create_extractor(n, weights=weights, segment=segment, grayscale=grayscale,
                            device=device, precision=precision, batch_size=batch_size)
        for n in names
    }
    # one cache object per extractor and one stat of every file, shared by the
    # extraction and the assembly of the feature sets (the index is read once)
    caches = {n: FeatureCache(cache_dir, root, ex.config, ex.feature_names) for n, ex in extractors.items()}
    stats = stat_images(table["path"].tolist())
    ids = table["id"].tolist()
    # a handcrafted group takes its columns from `handcrafted` of this run, or
    # else from `handcrafted`'s cache of an earlier run, instead of segmenting
    # every cell again
    sources = {}
    for n, ex in extractors.items():
        src = column_source(ex, list(extractors.values()))
        sources[n] = (src, caches[src.name]) if src else cached_column_source(ex, cache_dir, root)
    in_run = {n: s is not None and s[0].name in extractors for n, s in sources.items()}
    order = sorted(extractors, key=lambda n: in_run[n])  # sources of this run go first
    by_name = {}
    for n in order:
        ex, (src, src_cache) = extractors[n], sources[n] or (None, None)
        copied = copy_columns(src_cache, caches[n], ids, stats, chunk_size) if src else 0
        by_name[n] = run_extractor(table, root, ex, cache_dir, num_workers=num_workers, chunk_size=chunk_size,
                                   progress=progress, cache=caches[n], stats=stats)
        if copied:  # cached by the copy just made, not by an earlier run
            by_name[n].n_copied, by_name[n].copied_from = copied, src.name
            by_name[n].n_cached -= copied
    summaries = [by_name[n] for n in extractors]
    singles = {n: load_feature_set(table, root, ex, cache_dir, layout, cache=caches[n], stats=stats,
                                   skipped=by_name[n].skipped)
               for n, ex in extractors.items()}
    for n, fs in singles.items():
        if len(fs) == 0:
            raise ExtractionError(
                f"{root}: no image could be read for {n}; see the skipped list in "
                f"{next(s.skipped_csv for s in summaries if s.extractor == n) or 'the cache folder'}",
                summaries,
            )
    out = {"+".join(s): FeatureSet.combine([singles[n] for n in s]) for s in sets}
    result = next(iter(out.values())) if len(out) == 1 else out
    return (result, summaries) if return_summaries else result
