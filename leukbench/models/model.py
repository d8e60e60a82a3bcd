"""The :class:`Model`: a fitted pipeline with what it needs to predict on new images, and
:func:`load_model`.

A model knows its feature set (the extractor configurations of its training
data), its fitted estimator, its classes and its card. ``model.save(path)``
writes a bundle (:mod:`.bundle`: a folder, or a ``.zip`` when ``path`` ends
so); :func:`load_model` reads one back, checking every file's sha256 and
rebuilding the estimator from trusted types only (:mod:`._kinds`).

Example
-------
>>> model = load_model("model_dir")  # doctest: +SKIP
>>> model.predict(["cell_1.bmp", "cell_2.bmp"])  # doctest: +SKIP
array(['all', 'hem'], dtype=object)
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..exceptions import BundleError
from . import bundle
from ._kinds import dump_estimator, load_estimator

__all__ = ["Model", "load_model", "package_versions"]

_CARD_JSON, _CARD_MD = "model.json", "model.md"
_REQUIRED = ("kind", "feature_set", "classifier", "extractors", "feature_names", "classes")


def package_versions(kind: str = "sklearn") -> Dict[str, str]:
    """Versions of leukbench and of the packages that a model of ``kind`` is read with.

    Example
    -------
    >>> sorted(package_versions())[:3]
    ['leukbench', 'numpy', 'python']
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from .._version import __version__

    out = {"leukbench": __version__, "python": platform.python_version()}
    names = ["numpy", "scikit-learn", "skops"] + {"xgboost": ["xgboost"], "torch": ["torch", "safetensors"]}.get(
        kind, [])
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - installed with leukbench
            out[name] = "not installed"
    return out


