"""Dispersion as simulated SD / human SD on ordinal questions, beside the entropy
ratio: per question x group in the scores, its means in the summary, and on the console."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from personahub.analysis.calibration_scores import (
    _ordinal_sd,
    sampled_scores,
    score,
    score_survey,
    sd_ratio,
)
from personahub.analysis.survey import Question
from personahub.analysis.survey_csv import read_long_csv
from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import COUNTS, QUESTIONS, make_population, write_survey

FOUR = Question("F", "four-point", ("1", "2", "3", "4", "Refused"), (1.0, 2.0, 3.0, 4.0))
NOMINAL = Question("N", "pick", ("a", "b", "c"), (1.0, 1.0, 1.0))


def test_sd_ratio_by_hand() -> None:
    human = np.full(4, 0.25)  # SD of 1..4 uniform: sqrt(1.25)
    sim = np.array([0.0, 0.5, 0.5, 0.0])  # SD 0.5
    assert sd_ratio(FOUR, sim, human) == pytest.approx(0.5 / math.sqrt(1.25))
    assert sd_ratio(FOUR, human, human) == pytest.approx(1.0)
    assert score(FOUR, sim, human)["sd_ratio"] == pytest.approx(0.4472136)
    assert math.isnan(sd_ratio(NOMINAL, np.array([1.0, 0, 0]), np.full(3, 1 / 3)))
    assert math.isnan(sd_ratio(FOUR, sim, np.array([0.0, 1.0, 0.0, 0.0])))  # people agree


def test_ordinal_sd_is_numpys_weighted_sd() -> None:
    rng = np.random.default_rng(5)
    positions = np.array([1.0, 2.0, 1.5, 4.0])
    shares = rng.dirichlet(np.ones(4), size=20)
    expected = [math.sqrt(float(np.cov(positions, aweights=row, ddof=0))) for row in shares]
    np.testing.assert_allclose(_ordinal_sd(positions, shares), expected, rtol=1e-12)


def test_a_perfect_panel_is_near_one_and_a_collapsed_model_near_zero() -> None:
    human = np.array([0.1, 0.4, 0.3, 0.2])
    rng = np.random.default_rng(0)
    big = sampled_scores(FOUR, human, human, 2000, rng, draws=50)["sd_ratio"]
    small = sampled_scores(FOUR, human, human, 5, rng, draws=400)["sd_ratio"]
    assert big == pytest.approx(1.0, abs=0.02)
    assert small < big  # few answers understate the spread (the perfect_panel reference)
    collapsed = np.array([0.0, 0.97, 0.03, 0.0])
    assert sd_ratio(FOUR, collapsed, human) < 0.25


def test_scores_carry_sd_ratio_for_ordinal_questions_only(tmp_path: Path) -> None:
    survey = read_long_csv(write_survey(tmp_path / "s.csv"))
    model: dict[tuple[str, str, tuple[str, ...]], list[float]] = {
        ("SAFE", "SEX", ("Female",)): [0, 6, 0, 0, 0], ("WHY", "SEX", ("Female",)): [2, 2, 2, 0]}
    table = score_survey(survey, model, seed=0)
    got = table.set_index(["question_id", "attribute", "group", "source"])["sd_ratio"]
    assert got[("SAFE", "SEX", "Female", "model")] == 0.0  # every persona one answer
    assert math.isnan(got[("WHY", "SEX", "Female", "model")])  # nominal
    assert got[("SAFE", "SEX", "Female", "human_resample")] == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow
def test_calibrate_stores_and_prints_the_sd_ratio(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db, n=30)
    result = invoke("calibrate", write_survey(tmp_path / "s.csv"), "--population", population,
                    "--n", 5, "--no-persona-n", 1, "--db", db, "-v")  # -v: every table
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dispersion (simulated"))
    assert lines[start + 1].split() == ["attribute", "model", "entropy", "model", "sd",
                                        "perfect_panel", "sd"]
    assert any(line.startswith("SD ratio per ordinal question, lowest first") for line in lines)
    stored = rows(db, "SELECT question_id, attribute, grp, counts, sd_ratio FROM "
                      "calibration_scores WHERE source = 'model' AND counts IS NOT NULL")
    checked = 0
    for qid, attribute, grp, counts, ratio in stored:
        text, options, ordinal = QUESTIONS[qid]
        if ordinal is None or len(set(ordinal)) == 1:
            assert ratio is None
            continue
        k = len(ordinal)
        sim = np.asarray(json.loads(counts))[:k]
        human = np.asarray(COUNTS[(attribute, grp)][qid][:k], dtype=float)
        if sim.sum() == 0:
            continue
        assert ratio == pytest.approx(sd_ratio(Question(qid, text, tuple(options), tuple(ordinal)),
                                               sim / sim.sum(), human / human.sum()))
        checked += 1
    assert checked >= 4
    overall = rows(db, "SELECT sd_ratio FROM calibration_summary WHERE source = 'model' AND "
                       "level = 'overall'")
    assert overall[0][0] is not None
