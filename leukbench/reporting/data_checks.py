"""What the run found wrong with the data: leakage-audit findings and skipped images.

The audit of a result is ``None``, one audit report (an object with
``pairs`` and ``summary()``, see :class:`leukbench.audit.AuditReport`) or a
dict feature-set name -> report when the audit ran per feature set. The
skipped images come from the feature sets' provenance.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from ..schema import PAIR_COLUMNS, SKIPPED_COLUMNS
from ._result import as_feature_set_list
from .provenance import RecordedProvenance

__all__ = [
    "audit_items",
    "audit_summary_text",
    "audit_pairs",
    "audit_oneline",
    "skipped_images",
    "skipped_summary",
]


def audit_items(audit) -> List[Tuple[Optional[str], Any]]:
    """``(feature set name or None, audit report)`` for each report of ``audit``.

    Example
    -------
    >>> audit_items(None), audit_items("r"), audit_items({"a": "r1", "b": None})
    ([], [(None, 'r')], [('a', 'r1')])
    """
    if audit is None:
        return []
    if isinstance(audit, dict):
        return [(str(k), v) for k, v in audit.items() if v is not None]
    return [(None, audit)]


def audit_summary_text(report) -> str:
    """The report's ``summary()`` (or ``summary`` text); a broken audit says so, never fails."""
    summary = getattr(report, "summary", None)
    try:
        return str(summary() if callable(summary) else (summary if summary is not None else report))
    except Exception as exc:  # a broken audit must not lose the report
        return f"(audit summary unavailable: {exc})"


def audit_pairs(audit) -> pd.DataFrame:
    """All flagged pairs (``audit_pairs.csv``); a leading ``feature_set`` column per feature set.

    Example
    -------
    >>> list(audit_pairs(None).columns)[:4]
    ['id_a', 'id_b', 'subject_a', 'subject_b']
    """
    frames = []
    for name, report in audit_items(audit):
        pairs = getattr(report, "pairs", None)
        if pairs is None:
            continue
        frame = pd.DataFrame(pairs).copy()
        if name is not None:
            frame.insert(0, "feature_set", name)
        frames.append(frame)
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(columns=list(PAIR_COLUMNS))


def audit_oneline(audit) -> str:
    """The audit summaries on one line (``<set>: <summary> | ...``), as the CLI prints them.

    Example
    -------
    >>> audit_oneline(None)
    'no leakage audit was run'
    """
    items = audit_items(audit)
    if not items:
        return "no leakage audit was run"
    parts = []
    for name, report in items:
        lines = [" ".join(x.split()) for x in audit_summary_text(report).splitlines()]
        text = "; ".join(x for x in lines if x)
        parts.append(f"{name}: {text}" if name is not None else text)
    return " | ".join(parts)


def skipped_images(feature_sets) -> pd.DataFrame:
    """Images the extraction could not read, from the feature sets' provenance.

    One row per image (``id, kind, reason``), sorted by id; empty when
    nothing was skipped or the feature sets do not record it.

    Example
    -------
    >>> skipped_images([]).columns.tolist()
    ['id', 'kind', 'reason']
    """
    found = []
    for fs in as_feature_set_list(feature_sets):
        skipped = RecordedProvenance.read(getattr(fs, "provenance", None)).skipped
        found.extend((s.id, s.kind, s.reason) for s in skipped)
    frame = pd.DataFrame(found, columns=list(SKIPPED_COLUMNS)).astype(str)
    return frame.drop_duplicates("id").sort_values("id", kind="stable").reset_index(drop=True)


def skipped_summary(skipped: pd.DataFrame) -> Dict[str, Any]:
    """``{"n": <images>, "by_kind": {kind: count}}`` of a :func:`skipped_images` table."""
    by_kind = skipped["kind"].value_counts().sort_index()
    return {"n": len(skipped), "by_kind": {str(k): int(v) for k, v in by_kind.items()}}
