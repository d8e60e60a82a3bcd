"""The model card of a bundle: ``model.json`` (for programs) and ``model.md`` (for people).

It says what the model is (feature set, classifier, pipeline, extractors),
what it was trained on (images, subjects, classes, the data's fingerprint)
and how well that row did in the comparison it came from -- the
cross-validated mean ± std of every metric, the scheme and the leakage
audit's outcome -- or that it was not cross-validated when trained directly.

Example
-------
>>> card = {"model": {"feature_set": "handcrafted", "classifier": "GaussianNB", "pipeline": "GaussianNB"},
...         "training_data": {"images": 10, "subjects": 4, "classes": {"all": 5, "hem": 5}},
...         "performance": not_cross_validated()}
>>> print(card_markdown(card).splitlines()[0])
# Model: handcrafted / GaussianNB
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ..schema import METRIC_COLUMNS, STATUS_OK, ci_names, std_name

__all__ = ["card_markdown", "cross_validated", "not_cross_validated", "training_data"]

_NOT_CV = ("not cross-validated: trained directly with `leukbench train`; run `leukbench compare ... "
           "--save-best DIR` for a model whose card carries its cross-validated performance")


def not_cross_validated() -> Dict[str, Any]:
    """The performance section of a model trained directly.

    Example
    -------
    >>> not_cross_validated()['cross_validated']
    False
    """
    return {"cross_validated": False, "note": _NOT_CV}


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


def _audit_outcome(audit, feature_set: str) -> str:
    if isinstance(audit, dict):
        audit = audit.get(feature_set)
    if audit is None:
        return "not audited (no image hashes, or the audit was off)"
    # the pairs are in the comparison's results folder, not in the bundle
    return audit.summary().replace("audit_pairs.csv", "audit_pairs.csv of the comparison's results folder")


def cross_validated(result, feature_set: str, classifier: str) -> Dict[str, Any]:
    """The performance section of the row (``feature_set``, ``classifier``) of a ComparisonResult.

    Raises
    ------
    InvalidParameterError
        When the comparison has no successful row of that name.

    Example
    -------
    >>> cross_validated(result, "handcrafted", "SVC")["rank"]  # doctest: +SKIP
    '1 of 12 rows'
    """
    from .._validation import invalid

    table = result.table
    match = table[(table["Feature Set"] == feature_set) & (table["Model"] == classifier)]
    if match.empty or match.iloc[0]["Status"] != STATUS_OK:
        raise invalid("comparison", f"has no successful row {feature_set} / {classifier}; train a row of its table")
    row = match.iloc[0]
    metrics = {}
    for col in METRIC_COLUMNS:
        entry = {"mean": _number(row.get(col)), "std": _number(row.get(std_name(col)))}
        low, high = (_number(row.get(c)) for c in ci_names(col))
        if low is not None and high is not None:
            entry["ci"] = [low, high]
        metrics[col] = entry
    position = int(np.flatnonzero((table["Feature Set"] == feature_set) & (table["Model"] == classifier))[0]) + 1
    params = result.params
    return {
        "cross_validated": True,
        "cv_scheme": result.cv_description,
        "folds": int(row.get("Folds", 0) or 0),
        "sort": params.get("sort"),
        "rank": f"{position} of {len(table)} rows",
        "seed": params.get("seed"),
        "metrics": metrics,
        "audit": _audit_outcome(result.audit, feature_set),
        "command": params.get("command", ""),
    }


def training_data(fs, digest: str) -> Dict[str, Any]:
    """What a model was trained on: images, subjects, classes, root and fingerprint of ``fs``.

    Example
    -------
    >>> training_data(fs, "ab12")["images"]  # doctest: +SKIP
    159
    """
    prov = fs.provenance or {}
    parts = prov.get("combined", [prov])
    skipped = sum(len(p.get("skipped", [])) for p in parts)
    return {
        "images": len(fs),
        "subjects": len({s for s in fs.subjects if s}),
        "classes": fs.class_counts(),
        "dataset_root": parts[0].get("dataset_root", "") if parts else "",
        "skipped_images": skipped,
        "fingerprint": digest,
        "subsample": prov.get("subsample"),
    }


def _metric_lines(perf: Dict[str, Any]) -> List[str]:
    lines = ["| Metric | Mean ± std over folds | Interval |", "|:---|---:|:---|"]
    for name, m in perf.get("metrics", {}).items():
        if m.get("mean") is None:
            continue
        std = f" ± {m['std']:.3f}" if m.get("std") is not None else ""
        ci = f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m.get("ci") else ""
        lines.append(f"| {name} | {m['mean']:.3f}{std} | {ci} |")
    return lines


def _training_lines(training: Optional[Dict[str, Any]]) -> List[str]:
    """The fine-tuning of a network (``card["training"]``): epochs run, best epoch, validation split."""
    if not training:
        return []
    config = training.get("config", {})
    return ["", "## Fine-tuning", "",
            f"- epochs run: {training['epochs_run']} (best epoch {training['best_epoch']}, stopped: "
            f"{training.get('stopped', '')}), {training.get('train_seconds', 0)} s on {training.get('device', '')}"
            + (" (from the checkpoint cache)" if training.get("from_cache") else ""),
            f"- early stopping and the best epoch on: {training.get('validation', '')}",
            "- configuration: " + ", ".join(f"{k} {v}" for k, v in config.items())]


def card_markdown(card: Dict[str, Any]) -> str:
    """``model.md``: the card as a short Markdown page.

    Example
    -------
    >>> print(card_markdown(model.card).splitlines()[0])  # doctest: +SKIP
    # Model: handcrafted / SVC
    """
    m, data, perf = card["model"], card["training_data"], card["performance"]
    classes = ", ".join(f"{k} {v}" for k, v in data.get("classes", {}).items())
    out = [f"# Model: {m['feature_set']} / {m['classifier']}", "",
           f"- pipeline: {m.get('pipeline', '')}",
           *[f"- features: {line}" for line in card.get("features", [])],
           f"- classes: {', '.join(card.get('classes', []))}"
           + (f" (positive: {card['positive_label']})" if card.get("positive_label") else ""),
           "", "## Training data", "",
           f"- {data['images']} labelled images ({classes}), {data['subjects']} subjects",
           f"- dataset: {data.get('dataset_root', '')}",
           f"- fingerprint: {data.get('fingerprint', '')}"]
    if data.get("skipped_images"):
        out.append(f"- images skipped as unreadable at extraction: {data['skipped_images']}")
    if m.get("params"):
        out.append(f"- tuned parameters (chosen on all training data): {m['params']}")
    out += _training_lines(card.get("training"))
    out += ["", "## Performance", ""]
    if not perf.get("cross_validated"):
        out.append(perf.get("note", _NOT_CV))
    else:
        out += [f"Cross-validated in the comparison it came from (row {perf['rank']} by {perf['sort']}):",
                "", f"- scheme: {perf['cv_scheme']}", f"- leakage audit: {perf['audit']}"]
        if perf.get("command"):
            out.append(f"- command: `{perf['command']}`")
        out += ["", *_metric_lines(perf),
                "", "These are estimates for new subjects like those of the training data; the final model "
                    "is trained on all of it, so no held-out score of this very model exists."]
    versions = ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items())
    out += ["", "## Provenance", "", f"- created: {card.get('created', '')}", f"- versions: {versions}", ""]
    return "\n".join(out)
