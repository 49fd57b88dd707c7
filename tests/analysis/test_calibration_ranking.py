"""Ranking alignment (analysis/calibration_ranking.py): the top-option hits and Kendall taus of a
hand-made score table equal a hand count, and the p-values equal hand-computed ones and scipy's
own tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson_binom, wilcoxon

from personahub.analysis.calibration_ranking import (
    CELL_COLUMNS,
    ranking_cells,
    ranking_lines,
    ranking_summary,
    ranking_verdict,
)
from personahub.analysis.survey import Question, Survey

QUESTIONS = {
    "A": Question("A", "a?", ("a1", "a2", "a3", "Refused"), (1.0, 2.0, 3.0)),
    "B": Question("B", "b?", ("b1", "b2", "b3", "b4"), (1.0, 2.0, 3.0, 4.0)),
    "C": Question("C", "c?", ("c1", "c2", "c3"), (1.0, 1.0, 1.0)),  # nominal
}
HUMANS = {("A", "Female"): [50, 30, 20, 5], ("A", "Male"): [20, 30, 50, 0],
          ("B", "Female"): [10, 20, 30, 40], ("B", "Male"): [40, 30, 20, 10],
          ("C", "Female"): [60, 30, 10], ("C", "Male"): [20, 50, 30]}
MODEL = {("A", "Female"): [60, 30, 10, 40],  # top a1 = people's; tau 1
         ("A", "Male"): [30, 50, 20, 0],  # top a2, people's a3: a miss; tau (1 - 2) / 3
         ("B", "Female"): [5, 30, 25, 40],  # top b4 = people's; tau (5 - 1) / 6
         ("B", "Male"): [40, 40, 10, 10],  # tied top: no top; tau-b 4 / sqrt((6 - 2) x 6)
         ("C", "Female"): [1, 1, 1],  # constant: neither a top nor a tau
         ("C", "Male"): [10, 80, 10]}  # top c2 = people's; tau-b 2 / sqrt((3 - 1) x 3)


def _survey() -> Survey:
    counts: dict[str, dict[tuple[str, tuple[str, ...]], tuple[float, ...]]] = {q: {} for q in QUESTIONS}
    for (qid, group), vector in HUMANS.items():
        counts[qid][("SEX", (group,))] = tuple(float(v) for v in vector)
    return Survey(dict(QUESTIONS), counts)


def _scores() -> pd.DataFrame:
    rows = []
    for (qid, group), vector in MODEL.items():
        rows.append({"question_id": qid, "attribute": "SEX", "group": group, "source": "model",
                     "steering": "persona", "counts": json.dumps(vector)})
        uniform = [1.0] * len(QUESTIONS[qid].ordinal) + [0.0] * len(QUESTIONS[qid].refusals)
        rows.append({"question_id": qid, "attribute": "SEX", "group": group, "source": "uniform",
                     "steering": "", "counts": json.dumps(uniform)})
        rows.append({"question_id": qid, "attribute": "SEX", "group": group,
                     "source": "perfect_panel", "steering": "persona", "counts": None})
    rows.append({"question_id": "A", "attribute": "(population)", "group": "SEX",
                 "source": "model", "steering": "persona", "counts": json.dumps([1, 2, 3, 0])})
    return pd.DataFrame(rows)


def test_hits_and_taus_equal_a_hand_count() -> None:
    cells = ranking_cells(_scores(), _survey())
    assert list(cells.columns) == CELL_COLUMNS
    assert set(cells["who"]) == {"model"}  # uniform, the floors and the population rows are not ranked
    got = {(r.question_id, r.group): (r.top_hit, r.chance, r.tau) for r in cells.itertuples()}
    hand = {("A", "Female"): (1.0, 1 / 3, 1.0), ("A", "Male"): (0.0, 1 / 3, -1 / 3),
            ("B", "Female"): (1.0, 1 / 4, 4 / 6), ("B", "Male"): (math.nan, 1 / 4, 4 / math.sqrt(24)),
            ("C", "Female"): (math.nan, 1 / 3, math.nan),
            ("C", "Male"): (1.0, 1 / 3, 2 / math.sqrt(6))}
    assert got.keys() == hand.keys()
    for key, values in hand.items():
        np.testing.assert_allclose(got[key], values, err_msg=str(key))


def test_the_summary_equals_a_hand_computation_and_scipys_tests() -> None:
    summary = ranking_summary(ranking_cells(_scores(), _survey())).set_index("who")
    row = summary.loc["model"]
    assert (row["pairs"], row["hits"], row["ranked"]) == (4, 3, 5)
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 4 + 1 / 3) / 4)
    # P(at least 3 hits): all four 1/108; exactly three 3 x 2/108 + 3/108
    assert row["top_p"] == pytest.approx(10 / 108)
    assert row["top_p"] == pytest.approx(poisson_binom.sf(2, [1 / 3, 1 / 3, 1 / 4, 1 / 3]))
    taus = [1.0, -1 / 3, 4 / 6, 4 / math.sqrt(24), 2 / math.sqrt(6)]
    assert row["mean_tau"] == pytest.approx(np.mean(taus))
    assert row["rank_p"] == pytest.approx(wilcoxon(taus, alternative="greater").pvalue)


def test_the_wilcoxon_p_equals_an_enumeration() -> None:
    """Taus 1, 2/3 and -1/3: ranks 3, 2 and 1, W+ = 5; of the 8 sign patterns two reach 5."""
    cells = pd.DataFrame([{"who": "model", "question_id": q, "attribute": "SEX", "group": "F",
                           "options": 3, "top_hit": 1.0, "chance": 0.5, "tau": t, "tau_p": 1.0}
                          for q, t in (("A", 1.0), ("B", 2 / 3), ("C", -1 / 3))])
    row = ranking_summary(cells).iloc[0]
    assert row["rank_p"] == pytest.approx(2 / 8)
    assert row["top_p"] == pytest.approx(0.5**3)  # three hits of three at chance 1/2


@pytest.mark.filterwarnings("error::pandas.errors.Pandas4Warning")  # its mask once mixed str dtype in
def test_lines_and_verdict_say_it_in_words() -> None:
    summary = ranking_summary(ranking_cells(_scores(), _survey()))
    lines = ranking_lines(summary)
    assert lines[0].startswith("ranking (per question x group")
    assert lines[2].split() == ["model", "3/4", "0.750", "0.31", "0.093", "0.593", "5",
                                f"{summary.iloc[0]['rank_p']:.3f}"]
    said = ranking_verdict(summary)
    assert said[0] == ("model's most-chosen option is people's in 3 of 4 question x group pairs "
                       "(75%; chance 31%): not above chance (p = 0.093, exact test)")
    assert said[1].startswith("model does not rank the options as people do more than chance: "
                              "mean Kendall tau +0.593 over 5 pairs")
    assert ranking_lines(ranking_summary(ranking_cells(_scores().iloc[0:0], _survey()))) == []
