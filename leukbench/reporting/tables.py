"""The results table as text: markdown, CSV and HTML, and the CLI's closing summary.

Human-readable tables show metrics as ``mean ± std`` (followed by the
``[low, high]`` confidence interval where the comparison computed one) and,
for rows that failed, the status word in every score cell; they end with the
``Tied With Best`` column. The CSV keeps full-precision numbers in separate
``<name> Std``, ``<name> CI Low`` / ``CI High`` columns, and the p-value and
difference against the best row.
"""

from __future__ import annotations

import html
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from ..exceptions import InvalidParameterError
from ..schema import (
    ID_COLUMNS,
    METRIC_COLUMNS,
    STATISTIC_COLUMNS,
    STATUS_OK,
    TAIL_COLUMNS,
    TIED_WITH_BEST,
    TIME_COLUMNS,
    ci_names,
    std_name,
)
from ._result import fit_counts, is_missing, is_ok, result_table, short_status
from .data_checks import audit_oneline

__all__ = ["format_table", "markdown_summary", "format_number", "mean_std", "with_interval"]

#: Longest ``Status`` cell of ``table.md`` (longer reasons end in "…").
STATUS_MAX_MD = 120


# --------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------


def format_number(value, digits: int) -> str:
    """``value`` with ``digits`` decimals, never a negative zero.

    Example
    -------
    >>> format_number(0.91249, 3), format_number(-0.0001, 3)
    ('0.912', '0.000')
    """
    text = f"{float(value):.{digits}f}"
    if text.lstrip("-").strip("0.") == "":  # "-0.000" -> "0.000"
        text = text.lstrip("-")
    return text


def mean_std(mean, std, digits: int) -> str:
    """``"mean ± std"``, or the mean alone when the spread is unknown.

    Example
    -------
    >>> mean_std(0.91249, 0.0206, 3), mean_std(0.5, float("nan"), 2)
    ('0.912 ± 0.021', '0.50')
    """
    text = format_number(mean, digits)
    if not is_missing(std):
        text += f" ± {format_number(std, digits)}"
    return text


def with_interval(text: str, low, high, digits: int) -> str:
    """``text`` followed by the interval ``[low, high]`` when both ends are known.

    Example
    -------
    >>> with_interval("0.812 ± 0.050", 0.7811, 0.8402, 3)
    '0.812 ± 0.050 [0.781, 0.840]'
    """
    if is_missing(low) or is_missing(high):
        return text
    return f"{text} [{format_number(low, digits)}, {format_number(high, digits)}]"


def _known_columns() -> set:
    known = set(ID_COLUMNS) | set(TAIL_COLUMNS) | set(METRIC_COLUMNS) | set(TIME_COLUMNS)
    known |= {std_name(c) for c in METRIC_COLUMNS + TIME_COLUMNS}
    known |= {name for c in METRIC_COLUMNS for name in ci_names(c)} | set(STATISTIC_COLUMNS)
    return known


def _extra_columns(table: pd.DataFrame, include_times: bool) -> List[str]:
    """Columns the evaluation added beyond the known ones (time-like ones only with times)."""
    known = _known_columns()
    return [c for c in table.columns
            if c not in known and (include_times or "time" not in c.lower())]


def _display_columns(table: pd.DataFrame, include_times: bool) -> List[str]:
    cols = [c for c in ID_COLUMNS if c in table.columns]
    cols += [c for c in METRIC_COLUMNS if c in table.columns]
    if include_times:
        cols += [c for c in TIME_COLUMNS if c in table.columns]
    cols += [c for c in TAIL_COLUMNS if c in table.columns]
    if TIED_WITH_BEST in table.columns:
        cols.append(TIED_WITH_BEST)
    return cols + _extra_columns(table, include_times)


def _score_cell(row: pd.Series, column: str, digits: int) -> str:
    """A metric or time cell: ``mean ± std``, or what stands in for a missing value."""
    value = row[column]
    if not is_missing(value):
        if column in TIME_COLUMNS:
            return mean_std(value, row.get(std_name(column), np.nan), 2)
        low, high = (row.get(name, np.nan) for name in ci_names(column))
        return with_interval(mean_std(value, row.get(std_name(column), np.nan), digits), low, high, digits)
    if column in TIME_COLUMNS:
        return "—"
    status = row.get("Status", STATUS_OK)
    return "n/a" if is_ok(status) else short_status(status)


def _cell_text(row: pd.Series, column: str, digits: int, status_max: Optional[int]) -> str:
    value = row[column]
    if column in METRIC_COLUMNS or column in TIME_COLUMNS:
        return _score_cell(row, column, digits)
    if column == "Folds":
        return "—" if is_missing(value) else str(int(value))
    if column == "Status":
        text = STATUS_OK if is_missing(value) else " ".join(str(value).split())
        if status_max and len(text) > status_max:
            text = text[: status_max - 1] + "…"
        return text
    if is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return format_number(value, digits)
    return " ".join(str(value).split())


def _display_cells(table: pd.DataFrame, digits: int, include_times: bool,
                   status_max: Optional[int] = None
                   ) -> Tuple[List[str], List[str], List[List[str]]]:
    """Header names, alignments and string cells of the human-readable table."""
    cols = _display_columns(table, include_times)
    header = [f"{c} (s)" if c in TIME_COLUMNS else c for c in cols]
    numeric = set(METRIC_COLUMNS) | set(TIME_COLUMNS) | {"Folds"}
    align = ["right" if c in numeric else "left" for c in cols]
    rows = [[_cell_text(r, c, digits, status_max) for c in cols] for _, r in table.iterrows()]
    return header, align, rows


