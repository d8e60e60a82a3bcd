"""What an extraction reports: one :class:`ExtractionSummary` per extractor, and the
:class:`ExtractionResult` of :func:`~leukbench.extraction.extract_all`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, List, Optional

import pandas as pd

if TYPE_CHECKING:
    from ..featureset import FeatureSet

#: Columns of the table of skipped images (``ExtractionSummary.skipped``).
SKIPPED_IMAGE_COLUMNS = ["id", "path", "kind", "reason"]


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
    #: set when the cache folder could not be written (a read-only, shared cache): what was not written
    read_only_note: Optional[str] = None
    #: set when the images were extracted on a Dask cluster: its tasks, workers used and throughput
    engine_note: Optional[str] = None

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
        if self.engine_note:
            out.append(f"  {self.engine_note}")
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
        if self.read_only_note:
            out.append(f"  note: {self.read_only_note}")
        return out


@dataclasses.dataclass
class ExtractionResult:
    """What :func:`extract_all` returns, whatever was asked for.

    Attributes
    ----------
    feature_sets : dict of str to FeatureSet
        One feature set per item of ``features``, in the order asked, by name
        (``"efficientnet_lite0"``, ``"efficientnet_lite0+handcrafted"`` ...).
    summaries : list of ExtractionSummary
        One per extractor, in the order their names first appear.
    """

    feature_sets: Dict[str, FeatureSet]
    summaries: List[ExtractionSummary]
