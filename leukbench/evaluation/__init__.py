"""Honest comparison of classifiers over feature sets: the ``compare`` step.

:func:`compare` runs every (feature set, classifier, repeat, fold) task of a
subject-aware cross-validation (or of the dataset's predefined train/test
split) and returns a :class:`ComparisonResult` with the results table, the
per-fold scores and the out-of-fold predictions. See ``docs/evaluation.md``.

Rules it enforces:

* folds are built by subject (``StratifiedGroupKFold``) when subjects are
  known, after the leakage audit has merged subjects that share identical or
  near-identical images;
* when a class has fewer subjects (groups) than folds, the number of folds is
  reduced to what the data allows and the run says so; under 2 it stops;
* ROC AUC is computed from scores (``predict_proba`` or
  ``decision_function``), never from hard labels;
* a classifier that raises or exceeds ``timeout`` (killed) is recorded with
  its reason and leaves the rest of the table untouched;
* finished tasks are cached on disk, so an interrupted run resumes.

The modules, in the order data flows through them:

=================  ==========================================================
``options``        :func:`check_options`, :func:`check_dataset`: what a run accepts
``splits``         :class:`Split`, :func:`plan_splits`, CV groups, the scheme's sentence
``metrics``        :func:`score_fold`, :func:`roc_auc`, scores of a fitted model
``fits``           :class:`Task`, :class:`FitOutcome`, one fit and predict
``workers``        running tasks: in process, joblib, or killable worker processes
``fold_cache``     the on-disk cache of finished tasks and its keys
``tables``         the ``folds``/``predictions`` frames and the results table
``statistics``     subject-level bootstrap, corrected resampled t-test (plain functions)
``uncertainty``    the interval and tie columns of the results table
``ranking``        ranks over blocks, Friedman and Nemenyi (``leukbench summarize``)
``per_class``      per-class precision, recall and F1 of each row
``calibration``    expected calibration error and reliability curves
``tuning``         nested subject-aware search of the tuned rows
``result``         :class:`ComparisonResult`
``comparison``     :func:`compare`, which ties them together
=================  ==========================================================

Importing this package loads numpy and leukbench's small modules only:
pandas and scikit-learn load on use, so worker processes start fast.
"""

from ..exceptions import EvaluationError
from ..schema import METRICS
from .comparison import compare
from .metrics import binary_auc, confusion_matrix, roc_auc, score_fold
from .options import CheckedOptions, check_dataset, check_options
from .result import ComparisonResult
from .splits import Split, plan_splits
from .workers import _worker_main  # noqa: F401 - the entry point of worker processes, kept importable here

__all__ = [
    "METRICS",
    "CheckedOptions",
    "ComparisonResult",
    "EvaluationError",
    "Split",
    "binary_auc",
    "check_dataset",
    "check_options",
    "compare",
    "confusion_matrix",
    "plan_splits",
    "roc_auc",
    "score_fold",
]
