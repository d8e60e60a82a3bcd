"""Predicting new images with a :class:`~leukbench.models.model.Model`: :func:`predict_images` and
the :class:`Predictions` it returns.

The features are computed exactly as at training time: the model's extractor
configurations are rebuilt with this install and must match field by field
(:mod:`._features`), then extraction runs as ``leukbench extract`` runs it
(the feature cache when given, unreadable images skipped with their reason).
With labels (class folders, a manifest's ``label`` column) the predictions
are scored with the comparison's metrics (:func:`leukbench.evaluation.score_fold`)
and a confusion matrix.

Example
-------
>>> p = model.predictions("new_cells/")  # doctest: +SKIP
>>> p.table.columns.tolist()  # doctest: +SKIP
['path', 'predicted_label', 'score_all', 'score_hem', 'true_label']
>>> print(p.summary_lines()[0])  # doctest: +SKIP
predicted 40 images, skipped 0; 3.1 s, 12.9 images/s
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..exceptions import InvalidParameterError, ReportError
from ._features import _compare, image_features, image_table, rebuild_extractors

__all__ = ["Predictions", "check_output", "predict_images", "score_column"]

_SKIPPED = ["id", "path", "kind", "reason"]


def score_column(label: str) -> str:
    """The score column of a class: ``score_<class>``.

    Example
    -------
    >>> score_column("all")
    'score_all'
    """
    return f"score_{label}"


@dataclasses.dataclass
class Predictions:
    """What :func:`predict_images` found.

    Attributes
    ----------
    table : DataFrame
        One row per predicted image: ``path``, ``predicted_label``,
        ``score_<class>`` per class, and ``true_label`` when labels are known.
    ids : ndarray
        The image id of each row of ``table``.
    input_ids : list of str
        Every image asked for, in its order (``table`` lacks the skipped ones).
    skipped : DataFrame
        ``id, path, kind, reason`` of each unreadable image.
    classes : list of str
    seconds : float
    metrics : dict or None
        The comparison's metrics on the labelled images whose label is a class of the model.
    confusion : DataFrame or None
        Counts, true class (rows) by predicted class (columns).
    notes : list of str
    """

    table: pd.DataFrame
    ids: np.ndarray
    input_ids: List[str]
    skipped: pd.DataFrame
    classes: List[str]
    seconds: float
    metrics: Optional[Dict[str, float]] = None
    confusion: Optional[pd.DataFrame] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def has_labels(self) -> bool:
        return "true_label" in self.table.columns

    def _rows(self) -> np.ndarray:
        pos = {i: k for k, i in enumerate(self.ids)}
        return np.array([pos.get(i, -1) for i in self.input_ids], dtype=np.int64)

    def aligned_labels(self) -> np.ndarray:
        """The predicted label of every image asked for, in its order (``None`` when skipped)."""
        rows = self._rows()
        labels = self.table["predicted_label"].to_numpy(dtype=object)
        return np.array([labels[r] if r >= 0 else None for r in rows], dtype=object)

    def aligned_scores(self) -> np.ndarray:
        """The scores of every image asked for, ``(n, n_classes)``, NaN rows for the skipped ones."""
        rows = self._rows()
        cols = [score_column(c) for c in self.classes]
        scores = self.table[cols].to_numpy(dtype=np.float64) if len(self.table) else np.empty((0, len(cols)))
        out = np.full((len(rows), len(cols)), np.nan)
        out[rows >= 0] = scores[rows[rows >= 0]]
        return out

    def summary_lines(self) -> List[str]:
        """Lines for the command line: counts, time, skipped reasons, metrics.

        Example
        -------
        >>> print(p.summary_lines()[0])  # doctest: +SKIP
        predicted 40 images, skipped 0; 3.1 s, 12.9 images/s
        """
        n = len(self.table)
        rate = f", {n / self.seconds:.1f} images/s" if self.seconds > 0 and n else ""
        out = [f"predicted {n} images, skipped {len(self.skipped)}; {self.seconds:.1f} s{rate}"]
        if len(self.skipped):
            for kind, k in self.skipped["kind"].value_counts().head(5).items():
                example = self.skipped.loc[self.skipped["kind"] == kind, "id"].iloc[0]
                out.append(f"  skipped {k}: {kind} (e.g. {example}{f' and {k - 1} more' if k > 1 else ''})")
        out += [f"  note: {note}" for note in self.notes]
        if self.metrics is not None:
            from ..schema import TABLE_NAMES

            out.append("  " + ", ".join(f"{TABLE_NAMES[k]} {v:.3f}" for k, v in self.metrics.items()))
        if self.confusion is not None:
            out += ["  confusion (rows: true, columns: predicted):"]
            out += ["    " + line for line in self.confusion.to_string().splitlines()]
        return out

    def save(self, path, plots: bool = True) -> List[Path]:
        """Write :attr:`table` as CSV to ``path``, the skipped images beside it, and the example grid.

        ``<stem>_skipped.csv`` lists the unreadable images (a stale one is
        removed when none was skipped); with ``plots``,
        ``plots/example_predictions.png`` beside the CSV shows the images
        with their predicted label and confidence (right or wrong when
        labelled). Returns the files written, the CSV first.

        Raises
        ------
        ReportError
            When ``path`` is a folder.

        Example
        -------
        >>> model.predictions("new_cells/").save("out/predictions.csv")  # doctest: +SKIP
        [PosixPath('out/predictions.csv'), PosixPath('out/plots/example_predictions.png')]
        """
        from ..reporting.example_predictions import EXAMPLE_PREDICTIONS_FILE, plot_example_predictions

        path = Path(path)
        check_output(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(path, index=False)
        written = [path]
        skipped = path.with_name(f"{path.stem}_skipped.csv")
        if len(self.skipped):
            self.skipped.to_csv(skipped, index=False)
            written.append(skipped)
        elif skipped.is_file():
            skipped.unlink()  # from an earlier run: it would list images that were read this time
        if plots and len(self.table):
            plot = path.parent / EXAMPLE_PREDICTIONS_FILE
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot_example_predictions(self.table).savefig(plot, dpi=110)
            written.append(plot)
        return written


def check_output(path, option: str = "--out") -> None:
    """Raise now, before any prediction, when the predictions CSV ``path`` is a folder.

    Example
    -------
    >>> import tempfile
    >>> try:
    ...     check_output(tempfile.mkdtemp())
    ... except ReportError as exc:
    ...     print(str(exc).split(":")[-1].strip())
    is a folder; give --out a CSV file path (e.g. predictions.csv)
    """
    if Path(path).is_dir():
        raise ReportError(f"{option} {path}: is a folder; give {option} a CSV file path (e.g. predictions.csv)")


def _features_of(model, data, *, cache_dir, device, batch_size, num_workers, layout, subject_regex,
                 progress):
    """``(FeatureSet, table of the images asked for, skipped)`` of ``data``."""
    from ..featureset import FeatureSet
    from ._features import extractor_specs

    if isinstance(data, FeatureSet):
        given = extractor_specs(data)
        if [s["name"] for s in given] != [s["name"] for s in model.extractors]:
            raise InvalidParameterError(f"data: the feature set {data.name!r} is not the model's "
                                        f"{model.feature_set!r}; pass images, or a feature set made the same way",
                                        parameter="data")
        for old, new in zip(model.extractors, given):
            _compare(old["name"], old["config"], new["config"])
        prov = data.provenance or {}
        skipped = [s for p in prov.get("combined", [prov]) for s in p.get("skipped", [])]
        skipped = pd.DataFrame(skipped, columns=["id", "kind", "reason"]).assign(path="")[_SKIPPED]
        skipped = skipped.drop_duplicates("id").reset_index(drop=True)
        present = set(data.ids)
        return data, list(data.ids) + [s for s in skipped["id"] if s not in present], skipped
    table = image_table(data, layout=layout, subject_regex=subject_regex)
    extractors = rebuild_extractors(model.extractors, device=device, batch_size=batch_size,
                                    trained_with=model.trained_with)
    fs, summaries = image_features(table, extractors, cache_dir=cache_dir, num_workers=num_workers,
                                   progress=progress)
    frames = [s.skipped[_SKIPPED] for s in summaries if len(s.skipped)]
    skipped = pd.concat(frames).drop_duplicates("id") if frames else pd.DataFrame(columns=_SKIPPED)
    return fs, table["id"].tolist(), skipped.reset_index(drop=True)


def _score(model, true: np.ndarray, predicted: np.ndarray, scores) -> tuple:
    """``(metrics, confusion, notes)`` of the labelled rows whose label is a class of the model."""
    from ..evaluation.metrics import confusion_matrix, score_fold

    known = np.array([t not in (None, "") and t == t for t in true], dtype=bool)
    if not known.any():
        return None, None, []
    index = {c: i for i, c in enumerate(model.classes)}
    ours = known & np.array([str(t) in index for t in true], dtype=bool)
    notes = []
    if (known & ~ours).any():
        other = sorted({str(t) for t in true[known & ~ours]})
        notes.append(f"{int((known & ~ours).sum())} image(s) have labels that are no class of the model "
                     f"({', '.join(other[:4])}); they are not scored")
    if not ours.any():
        return None, None, notes
    y_true = np.array([index[str(t)] for t in true[ours]])
    y_pred = np.array([index[str(p)] for p in predicted[ours]])
    positive = index.get(model.positive_label) if model.positive_label is not None else None
    metrics = score_fold(y_true, y_pred, None if scores is None else scores[ours], len(model.classes), positive)
    counts = confusion_matrix(true[ours], predicted[ours], model.classes)
    confusion = pd.DataFrame(counts, index=pd.Index(model.classes, name="true"),
                             columns=pd.Index(model.classes, name="predicted"))
    return metrics, confusion, notes


def predict_images(model, data, *, cache_dir=None, device: str = "auto", batch_size: Optional[int] = None,
                   num_workers: Optional[int] = None, layout: str = "auto", subject_regex: Optional[str] = None,
                   progress: bool = True) -> Predictions:
    """Predict the images of ``data`` with ``model``.

    Parameters
    ----------
    model : Model
    data : path, list of paths or FeatureSet
        A folder (class folders give labels; images directly inside give
        none), a CSV manifest (its ``label`` column, when filled), image
        files, or a feature set made as the model's was.
    cache_dir : path, False or None
        The feature cache; ``None`` the default one, ``False`` none (a
        temporary folder removed afterwards).
    device, batch_size, num_workers
        Where and how the deep backbones run (they do not change the features).
    layout, subject_regex
        See :func:`leukbench.discover`.
    progress : bool
        Show the extraction's progress bars.

    Returns
    -------
    Predictions

    Raises
    ------
    BundleError
        The model's features cannot be computed the same way by this install.

    Example
    -------
    >>> p = predict_images(load_model("model_dir"), "new_cells/")  # doctest: +SKIP
    >>> p.table["predicted_label"].value_counts()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if model.kind == "torch":  # a fine-tuned network: the images themselves, no feature extraction
        from .finetuned import predict_network

        images, scores, input_ids, skipped = predict_network(
            model, data, device=device, batch_size=batch_size, num_workers=num_workers, layout=layout,
            subject_regex=subject_regex, progress=progress)
        ids, paths, true = images["id"].to_numpy(dtype=object), images["path"], images["label"]
        predicted = np.asarray(model.classes, dtype=object)[scores.argmax(1)] if len(scores) else \
            np.array([], dtype=object)
    else:
        fs, input_ids, skipped = _features_of(model, data, cache_dir=cache_dir, device=device,
                                              batch_size=batch_size, num_workers=num_workers, layout=layout,
                                              subject_regex=subject_regex, progress=progress)
        if list(fs.feature_names) != list(model.feature_names):
            raise InvalidParameterError(f"data: its features are not the model's columns ({len(fs.feature_names)} "
                                        f"vs {len(model.feature_names)}); this is a bug if the configurations "
                                        "matched", parameter="data")
        predicted, scores = model.predict_features(fs.X) if len(fs) else (np.array([], dtype=object), None)
        ids, paths, true = fs.ids, (fs.paths if fs.paths is not None else fs.ids), fs.y
    table = pd.DataFrame({"path": np.asarray(paths, dtype=object), "predicted_label": predicted})
    for k, c in enumerate(model.classes):
        table[score_column(c)] = scores[:, k] if scores is not None else np.nan
    true = np.asarray(true, dtype=object)
    labelled = any(t not in (None, "") and t == t for t in true)
    if labelled:
        table["true_label"] = [t if t not in (None, "") and t == t else "" for t in true]
    metrics, confusion, notes = _score(model, true, predicted, scores) if labelled else (None, None, [])
    return Predictions(table=table, ids=np.asarray(ids, dtype=object), input_ids=[str(i) for i in input_ids],
                       skipped=skipped, classes=list(model.classes), seconds=time.perf_counter() - t0,
                       metrics=metrics, confusion=confusion, notes=notes)
