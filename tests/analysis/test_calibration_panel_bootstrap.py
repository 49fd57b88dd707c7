"""The bootstrap over panel answers (``analysis.calibration_verdict.panel_intervals``): on a
synthetic survey with known human distributions and panels drawn from a known model
distribution, its interval covers the model's true expected score at about its nominal rate."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multinomial

from personahub.analysis.calibration_scores import representativeness
from personahub.analysis.calibration_verdict import panel_intervals
from personahub.analysis.survey import Question, Survey

OPTIONS = ("low", "mid", "high", "Refused")
GROUPS = (("a",), ("b",))


def _survey(questions: int, rng: np.random.Generator) -> tuple[Survey, dict, dict]:
    """A survey of ordinal questions (two groups of SEX), its people's shares and the model's
    true answer shares per (question, attribute, group)."""
    asked = {f"Q{q}": Question(f"Q{q}", f"question {q}", OPTIONS, (1.0, 2.0, 3.0))
             for q in range(questions)}
    counts, humans, model = {}, {}, {}
    for qid in asked:
        counts[qid] = {}
        for group in GROUPS:
            people = rng.dirichlet(np.ones(3) * 2)
            counts[qid][("SEX", group)] = (*(people * 500), 20.0)
            humans[(qid, "SEX", group[0])] = people
            model[(qid, "SEX", group[0])] = rng.dirichlet(np.ones(3) * 2)
    return Survey(asked, counts), humans, model


def _expected(question: Question, model: np.ndarray, human: np.ndarray, n: int) -> float:
    """The exact expected representativeness of a panel of ``n`` drawn from ``model``: every
    panel of three options weighed by its multinomial probability."""
    panels = np.array([(a, b, n - a - b) for a, b in itertools.product(range(n + 1), repeat=2)
                       if a + b <= n], float)
    scores = [representativeness(question, panel / n, human) for panel in panels]
    return float(multinomial.pmf(panels, n, model) @ np.asarray(scores))


def _table(survey: Survey, humans: dict, model: dict, n: int, rng: np.random.Generator
           ) -> pd.DataFrame:
    """One calibration's model rows: a panel of ``n`` per question x group, drawn and scored."""
    rows = []
    for (qid, attribute, group), shares in model.items():
        panel = rng.multinomial(n, shares).astype(float)
        rows.append({"question_id": qid, "attribute": attribute, "group": group,
                     "source": "model", "steering": "persona",
                     "representativeness": representativeness(survey.questions[qid], panel / n,
                                                              humans[(qid, attribute, group)]),
                     "dispersion": 1.0, "sim_n": float(n),
                     "counts": json.dumps([*panel.tolist(), 0.0])})
    return pd.DataFrame(rows)


def test_panel_interval_is_around_the_observed_mean_and_reproducible() -> None:
    rng = np.random.default_rng(7)
    survey, humans, model = _survey(12, rng)
    table = _table(survey, humans, model, 10, rng)
    got = panel_intervals(table, survey, seed=1, resamples=300)
    overall = got.set_index("attribute").loc["overall"]
    assert overall["mean"] == pytest.approx(table["representativeness"].mean())
    assert overall["panel_low"] < overall["mean"] < overall["panel_high"]
    assert overall["pairs"] == 24
    assert got.equals(panel_intervals(table, survey, seed=1, resamples=300))
    # a stated distribution has no panel: skipped rows give no interval
    assert panel_intervals(table, survey, seed=1, skip=("persona",)).empty
    # bigger panels, narrower intervals
    big = _table(survey, humans, model, 200, rng)
    wide = overall["panel_high"] - overall["panel_low"]
    narrow = panel_intervals(big, survey, seed=1, resamples=300).iloc[0]
    assert narrow["panel_high"] - narrow["panel_low"] < wide / 2


@pytest.mark.slow  # about 10 s a size on a loaded two-core machine
@pytest.mark.parametrize("n", [2, 5, 8, 20])
def test_panel_interval_covers_the_true_expected_score_at_every_panel_size(n: int) -> None:
    # small panels are where real ones sit (SmolLM2's median was 4.5 answers); redrawn from
    # their raw shares, panels of 2 to 5 were covered 82.5% of the time
    rng = np.random.default_rng(45)
    survey, humans, model = _survey(15, rng)
    truth = float(np.mean([_expected(survey.questions[k[0]], p, humans[k], n)
                           for k, p in model.items()]))
    trials, covered = 400, 0
    for trial in range(trials):
        table = _table(survey, humans, model, n, rng)
        row = panel_intervals(table, survey, seed=trial, resamples=400).iloc[0]
        covered += row["panel_low"] <= truth <= row["panel_high"]
    # a binomial(400, 0.95) falls below 0.93 with probability about 3%; the measured rates
    # are in docs/calibration.md (the question-only interval over-covers with the questions
    # fixed: question-to-question spread is not uncertainty then)
    assert covered / trials >= 0.93
