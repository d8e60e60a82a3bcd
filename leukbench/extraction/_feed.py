"""Feeding images to an extractor: decode, fingerprint, segment and prepare them,
in worker processes beside the computation or in threads between its batches."""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional, Sequence, Tuple

from ..features.base import Extractor


class _Prepared(NamedTuple):
    """One image as a worker hands it back: prepared, or the reason it was skipped."""

    index: int
    item: Any
    hashes: Optional[Tuple[str, str]]
    segmentation_fallback: bool
    error: Optional[Tuple[str, str]]  # (kind, reason) of a skipped image


class _ImageDataset:
    """Map-style dataset: decode, fingerprint, segment and prepare one image."""

    def __init__(self, paths: Sequence[str], extractor: Extractor, segment: bool, grayscale: bool):
        self.paths = list(paths)
        self.extractor = extractor
        self.segment = segment
        self.grayscale = grayscale
        self.reduce_to = decode_side(extractor, segment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> _Prepared:
        from ..images import ImageReadError, difference_hash, load_image, pixel_hash

        path = self.paths[i]
        try:
            image = load_image(path, reduce_to=self.reduce_to)
            hashes = (pixel_hash(image), difference_hash(image))
            fallback = False
            if self.grayscale:
                from ..preprocessing import grayscale_rgb

                image = grayscale_rgb(image)
            if self.segment:
                from ..preprocessing import segment_cell

                seg = segment_cell(image)
                image, fallback = seg.crop, not seg.found
            prepare_file = getattr(self.extractor, "prepare_file", None)  # decode="gpu": bytes for the device
            item = self.extractor.prepare(image) if prepare_file is None else prepare_file(path, image)
            fallback = fallback or bool(self.extractor.segmentation_fallback(item))
            return _Prepared(i, item, hashes, fallback, None)
        except ImageReadError as exc:
            return _Prepared(i, None, None, False, (exc.kind, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
            return _Prepared(i, None, None, False, (f"{exc.__class__.__name__} while preparing the image",
                                                    f"{path}: {exc.__class__.__name__}: {exc}"))


#: Shorter side a large image is decoded at when it is segmented before a
#: deep backbone (the cell's crop is resized to the network input afterwards).
SEGMENTED_DECODE_SIDE = 2048


def decode_side(extractor: Extractor, segment: bool) -> Optional[int]:
    """Shorter side at which a *large* image (see :data:`leukbench.images.LARGE_IMAGE_SIDE`)
    is decoded for ``extractor``; ``None`` decodes it at its own size.

    A deep backbone resizes the image to about 1.15x its input; it gets twice
    its input (``SEGMENTED_DECODE_SIDE`` when the cell is cropped first).
    Any other extractor gets its own ``decode_side`` attribute (the
    handcrafted descriptors: :data:`leukbench.features.handcrafted.DECODE_SIDE`,
    recorded in their cache key), or ``None`` when it has none.

    Example
    -------
    >>> from leukbench.features.base import ExtractorConfig
    >>> class Deep(Extractor):
    ...     config = ExtractorConfig(name="x", kind="deep", input_size=224)
    >>> decode_side(Deep(), segment=False), decode_side(Deep(), segment=True)
    (448, 2048)
    """
    config = extractor.config
    if config.kind != "deep":
        side = getattr(extractor, "decode_side", None)
        return None if side is None else int(side)
    if segment or not config.input_size:
        return SEGMENTED_DECODE_SIDE
    return 2 * int(config.input_size)


def _collate(batch):
    return batch


def decoded_on_device(extractor: Extractor, good: Sequence[_Prepared]):
    """``(prepared, failed)``: the items of ``good`` an extractor decodes on its device
    (``decode="gpu"``, :meth:`DeepExtractor.decode_items`) decoded there; those its
    decoder refused, with their reason, apart (skipped like unreadable files)."""
    decode = getattr(extractor, "decode_items", None)
    if decode is None or not good:
        return list(good), []
    items, errors = decode([b.item for b in good])
    kept = [b._replace(item=it) for k, (b, it) in enumerate(zip(good, items)) if k not in errors]
    return kept, [b._replace(item=None, error=errors[k]) for k, b in enumerate(good) if k in errors]


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
        worker_init_fn=_worker_dies_with_parent if num_workers else None,
    )
    yield from loader


def _worker_dies_with_parent(_worker_id: int) -> None:
    """In a decoding worker: leave SIGTERM to the parent (it stops the workers when it has
    flushed), and on Linux die at once with a killed parent instead of lingering until
    torch's watchdog notices (~2 s)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # another libc: the watchdog still ends the worker
            pass


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
