"""Elicitation methods as a registry (``personahub/pipelines/elicit/``): a new method is one module
and one register line, and calibrate asks, stores, scores and lists it; specs parse to one
method each; a fit reads and sets a method's tunable parameters; every method answers for one
persona at run time. Fixtures: ``tests/pipelines/calibrate_fixtures.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer.main

import personahub
from personahub.analysis.survey import Question, Survey
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import UsageError
from personahub.models.client import LLMClient, LLMSettings
from personahub.pipelines import elicit
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    Respondent,
    Stored,
    group_key,
)
from personahub.pipelines.elicit.distribution import Distribution
from personahub.pipelines.elicit.few_shot import FewShot
from personahub.pipelines.elicit.logprobs import Logprobs
from personahub.pipelines.elicit.temperature import scaled
from tests.cli_helpers import invoke, usage_error
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import QUESTIONS, make_population, write_survey

GROUPS = (("SEX", "Female"), ("SEX", "Male"), ("POLPARTY", "Democrat"), ("POLPARTY", "Republican"))


# --- a new method: this class is its whole module ---------------------------------------------
@dataclass(frozen=True)
class Modal(ElicitMethod):
    """Ask once per question x group for the group's most common answer; all the share on it."""

    NAME = "modal"
    SYNTAX = "modal"
    HELP = "the group's most common answer, one call per question x group"

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        from langchain_core.messages import HumanMessage, SystemMessage

        from personahub.tasks.survey import SURVEY_MAX_TOKENS, survey_schema

        text, options = inputs.questions[ask.question_id]
        messages = [SystemMessage("Name the answer most people of this group gave."),
                    HumanMessage(f"{inputs.groups[ask.respondent]}\n\n{text}")]
        result = await caller.structured(survey_schema("choice", options), messages,
                                         purpose=f"survey:calibrate-{self.label}",
                                         max_tokens=SURVEY_MAX_TOKENS)
        if result.value is None:
            return Answer(ask, None, None, result)
        chosen = str(result.value.model_dump()["answer"])
        return Answer(ask, chosen, json.dumps({o: float(o == chosen) for o in options}), result)


@pytest.fixture
def modal() -> Iterator[None]:
    elicit.register(Modal)  # the one registry line
    yield
    elicit.unregister(Modal.NAME)


@pytest.mark.slow
def test_a_new_method_is_one_module_and_one_registry_line(modal: None, tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    survey = write_survey(tmp_path / "survey.csv")
    assert "modal (the group's most common answer" in elicit.described()
    assert "modal" in usage_error(invoke("calibrate", survey, "--population", population,
                                         "--elicit", "vibes", "--db", db))
    result = invoke("calibrate", survey, "--population", population, "--n", 3, "--seed", 2,
                    "--no-persona-n", 1, "--elicit", "sample", "--elicit", "modal", "--db", db,
                    "-v")  # -v: every table, the calls per method among them
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("calls per method")]
    assert "modal 12, one per question x group" in line  # 3 questions x 4 groups
    job = personahub.Calibration(job_id=rows(db, "SELECT job_id FROM calibration_jobs")[0][0],
                                 db=db)
    assert list(job.per_attribute().columns)[:2] == ["model[persona]", "model[modal]"]
    stated = rows(db, "SELECT question_id, respondent, answer, reason FROM calibration_answers "
                      "WHERE steering = 'modal' ORDER BY ALL")
    assert {(q, key) for q, key, _, _ in stated} == {(q, group_key(a, g)) for q in QUESTIONS
                                                      for a, g in GROUPS}
    scores = job.scores()
    model = scores[(scores["source"] == "model") & (scores["steering"] == "modal")
                   & (scores["attribute"] != "(population)")]
    for qid, key, answer, reason in stated:  # its answers, scored as its distribution
        attribute, group = key.split("=")
        (row,) = model[(model["question_id"] == qid) & (model["attribute"] == attribute)
                       & (model["group"] == group)].itertuples(index=False)
        options = QUESTIONS[qid][1]
        assert json.loads(row.counts) == [float(o == answer) for o in options]
        assert json.loads(reason)[answer] == 1.0 and row.sim_failed == 0
    # no panel: no effective panel size, no ceiling at a panel's size
    assert set(job.panel_sizes()["who"]) == {"model[persona]"}
    assert "perfect_panel[modal]" not in job.per_attribute().columns


# --- specs, usage and help ---------------------------------------------------------------------
def test_specs_parse_to_one_method_each_and_bad_ones_are_usage_errors() -> None:
    assert [m.SYNTAX for m in elicit.methods()] == ["sample", "distribution",
                                                   "distribution:panel", "logprobs", "few-shot:K"]
    assert elicit.usage() == ("use sample, distribution, distribution:panel, logprobs or "
                              "few-shot:K (K a whole number from 1)")
    assert [elicit.parse(s).label for s in ("sample", " distribution ", "distribution:panel",
                                            "logprobs", "few-shot:3", "few-shot:03")] == [
        "sample", "distribution", "distribution:panel", "logprobs", "few-shot:3", "few-shot:3"]
    assert elicit.parse("few-shot:3") == FewShot(3)
    for bad in ("vibes", "few-shot", "few-shot:", "few-shot:0", "few-shot:x", "few-shot:²",
                "distribution:x", "sample:2", "Distribution", "archetypes:3"):
        with pytest.raises(UsageError, match="^--elicit .*few-shot:K"):
            elicit.parse(bad)
    # one method, two spellings: one row, given twice
    with pytest.raises(UsageError, match="twice"):
        elicit.check_elicit(["few-shot:2", "few-shot:02"])
    assert elicit.check_elicit([" sample", "few-shot:02"]) == ("sample", "few-shot:2")
    # rows a stored table holds: a group-level method's has no panel; a steering's or an
    # archetype row's are not a registered method's
    assert [elicit.stated_row(r) for r in ("distribution", "few-shot:2", "logprobs", "sample",
                                           "persona", "persona:tempered", "archetypes:3")] == [
        True, True, True, False, False, False, False]


