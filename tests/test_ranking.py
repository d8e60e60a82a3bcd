"""Rankings over blocks: the Friedman test, Nemenyi's critical difference, the diagrams and `summarize`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leukbench.evaluation.ranking import critical_difference, rank_methods, scores_by_block
from leukbench.exceptions import EvaluationError, ReportError


def _scores(n_blocks=8, gaps=(0.0, 0.01, 0.2), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.8, n_blocks)
    return pd.DataFrame({f"m{i}": base - gap + rng.normal(0, 0.005, n_blocks) for i, gap in enumerate(gaps)},
                        index=[f"d{b}" for b in range(n_blocks)])


def test_friedman_and_ranks_agree_with_scipy():
    scores = _scores()
    r = rank_methods(scores)
    expected = stats.friedmanchisquare(*scores.to_numpy().T)
    assert r.friedman_statistic == pytest.approx(expected.statistic)
    assert r.friedman_p == pytest.approx(expected.pvalue)
    assert list(r.average_ranks.index)[-1] == "m2" and r.average_ranks["m2"] == 3.0
    assert r.nemenyi_p.loc["m0", "m2"] < 0.05 < r.nemenyi_p.loc["m0", "m1"]


def test_critical_difference_matches_demsars_table():
    # Demšar (2006), table 5(a): q_0.05 = 2.343 (k=3), 2.569 (k=4), 3.031 (k=8)
    for k, q in ((3, 2.343), (4, 2.569), (8, 3.031)):
        assert critical_difference(k, 12) == pytest.approx(q * np.sqrt(k * (k + 1) / 72), abs=1e-3)


def test_too_few_blocks_or_methods_is_said():
    with pytest.raises(EvaluationError, match="2 or more blocks"):
        rank_methods(_scores(n_blocks=1))
    two = rank_methods(_scores(gaps=(0.0, 0.2)))
    assert np.isnan(two.friedman_p) and "fewer than 3 methods" in two.summary()


def test_incomplete_scores_drop_what_keeps_most():
    scores = _scores(n_blocks=6, gaps=(0.0, 0.1, 0.2, 0.3))
    scores.iloc[0, 3] = np.nan  # one block misses one method: dropping the block keeps more
    assert rank_methods(scores).n_blocks == 5 and len(rank_methods(scores).average_ranks) == 4
    scores.iloc[:4, 3] = np.nan  # a method missing in most blocks: the method goes
    r = rank_methods(scores)
    assert r.n_blocks == 6 and "m3" not in r.average_ranks


def test_failed_rows_are_not_ranked():
    table = pd.DataFrame({"Feature Set": ["f", "f", "g", "g"], "Model": ["A", "B", "A", "B"],
                          "Balanced Accuracy": [0.8, 0.7, 0.9, np.nan], "Status": ["ok", "ok", "ok", "timeout"]})
    assert scores_by_block(table, "Balanced Accuracy", block="Feature Set", method="Model").isna().sum().sum() == 1


def _results_folder(path, rows, metric="Balanced Accuracy"):
    path.mkdir(parents=True)
    pd.DataFrame([{"Feature Set": fs, "Model": m, metric: v, "Status": "ok"} for fs, m, v in rows]).to_csv(
        path / "table.csv", index=False)
    return path


def test_summarize_ranks_rows_common_to_every_folder(tmp_path):
    import leukbench

    folders = []
    for i, shift in enumerate((0.0, 0.05, -0.03, 0.02)):
        folders.append(_results_folder(tmp_path / f"data{i}", [
            ("deep", "SVC", 0.80 + shift), ("deep", "LDA", 0.70 + shift), ("deep", "NB", 0.60 + shift),
            ("hand", "SVC", 0.75 + shift)] + ([("extra", "SVC", 0.9)] if i == 0 else [])))
    summary = leukbench.summarize(folders)
    assert summary.methods == "rows"
    assert list(summary.table["Method"]) == ["deep / SVC", "hand / SVC", "deep / LDA", "deep / NB"]
    assert list(summary.table["Average Rank"]) == [1.0, 2.0, 3.0, 4.0]  # 'extra' is in one folder only
    out = summary.save(tmp_path / "summary")
    assert (out / "plots" / "critical_difference.png").stat().st_size > 0
    text = (out / "ranking.md").read_text()
    assert text.startswith("| Method | Average Rank | data0 | data1 | data2 | data3 | Mean |")
    assert "Friedman test over 4 block(s) and 4 methods" in text


def test_summarize_falls_back_to_classifiers_and_names_bad_folders(tmp_path):
    import leukbench

    a = _results_folder(tmp_path / "a", [("x", "SVC", 0.8), ("x", "LDA", 0.7), ("y", "SVC", 0.85)])
    b = _results_folder(tmp_path / "b", [("z", "SVC", 0.6), ("z", "LDA", 0.65)])
    summary = leukbench.summarize([a, b])
    assert summary.methods == "classifiers"
    assert summary.table.set_index("Method").loc["SVC", "a"] == 0.85  # the best feature set stands for it
    with pytest.raises(ReportError, match=r"nothing: no readable table.csv"):
        leukbench.summarize([a, tmp_path / "nothing"])
    with pytest.raises(EvaluationError, match="2 or more results folders"):
        leukbench.summarize([a])


def test_cli_summarize_writes_the_ranking(tmp_path, capsys):
    from leukbench.cli import main

    folders = [str(_results_folder(tmp_path / f"r{i}", [("f", "A", 0.8 + i / 100), ("f", "B", 0.7),
                                                        ("f", "C", 0.6 - i / 100)])) for i in range(3)]
    assert main(["summarize", *folders, "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "| f / A | 1.00 |" in out and (tmp_path / "s" / "ranking.csv").exists()
    assert main(["summarize", folders[0], "--out", str(tmp_path / "s2")]) == 2


def test_critical_difference_plot_of_a_comparison():
    from leukbench.reporting import plot_critical_difference, rankings_of

    rows = [(fs, m, v + off) for fs, off in (("a", 0.0), ("b", 0.05), ("c", -0.02))
            for m, v in (("SVC", 0.8), ("LDA", 0.7), ("NB", 0.6))]
    table = pd.DataFrame([{"Feature Set": fs, "Model": m, "Balanced Accuracy": v, "Status": "ok"}
                          for fs, m, v in rows])
    rankings = rankings_of(table)
    assert list(rankings["classifiers over feature sets"].average_ranks.index) == ["SVC", "LDA", "NB"]
    assert list(rankings["feature sets over classifiers"].average_ranks.index) == ["b", "a", "c"]
    fig = plot_critical_difference(table)
    assert len(fig.axes) == 2
    with pytest.raises(EvaluationError, match="no ranking to draw"):
        plot_critical_difference(table[table["Feature Set"] == "a"])
