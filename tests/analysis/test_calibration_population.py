"""The whole-population rows (``score_population``): the group panels mixed to the survey's
distribution of groups, scored against everyone's answers, checked by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from personahub.analysis.calibration_scores import POPULATION, population_panel, score_population
from personahub.analysis.survey import Question, Survey

YES_NO = Question("Y", "Yes?", ("Yes", "No", "Refused"), (1, 2))
# 100 women and 100 men answered; the model's panels are 10 women and 5 men (one refusal)
SURVEY = Survey({"Y": YES_NO}, {"Y": {("SEX", ("Female",)): (60.0, 30.0, 10.0),
                                      ("SEX", ("Male",)): (50.0, 40.0, 10.0),
                                      ("Overall", ("Overall",)): (110.0, 70.0, 20.0)}})
MODEL = {("Y", "SEX", ("Female",)): [8.0, 2.0, 0.0], ("Y", "SEX", ("Male",)): [1.0, 3.0, 1.0]}


def _row(table: pd.DataFrame, source: str) -> pd.Series:
    return table[table["source"] == source].iloc[0]


def test_the_population_panel_is_the_groups_mixed_by_the_surveys_shares() -> None:
    table = score_population(SURVEY, MODEL, seed=1)
    assert set(table["attribute"]) == {POPULATION} and set(table["group"]) == {"SEX"}
    assert list(table["source"]) == ["model", "uniform", "no_persona", "human_resample",
                                     "perfect_panel"]
    model = _row(table, "model")
    # women and men weigh 1/2 each (90 substantive answers each): Yes 0.8 and 0.25, i.e. 0.525
    # Yes against everyone's 110/180; pooling the panels' answers (9 Yes, 5 No) would give 9/14
    assert model["representativeness"] == pytest.approx(1 - abs(0.525 - 11 / 18))
    assert model["sim_refusal"] == pytest.approx(0.1)  # the groups' refusal shares, mixed
    # Kish's effective size of the stratified panel: 1 / (0.5**2/10 + 0.5**2/4)
    assert model["sim_n"] == pytest.approx(1 / (0.25 / 10 + 0.25 / 4))
    assert _row(table, "uniform")["representativeness"] == pytest.approx(1 - abs(0.5 - 11 / 18))
    assert _row(table, "perfect_panel")["sim_n"] == 11
    assert _row(table, "human_resample")["sim_n"] == 180
    assert (_row(table, "human_resample")["representativeness"]
            > _row(table, "perfect_panel")["representativeness"])
    assert pd.isna(_row(table, "no_persona")["representativeness"])  # not given


def test_a_group_without_a_panel_is_left_out_and_the_rest_reweighted() -> None:
    only_women = {k: v for k, v in MODEL.items() if k[2] == ("Female",)}
    panel = population_panel(YES_NO, [(100.0, [8.0, 2.0, 0.0])])
    assert panel is not None and list(panel) == pytest.approx([8.0, 2.0, 0.0])
    model = _row(score_population(SURVEY, only_women), "model")
    assert model["representativeness"] == pytest.approx(1 - abs(0.8 - 11 / 18))
    assert population_panel(YES_NO, [(1.0, [0.0, 0.0, 3.0])]) is None  # only refusals


def test_a_simulator_right_about_opinions_scores_the_population_exactly_whatever_it_refuses(
        ) -> None:
    # the groups' substantive shares are mixed, weighed by their people's substantive answers:
    # a panel that refuses more (men here) keeps its say, and opinions right per group give
    # everyone's opinion exactly
    survey = Survey({"Y": YES_NO}, {"Y": {("SEX", ("Female",)): (60.0, 30.0, 10.0),
                                          ("SEX", ("Male",)): (20.0, 60.0, 20.0),
                                          ("Overall", ("Overall",)): (80.0, 90.0, 30.0)}})
    model = {("Y", "SEX", ("Female",)): [6.0, 3.0, 0.0], ("Y", "SEX", ("Male",)): [2.0, 6.0, 10.0]}
    row = _row(score_population(survey, model), "model")
    assert row["representativeness"] == pytest.approx(1.0)
    assert row["sim_refusal"] == pytest.approx((90 * 0 + 80 * 10 / 18) / 170)
    assert row["sim_n"] == pytest.approx(1 / ((90 / 170) ** 2 / 9 + (80 / 170) ** 2 / 8))
