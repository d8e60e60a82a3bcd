"""``report.html``: a self-contained page, one function per section.

Each ``_..._section`` function returns the HTML lines of its section; the
style sheet is the package file ``report.css``; the plots are embedded as
base64 PNGs.
"""

from __future__ import annotations

import base64
import functools
import html
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from ..datasets import subsample_line
from ._result import is_missing, is_ok, row_label
from .data_checks import audit_items, audit_summary_text
from .figures import PLOT_TITLES
from .provenance import FeatureSetInfo, Provenance
from .tables import format_table, mean_std
from .training_plot import TRAINING_PLOT, training_section

__all__ = ["report_html", "report_css"]


def _e(value) -> str:
    return html.escape(str(value))


@functools.lru_cache(maxsize=1)
def report_css() -> str:
    """The style sheet of the report (package data ``leukbench/reporting/report.css``)."""
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


def _head(provenance: Provenance) -> List[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>leukbench report</title>",
        f"<style>\n{report_css()}</style></head><body>",
        "<h1>leukbench report</h1>",
        (f'<p class="meta">Generated {_e(provenance.created_utc)} by leukbench '
         f'{_e(provenance.versions["leukbench"])}.'
         " Plots are embedded in this file (base64 PNG) and also saved under"
         " <code>plots/</code>.</p>"),
    ]


def _random_init_warning(provenance: Provenance) -> List[str]:
    names = provenance.random_init_extractors
    if not names:
        return []
    return [(
        '<p class="warn"><span class="random">Warning:</span> feature extractor(s) '
        f"{_e(', '.join(names))} used "
        '<span class="random">random init — not pretrained</span> weights; their scores do '
        "not reflect pretrained features.</p>"
    )]


def _class_table(classes: Dict[str, Dict[str, Any]]) -> List[str]:
    parts = [('<table><thead><tr><th class="left">class</th><th class="right">images</th>'
              '<th class="right">subjects</th></tr></thead><tbody>')]
    for name, counts in classes.items():
        subjects = "—" if counts["subjects"] is None else counts["subjects"]
        parts.append(f'<tr><td class="left">{_e(name)}</td>'
                     f'<td class="right">{counts["images"]}</td>'
                     f'<td class="right">{subjects}</td></tr>')
    parts.append("</tbody></table>")
    return parts


def _dataset_section(dataset: Dict[str, Any], classes: Sequence[Any], positive_label,
                     skipped: Optional[Dict[str, Any]]) -> List[str]:
    n_sub = dataset["n_subjects"]
    parts = [
        "<h2>Dataset</h2>",
        f"<p>{dataset['n_images']} images ({dataset['n_labeled']} labelled), "
        f"{len(dataset['classes'])} classes, "
        + (f"{n_sub} subjects." if n_sub is not None else "subjects unknown.")
        + (f" Positive class: <b>{_e(positive_label)}</b>." if positive_label is not None else "")
        + "</p>",
    ]
    if skipped and skipped["n"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in skipped["by_kind"].items())
        parts.append(f'<p class="warn">{skipped["n"]} image(s) of the dataset could not be read '
                     f"and are missing from the feature sets ({_e(kinds)}); each is listed with "
                     "its reason in <code>skipped_images.csv</code>.</p>")
    if dataset["classes"]:
        parts += _class_table(dataset["classes"])
    elif classes:
        parts.append(f"<p>Classes: {_e(', '.join(map(str, classes)))}</p>")
    return parts


def _subsample_note(subsample: Optional[Dict[str, Any]]) -> List[str]:
    """The reduced-data mode's line under the dataset summary (nothing for the whole dataset)."""
    if not subsample:
        return []
    return [f'<p class="warn">Reduced-data mode — {_e(subsample_line(subsample))}; the numbers '
            "describe this subsample, not the whole dataset.</p>"]


def _evaluation_section(cv_description, run_notes: Sequence[str] = ()) -> List[str]:
    """The scheme, then what the run said about it (reduced folds, tuning, bootstrap units...)."""
    scheme = (_e(cv_description) if cv_description
              else "The cross-validation scheme was not described.")
    said = [n for n in run_notes if str(n) not in str(cv_description or "")]
    return [
        "<h2>Evaluation scheme</h2>",
        f"<p>{scheme}</p>",
        *[f'<p class="warn">{_e(n)}</p>' for n in said],
        ("<p>Scores are mean ± standard deviation over the test folds (and repeats). "
         "Times are in seconds.</p>"),
    ]


def _audit_section(audit) -> List[str]:
    parts = ["<h2>Leakage audit</h2>"]
    items = audit_items(audit)
    if not items:
        parts.append("<p>No leakage audit was run.</p>")
    for name, report in items:
        if name is not None:
            parts.append(f"<h3>{_e(name)}</h3>")
        parts.append(f"<pre>{_e(audit_summary_text(report))}</pre>")
    if items:
        parts.append("<p>All flagged pairs: <code>audit_pairs.csv</code>.</p>")
    return parts


