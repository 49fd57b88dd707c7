"""``personahub calibrate --elicit``: a group's stated answer shares (``distribution``) and the
same shown the group's answers to K other questions (``few-shot:K``), each scored as a model row
of its own beside the one-sample-per-persona row and the baselines, with the calls per method
counted; offline and over the loopback server. Fixtures: ``tests/pipelines/calibrate_fixtures.py``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

import personahub
from personahub.analysis.survey import Question, Survey
from personahub.core.contracts import StructuredResult
from personahub.models.fake_server.server import running_server
from personahub.pipelines.calibrate import Ask, CalibrationAsker
from personahub.pipelines.elicit import check_elicit, parse
from personahub.pipelines.elicit.distribution import check_shares, distribution_schema, shares_of
from personahub.pipelines.elicit.few_shot import shots_text
from personahub.pipelines.prompts.calibration import distribution_messages
from tests.cli_helpers import invoke, usage_error
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import (
    COUNTS,
    FIVE_QUESTIONS,
    QUESTIONS,
    make_population,
    write_survey,
)

GROUPS = (("SEX", "Female"), ("SEX", "Male"), ("POLPARTY", "Democrat"), ("POLPARTY", "Republican"))


@pytest.fixture
def hub(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    return {"db": db, "survey": write_survey(tmp_path / "survey.csv"), "population": population}


def _expected(qid: str, human: list[float], model: np.ndarray) -> float:
    """Representativeness computed here with scipy (refusals left out)."""
    ordinal = FIVE_QUESTIONS[qid][2]
    k = len(ordinal) if ordinal else len(FIVE_QUESTIONS[qid][1]) - 1
    h, m = np.asarray(human[:k], float), np.asarray(model[:k], float)
    if ordinal is None:
        return 1 - float(jensenshannon(h / h.sum(), m / m.sum(), base=2))
    return 1 - wasserstein_distance(ordinal, ordinal, h, m) / (max(ordinal) - min(ordinal))


def held_out(method: str, questions: tuple[str, ...], seed: int) -> tuple[str, ...]:
    return parse(method).held_out(questions, seed)


def _stated(db: Path, job_id: str) -> list[tuple[str, str, str, str]]:
    return rows(db, "SELECT steering, question_id, respondent, reason FROM calibration_answers "
                    "WHERE job_id = ? AND persona_id IS NULL AND steering <> 'none' ORDER BY ALL",
                [job_id])


def _check_rows(db: Path, job: Any, methods: tuple[str, ...], seed: int) -> None:
    """Every group-level answer is normalised shares, scored exactly as a panel's counts, and
    a few-shot row holds out its shown questions."""
    stated = _stated(db, job.job_id)
    scores = job.scores()
    for method in methods:
        shown = set(held_out(method, tuple(QUESTIONS), seed))
        own = [r for r in stated if r[0] == method]
        assert {(q, key) for _, q, key, _ in own} == {
            (q, f"{a}={g}") for q in QUESTIONS if q not in shown for a, g in GROUPS}
        model = scores[(scores["source"] == "model") & (scores["steering"] == method)]
        assert set(model["question_id"]) == set(QUESTIONS) - shown
        for _, qid, key, reason in own:
            shares = json.loads(reason)
            assert list(shares) == QUESTIONS[qid][1]  # every option, refusal offered
            assert sum(shares.values()) == pytest.approx(1.0)
            attribute, group = key.split("=")
            (row,) = model[(model["question_id"] == qid) & (model["attribute"] == attribute)
                           & (model["group"] == group)].itertuples(index=False)
            vector = np.array(list(shares.values()))
            assert json.loads(row.counts) == pytest.approx(vector.tolist())
            assert row.representativeness == pytest.approx(
                _expected(qid, COUNTS[(attribute, group)][qid], vector))
            assert row.sim_failed == 0


@pytest.mark.slow
def test_distribution_and_few_shot_are_rows_of_their_own_offline(hub: dict[str, Any]) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=6,
                               no_persona_n=2, seed=5,
                               elicit=("sample", "distribution", "few-shot:1"))
    table = job.per_attribute()
    assert list(table.columns)[:6] == ["model[persona]", "model[distribution]",
                                       "model[few-shot:1]", "uniform", "human_overall",
                                       "no_persona"]
    assert list(table.index) == ["overall", "SEX", "POLPARTY", "population by SEX",
                                 "population by POLPARTY"]
    _check_rows(db, job, ("distribution", "few-shot:1"), seed=5)
    people = {p for (p,) in rows(db, "SELECT DISTINCT persona_id FROM calibration_panels "
                                     "WHERE job_id = ?", [job.job_id])}
    summary = job.summary
    # one call per persona and question for sample; one per question x group for the others
    assert summary.calls == {"sample": 3 * len(people), "distribution": 3 * 4,
                             "few-shot:1": 2 * 4, "no_persona": 3 * 2}
    assert summary.cells == {"sample": 12, "distribution": 12, "few-shot:1": 8}
    assert summary.asks == sum(summary.calls.values()) == summary.answered
    # a stated distribution has no panel: no effective panel size, no ceiling at its size
    assert set(job.panel_sizes()["who"]) == {"model[persona]"}
    assert "perfect_panel[distribution]" not in table.columns


@pytest.mark.slow
def test_elicit_without_sample_asks_no_persona_answers(hub: dict[str, Any]) -> None:
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"], n=4,
                               no_persona_n=1, elicit=("distribution",))
    kinds = rows(hub["db"], "SELECT steering, count(*) FROM calibration_answers WHERE job_id = ? "
                            "GROUP BY ALL ORDER BY ALL", [job.job_id])
    assert kinds == [("distribution", 12), ("none", 3)]
    table = job.per_attribute()
    assert list(table.columns)[:4] == ["model", "uniform", "human_overall", "no_persona"]
    assert np.isfinite(table.loc["overall", "model"])


@pytest.mark.slow
def test_the_cli_prints_calls_per_method_and_refuses_bad_values(hub: dict[str, Any]) -> None:
    db, survey, population = hub["db"], hub["survey"], hub["population"]
    result = invoke("calibrate", survey, "--population", population, "--n", 3, "--db", db,
                    "--no-persona-n", 1, "--elicit", "sample", "--elicit", "few-shot:2", "-v")
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("calls per method")]
    assert "few-shot:2 4, one per question x group" in line  # 1 question scored x 4 groups
    assert "no_persona baseline 3" in line
    for bad in ("vibes", "few-shot", "few-shot:0", "few-shot:x", "Distribution"):
        message = usage_error(invoke("calibrate", survey, "--population", population,
                                     "--elicit", bad, "--db", db))
        assert "--elicit" in message and "few-shot:K" in message
    twice = usage_error(invoke("calibrate", survey, "--population", population, "--elicit",
                               "distribution", "--elicit", "distribution", "--db", db))
    assert "twice" in twice
    # K must leave a question to score: three questions, K = 3
    too_many = usage_error(invoke("calibrate", survey, "--population", population, "--elicit",
                                  "few-shot:3", "--db", db))
    assert "few-shot:3" in too_many and "3 questions" in too_many


def test_the_few_shot_prompt_shows_the_groups_answers_to_the_held_out_questions() -> None:
    survey = Survey({"A": Question("A", "Is A good?", ("Yes", "No", "Refused"), (1.0, 2.0)),
                     "B": Question("B", "Is B good?", ("Yes", "No"), (1.0, 2.0))},
                    {"A": {("SEX", ("Female",)): (3.0, 1.0, 0.0)},
                     "B": {("SEX", ("Female",)): (1.0, 1.0)}})
    shots = shots_text(survey, ["A"], "SEX", ("Female",))
    assert shots == "Question: Is A good?\n- Yes: 75%\n- No: 25%\n- Refused: 0%"
    assert shots_text(survey, ["A"], "SEX", ("Male",)) == ""  # no answers: nothing shown
    text = distribution_messages("Is B good?", ("Yes", "No"), group="- Sex: Female",
                                 shots=shots)[1].content
    assert isinstance(text, str)
    assert text.index("Is A good?") < text.index("## Question\nIs B good?")
    assert held_out("few-shot:1", ("A", "B"), 0) == held_out("few-shot:1", ("B", "A"), 0)
    assert held_out("distribution", ("A", "B"), 0) == ()


def test_stated_shares_are_validated_and_normalised() -> None:
    schema = distribution_schema(("Very safe", "Not safe", "Refused"))
    assert set(schema.model_json_schema()["properties"]) == {"Very safe", "Not safe", "Refused"}
    value = schema.model_validate({"Very safe": 60, "Not safe": 30, "Refused": 10})
    assert shares_of(value) == pytest.approx({"Very safe": 0.6, "Not safe": 0.3, "Refused": 0.1})
    assert check_shares(value) is None
    zero = schema.model_validate({"Very safe": 0, "Not safe": 0, "Refused": 0})
    assert shares_of(zero) is None and check_shares(zero) == "the shares sum to 0"
    with pytest.raises(ValueError):
        schema.model_validate({"Very safe": -1, "Not safe": 30, "Refused": 10})
    with pytest.raises(ValueError):
        schema.model_validate({"Very safe": 60, "Not safe": 30})  # an option missing
    assert check_elicit(["few-shot:12", "sample"]) == ("few-shot:12", "sample")


def test_a_distribution_without_shares_is_a_failed_call() -> None:
    class Refusing:  # the seam after its retries: no valid answer
        async def structured(self, schema: Any, messages: Any, **kwargs: Any) -> Any:
            assert kwargs["purpose"] == "survey:calibrate-distribution"
            assert kwargs["check"] is check_shares
            return StructuredResult(None, [])

    asker = CalibrationAsker({"A": ("Is A good?", ("Yes", "No"))}, {}, {"SEX=Female": "- Sex"})
    (answer,) = asyncio.run(asker.run_batch([Ask("A", "distribution", "SEX=Female", None)],
                                            Refusing()))  # type: ignore[arg-type]
    assert answer.option is None and answer.reason is None


@pytest.mark.slow
def test_distribution_and_few_shot_over_the_loopback_server(hub: dict[str, Any]) -> None:
    db = hub["db"]
    with running_server(seed=3) as server:
        job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=3,
                                   no_persona_n=1, seed=2, llm=server.base_url + "?model=offline",
                                   elicit=("distribution", "few-shot:1"))
    assert not job.summary.offline
    assert job.summary.failed == 0
    assert job.summary.calls == {"distribution": 12, "few-shot:1": 8, "no_persona": 3}
    _check_rows(db, job, ("distribution", "few-shot:1"), seed=2)
    purposes = rows(db, "SELECT DISTINCT purpose FROM llm_calls WHERE job_id = ? ORDER BY 1",
                    [job.job_id])
    assert purposes == [("survey:calibrate",), ("survey:calibrate-distribution",),
                        ("survey:calibrate-few-shot:1",)]


@pytest.mark.slow
def test_an_interrupted_elicit_calibration_resumes_to_the_uninterrupted_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personahub import runtime
    from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig
    from tests.pipelines.test_calibrate import _interrupted

    survey = write_survey(tmp_path / "survey.csv")

    def config(population: str) -> CalibrateConfig:
        return CalibrateConfig(survey=str(survey), population=population, n=4, seed=2,
                               no_persona_n=1, batch_size=5,
                               elicit=("few-shot:1", "distribution", "sample"))

    whole_db, cut_db = tmp_path / "whole.duckdb", tmp_path / "cut.duckdb"
    whole = runtime.run(CALIBRATION, config(make_population(tmp_path, whole_db)), whole_db)
    job_id = _interrupted(cut_db, config(make_population(tmp_path, cut_db)), monkeypatch)
    handle = personahub.calibrate(resume=job_id, db=cut_db)
    assert handle.summary.skipped_done == 5
    assert handle.summary.calls == whole.summary.calls
    answer_sql = ("SELECT question_id, steering, respondent, answer, reason "
                  "FROM calibration_answers WHERE job_id = ? ORDER BY ALL")
    assert rows(cut_db, answer_sql, [job_id]) == rows(whole_db, answer_sql, [whole.job_id])
    score_sql = ("SELECT question_id, attribute, grp, source, steering, representativeness "
                 "FROM calibration_scores WHERE job_id = ? ORDER BY ALL")
    assert rows(cut_db, score_sql, [job_id]) == rows(whole_db, score_sql, [whole.job_id])


@pytest.mark.slow
def test_the_report_draws_each_method(hub: dict[str, Any], tmp_path: Path) -> None:
    import duckdb

    from personahub.analysis.calibration_report import group_bars

    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=3,
                               no_persona_n=1, elicit=("sample", "distribution"))
    out = tmp_path / "report"
    result = invoke("report", "--calibration", job.job_id, "--db", db, "--out", out)
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        bars = group_bars(con, job.job_id)
    finally:
        con.close()
    assert list(bars.columns)[:2] == ["model[persona]", "model[distribution]"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "model[distribution]" in page


@pytest.mark.slow
def test_invalid_stated_shares_are_failed_calls_counted_per_method(
        hub: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from personahub.pipelines.calibrate import CALIBRATION
    from personahub.pipelines.elicit import distribution

    def no_shares_for_why(value: Any) -> dict[str, float] | None:  # WHY's options only
        shares = shares_of(value)
        return None if shares is not None and "Exercise" in shares else shares

    monkeypatch.setattr(distribution, "shares_of", no_shares_for_why)
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"], n=3,
                               no_persona_n=1, elicit=("distribution",), max_failed_share=1.0)
    summary = job.summary
    assert summary.calls["distribution"] == 12 and summary.answered_calls["distribution"] == 8
    assert summary.failed == 4
    model = job.scores().query("source == 'model' and attribute != '(population)'")
    assert set(model.loc[model["question_id"] == "WHY", "sim_failed"]) == {1}
    assert set(model.loc[model["question_id"] != "WHY", "sim_failed"]) == {0}
    (line,) = [x for x in CALIBRATION.report(summary, hub["db"]) if x.startswith("calls per")]
    assert "distribution 12, one per question x group (4 failed)" in line


def test_distribution_panel_shows_the_groups_persona_texts_and_only_there() -> None:
    seen: dict[str, str] = {}

    class Recording:  # keeps each call's prompt; answers even shares
        async def structured(self, schema: Any, messages: Any, **kwargs: Any) -> Any:
            seen[kwargs["purpose"]] = str(messages[1].content)
            return StructuredResult(schema.model_validate({"Yes": 50, "No": 50}), [])

    asker = CalibrationAsker({"A": ("Is A good?", ("Yes", "No"))}, {}, {"SEX=Female": "- Sex"},
                             texts={"distribution:panel": {
                                 "SEX=Female": "- a beekeeper in Ohio\n- a retired nurse"}})
    answers = asyncio.run(asker.run_batch(
        [Ask("A", "distribution:panel", "SEX=Female", None),
         Ask("A", "distribution", "SEX=Female", None)], Recording()))  # type: ignore[arg-type]
    assert [a.reason for a in answers] == [json.dumps({"Yes": 0.5, "No": 0.5})] * 2
    shown = seen["survey:calibrate-distribution:panel"]
    assert "## Some people in this group\n- a beekeeper in Ohio\n- a retired nurse" in shown
    assert "beekeeper" not in seen["survey:calibrate-distribution"]


@pytest.mark.slow
def test_distribution_panel_is_a_row_of_its_own_with_one_call_per_group(
        hub: dict[str, Any]) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=4,
                               no_persona_n=1, seed=7,
                               elicit=("distribution", "distribution:panel"))
    _check_rows(db, job, ("distribution", "distribution:panel"), seed=7)
    assert job.summary.calls == {"distribution": 12, "distribution:panel": 3 * 4,
                                 "no_persona": 3}
    # the same questions and groups, and the panel's persona texts on top
    tokens = dict(rows(db, "SELECT purpose, min(tokens_in) FROM llm_calls WHERE job_id = ? "
                           "AND purpose LIKE 'survey:calibrate-distribution%' GROUP BY 1",
                       [job.job_id]))
    assert tokens["survey:calibrate-distribution:panel"] > tokens["survey:calibrate-distribution"]
