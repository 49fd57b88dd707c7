"""Calibration scores against hand-computed values (OpinionQA's definitions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personahub.analysis.calibration_scores import (
    BASELINES,
    dispersion,
    modal_agreement,
    representativeness,
    score_survey,
    split,
    summarise,
)
from personahub.analysis.survey import Question
from personahub.analysis.survey_read import read_survey

LIKERT = Question("L", "How much?", ("A lot", "Some", "A little", "None", "Refused"), (1, 2, 3, 4))
MIDDLE = Question("M", "Safer?", ("Safer", "More dangerous", "Neither", "Refused"), (1, 2, 1.5))
NOMINAL = Question("N", "Why?", ("Work", "Fun", "Refused"), (1, 1))
WAVE = Path(__file__).parent / "fixtures" / "opinionqa_wave"


def _d(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=float)


def test_ordinal_wasserstein_over_positions_normalised_by_k_minus_1() -> None:
    # all mass moves two steps: W1 = 2, K - 1 = 3 -> 1 - 2/3
    assert representativeness(LIKERT, _d(0, 0, .5, .5), _d(.5, .5, 0, 0)) == pytest.approx(1 / 3)
    # one step for a quarter of the mass: W1 = 0.25 -> 1 - 0.25/3
    assert representativeness(LIKERT, _d(.25, .25, .5, 0), _d(.5, 0, .5, 0)) == pytest.approx(
        1 - 0.25 / 3)
    assert representativeness(LIKERT, _d(1, 0, 0, 0), _d(0, 0, 0, 1)) == pytest.approx(0.0)
    assert representativeness(LIKERT, _d(.1, .2, .3, .4), _d(.1, .2, .3, .4)) == pytest.approx(1.0)


def test_ordinal_positions_place_the_middle_option_between() -> None:
    # "Neither" sits at 1.5: from "Safer" (1) to "Neither" is half the span (max - min = 1)
    assert representativeness(MIDDLE, _d(0, 0, 1), _d(1, 0, 0)) == pytest.approx(0.5)
    assert representativeness(MIDDLE, _d(0, 1, 0), _d(1, 0, 0)) == pytest.approx(0.0)


def test_nominal_one_minus_jensen_shannon_distance_in_bits() -> None:
    assert representativeness(NOMINAL, _d(1, 0), _d(0, 1)) == pytest.approx(0.0)
    # M = (.75, .25): H(M) = 0.811278, H(p) = 1, H(q) = 0 -> JSD = 0.311278 bits, distance
    # its square root 0.557923
    expected = 1 - math.sqrt(0.8112781244591328 - 0.5)
    assert representativeness(NOMINAL, _d(.5, .5), _d(1, 0)) == pytest.approx(expected)
    assert representativeness(NOMINAL, _d(.3, .7), _d(.3, .7)) == pytest.approx(1.0)


def test_refused_is_split_off_before_scoring() -> None:
    human = split(LIKERT, [50, 50, 0, 0, 100])
    np.testing.assert_allclose(human.distribution, [.5, .5, 0, 0])
    assert (human.n, human.refusal) == (100.0, 0.5)
    only_refused = split(LIKERT, [0, 0, 0, 0, 7])
    assert only_refused.distribution is None and only_refused.refusal == 1.0
    with pytest.raises(ValueError, match="4 counts for 5 options"):
        split(LIKERT, [1, 2, 3, 4])


def test_zero_count_options_dispersion_and_modal_agreement() -> None:
    # zero-count options: identical distributions score 1 and have the same entropy
    same = _d(.5, .5, 0, 0)
    assert representativeness(LIKERT, same, same) == pytest.approx(1.0)
    assert dispersion(same, same) == pytest.approx(1.0)
    # uniform over four options is 2 bits; the humans' two-way split is 1 bit
    assert dispersion(_d(.25, .25, .25, .25), same) == pytest.approx(2.0)
    assert dispersion(_d(1, 0, 0, 0), same) == pytest.approx(0.0)  # fully under-dispersed
    assert math.isnan(dispersion(same, _d(0, 1, 0, 0)))  # people all agree: no spread to compare
    assert modal_agreement(_d(.1, .3, .6), _d(.2, .5, .3)) == 0.0
    assert modal_agreement(_d(.2, .5, .3), _d(.2, .5, .3)) == 1.0
    assert modal_agreement(_d(.4, .4, .2), _d(.1, .6, .3)) == 0.5  # a tie: half its modes agree


def test_score_survey_rows_baselines_and_summary() -> None:
    survey = read_survey(WAVE)
    female = ("SAFE_W1", "SEX", ("Female",))
    model = {female: [0, 0, 50, 50, 10]}  # everyone at the unsafe end, 10 refusals
    table = score_survey(survey, model, no_persona={"SAFE_W1": [30, 50, 15, 5, 0]})
    rows = table[(table.question_id == "SAFE_W1") & (table.group == "Female")].set_index("source")
    assert list(rows.index) == ["model", *BASELINES]
    # human Female: (30, 50, 15, 5)/100, model (0, 0, .5, .5). W1 is the area between the
    # CDFs: |F_h - F_m| at positions 1, 2, 3 = .30, .80, .45 -> W1 = 1.55, K - 1 = 3
    assert rows.loc["model", "representativeness"] == pytest.approx(1 - 1.55 / 3)
    assert rows.loc["model", "sim_refusal"] == pytest.approx(10 / 110)
    assert rows.loc["model", "human_refusal"] == pytest.approx(2 / 102)
    assert rows.loc["no_persona", "representativeness"] == pytest.approx(1.0)  # same as people
    # uniform: CDF .25, .5, .75 against .30, .80, .95 -> W1 = .05 + .30 + .20 = .55
    assert rows.loc["uniform", "representativeness"] == pytest.approx(1 - 0.55 / 3)
    assert rows.loc["uniform", "metric"] == "wasserstein"
    # everyone (SEX summed: 75, 90, 25, 5 of 195) against the Female group
    overall = np.cumsum([75, 90, 25]) / 195
    w1 = float(np.abs(overall - np.cumsum([30, 50, 15]) / 100).sum())
    assert rows.loc["human_overall", "representativeness"] == pytest.approx(1 - w1 / 3)
    # a group the model was not asked about, and no_persona for another question: NaN
    male = table[(table.question_id == "SAFE_W1") & (table.group == "Male")].set_index("source")
    assert math.isnan(male.loc["model", "representativeness"])
    assert table[table.question_id == "REASON_W1"].metric.unique().tolist() == ["jensen_shannon"]
    assert "Refused" not in set(table[table.attribute == "AGE"].group)  # matched to nobody
    summary = summarise(table)
    top = summary[summary.attribute == "overall"].set_index("source")
    assert top.loc["model", "scored"] == 1
    assert top.loc["model", "representativeness"] == pytest.approx(1 - 1.55 / 3)
    assert top.loc["uniform", "scored"] == len(table[table.source == "uniform"])
    sex = summary[(summary.attribute == "SEX")].set_index("source")
    assert sex.loc["uniform", "representativeness"] == pytest.approx(
        table[(table.source == "uniform") & (table.attribute == "SEX")].representativeness.mean())
    by_group = summarise(table, by=("attribute", "group"))
    assert {"attribute", "group", "scored"} <= set(by_group.columns)
    assert isinstance(by_group, pd.DataFrame)


def test_unmatched_and_unanswered_groups(tmp_path: Path) -> None:
    survey = read_survey(WAVE)
    everything = score_survey(survey, {}, matched_only=False)
    refused = everything[(everything.attribute == "AGE") & (everything.group == "Refused")]
    assert len(refused) == 4  # kept when asked for: one row per source
    assert survey.conditions("AGE", ("Refused",)) == ()
    path = tmp_path / "s.csv"
    path.write_text("question_id,question,options,ordinal,attribute,group,option,count\n"
                    "Q,q,A | B | Refused,1 | 2,sex,female,Refused,4\n"
                    "Q,q,A | B | Refused,1 | 2,sex,male,A,4\n")
    table = score_survey(read_survey(path), {("Q", "sex", ("male",)): [1, 0, 0]})
    assert set(table.group) == {"male"}  # no substantive human answer: not scored (OpinionQA)
    assert table.set_index("source").loc["model", "representativeness"] == pytest.approx(1.0)