def _results_section(table: pd.DataFrame) -> List[str]:
    parts = ["<h2>Results</h2>", format_table(table, "html", include_times=True)]
    failed = table[[not is_ok(s) for s in table["Status"]]] if "Status" in table.columns else []
    if len(failed):
        parts.append("<p>Rows that did not produce scores:</p><ul>")
        for _, r in failed.iterrows():
            parts.append(f"<li>{_e(row_label(r.get('Feature Set'), r.get('Model')))}: "
                         f"<code>{_e(r['Status'])}</code></li>")
        parts.append("</ul>")
    return parts


#: Plots shown in a section of their own, not under "Plots".
_OWN_SECTION = ("calibration.png",)

#: Rows of the per-class and calibration sections (the plots show as many).
_TOP = 3


def _figure(name: str, plots_dir: Path) -> str:
    data = base64.b64encode((plots_dir / name).read_bytes()).decode("ascii")
    title = PLOT_TITLES.get(name, name)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(title)}" '
            f'data-file="plots/{_e(name)}"><figcaption>{_e(title)} '
            f"(<code>plots/{_e(name)}</code>)</figcaption></figure>")


def _plots_section(plots: Sequence[str], plots_dir: Path, notes: Sequence[str],
                   elsewhere: Sequence[str] = ()) -> List[str]:
    """The plots but those shown ``elsewhere`` (in a section of their own), and the notes."""
    parts = ["<h2>Plots</h2>"]
    shown = [name for name in plots if name not in elsewhere]
    if not shown:
        parts.append("<p>No plots.</p>")
    parts += [_figure(name, plots_dir) for name in shown]
    parts += [f'<p class="warn">{_e(n)}</p>' for n in notes]
    return parts


def _top_rows(frame: Optional[pd.DataFrame], count: str,
              top: int = _TOP) -> Optional[pd.DataFrame]:
    """The lines of ``frame`` that belong to its first ``top`` (feature set, model) rows;
    ``None`` when no line has images (``count``: the column that counts them)."""
    if frame is None or frame.empty or not (frame[count] > 0).any():
        return None
    keys = list(zip(frame["Feature Set"].astype(str), frame["Model"].astype(str)))
    first = set(list(dict.fromkeys(keys))[:top])
    return frame[[k in first for k in keys]]


def _score_cell(r, column: str) -> str:
    value = r[column]
    text = "n/a" if is_missing(value) else mean_std(value, r[f"{column} Std"], 3)
    return f'<td class="right">{_e(text)}</td>'


def _per_class_section(per_class: Optional[pd.DataFrame]) -> List[str]:
    parts = ["<h2>Per-class scores</h2>"]
    rows = _top_rows(per_class, "Support")
    if rows is None:
        return parts + ["<p>No per-class scores (no successful row has predictions).</p>"]
    parts.append(
        f"<p>Precision, recall and F1 of each class for the {_TOP} best rows: mean ± std over the "
        "test folds that hold the class, as in the results table; support = test images of the "
        "class over all folds and repeats. Every successful row: <code>per_class.csv</code>.</p>")
    parts.append('<table class="leukbench-per-class"><thead><tr><th class="left">row</th>'
                 '<th class="left">class</th><th class="right">Precision</th>'
                 '<th class="right">Recall</th><th class="right">F1 Score</th>'
                 '<th class="right">Support</th></tr></thead><tbody>')
    for _, r in rows.iterrows():
        parts.append(f'<tr><td class="left">{_e(row_label(r["Feature Set"], r["Model"]))}</td>'
                     f'<td class="left">{_e(r["Class"])}</td>'
                     + "".join(_score_cell(r, c) for c in ("Precision", "Recall", "F1 Score"))
                     + f'<td class="right">{_e(r["Support"])}</td></tr>')
    parts.append("</tbody></table>")
    return parts


def _ece_cell(r) -> str:
    if r["Scores"] != "probabilities":
        why = "" if r["Scores"] == "no scores" else ", not probabilities"
        return f"{_e(r['Scores'])}{why}: no ECE"
    return "n/a" if is_missing(r["ECE"]) else f"{float(r['ECE']):.3f}"


