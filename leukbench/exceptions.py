"""Every error leukbench raises on purpose, under one base.

Each class derives from :class:`LeukbenchError` *and* from the builtin it
replaces (as scikit-learn's ``NotFittedError(ValueError, AttributeError)``
does), so ``except ValueError`` in existing code keeps working while the
command line can tell "bad input, one clear line" (a :class:`LeukbenchError`)
from a bug (anything else, shown with its traceback).

Example
-------
>>> from leukbench.exceptions import DatasetError, LeukbenchError
>>> issubclass(DatasetError, LeukbenchError) and issubclass(DatasetError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "LeukbenchError",
    "InvalidParameterError",
    "DatasetError",
    "ImageReadError",
    "CacheError",
    "ExtractionError",
    "WeightsUnavailableError",
    "UnknownExtractorError",
    "UnknownClassifierError",
    "UnknownMetricError",
    "MissingDependencyError",
    "EvaluationError",
    "ReportError",
    "ClusterError",
    "BundleError",
]


class LeukbenchError(Exception):
    """Base of the errors whose message says what was wrong and what to do instead."""


class InvalidParameterError(LeukbenchError, ValueError, TypeError):
    """A parameter of a public function has a value it cannot take (the message names it).

    ``parameter`` is the library's name of the parameter and ``requirement``
    the rest of the message, so that the command line can say the same with
    its flag name (``--cv must be ...`` instead of ``cv must be ...``).
    """

    def __init__(self, message: str, *, parameter: str = "", requirement: str = ""):
        super().__init__(message)
        self.parameter = parameter
        self.requirement = requirement

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def renamed(self, name: str) -> str:
        """The message with the parameter called ``name`` (e.g. a flag)."""
        if not (self.parameter and self.requirement):
            return str(self)
        return f"{name} {self.requirement}"


class DatasetError(LeukbenchError, ValueError):
    """A dataset cannot be read as asked; the message names the path and the fix."""


class ImageReadError(LeukbenchError):
    """An image file could not be decoded; the message names the file.

    ``kind`` is a short, path-free description of what went wrong (``"file not
    found"``, ``"not a recognised image format"``, ...), used to group skipped
    images in summaries.
    """

    def __init__(self, message: str, kind: str = "unreadable image"):
        super().__init__(message)
        self.kind = kind


class CacheError(LeukbenchError, OSError):
    """The feature or fold cache cannot be read or written (the message names the folder)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExtractionError(LeukbenchError, RuntimeError):
    """Nothing usable came out of an extraction (the message says why).

    ``summaries`` holds the :class:`~leukbench.extraction.ExtractionSummary` of
    every extractor that ran, so that what was found and skipped can still be shown.
    """

    def __init__(self, message: str, summaries=()):
        super().__init__(message)
        self.summaries = list(summaries)


class WeightsUnavailableError(LeukbenchError):
    """Requested weights cannot be obtained (offline and not cached, missing file...)."""


class _KeyErrorText:
    """``str()`` of a KeyError subclass without the quotes KeyError adds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownExtractorError(_KeyErrorText, LeukbenchError, KeyError):
    """A feature extractor name that is not registered (the message lists the valid ones)."""


class UnknownClassifierError(_KeyErrorText, LeukbenchError, KeyError):
    """A classifier name that is not registered (the message lists the valid ones)."""


class UnknownMetricError(_KeyErrorText, InvalidParameterError, KeyError):
    """A metric that is not a column of the results table (the message lists the columns)."""


class MissingDependencyError(LeukbenchError, ImportError):
    """An optional package that a requested feature needs is not installed."""


class ClusterError(LeukbenchError, ConnectionError):
    """A Dask scheduler cannot be reached, or its workers cannot do the work (the message names
    the address or the path a worker cannot see)."""


class EvaluationError(LeukbenchError, ValueError):
    """The requested evaluation cannot be honest or cannot run (message says why)."""


class ReportError(LeukbenchError, ValueError):
    """A results folder cannot be written or a result cannot be reported (message says why)."""


class BundleError(LeukbenchError, ValueError):
    """A model bundle cannot be written or loaded safely: a file missing, tampered with or of an
    untrusted type, or a format newer than this leukbench (the message names the file and the fix)."""
