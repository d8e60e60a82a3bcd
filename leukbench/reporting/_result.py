"""Reading a comparison result: its frames, the status of a row, which rows succeeded.

A *comparison result* is any object with the attributes of
:class:`leukbench.evaluation.ComparisonResult`; missing attributes read as empty,
so that fakes work as well as real results.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pandas as pd

from ..schema import ID_COLUMNS, METRIC_COLUMNS, STATUS_FAILED, STATUS_OK, TAIL_COLUMNS

__all__ = [
    "is_missing",
    "is_ok",
    "short_status",
    "result_table",
    "result_frame",
    "ok_rows",
    "row_label",
    "as_feature_set_list",
    "fit_counts",
]


def is_missing(value) -> bool:
    """Whether a cell holds no value (``None``, NaN, ``pd.NA``); containers are never missing.

    Example
    -------
    >>> is_missing(None), is_missing(float("nan")), is_missing(0.0), is_missing([1, 2])
    (True, True, False, False)
    """
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def is_ok(status) -> bool:
    """Whether a row's ``Status`` means success (a missing status counts as ``"ok"``).

    Example
    -------
    >>> is_ok("ok"), is_ok(" OK "), is_ok(None), is_ok("failed: boom")
    (True, True, True, False)
    """
    if is_missing(status):
        return True
    return str(status).strip().lower() == STATUS_OK


def short_status(status) -> str:
    """The word before the reason: ``"failed: ValueError: x"`` -> ``"failed"``.

    Example
    -------
    >>> short_status("failed: ValueError: boom"), short_status("timeout"), short_status(" ")
    ('failed', 'timeout', 'failed')
    """
    text = str(status).strip()
    return text.split(":", 1)[0].strip() or STATUS_FAILED


def result_table(result_or_table) -> pd.DataFrame:
    """The results table of a result (or the table itself), with a fresh 0-based index."""
    table = getattr(result_or_table, "table", result_or_table)
    if table is None:
        return pd.DataFrame(columns=list(ID_COLUMNS) + list(METRIC_COLUMNS) + list(TAIL_COLUMNS))
    return pd.DataFrame(table).reset_index(drop=True)


def result_frame(result, attribute: str) -> pd.DataFrame:
    """``result.<attribute>`` (``folds``, ``predictions``) as a DataFrame; empty when absent."""
    frame = getattr(result, attribute, None)
    if frame is None:
        return pd.DataFrame()
    return pd.DataFrame(frame).reset_index(drop=True)


def ok_rows(result, top: Optional[int] = None) -> pd.DataFrame:
    """The successful rows of the table, best first; only the first ``top`` when given."""
    table = result_table(result)
    if "Status" in table.columns:
        table = table[[is_ok(s) for s in table["Status"]]]
    return table.head(top) if top is not None else table


def row_label(feature_set, model) -> str:
    """How plots and the report name a table row.

    Example
    -------
    >>> row_label("handcrafted", "SVC")
    'handcrafted · SVC'
    """
    return f"{feature_set} · {model}"


def as_feature_set_list(feature_sets) -> List[Any]:
    """``None``, one FeatureSet, a sequence or a name -> FeatureSet dict, as a list."""
    if feature_sets is None:
        return []
    if isinstance(feature_sets, dict):
        return list(feature_sets.values())
    if hasattr(feature_sets, "X") and hasattr(feature_sets, "ids"):
        return [feature_sets]
    return list(feature_sets)


def fit_counts(result) -> Dict[str, int]:
    """How many fits a comparison computed and how many came from the fold cache; with fine-tuned
    networks, also how many fine-tunings (one per network and fold) it ran and how many came from
    the checkpoint cache (``finetunings``, ``finetunings_trained``, ``finetunings_from_cache``)."""
    cached = int(getattr(result, "n_cached", 0) or 0)
    computed = int(getattr(result, "n_computed", 0) or 0)
    out = {"total": cached + computed, "from_fold_cache": cached, "computed": computed}
    tuned = [bool(c) for p in ((getattr(result, "params", None) or {}).get("finetune") or {}).values()
             for c in p.get("from_cache", [])]
    if tuned:
        out.update(finetunings=len(tuned), finetunings_trained=tuned.count(False), finetunings_from_cache=sum(tuned))
    return out
