"""Which questions a calibration scored: the survey's questions left out, counted by reason, and
each model row's question count when a method holds some out (``pipelines/calibrate_questions``).
Fixtures: self-made surveys (``tests/pipelines/calibrate_fixtures.py``, ``tests/analysis/fixtures``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import personahub
from personahub.analysis.survey import Question, Survey
from personahub.pipelines.calibrate_data import select
from personahub.pipelines.calibrate_questions import (
    left_out_lines,
    question_count_lines,
    questions_per_row,
)
from tests.cli_helpers import invoke
from tests.pipelines.calibrate_fixtures import make_population, write_survey

WAVE = Path(__file__).parents[1] / "analysis" / "fixtures" / "opinionqa_wave"


def _survey() -> Survey:
    """Six answered questions: Q4 only for a group no persona can match; one more skipped."""
    questions = {f"Q{i}": Question(f"Q{i}", f"question {i}", ("Yes", "No", "Refused"), (1, 2))
                 for i in range(6)}
    matched = {("SEX", ("Female",)): (5.0, 5.0, 1.0), ("SEX", ("Male",)): (3.0, 7.0, 0.0)}
    counts = {qid: dict(matched) for qid in questions}
    counts["Q4"] = {("SEX", ("Refused",)): (4.0, 4.0, 0.0)}
    return Survey(questions, counts, skipped={"Q9": "no answers in the data files"})


def test_every_question_left_out_is_counted_with_why() -> None:
    survey = _survey()
    chosen = select(survey, limit=3)
    assert chosen.questions == ("Q0", "Q1", "Q2")
    assert chosen.left_out == {"no answers in the data files": ("Q9",),
                               "no group with answers that a persona can match": ("Q4",),
                               "beyond --limit 3": ("Q3", "Q5")}
    named = select(survey, questions=("Q1",)).left_out
    assert named["not named by --question"] == ("Q0", "Q2", "Q3", "Q4", "Q5")
    assert select(survey, attributes=("SEX",)).left_out[
        "no group of --attribute SEX"] == ("Q4",)
    lines = left_out_lines(len(chosen.questions), chosen.left_out, shown=1)
    assert lines == ["questions: 3 of the survey's 7 asked; 4 left out:",
                     "  1 no answers in the data files: Q9",
                     "  2 beyond --limit 3: Q3 ...",
                     "  1 no group with answers that a persona can match: Q4"]
    assert left_out_lines(3, {}) == []


@pytest.mark.slow
def test_calibrate_prints_the_questions_it_left_out_and_keeps_them_on_resume(
        tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    result = invoke("calibrate", WAVE, "--population", population, "--n", 2,
                    "--no-persona-n", 1, "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("questions: 3 of the survey's 4 asked; 1 left out:")
    assert lines[at + 1] == "  1 no answers in the data files: UNASKED_W1"
    job_id = lines[0].split()[1].rstrip(":")
    again = personahub.calibrate(resume=job_id, db=db)  # the survey file is not read again
    assert again.summary.left_out == {"no answers in the data files": ("UNASKED_W1",)}


def _scores(per: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    rows = [{"question_id": q, "attribute": "SEX", "group": "Female", "source": source,
             "steering": steering, "representativeness": 0.8}
            for (source, steering), questions in per.items() for q in questions]
    rows.append({"question_id": "Q0", "attribute": "(population)", "group": "SEX",
                 "source": "model", "steering": "persona", "representativeness": 0.8})
    rows.append({"question_id": "Q9", "attribute": "SEX", "group": "Female", "source": "model",
                 "steering": "persona", "representativeness": np.nan})  # not scored
    return pd.DataFrame(rows)


def test_each_model_rows_question_count_is_printed_when_it_differs() -> None:
    all_five = [f"Q{i}" for i in range(5)]
    scores = _scores({("model", "persona"): all_five, ("model", "logprobs"): all_five[:3],
                      ("model", "few-shot:1"): all_five[1:], ("uniform", ""): all_five,
                      ("no_persona", ""): all_five})
    counts = questions_per_row(scores).set_index("who")["questions"].to_dict()
    assert counts == {"model[persona]": 5, "model[logprobs]": 3, "model[few-shot:1]": 4,
                      "uniform": 5, "no_persona": 5}
    lines = question_count_lines(questions_per_row(scores))
    assert lines[:4] == ["questions scored per row: the baselines 5",
                         "  model[persona] 5",
                         "  model[logprobs] 3 (its held-out questions fit its temperature)",
                         "  model[few-shot:1] 4 (the questions it shows are not scored)"]
    assert all(len(line) <= 100 for line in lines)
    same = _scores({("model", "persona"): all_five, ("uniform", ""): all_five})
    assert question_count_lines(questions_per_row(same)) == []


@pytest.mark.slow
def test_calibrate_prints_the_question_count_of_a_few_shot_row(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    result = invoke("calibrate", write_survey(tmp_path / "survey.csv"), "--population",
                    population, "--n", 2, "--no-persona-n", 1, "--elicit", "sample",
                    "--elicit", "few-shot:1", "--db", db, "-v")  # -v: the counts per row
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("questions scored per row: the baselines 3")
    assert lines[at + 1:at + 3] == ["  model[persona] 3",
                                    "  model[few-shot:1] 2 (the questions it shows are not "
                                    "scored)"]
    assert any(line.startswith("  model[few-shot:1] is ") and line.endswith(
        "on its 2 questions") and "uniform" in line for line in lines)
