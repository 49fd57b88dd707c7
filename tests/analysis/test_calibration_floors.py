"""The floor and ceiling rows of a calibration (``human_resample``, ``perfect_panel``,
``human_overall_panel``): expected scores of multinomial draws, checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, wasserstein_distance

from personahub.analysis.calibration_scores import (
    FLOORS,
    _w1_rows,
    representativeness,
    sampled_scores,
    score_survey,
)
from personahub.analysis.survey import Question, Survey

YES_NO = Question("Y", "Yes?", ("Yes", "No", "Refused"), (1, 2))
MIDDLE = Question("M", "Safer?", ("Safer", "More dangerous", "Neither", "Refused"), (1, 2, 1.5))
NOMINAL = Question("N", "Why?", ("Work", "Fun", "Other", "Refused"), (1, 1, 1))


@pytest.mark.parametrize(("p", "n"), [(0.3, 7), (0.5, 20), (0.85, 40)])
def test_perfect_panel_of_a_two_option_question_matches_the_binomial_closed_form(
        p: float, n: int) -> None:
    # K = 2: score = 1 - |p_hat - p| with p_hat ~ Binomial(n, p) / n, so its expectation is
    # 1 - sum_k pmf(k) |k/n - p|
    k = np.arange(n + 1)
    pmf = binom.pmf(k, n, p)
    mean_abs = float(np.sum(pmf * np.abs(k / n - p)))
    var_abs = p * (1 - p) / n - mean_abs ** 2  # E|X|^2 = E X^2 = p(1-p)/n
    draws = 20_000
    human = np.array([p, 1 - p])
    got = sampled_scores(YES_NO, human, human, n, np.random.default_rng(1), draws=draws)
    assert got["representativeness"] == pytest.approx(1 - mean_abs,
                                                      abs=4 * math.sqrt(var_abs / draws))


def test_many_rows_w1_is_scipys_on_unsorted_positions() -> None:
    rng = np.random.default_rng(0)
    sims = rng.dirichlet(np.ones(3), size=50)
    human = np.array([0.2, 0.5, 0.3])
    positions = np.asarray(MIDDLE.ordinal, dtype=float)
    expected = [wasserstein_distance(positions, positions, s, human) for s in sims]
    assert _w1_rows(positions, sims, human) == pytest.approx(expected)


def test_nominal_draws_are_scored_with_jensen_shannon() -> None:
    human = np.array([0.5, 0.3, 0.2])
    # one answer per draw: each draw is a point mass, scored like representativeness does
    got = sampled_scores(NOMINAL, human, human, 1, np.random.default_rng(2), draws=5000)
    exact = sum(w * representativeness(NOMINAL, np.eye(3)[i], human) for i, w in enumerate(human))
    assert got["representativeness"] == pytest.approx(exact, abs=0.01)
    assert math.isnan(sampled_scores(NOMINAL, human, human, 0, np.random.default_rng(2))[
        "representativeness"])


def _survey() -> Survey:
    counts = {"Y": {("SEX", ("Male",)): [3000, 1000, 50], ("SEX", ("Female",)): [1000, 1000, 0]}}
    return Survey(questions={"Y": YES_NO}, counts=counts)


def test_score_survey_adds_seeded_floor_rows_at_the_panel_effective_size() -> None:
    survey = _survey()
    model = {("Y", "SEX", ("Male",)): [4, 0, 6], ("Y", "SEX", ("Female",)): [5, 5, 0]}
    table = score_survey(survey, model, seed=7, matched_only=False)
    again = score_survey(survey, model, seed=7, matched_only=False)
    other = score_survey(survey, model, seed=8, matched_only=False)
    assert set(FLOORS) <= set(table["source"])
    assert table.equals(again)
    assert not table["representativeness"].equals(other["representativeness"])
    rows = table.set_index(["group", "source"])
    # the model's panel gave 4 substantive answers for men (6 refused): the ceiling draws 4
    assert rows.loc[("Male", "perfect_panel"), "sim_n"] == 4
    assert rows.loc[("Male", "human_resample"), "sim_n"] == 4000
    # 4000 answers redrawn: the noise floor is near 1; four answers are far noisier
    assert rows.loc[("Male", "human_resample"), "representativeness"] > 0.99
    assert rows.loc[("Male", "perfect_panel"), "representativeness"] < 0.95
    # no seed, no floor rows (the OpinionQA-equivalent table is unchanged)
    assert not set(FLOORS) & set(score_survey(survey, model, matched_only=False)["source"])
