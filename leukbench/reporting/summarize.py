"""One ranking over several finished comparisons: ``leukbench summarize``.

Each results folder (for instance the same battery on C-NMC, PBC and
ALL-IDB) is one block. The methods are the table rows, named
``<feature set> / <model>``, that ran in every folder; when no row is common
to all of them (other feature-set names), the classifiers are ranked
instead, each folder's best feature set standing for it. The folder gets
``ranking.md``, ``ranking.csv`` and ``plots/critical_difference.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Sequence

from ..exceptions import EvaluationError, ReportError
from ..schema import DEFAULT_SORT, ID_COLUMNS, STATUS_OK

__all__ = ["Summary", "summarize", "read_results_table"]

FEATURE_SET, MODEL = ID_COLUMNS


@dataclasses.dataclass(frozen=True)
class Summary:
    """The outcome of :func:`summarize`.

    Attributes
    ----------
    table : DataFrame
        One row per method, best first: ``Method``, ``Average Rank``, the
        metric in each folder, and its mean over the folders.
    ranking : Ranking
        The Friedman/Nemenyi outcome (:mod:`leukbench.evaluation.ranking`).
    methods : {"rows", "classifiers"}
        What was ranked.
    folders : list of str
    metric : str
    """

    table: object
    ranking: object
    methods: str
    folders: List[str]
    metric: str

    def to_markdown(self) -> str:
        """``ranking.md``: the ranking table and the test's sentence."""
        from .tables import format_number

        header = list(self.table.columns)
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
        for _, row in self.table.iterrows():
            cells = [str(row[header[0]])] + [format_number(row[c], 3 if c != "Average Rank" else 2)
                                             for c in header[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + f"\n\n{self.ranking.summary()}\n"

    def save(self, out_dir) -> Path:
        """Write ``ranking.md``, ``ranking.csv`` and ``plots/critical_difference.png`` into ``out_dir``."""
        from .ranking_plot import plot_rankings

        out = Path(out_dir)
        try:
            (out / "plots").mkdir(parents=True, exist_ok=True)
            (out / "ranking.md").write_text(self.to_markdown(), encoding="utf-8")
            self.table.to_csv(out / "ranking.csv", index=False, lineterminator="\n")
            fig = plot_rankings({f"{self.methods} over {len(self.folders)} results": self.ranking}, self.metric)
            fig.savefig(out / "plots" / "critical_difference.png", dpi=120)
        except OSError as exc:
            raise ReportError(f"{out}: cannot write the summary ({exc.strerror or exc}); "
                              "give out_dir a writable folder") from None
        return out


def read_results_table(folder) -> object:
    """The ``table.csv`` of a results folder.

    Raises
    ------
    ReportError
        When the folder has no readable ``table.csv`` (not a leukbench results folder).
    """
    import pandas as pd

    path = Path(folder) / "table.csv"
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{folder}: no readable table.csv ({exc}); give the folder a "
                          "'leukbench compare' wrote (its --out)") from None


def _labels(folders: Sequence) -> List[str]:
    """A short, distinct label per folder: its name, with its parent where names repeat."""
    names = [Path(f).resolve().name for f in folders]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(f).resolve().parent.name}/{Path(f).resolve().name}" for f in folders]


def _method_scores(tables, labels, metric: str):
    """Folders x methods: table rows common to every folder, else classifiers (best feature set each)."""
    import pandas as pd

    ok = [t[t["Status"] == STATUS_OK] if "Status" in t else t for t in tables]
    rows = {label: t.set_index(t[FEATURE_SET].astype(str) + " / " + t[MODEL].astype(str))[metric]
            for label, t in zip(labels, ok)}
    scores = pd.DataFrame(rows).T
    common = scores.dropna(axis=1, how="any")
    if common.shape[1] >= 2:
        return common, "rows"
    best = {label: t.groupby(MODEL)[metric].max() for label, t in zip(labels, ok)}
    return pd.DataFrame(best).T.dropna(axis=1, how="any"), "classifiers"


def summarize(result_dirs: Sequence, *, metric: str = DEFAULT_SORT, alpha: float = 0.05) -> Summary:
    """Rank the rows of several results folders together (see the module docstring).

    Parameters
    ----------
    result_dirs : sequence of paths
        Folders written by ``leukbench compare`` (2 or more).
    metric : str
        A metric column of the tables (default: balanced accuracy).
    alpha : float
        Level of the Friedman and Nemenyi tests.

    Returns
    -------
    Summary

    Example
    -------
    >>> import leukbench
    >>> s = leukbench.summarize(["results/cnmc", "results/pbc", "results/allidb"])  # doctest: +SKIP
    >>> s.save("results/summary")  # doctest: +SKIP
    """
    from ..evaluation.ranking import rank_methods
    from ..evaluation.uncertainty import tie_metric

    if len(result_dirs) < 2:
        raise EvaluationError(f"summarize needs 2 or more results folders (got {len(result_dirs)})")
    tables = [read_results_table(f) for f in result_dirs]
    metric = tie_metric(metric)
    for folder, table in zip(result_dirs, tables):
        if metric not in table:
            raise ReportError(f"{folder}: table.csv has no column {metric!r}")
    labels = _labels(result_dirs)
    scores, methods = _method_scores(tables, labels, metric)
    ranking = rank_methods(scores, alpha=alpha)
    out = scores.T.loc[ranking.average_ranks.index]
    out.insert(0, "Average Rank", ranking.average_ranks)
    out["Mean"] = scores.T.loc[out.index].mean(axis=1)
    out = out.rename_axis("Method").reset_index()
    return Summary(table=out, ranking=ranking, methods=methods, folders=labels, metric=metric)