def test_the_help_of_elicit_is_built_from_the_registry() -> None:
    from personahub.cli.app import app

    command = typer.main.get_command(app).commands["calibrate"]  # type: ignore[attr-defined]
    (option,) = [p for p in command.params if p.name == "elicit"]
    assert option.help == ("How answers are elicited, each scored as a row of its own: "
                           f"{elicit.described()}; repeat to compare.")
    for method in elicit.methods():
        assert f"{method.SYNTAX} ({method.HELP})" in option.help


# --- what a fit tunes --------------------------------------------------------------------------
def test_a_fit_reads_and_sets_a_methods_tunable_parameters_within_bounds() -> None:
    assert FewShot(2).params() == {"k": 2}
    assert FewShot(2).tuned(k=5).label == "few-shot:5"
    assert Logprobs().params() == {"temperature": None}  # fitted by the job
    assert Logprobs().tuned(temperature=2.5).params() == {"temperature": 2.5}
    assert Distribution().tunables == () and Distribution().params() == {}
    for method, values, message in (
            (FewShot(2), {"k": 0}, "outside"), (FewShot(2), {"k": 1.5}, "whole number"),
            (FewShot(2), {"k": None}, "needs a value"),
            (Logprobs(), {"temperature": 1e6}, "outside"),
            (Logprobs(), {"temperature": float("nan")}, "outside"),
            (Distribution(), {"temperature": 1.0}, "no tunable parameter")):
        with pytest.raises(UsageError, match=message):
            method.tuned(**values)


def test_a_set_temperature_scales_every_question_and_holds_none_out() -> None:
    questions = ("A", "B", "C", "D", "E")
    survey = Survey({q: Question(q, f"{q}?", ("Yes", "No"), (1.0, 2.0)) for q in questions},
                    {q: {("SEX", ("Female",)): (3.0, 1.0)} for q in questions})
    raw = {(q, "SEX", "Female"): np.array([0.9, 0.1]) for q in questions}
    stored = Stored(survey, questions, 0, {}, {"logprobs": raw}, None, "job",  # type: ignore[arg-type]
                    {})
    fitted = Logprobs()
    assert len(fitted.held_out(questions, 0)) == 3  # the job fits T on three, scores two
    assert set(fitted.distributions(stored)["logprobs"]) == {
        (q, "SEX", "Female") for q in questions if q not in fitted.held_out(questions, 0)}
    fixed = Logprobs(temperature=2.0)
    assert fixed.held_out(questions, 0) == ()
    got = fixed.distributions(stored)["logprobs"]
    assert set(got) == set(raw)
    for key, vector in got.items():
        assert vector.tolist() == pytest.approx(scaled(raw[key], 2.0).tolist())
    assert fixed.fitted(stored) == {"temperature": 2.0}


# --- one persona at run time -------------------------------------------------------------------
def test_every_method_answers_one_personas_distribution_at_run_time() -> None:
    client = LLMClient(LLMSettings(spec="offline", seed=4))
    options = ("Very safe", "Somewhat safe", "Not safe", "Refused")
    nurse = Respondent("A retired nurse who volunteers at the community garden.",
                       {"sex": "female", "party": "democrat"}, persona_id="p1",
                       context="Question: Is A good?\n- Yes: 75%\n- No: 25%")
    for method in elicit.methods():
        chosen = elicit.parse(method.SYNTAX.replace(":K", ":1"))
        reading = asyncio.run(chosen.distribution_for("How safe is your street?", options,
                                                      nurse, client, purpose="survey:run"))
        assert reading.shares is not None, chosen.label
        assert list(reading.shares) == list(options)
        assert sum(reading.shares.values()) == pytest.approx(1.0), chosen.label
        assert [r.purpose for r in reading.call.records] == ["survey:run"]
    one = asyncio.run(elicit.parse("sample").distribution_for("Q?", options, nurse, client))
    assert one.shares is not None and sorted(one.shares.values()) == [0.0, 0.0, 0.0, 1.0]
    raw = asyncio.run(Logprobs().distribution_for("Q?", options, nurse, client))
    tempered = asyncio.run(Logprobs(temperature=3.0).distribution_for("Q?", options, nurse,
                                                                      client))
    assert raw.shares is not None and tempered.shares is not None
    assert list(tempered.shares.values()) == pytest.approx(
        scaled(list(raw.shares.values()), 3.0).tolist())
    with pytest.raises(UsageError, match="few-shot:1"):  # nothing to show
        asyncio.run(FewShot(1).distribution_for("Q?", options, nurse._replace(context=""),
                                                client))
    with pytest.raises(UsageError, match="steering"):
        asyncio.run(Distribution().distribution_for("Q?", options,
                                                    nurse._replace(steering="vibes"), client))


def test_an_ask_names_the_row_it_answers_for_as_its_method() -> None:
    ask = Ask("SAFE", "few-shot:2", "SEX=Female", None)
    assert ask._fields == ("question_id", "method", "respondent", "persona_id")
    assert ask.method == "few-shot:2"