# --------------------------------------------------------------------------
# the three formats
# --------------------------------------------------------------------------


def _csv_table(table: pd.DataFrame, include_times: bool) -> str:
    cols = [c for c in ID_COLUMNS if c in table.columns]
    for c in METRIC_COLUMNS + (TIME_COLUMNS if include_times else ()):
        if c in table.columns:
            cols += [name for name in (c, std_name(c), *ci_names(c)) if name in table.columns]
    cols += [c for c in TAIL_COLUMNS if c in table.columns]
    cols += [c for c in STATISTIC_COLUMNS if c in table.columns]
    cols += _extra_columns(table, include_times)
    out = table[cols].copy()
    if "Folds" in out.columns:
        try:
            out["Folds"] = out["Folds"].astype("Int64")  # ints; empty when unknown
        except (TypeError, ValueError):
            pass
    return out.to_csv(index=False, lineterminator="\n")


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _markdown_table(table: pd.DataFrame, digits: int, include_times: bool) -> str:
    header, align, rows = _display_cells(table, digits, include_times, STATUS_MAX_MD)
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join(":---" if a == "left" else "---:" for a in align) + "|")
    for cells in rows:
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _html_table(table: pd.DataFrame, digits: int, include_times: bool) -> str:
    header, align, rows = _display_cells(table, digits, include_times)
    out = ['<table class="leukbench-results">', "<thead><tr>"]
    out += [f'<th class="{a}">{html.escape(h)}</th>' for h, a in zip(header, align)]
    out.append("</tr></thead>")
    out.append("<tbody>")
    statuses = table["Status"] if "Status" in table.columns else [STATUS_OK] * len(table)
    for cells, status in zip(rows, statuses):
        row_class = "ok" if is_ok(status) else "failed"
        tds = "".join(f'<td class="{a}">{html.escape(c)}</td>' for c, a in zip(cells, align))
        out.append(f'<tr class="{row_class}">{tds}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out) + "\n"


def format_table(table, fmt: str = "markdown", digits: int = 3, include_times: bool = True) -> str:
    """Render the results table.

    Parameters
    ----------
    table : DataFrame or comparison result
        The ``ComparisonResult.table`` (or the result itself), already sorted.
    fmt : {"markdown", "csv", "html"}
        ``markdown``: GitHub table, metrics as ``mean ± std`` rounded to
        `digits`, times in seconds with 2 decimals, failed rows showing their
        status instead of numbers.  ``html``: the same cells as a ``<table>``.
        ``csv``: machine-readable, separate numeric mean and ``<name> Std``
        columns at full precision (`digits` is ignored).
    digits : int
        Decimals of the metric values (markdown and html).
    include_times : bool
        Whether ``Fit Time`` / ``Time Taken`` (and extra columns whose name
        contains "time") are included.  ``table.md`` uses ``False`` so that it
        is byte-identical across runs with the same scores.

    Returns
    -------
    str

    Raises
    ------
    InvalidParameterError
        For an unknown `fmt`.

    Example
    -------
    >>> import pandas as pd
    >>> t = pd.DataFrame([{"Feature Set": "a", "Model": "m", "Accuracy": 0.91249,
    ...                    "Accuracy Std": 0.0206, "Folds": 5, "Status": "ok"}])
    >>> print(format_table(t), end="")
    | Feature Set | Model | Accuracy | Folds | Status |
    |:---|:---|---:|---:|:---|
    | a | m | 0.912 ± 0.021 | 5 | ok |
    """
    t = result_table(table)
    fmt = fmt.lower()
    if fmt == "csv":
        return _csv_table(t, include_times)
    if fmt in ("markdown", "md"):
        return _markdown_table(t, digits, include_times)
    if fmt == "html":
        return _html_table(t, digits, include_times)
    raise InvalidParameterError(f"unknown table format {fmt!r}; use 'markdown', 'csv' or 'html'",
                                parameter="fmt")


def markdown_summary(result) -> str:
    """Text printed by the CLI at the end of a comparison.

    The markdown table (with timings), then one line with the
    cross-validation scheme and one with the leakage-audit summary (and one
    with the fit counts when the result has them).
    """
    lines = [format_table(result.table, "markdown", include_times=True).rstrip("\n"), ""]
    cv = getattr(result, "cv_description", None)
    lines.append(f"Cross-validation: {' '.join(str(cv).split())}" if cv else
                 "Cross-validation: (not described)")
    lines.append(f"Leakage audit: {audit_oneline(getattr(result, 'audit', None))}")
    fits = fit_counts(result)
    if fits["total"] or fits.get("finetunings"):
        line = (f"Fits: {fits['computed']} computed, {fits['from_fold_cache']} taken from the "
                f"fold cache ({fits['total']} in all)")
        if fits.get("finetunings"):  # the end-to-end trainings: one network per fold
            n = fits["finetunings"]
            line += (f" + {n} fine-tuning{'s' if n != 1 else ''} ({fits['finetunings_trained']} trained, "
                     f"{fits['finetunings_from_cache']} taken from the checkpoint cache)")
        lines.append(line)
    return "\n".join(lines) + "\n"
