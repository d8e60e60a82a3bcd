"""From the winning row to a usable model: training, the safe model bundle, predicting new images.

:func:`train` fits one row of the table (a feature set and a classifier of
the battery, or a fine-tuned network's ``end-to-end`` row) on all labelled images and returns a :class:`Model`;
``model.save(dir)`` writes a bundle that :func:`load_model` reads back without
running any code from it; ``model.predict(paths)`` computes the features of
new images exactly as at training time and predicts them. See ``docs/models.md``.

=================  ==========================================================
``bundle``         the folder or ``.zip``: ``manifest.json`` with each file's sha256
``_trusted``       the explicit list of types a skops file may hold
``_kinds``         the estimator as files, by kind (skops, XGBoost JSON, safetensors)
``_network``       a fine-tuned network as ``network.safetensors`` and its JSON configuration
``_features``      the extractor configurations, rebuilt and checked on new images
``card``           the model card (``model.json``, ``model.md``)
``model``          :class:`Model`, :func:`load_model`
``finetuned``      a fine-tuned network as a model: fitted on all images, predicting images
``training``       :func:`train`, :func:`train_best` (``compare --save-best``)
``predicting``     :func:`predict_images`, :class:`Predictions`
=================  ==========================================================

Example
-------
>>> from leukbench.models import FORMAT_VERSION
>>> FORMAT_VERSION
'1.0'
"""

from ..exceptions import BundleError
from .bundle import FORMAT_VERSION
from .model import Model, load_model
from .predicting import Predictions, predict_images
from .training import DEFAULT_CLASSIFIER, best_row, check_train, fit_model, train, train_best

__all__ = [
    "BundleError",
    "DEFAULT_CLASSIFIER",
    "FORMAT_VERSION",
    "Model",
    "Predictions",
    "best_row",
    "check_train",
    "fit_model",
    "load_model",
    "predict_images",
    "train",
    "train_best",
]