@dataclasses.dataclass(eq=False)
class Model:
    """A trained row of a comparison, ready to predict on new images.

    Attributes
    ----------
    estimator : fitted scikit-learn estimator
        Predicts the encoded classes (column ``i`` of the scores is ``classes[i]``).
    feature_set : str
        E.g. ``"efficientnet_lite0+handcrafted"``.
    classifier : str
        The row's classifier name (``"SVC"``, ``"SVC (tuned)"`` ...).
    extractors : list of dict
        ``{"name", "config"}`` per extractor, in column order: what computes
        the features of new images (``config`` is the cache key's configuration);
        for a fine-tuned network (kind ``torch``), the network's description.
    feature_names : list of str
    classes : list of str
    positive_label : str or None
    card : dict
        The model card (``model.json``); :attr:`kind` is how the estimator is stored.
    """

    estimator: Any
    feature_set: str
    classifier: str
    extractors: List[Dict[str, Any]]
    feature_names: List[str]
    classes: List[str]
    positive_label: Optional[str]
    card: Dict[str, Any]
    kind: str = "sklearn"
    trained_with: str = ""
    source: str = ""

    def __repr__(self) -> str:
        data = self.card.get("training_data", {})
        cv = "cross-validated" if self.card.get("performance", {}).get("cross_validated") else "not cross-validated"
        return (f"Model({self.feature_set} / {self.classifier}, classes={self.classes}, "
                f"trained on {data.get('images', '?')} images, {cv})")

    # -- predicting ----------------------------------------------------------
    def predict_features(self, X) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``(labels, scores)`` of a feature matrix in :attr:`feature_names` order.

        ``scores`` is ``(n, n_classes)`` (probabilities, else decision scores,
        as the comparison scores them) or ``None`` for a model without scores.

        Example
        -------
        >>> labels, scores = model.predict_features(fs.X)  # doctest: +SKIP
        """
        from ..evaluation.metrics import scores_of

        if self.kind == "torch":
            from .._validation import invalid

            raise invalid("X", f"{self.feature_set} is a fine-tuned network: it predicts images, not features; "
                               "use predict(paths) or predictions(paths)")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            from .._validation import invalid

            raise invalid("X", f"must have {len(self.feature_names)} columns (the model's features), "
                               f"got shape {X.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as the comparison fits and predicts: quietly
            encoded = np.asarray(self.estimator.predict(X)).astype(np.int64)
            scores = scores_of(self.estimator, X, len(self.classes))
        return np.asarray(self.classes, dtype=object)[encoded], scores

    def predictions(self, data, **options):
        """Predict the images of ``data`` (a folder, a CSV manifest, image paths or a FeatureSet).

        Returns a :class:`~leukbench.models.predicting.Predictions` (table,
        skipped images, metrics when labels are known); ``options`` are those
        of :func:`~leukbench.models.predicting.predict_images`.
        """
        from .predicting import predict_images

        return predict_images(self, data, **options)

    def predict(self, data, **options) -> np.ndarray:
        """The predicted label of each image of ``data``, in its order; ``None`` for an unreadable image."""
        return self.predictions(data, **options).aligned_labels()

    def predict_proba(self, data, **options) -> np.ndarray:
        """``(n_images, n_classes)`` scores of ``data`` in :attr:`classes` order; NaN rows for unreadable images."""
        return self.predictions(data, **options).aligned_scores()

    # -- persistence ---------------------------------------------------------
    def save(self, path) -> Path:
        """Write the model bundle to the folder ``path`` (or one ``.zip`` when it ends so); returns it.

        Raises
        ------
        BundleError
            When ``path`` is a folder that holds something else.

        Example
        -------
        >>> model.save("model.zip")  # doctest: +SKIP
        PosixPath('model.zip')
        """
        from .card import card_markdown

        kind, files, info = dump_estimator(self.estimator)
        card = dict(self.card, versions=package_versions(kind))
        files[_CARD_JSON] = json.dumps(card, indent=2, default=str).encode() + b"\n"
        files[_CARD_MD] = card_markdown(card).encode()
        manifest = {"kind": kind, "estimator": info, "feature_set": self.feature_set, "classifier": self.classifier,
                    "extractors": self.extractors, "feature_names": list(self.feature_names),
                    "classes": list(self.classes), "positive_label": self.positive_label,
                    "versions": card["versions"], "created": card.get("created", "")}
        return bundle.write_bundle(path, files, manifest)


def _warn_versions(saved: Dict[str, Any], where: str, kind: str = "sklearn") -> None:
    now = package_versions(kind)
    for name in ("scikit-learn", "numpy") + (("torch",) if kind == "torch" else ()):
        if saved.get(name) and saved.get(name) != now.get(name):
            warnings.warn(f"{where}: the model was saved with {name} {saved[name]}, this is {name} {now[name]}; "
                          "its predictions may differ slightly", UserWarning, stacklevel=3)


_REFIT = "copy the bundle again or train it again with `leukbench train`"


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _field_problem(manifest: Dict[str, Any]) -> Optional[str]:
    """What is wrong with the type of a manifest field, or ``None``."""
    for key in ("kind", "feature_set", "classifier"):
        if not isinstance(manifest[key], str):
            return f"{key} is not a string"
    extractors = manifest["extractors"]
    if not isinstance(extractors, list) or not extractors or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("config"), dict)
            for e in extractors):
        return "extractors is not a list of {'name', 'config'}"
    if not _is_str_list(manifest["feature_names"]) or not (manifest["feature_names"] or manifest["kind"] == "torch"):
        return "feature_names is not a list of names"
    if not _is_str_list(manifest["classes"]) or len(manifest["classes"]) < 2:
        return "classes is not a list of at least two class names"
    if not isinstance(manifest.get("positive_label"), (str, type(None))):
        return "positive_label is not a string"
    if not isinstance(manifest.get("estimator") or {}, dict) or not isinstance(manifest.get("versions") or {}, dict):
        return "estimator or versions is not an object"
    return None


def _check_manifest(manifest: Dict[str, Any], files: Dict[str, bytes], where: str) -> Dict[str, Any]:
    """The card (``model.json``) once the manifest's fields are there, of their types and the card's values."""
    name = f"{where}/{bundle.MANIFEST}"
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise BundleError(f"{name}: lacks the field {missing[0]!r}; {_REFIT}")
    problem = _field_problem(manifest)
    if problem:
        raise BundleError(f"{name}: {problem}; {_REFIT}")
    for required in (_CARD_JSON, _CARD_MD):
        if required not in files:
            raise BundleError(f"{where}/{required}: not listed in {bundle.MANIFEST} (a bundle has a card); {_REFIT}")
    try:
        card = json.loads(files[_CARD_JSON])
    except (ValueError, UnicodeDecodeError):
        card = None
    if not isinstance(card, dict):
        raise BundleError(f"{where}/{_CARD_JSON}: not a JSON object; {_REFIT}")
    model = card.get("model") if isinstance(card.get("model"), dict) else {}
    stated = {"classes": card.get("classes"), "positive_label": card.get("positive_label"),
              "feature_set": model.get("feature_set"), "classifier": model.get("classifier")}
    for key, value in stated.items():  # the card's sha256 is checked: the manifest must say the same
        if manifest[key] != value:
            raise BundleError(f"{name}: its {key} {manifest[key]!r} differs from the card's ({value!r}, "
                              f"{_CARD_JSON}); the manifest was edited: {_REFIT}")
    return card


def load_model(path, trusted: Iterable[str] = ()) -> Model:
    """Read a model bundle written by :meth:`Model.save` (``leukbench train``).

    Parameters
    ----------
    path : path
        The bundle's folder or ``.zip``.
    trusted : iterable of str
        Types beyond leukbench's trusted list that you vouch for (a classifier
        of your own); anything else outside the list is refused.

    Raises
    ------
    BundleError
        One line naming the file and the fix: missing, truncated or changed
        files, an edited manifest or one of wrong-typed fields, a type outside
        the trusted list, a file not of its format, a newer bundle format.

    Example
    -------
    >>> model = load_model("model_dir")  # doctest: +SKIP
    >>> model.classes  # doctest: +SKIP
    ['all', 'hem']
    """
    from .._version import __version__

    manifest, files = bundle.read_bundle(path)
    where = str(path)
    card = _check_manifest(manifest, files, where)
    estimator = load_estimator(manifest["kind"], files, manifest.get("estimator") or {}, where, trusted)
    saved = manifest.get("versions") or {}
    _warn_versions(saved, where, manifest["kind"])
    return Model(estimator=estimator, feature_set=manifest["feature_set"], classifier=manifest["classifier"],
                 extractors=manifest["extractors"], feature_names=manifest["feature_names"],
                 classes=manifest["classes"], positive_label=manifest.get("positive_label"), card=card,
                 kind=manifest["kind"], trained_with=saved.get("leukbench", __version__), source=where)
