"""Ranks of methods over blocks (data sets, feature sets), the Friedman test and Nemenyi's post-hoc test.

Demšar (2006) compares *k* methods over *N* data sets by their ranks: each
block (a data set, or a feature set) ranks the methods, the Friedman test
asks whether the average ranks differ at all, and Nemenyi's post-hoc test
gives the pairs that differ, drawn as a critical-difference diagram (methods
closer than the critical difference are joined). scipy runs the Friedman test;
scikit-posthocs (maintained, MIT) gives the Nemenyi p-values and draws the
diagram, so neither is written here.

Example
-------
>>> import pandas as pd
>>> scores = pd.DataFrame({"A": [0.9, 0.8, 0.85, 0.7], "B": [0.7, 0.6, 0.65, 0.6],
...                        "C": [0.8, 0.7, 0.80, 0.65]}, index=["d1", "d2", "d3", "d4"])
>>> r = rank_methods(scores)
>>> r.average_ranks.to_dict()
{'A': 1.0, 'C': 2.0, 'B': 3.0}
>>> r.friedman_p < 0.05
True
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..exceptions import EvaluationError
from ..schema import STATUS_OK

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Ranking", "rank_methods", "critical_difference", "scores_by_block"]


@dataclasses.dataclass(frozen=True)
class Ranking:
    """The outcome of :func:`rank_methods`.

    Attributes
    ----------
    average_ranks : Series
        Mean rank of each method over the blocks (1 = best), best first.
    n_blocks : int
    friedman_statistic, friedman_p : float
        Friedman's chi-square and its p-value (NaN for fewer than 3 methods).
    nemenyi_p : DataFrame
        Nemenyi post-hoc p-value of every pair of methods.
    critical_difference : float
        Nemenyi's critical difference of average ranks at ``alpha``.
    alpha : float
    """

    average_ranks: pd.Series
    n_blocks: int
    friedman_statistic: float
    friedman_p: float
    nemenyi_p: pd.DataFrame
    critical_difference: float
    alpha: float

    def summary(self) -> str:
        """One sentence: the test, its outcome and the best method."""
        best = self.average_ranks.index[0]
        if math.isnan(self.friedman_p):
            return f"{best} ranks first over {self.n_blocks} block(s); fewer than 3 methods: no Friedman test."
        verdict = "differ" if self.friedman_p < self.alpha else "do not differ significantly"
        return (f"Friedman test over {self.n_blocks} block(s) and {len(self.average_ranks)} methods: "
                f"chi2 = {self.friedman_statistic:.2f}, p = {self.friedman_p:.3g}, so the average ranks {verdict} "
                f"at alpha = {self.alpha:g}; {best} ranks first ({self.average_ranks.iloc[0]:.2f}); "
                f"Nemenyi critical difference {self.critical_difference:.2f}.")


def critical_difference(n_methods: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks: ``q_alpha * sqrt(k (k + 1) / (6 N))``.

    ``q_alpha`` is the studentized range quantile divided by sqrt(2) (scipy).

    Example
    -------
    >>> round(critical_difference(4, 10), 3)   # Demšar's table gives q = 2.569 for k = 4
    1.483
    """
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, n_methods, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_methods * (n_methods + 1) / (6.0 * n_blocks)))


def _complete_part(scores: pd.DataFrame) -> pd.DataFrame:
    """Without the methods, or else the blocks, that miss a score: whichever keeps more scores."""
    by_method, by_block = scores.dropna(axis=1, how="any"), scores.dropna(axis=0, how="any")
    return by_method if by_method.size >= by_block.size else by_block


def rank_methods(scores: pd.DataFrame, *, alpha: float = 0.05, higher_is_better: bool = True) -> Ranking:
    """Rank the methods (columns) within each block (row) and test whether they differ.

    Parameters
    ----------
    scores : DataFrame
        One row per block (a data set, or a feature set), one column per
        method. Where scores are missing, either the incomplete methods or the
        incomplete blocks are left out, whichever keeps more scores.
    alpha : float
    higher_is_better : bool

    Returns
    -------
    Ranking

    Raises
    ------
    EvaluationError
        When fewer than 2 blocks or 2 methods have complete scores.
    """
    import pandas as pd
    import scikit_posthocs
    from scipy.stats import friedmanchisquare

    complete = _complete_part(scores)
    if complete.shape[0] < 2 or complete.shape[1] < 2:
        raise EvaluationError(f"ranking needs 2 or more blocks and 2 or more methods with scores in every "
                              f"block (got {complete.shape[0]} block(s), {complete.shape[1]} method(s))")
    ranks = (-complete if higher_is_better else complete).rank(axis=1, method="average")
    average = ranks.mean(axis=0).sort_values(kind="stable")
    statistic = p_value = float("nan")
    if complete.shape[1] >= 3:
        statistic, p_value = (float(v) for v in friedmanchisquare(*complete.to_numpy().T))
    values = complete.to_numpy() if higher_is_better else -complete.to_numpy()
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(values)
    nemenyi.index = nemenyi.columns = complete.columns
    return Ranking(average_ranks=pd.Series(average, name="average rank"), n_blocks=int(complete.shape[0]),
                   friedman_statistic=statistic, friedman_p=p_value, nemenyi_p=nemenyi,
                   critical_difference=critical_difference(complete.shape[1], complete.shape[0], alpha),
                   alpha=alpha)


def scores_by_block(table: pd.DataFrame, metric: str, *, block: str, method: str,
                    status_column: Optional[str] = "Status") -> pd.DataFrame:
    """Pivot a results table into blocks x methods (rows that did not run are left out).

    Example
    -------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"Feature Set": ["f", "f", "g", "g"], "Model": ["A", "B", "A", "B"],
    ...                   "Balanced Accuracy": [0.8, 0.7, 0.9, 0.6], "Status": "ok"})
    >>> scores_by_block(t, "Balanced Accuracy", block="Feature Set", method="Model").to_dict()
    {'A': {'f': 0.8, 'g': 0.9}, 'B': {'f': 0.7, 'g': 0.6}}
    """
    rows = table if status_column is None or status_column not in table else table[table[status_column] == STATUS_OK]
    return rows.pivot_table(index=block, columns=method, values=metric, aggfunc="first")
