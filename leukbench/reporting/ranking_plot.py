"""Critical-difference diagrams: which classifiers, and which feature sets, rank apart.

Within one comparison of several feature sets, two rankings answer
leukbench's two questions: the classifiers ranked within each feature set
(blocks = feature sets), and the feature sets ranked within each classifier
(blocks = classifiers). :func:`rankings_of` computes them with
:func:`leukbench.evaluation.ranking.rank_methods`; :func:`plot_critical_difference`
draws one panel per ranking with scikit-posthocs' diagram (methods joined by a
bar are not significantly different by Nemenyi's test).
"""

from __future__ import annotations

from typing import Dict, Sequence

from ..exceptions import EvaluationError
from ..schema import DEFAULT_SORT, ID_COLUMNS
from ._result import result_table

__all__ = ["rankings_of", "plot_critical_difference", "plot_rankings"]

FEATURE_SET, MODEL = ID_COLUMNS


def rankings_of(result, metric: str = DEFAULT_SORT, alpha: float = 0.05) -> Dict[str, object]:
    """The rankings a results table allows: title -> :class:`~leukbench.evaluation.ranking.Ranking`.

    ``"classifiers over feature sets"`` needs 2+ feature sets and 2+
    classifiers that ran on all of them; ``"feature sets over classifiers"``
    the same. Empty when the table has a single feature set.

    Example
    -------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"Feature Set": list("ffggg"), "Model": ["A", "B", "A", "B", "C"],
    ...                   "Balanced Accuracy": [0.8, 0.7, 0.9, 0.6, 0.5], "Status": "ok"})
    >>> r = rankings_of(t)
    >>> list(r), r["classifiers over feature sets"].average_ranks.to_dict()
    (['classifiers over feature sets', 'feature sets over classifiers'], {'A': 1.0, 'B': 2.0})
    """
    from ..evaluation.ranking import rank_methods, scores_by_block

    table = result_table(result)
    found = {}
    for title, block, method in (("classifiers over feature sets", FEATURE_SET, MODEL),
                                 ("feature sets over classifiers", MODEL, FEATURE_SET)):
        scores = scores_by_block(table, metric, block=block, method=method)
        try:
            found[title] = rank_methods(scores, alpha=alpha)
        except EvaluationError:  # too few blocks or methods: this ranking says nothing
            continue
    return found


def plot_rankings(rankings: Dict[str, object], metric: str = DEFAULT_SORT, titles: Sequence[str] = ()):
    """One critical-difference panel per ranking; returns a matplotlib Figure."""
    import scikit_posthocs

    from .plots import _new_figure

    items = list(rankings.items())
    if not items:
        raise EvaluationError("no ranking to draw: it needs 2 or more feature sets (or data sets) and "
                              "2 or more methods that ran on each")
    sizes = [len(r.average_ranks) for _, r in items]
    fig = _new_figure((11.0, 0.9 * len(items) + 0.42 * sum(sizes)), layout=None)
    axes = fig.subplots(len(items), 1, squeeze=False, gridspec_kw={"height_ratios": sizes})[:, 0]
    fig.subplots_adjust(left=0.27, right=0.73, top=1 - 0.5 / fig.get_figheight(), bottom=0.02,
                        hspace=1.2 / max(sizes))
    for ax, (title, ranking) in zip(axes, items):
        scikit_posthocs.critical_difference_diagram(ranking.average_ranks, ranking.nemenyi_p, ax=ax,
                                                    alpha=ranking.alpha)
        p = ranking.friedman_p
        test = "Friedman p = n/a (< 3 methods)" if p != p else f"Friedman p = {p:.3g}"
        ax.set_title(f"{title}: average rank by {metric} over {ranking.n_blocks} blocks ({test})", fontsize=9)
    return fig


def plot_critical_difference(result, metric: str = DEFAULT_SORT, alpha: float = 0.05):
    """Critical-difference diagrams of a comparison (see the module docstring).

    Raises
    ------
    EvaluationError
        For a table of one feature set (nothing to rank over).
    """
    return plot_rankings(rankings_of(result, metric, alpha), metric)