def _calibration_section(calibration: Optional[pd.DataFrame], plots: Sequence[str],
                         plots_dir: Path) -> List[str]:
    parts = ["<h2>Calibration</h2>"]
    rows = _top_rows(calibration, "n")
    if rows is None:
        return parts + ["<p>No calibration (no successful row has predictions).</p>"]
    n_bins = int(rows["n_bins"].iloc[0])
    parts.append(
        f"<p>Expected calibration error (ECE) of the {_TOP} best rows: the out-of-fold "
        f"probabilities of all folds pooled, the top-label confidence (largest probability) put "
        f"into {n_bins} equal-width bins, and the gap between each bin's accuracy and mean "
        "confidence averaged with the bin's share of images (0 = calibrated). Scores count as "
        "probabilities when they lie in [0, 1] and sum to 1 per image; decision scores of models "
        "without <code>predict_proba</code> are not calibrated. The diagram plots each bin's "
        "observed rate against its mean probability: for two classes the fraction of positive "
        "images per bin of the positive class's probability, otherwise the accuracy per bin of "
        "confidence. Every successful row: <code>calibration.csv</code>.</p>")
    parts.append('<table class="leukbench-calibration"><thead><tr><th class="left">row</th>'
                 '<th class="right">ECE</th><th class="right">images</th></tr></thead><tbody>')
    for _, r in rows.iterrows():
        parts.append(f'<tr><td class="left">{_e(row_label(r["Feature Set"], r["Model"]))}</td>'
                     f'<td class="right">{_ece_cell(r)}</td><td class="right">{_e(r["n"])}</td></tr>')
    parts.append("</tbody></table>")
    parts += [_figure(name, plots_dir) for name in plots if name in _OWN_SECTION]
    return parts


def _feature_set_lines(info: FeatureSetInfo) -> List[str]:
    head = f"<b>{_e(info.name)}</b>"
    if info.n_images is not None:
        head += f": {_e(info.n_images)} images"
    if info.n_features is not None:
        head += f" × {_e(info.n_features)} features"
    parts = [f"<p>{head}</p>"]
    if info.provenance.description:
        parts.append(f"<p>{_e(info.provenance.description)}</p>")
    parts.append("<ul>")
    if not info.extractors:
        parts.append("<li>extractor configuration not recorded</li>")
    for x in info.extractors:
        css_class = ' class="random"' if x.random_init else ""
        notes = x.input_notes()
        tail = f"; {', '.join(notes)}" if notes else ""
        parts.append(f"<li><code>{_e(x.name)}</code> — <span{css_class}>{_e(x.weights_text)}"
                     f"</span>{_e(tail)}</li>")
    parts.append("</ul>")
    return parts


def _feature_sets_section(feature_sets: Sequence[FeatureSetInfo]) -> List[str]:
    parts = ["<h2>Feature sets and extractors</h2>"]
    if not feature_sets:
        parts.append("<p>No feature-set information.</p>")
    for info in feature_sets:
        parts += _feature_set_lines(info)
    return parts


def _reproduction_section(command: Optional[str]) -> List[str]:
    parts = ["<h2>Reproduction</h2>"]
    parts.append(f"<pre>{_e(command)}</pre>" if command else "<p>No command recorded.</p>")
    parts.append("<p>Versions, parameters, seeds and data fingerprints: <code>run.json</code>.</p>")
    return parts


def report_html(result, table: pd.DataFrame, dataset: Dict[str, Any], provenance: Provenance,
                plots: Sequence[str], plots_dir: Path, notes: Sequence[str],
                skipped: Optional[Dict[str, Any]] = None, *,
                per_class: Optional[pd.DataFrame] = None,
                calibration: Optional[pd.DataFrame] = None) -> str:
    """The text of ``report.html``.

    Parameters
    ----------
    result : comparison result
    table : DataFrame
        The results table.
    dataset : dict
        :func:`~leukbench.reporting.dataset.dataset_summary` of the images.
    provenance : Provenance
    plots : sequence of str
        File names under `plots_dir` to embed, in order.
    notes : sequence of str
        Warnings to show under the plots (e.g. a plot that failed).
    skipped : dict, optional
        :func:`~leukbench.reporting.data_checks.skipped_summary` of the skipped images.
    per_class, calibration : DataFrame, optional
        ``per_class.csv`` and ``calibration.csv`` (see
        :func:`~leukbench.reporting.report.per_class_frame`); their sections are
        left out when not given.
    """
    parts = _head(provenance) + _random_init_warning(provenance)
    parts += _dataset_section(dataset, list(getattr(result, "classes", None) or []),
                              getattr(result, "positive_label", None), skipped)
    parts += _subsample_note(provenance.subsample)
    parts += _evaluation_section(getattr(result, "cv_description", None), getattr(result, "notes", None) or ())
    parts += _audit_section(getattr(result, "audit", None))
    parts += _results_section(table)
    if per_class is not None:
        parts += _per_class_section(per_class)
    parts += _plots_section(plots, plots_dir, notes,
                            elsewhere=(_OWN_SECTION if calibration is not None else ()) + (TRAINING_PLOT,))
    if calibration is not None:
        parts += _calibration_section(calibration, plots, plots_dir)
    parts += training_section(getattr(result, "params", None), plots, plots_dir, _figure)
    parts += _feature_sets_section(provenance.feature_sets)
    parts += _reproduction_section(provenance.command)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
