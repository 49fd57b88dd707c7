"""calibrate --fit: seeded folds stored with the job, a choice made on the training folds alone,
held-out scores with intervals beside the baselines, and a stored survey profile; offline, on
a self-made OpinionQA-format wave."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.analysis.survey_read import read_survey
from personahub.pipelines.calibrate_data import select
from personahub.pipelines.calibrate_fit import (
    HELD_OUT,
    candidates,
    fold_split,
    held_out_questions,
    training_questions,
)
from personahub.pipelines.elicit import parse_all
from tests.cli_helpers import invoke, usage_error
from tests.pipelines.calibrate_fixtures import make_population
from tests.pipelines.fit_fixtures import write_wave

METHODS = ("--elicit", "distribution", "--elicit", "logprobs", "--elicit", "few-shot:2",
           "--elicit", "sample")
STEERINGS = ("--steering", "persona", "--steering", "attributes")


def _fit(tmp: Path, *extra: object) -> tuple[Path, str, str]:
    """A fitted calibration of the wave: the database, the job id and the console."""
    db = tmp / "fit.duckdb"
    wave = write_wave(tmp / "wave")
    population = make_population(tmp, db, n=80)
    result = invoke("calibrate", wave, "--population", population, "--n", 8, "--fit", *METHODS,
                    *STEERINGS, "--db", db, "-v", *extra)  # -v: every table
    assert result.exit_code == 0, result.output
    found = re.search(r"^calibration (calib-\S+): ", result.stdout, re.MULTILINE)
    assert found, result.stdout
    job_id = found.group(1)
    return db, job_id, result.stdout


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fit")
    db, job_id, console = _fit(tmp)
    return {"db": db, "job": job_id, "console": console, "tmp": tmp}


def _rows(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_folds_are_seeded_balanced_and_held_out_is_fold_zero() -> None:
    questions = [f"Q{i}" for i in range(12)]
    folds = fold_split(questions, 3, 7)
    assert folds == fold_split(list(reversed(questions)), 3, 7)  # the order given does not matter
    assert folds != fold_split(questions, 3, 8)  # the seed does
    assert sorted(list(folds.values()).count(f) for f in range(3)) == [4, 4, 4]
    assert set(held_out_questions(folds)) == {q for q, f in folds.items() if f == HELD_OUT}
    assert set(training_questions(folds)).isdisjoint(held_out_questions(folds))


def test_the_plan_limit_counts_the_asks_the_fit_makes(tmp_path: Path) -> None:
    from personahub.pipelines.calibrate_fit import fit_ask_count, fit_asks
    from personahub.pipelines.elicit.base import QuestionPlan

    survey = read_survey(write_wave(tmp_path / "wave"))
    selected = select(survey)
    folds = fold_split(selected.questions, 3, 0)
    configs = candidates(parse_all(["distribution", "few-shot:2", "sample"]),
                         ["persona", "attributes"], survey, selected.groups, folds, 0)
    plans = [QuestionPlan(q, (), tuple(f"p{j}" for j in range(i % 4 + 1)), ())
             for i, q in enumerate(selected.questions)]
    asks = fit_asks(plans, configs, folds, 3)
    assert fit_ask_count(plans, configs, folds, 3) == len(asks)
    assert sum(a.method == "none" for a in asks) == 3 * len(held_out_questions(folds))
    assert not any(a.question_id in {e.question_id for e in c.examples}
                   for c in configs for a in asks if a.method == c.label)


@pytest.mark.slow
def test_the_split_is_stored_with_the_job(fitted: dict[str, Any]) -> None:
    stored = dict(_rows(fitted["db"], "SELECT question_id, fold FROM calibration_folds "
                                      "WHERE job_id = ?", [fitted["job"]]))
    questions = [q for (q,) in _rows(fitted["db"], "SELECT question_id FROM calibration_questions "
                                                   "WHERE job_id = ?", [fitted["job"]])]
    assert stored == fold_split(questions, 3, 0)


@pytest.mark.slow
def test_the_default_console_says_the_choice_and_only_held_out_scores(fitted: dict[str, Any]
                                                                       ) -> None:
    result = invoke("resume", fitted["job"], "--db", fitted["db"])  # finished: its console again
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())  # lines wrapped to 100 columns
    assert "scored on the held-out fold (4 questions the fit never saw: " in flat
    assert "held-out representativeness (95% interval over the held-out questions): profile 0." \
        in flat
    assert all(len(line) <= 100 for line in result.stdout.splitlines())


@pytest.mark.slow
def test_console_prints_the_choice_and_held_out_scores_with_intervals(fitted: dict[str, Any]
                                                                      ) -> None:
    console = fitted["console"]
    held = sorted(q for q, f in fold_split([f"Q{i + 1:02d}_W99" for i in range(12)], 3, 0).items()
                  if f == HELD_OUT)
    assert f"scored on the held-out fold ({len(held)} questions the fit never saw: " \
           f"{', '.join(held)})" in console
    assert "configurations tried (training score: " in console and "<- chosen" in console
    for label in ("distribution/persona", "logprobs/attributes", "few-shot:2#1/persona",
                  "sample/attributes"):
        assert label in console
    assert f"profile {fitted['job']}: " in console
    line = next(x for x in console.splitlines()
                if x.startswith("held-out representativeness (95% interval"))
    for who in ("profile", "uniform", "no_persona", "human_overall"):
        assert f"{who} 0." in line and "[" in line
    assert next(x for x in console.splitlines() if x.startswith("held out: the fitted profile"))
    table = console.split("held-out representativeness (1 = as people answer)", 1)[1]
    header = table.splitlines()[1].split()
    assert header == ["attribute", "model", "uniform", "human_overall", "no_persona",
                      "human_resample"]  # expected shares: no ceiling at a panel's size
    assert "ceiling (human_resample) 0." in line
    assert "ranking (per question x group" in console
    assert f"personahub run SCENARIO --survey-profile {fitted['job']}" in console


@pytest.mark.slow
def test_the_held_out_table_holds_only_held_out_questions(fitted: dict[str, Any]) -> None:
    held = {q for (q,) in _rows(fitted["db"], "SELECT question_id FROM calibration_folds WHERE "
                                              "job_id = ? AND fold = 0", [fitted["job"]])}
    scored = {q for (q,) in _rows(fitted["db"], "SELECT DISTINCT question_id FROM "
                                                "calibration_scores WHERE job_id = ?",
                                  [fitted["job"]])}
    assert held and scored == held
    steering = {s for (s,) in _rows(fitted["db"], "SELECT DISTINCT steering FROM "
                                                  "calibration_scores WHERE job_id = ? AND "
                                                  "source = 'model'", [fitted["job"]])}
    assert steering == {"profile"}


@pytest.mark.slow
def test_the_profile_is_stored_and_listed(fitted: dict[str, Any]) -> None:
    import personahub

    cal = personahub.Calibration(job_id=fitted["job"], db=fitted["db"])
    profile = cal.profile()
    assert profile is not None
    chosen = [c for c in profile["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["method"] == profile["method"]
    assert chosen[0]["steering"] == profile["steering"]
    assert profile["temperature"] == pytest.approx(chosen[0]["temperature"])
    assert chosen[0]["training"] == max(c["training"] for c in profile["candidates"])
    assert profile["model"] == "offline"
    assert len(profile["candidates"]) == 2 * (3 + 2)  # 2 steerings x (3 methods + 2 shot sets)
    listed = json.loads(invoke("calibrations", "--db", fitted["db"], "--json").stdout)
    assert listed[0]["profile"]["method"] == profile["method"]
    table = invoke("calibrations", "--db", fitted["db"]).stdout
    assert "survey profile" in table.replace("\n", " ") or "survey" in table


@pytest.mark.slow
def test_few_shot_examples_come_from_training_folds_only(fitted: dict[str, Any]) -> None:
    survey = read_survey(fitted["tmp"] / "wave")
    selected = select(survey)
    folds = fold_split(selected.questions, 3, 0)
    configs = candidates(parse_all(["few-shot:2"]), ["persona"], survey, selected.groups,
                         folds, 0)
    training = set(training_questions(folds))
    assert len(configs) == 2 and configs[0].examples != configs[1].examples
    for config in configs:
        assert {e.question_id for e in config.examples} <= training


def _leak_into_held_out(db: Path, job_id: str, chosen: str) -> None:
    """Make the held-out fold say the opposite of the training folds: every other configuration
    states the people's own answers there, the chosen one all its mass on the last substantive
    option."""
    held = [q for (q,) in _rows(db, "SELECT question_id FROM calibration_folds WHERE job_id = ? "
                                    "AND fold = 0", [job_id])]
    with duckdb.connect(str(db)) as con:
        for qid in held:
            options, ordinal = (json.loads(v) for v in con.execute(
                "SELECT options, ordinal FROM calibration_questions WHERE job_id = ? AND "
                "question_id = ?", [job_id, qid]).fetchall()[0])
            overall = json.loads(con.execute(
                "SELECT counts FROM calibration_human WHERE job_id = ? AND question_id = ? AND "
                "attribute = 'Overall'", [job_id, qid]).fetchall()[0][0])
            people = json.dumps({o: c / sum(overall) for o, c in zip(options, overall,
                                                                      strict=True)})
            junk = json.dumps({o: float(i == len(ordinal) - 1) for i, o in enumerate(options)})
            con.execute("UPDATE calibration_answers SET reason = CASE WHEN steering = ? THEN ? "
                        "ELSE ? END WHERE job_id = ? AND question_id = ? AND persona_id IS NOT "
                        "NULL", [chosen, junk, people, job_id, qid])


@pytest.mark.slow
def test_a_held_out_score_is_computed_only_on_questions_the_fit_never_saw(tmp_path: Path) -> None:
    """The held-out fold is rewritten after the fit: every configuration but the chosen one
    answers it as people do, the chosen one as badly as it can. Scored again (a finished job's
    resume scores it again), the choice, the temperature and every training score stay as they
    were, and only the held-out score moves: the fit never read that fold."""
    import personahub

    db, job_id, _ = _fit(tmp_path, "--elicit", "few-shot:1")
    cal = personahub.Calibration(job_id=job_id, db=db)
    before, held_before = cal.profile(), cal.per_attribute().loc["overall", "model"]
    assert before is not None
    chosen = next(c["label"] for c in before["candidates"] if c["chosen"])
    _leak_into_held_out(db, job_id, chosen)
    result = invoke("calibrate", "--resume", job_id, "--db", db)
    assert result.exit_code == 0, result.output
    after = cal.profile()
    assert after is not None
    assert {k: after[k] for k in ("method", "steering", "temperature", "examples")} == \
           {k: before[k] for k in ("method", "steering", "temperature", "examples")}
    assert after["candidates"] == before["candidates"]
    assert cal.per_attribute().loc["overall", "model"] < held_before - 0.05


@pytest.mark.parametrize(("extra", "says"), [
    (("--folds", "4"), "--folds deals the questions for --fit"),
    (("--fit", "--archetypes", "2"), "--archetypes"),
    (("--fit", "--dispersion", "temper"), "--dispersion"),
    (("--fit", "--elicit", "distribution:panel"), "distribution:panel cannot answer for one"),
    (("--fit", "--folds", "13"), "--folds 13: the calibration asks 12 questions"),
    (("--fit", "--elicit", "few-shot:7"), "few-shot:7 shows 7 of the 8 training questions"),
    (("--fit", "--folds", "2"), "--folds"),
])
def test_a_fit_that_cannot_be_made_is_one_line_and_writes_nothing(
        tmp_path: Path, extra: tuple[str, ...], says: str) -> None:
    db = tmp_path / "refused.duckdb"
    wave = write_wave(tmp_path / "wave")
    population = make_population(tmp_path, db, n=20)
    before = _rows(db, "SELECT count(*) FROM jobs")[0][0]
    line = usage_error(invoke("calibrate", wave, "--population", population, "--n", 2, *extra,
                              "--db", db))
    assert says in line, line
    assert _rows(db, "SELECT count(*) FROM jobs")[0][0] == before
