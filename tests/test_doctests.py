"""The ``Example`` sections of the library's docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import leukbench

#: Modules whose examples need the network or a long run: none today.
SKIPPED: frozenset = frozenset()

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(leukbench.__path__, prefix="leukbench.")
    if name not in SKIPPED and name != "leukbench.__main__"
)


def test_the_main_public_functions_have_examples():
    import leukbench.evaluation as evaluation
    import leukbench.extraction as extraction

    for function in (leukbench.compare, leukbench.extract, leukbench.discover, evaluation.plan_splits,
                     evaluation.score_fold, extraction.extract_all):
        assert "Example" in (function.__doc__ or ""), f"{function.__qualname__} has no Example"


@pytest.mark.parametrize("name", MODULES)
def test_examples_of(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of the {result.attempted} examples of {name} failed (see above)"
