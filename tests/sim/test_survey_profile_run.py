"""A run answers its choice surveys with a calibration's survey profile (run --survey-profile, a
Survey's profile field, experiment --survey-profile): each agent's answer drawn, seeded, from
the profile's distribution for it; archetypes' shares from the same profile; the run records
which profile answered; a profile fitted on another model is refused before anything is written.
Offline, on a self-made OpinionQA-format wave."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

import personahub
from personahub.analysis.calibration_scores import representativeness, split
from personahub.analysis.survey_read import read_survey
from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.personas.demographics import canonical
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import ScenarioError, Survey, load_scenario
from tests.cli_helpers import invoke, usage_error
from tests.fakes import FakeClient, unreachable_from_step
from tests.pipelines.calibrate_fixtures import make_population
from tests.pipelines.fit_fixtures import write_wave

SCENARIO = '''
from personahub.sim.scenario import Event, GraphGrowth, PersonaSource, Scenario, Survey
SURVEYS = {surveys!r}
SCENARIO = Scenario(
    name="profiled", personas=PersonaSource(path="hub", carve=("population={population}",)),
    graph=GraphGrowth(hops=0, acquaintances=2), steps={steps}, tasks=("instruction",),
    events={events},
    surveys=tuple(Survey(id=i, steps=({steps},), question=q, options=o{profile})
                  for i, q, o in SURVEYS),
    {extra})
'''


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fitted calibration of the wave over a population of 240, and its held-out questions."""
    tmp = tmp_path_factory.mktemp("profile")
    db = tmp / "society.duckdb"
    wave = write_wave(tmp / "wave")
    population = make_population(tmp, db, n=240)
    result = invoke("calibrate", wave, "--population", population, "--n", 12, "--fit",
                    "--elicit", "distribution", "--elicit", "logprobs",
                    "--steering", "attributes", "--steering", "persona", "--db", db)
    assert result.exit_code == 0, result.output
    found = re.search(r"^calibration (calib-\S+): ", result.stdout, re.MULTILINE)
    assert found, result.stdout
    job_id = found.group(1)
    with duckdb.connect(str(db), read_only=True) as con:
        held = [q for (q,) in con.execute("SELECT question_id FROM calibration_folds WHERE "
                                          "job_id = ? AND fold = 0 ORDER BY 1", [job_id]).fetchall()]
    survey = read_survey(wave)
    return {"db": db, "job": job_id, "population": population, "held": held, "survey": survey,
            "tmp": tmp}


def _scenario(fitted: dict[str, Any], path: Path, *, questions: list[str] | None = None,
              profile: str = "", events: str = "()", extra: str = "", steps: int = 1) -> Path:
    survey = fitted["survey"]
    asked = [(qid, survey.questions[qid].text, survey.questions[qid].options)
             for qid in (questions or fitted["held"])]
    path.write_text(SCENARIO.format(surveys=asked, population=fitted["population"],
                                    profile=profile, events=events, extra=extra, steps=steps))
    return path


def _copy(fitted: dict[str, Any], tmp_path: Path) -> Path:
    db = tmp_path / "copy.duckdb"
    shutil.copy(fitted["db"], db)
    return db


def _answers(db: Path, run_id: str) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(survey id, answer, content, persona attributes) of every survey answer of the run."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT a.survey_id, a.answer_choice, CAST(a.content AS VARCHAR), "
            "CAST(p.attributes AS VARCHAR) FROM survey_answers a JOIN personas p USING "
            "(persona_id) WHERE a.run_id = ? ORDER BY a.survey_id, a.agent_id", [run_id]).fetchall()
    return [(s, a, json.loads(c), json.loads(p)) for s, a, c, p in rows]


def _group_scores(fitted: dict[str, Any], answers: list[tuple[str, str, dict[str, Any],
                                                               dict[str, Any]]],
                  expected: bool = False) -> float:
    """The run's representativeness on its questions, as a calibration's overall: per question x
    group, the group's answer shares (or, expected, the mean of its agents' distributions)
    against its people's; the mean over each attribute's pairs, then over attributes."""
    survey = fitted["survey"]
    per_attribute: dict[str, list[float]] = {}
    for qid in {s for s, _, _, _ in answers}:
        question = survey.questions[qid]
        for attribute, labels, human in survey.groups(qid):
            conditions = survey.conditions(attribute, labels)
            mine = [(a, c) for s, a, c, p in answers if s == qid and all(
                canonical(k, p.get(k)) == v for k, v in conditions)]
            if not mine:
                continue
            if expected:
                counts = np.mean([[c["shares"][o] for o in question.options] for _, c in mine],
                                 axis=0)
            else:
                counts = np.array([sum(a == o for a, _ in mine) for o in question.options], float)
            sim, people = split(question, counts), split(question, human)
            assert sim.distribution is not None and people.distribution is not None
            per_attribute.setdefault(attribute, []).append(
                representativeness(question, sim.distribution, people.distribution))
    return float(np.mean([np.mean(v) for v in per_attribute.values()]))


@pytest.mark.slow
def test_a_run_answered_with_the_profile_reproduces_its_held_out_score(
        fitted: dict[str, Any], tmp_path: Path) -> None:
    """240 agents asked the held-out questions, each answer drawn from the profile: the groups'
    shares score the calibration's held-out representativeness, within its interval over
    questions; the agents' expected shares score it within 0.02."""
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "held.py")
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db,
                                       survey_profile=fitted["job"]))
    answers = _answers(db, summary.run_id)
    assert len(answers) == 240 * len(fitted["held"])
    cal = personahub.Calibration(job_id=fitted["job"], db=db)
    overall = cal.intervals().set_index(["attribute", "who"]).loc[("overall", "model")]
    drawn, expected = _group_scores(fitted, answers), _group_scores(fitted, answers, True)
    print(f"held out {overall['mean']:.3f} [{overall['low']:.3f}, {overall['high']:.3f}]; "
          f"run: drawn {drawn:.3f}, expected {expected:.3f}")
    assert overall["low"] <= drawn <= overall["high"]
    assert expected == pytest.approx(overall["mean"], abs=0.02)


@pytest.mark.slow
def test_the_run_records_which_profile_answered(fitted: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "one.py", questions=fitted["held"][:1])
    result = invoke("run", path, "--db", db, "--survey-profile", fitted["job"], "--preview", 0)
    assert result.exit_code == 0, result.output
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", result.output).group(1)  # type: ignore[union-attr]
    answers = _answers(db, run_id)
    assert answers and all(c["profile"] == fitted["job"] for _, _, c, _ in answers)
    options = fitted["survey"].questions[fitted["held"][0]].options
    for _, answer, content, _ in answers:
        assert set(content["shares"]) == set(options)
        assert sum(content["shares"].values()) == pytest.approx(1.0)
        assert content["reason"] == f"drawn from survey profile {fitted['job']}"
        assert answer in options
    with duckdb.connect(str(db), read_only=True) as con:
        stored, purposes = con.execute(
            "SELECT json_extract_string(config, '$.survey_profile') FROM jobs WHERE job_id = ?",
            [run_id]).fetchall()[0][0], con.execute(
            "SELECT DISTINCT purpose FROM llm_calls WHERE run_id = ? AND purpose LIKE 'survey%'",
            [run_id]).fetchall()
    assert stored == fitted["job"] and purposes == [("survey:profile",)]
    # the same run again draws the same answers: seeded by run seed, step, persona and survey
    again = run_simulation(RunConfig(scenario=load_scenario(path), db=db,
                                     survey_profile=fitted["job"]))
    assert [a for _, a, _, _ in _answers(db, again.run_id)] == [a for _, a, _, _ in answers]
    assert any(f"answered by survey profile {fitted['job']})" in line for line in again.surveys)
    report = invoke("report", "--run", run_id, "--db", db, "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert f"survey profile (each agent&#x27;s answer drawn from its distribution): " \
           f"{fitted['held'][0]}: {fitted['job']}." in page


@pytest.mark.slow
def test_a_surveys_own_profile_field_answers_it(fitted: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "field.py", questions=fitted["held"][:1],
                     profile=f", profile={fitted['job']!r}")
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db))
    assert {c["profile"] for _, _, c, _ in _answers(db, summary.run_id)} == {fitted["job"]}


@pytest.mark.slow
@pytest.mark.parametrize("elicit", ["stated", "sample:2"])
def test_archetypes_take_their_shares_from_the_profile(fitted: dict[str, Any], tmp_path: Path,
                                                       elicit: str) -> None:
    """With archetypes, one profile call per archetype (stated: its representative; sample:N: N
    members, their distributions averaged) and each member's answer drawn from the shares."""
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "arch.py", questions=fitted["held"][:2])
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db, archetypes=3,
                                       archetype_elicit=elicit, survey_profile=fitted["job"]))
    answers = _answers(db, summary.run_id)
    assert len(answers) == 2 * 240
    assert {c["profile"] for _, _, c, _ in answers} == {fitted["job"]}
    assert all("drawn from archetype" in c["reason"] and fitted["job"] in c["reason"]
               for _, _, c, _ in answers)
    with duckdb.connect(str(db), read_only=True) as con:
        calls = con.execute("SELECT purpose, count(*) FROM llm_calls WHERE run_id = ? AND "
                            "purpose LIKE 'survey%' AND attempt = 1 GROUP BY 1",
                            [summary.run_id]).fetchall()
    per_archetype = 1 if elicit == "stated" else 2
    assert calls == [("survey:profile", 2 * 3 * per_archetype)]


@pytest.mark.slow
def test_a_profile_fitted_on_another_model_is_refused_before_anything_is_written(
        fitted: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE calibration_profiles SET model = 'smollm2-135m' WHERE job_id = ?",
                    [fitted["job"]])
        before = con.execute("SELECT count(*) FROM jobs").fetchall()
    path = _scenario(fitted, tmp_path / "other.py", questions=fitted["held"][:1])
    line = usage_error(invoke("run", path, "--db", db, "--survey-profile", fitted["job"]))
    assert line == (f"error: --survey-profile {fitted['job']}: the profile was fitted on "
                    "smollm2-135m, and this run asks offline; fit one on this model (personahub "
                    "calibrate --fit --llm ...) or run on that one")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM jobs").fetchall() == before
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]


@pytest.mark.slow
def test_a_logprobs_profile_is_refused_where_no_log_probabilities_come_back(
        fitted: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE calibration_profiles SET method = 'logprobs'")
    path = _scenario(fitted, tmp_path / "batch.py", questions=fitted["held"][:1])
    line = usage_error(invoke("run", path, "--db", db, "--survey-profile", fitted["job"],
                              "--provider-batch"))
    assert line == (f"error: --survey-profile {fitted['job']}: its method (logprobs) reads token "
                    "log-probabilities, which --executor ray and --provider-batch cannot")


@pytest.mark.slow
def test_an_unknown_or_unfitted_calibration_is_refused_in_one_line(
        fitted: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "unknown.py", questions=fitted["held"][:1])
    line = usage_error(invoke("run", path, "--db", db, "--survey-profile", "calib-nope"))
    assert line == ("error: --survey-profile calib-nope: is no calibration of this --db "
                    "(personahub calibrations lists them)")
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM calibration_profiles")
    line = usage_error(invoke("run", path, "--db", db, "--survey-profile", fitted["job"]))
    assert line == (f"error: --survey-profile {fitted['job']}: was not fitted (personahub "
                    "calibrate --fit makes a profile)")


def test_a_profile_answers_choice_surveys_only() -> None:
    with pytest.raises(ScenarioError, match="a survey profile answers choice surveys only"):
        Survey(id="s", question="How much?", steps=(1,), answer="scale", profile="calib-x")
    with pytest.raises(ScenarioError, match="profile must be a calibration id"):
        Survey(id="s", question="Which?", steps=(1,), options=("a", "b"), profile=" ")


@pytest.mark.slow
def test_a_profiles_prompt_shows_what_the_agent_saw(fitted: dict[str, Any], tmp_path: Path) -> None:
    """An event the agents saw is in the profile's prompt, after the persona (the calibration's
    prompt has no such section); with nothing seen, the prompt is the calibration's."""
    db = _copy(fitted, tmp_path)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE calibration_profiles SET method = 'distribution' WHERE job_id = ?",
                    [fitted["job"]])
    path = _scenario(fitted, tmp_path / "seen.py", questions=fitted["held"][:1],
                     events='(Event(step=1, text="The council lost the audit."),)')
    client = FakeClient(seed=0)
    run_simulation(RunConfig(scenario=load_scenario(path), db=db, survey_profile=fitted["job"]),
                   client=client)
    asked = [text for purpose, _, text in client.prompts if purpose == "survey:profile"]
    assert asked and all("## Events\n- The council lost the audit." in t for t in asked)
    assert all(t.index("## Group") < t.index("## Events") < t.index("## Question") for t in asked)
    calm = _scenario(fitted, tmp_path / "calm.py", questions=fitted["held"][:1])
    quiet = FakeClient(seed=0)
    run_simulation(RunConfig(scenario=load_scenario(calm), db=db, survey_profile=fitted["job"]),
                   client=quiet)
    asked = [text for purpose, _, text in quiet.prompts if purpose == "survey:profile"]
    assert asked and not any("## Events" in t or "## World" in t for t in asked)


@pytest.mark.slow
def test_experiment_hands_the_profile_to_every_arm_run(fitted: dict[str, Any],
                                                       tmp_path: Path) -> None:
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "exp.py", questions=fitted["held"][:1], extra=(
        "seed=3)\nfrom personahub.sim.experiment import Arm, Experiment, Outcome\n"
        f"EXPERIMENT = Experiment(arms=(Arm(name='a'), Arm(name='b', world='Taxes rise.')), "
        f"replicates=1, outcomes=(Outcome(survey={fitted['held'][0]!r}, step=1, options="
        f"({fitted['survey'].questions[fitted['held'][0]].options[0]!r},)),)"))
    result = invoke("experiment", path, "--db", db, "--survey-profile", fitted["job"])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.execute("SELECT e.arm, json_extract_string(j.config, '$.survey_profile') FROM "
                           "experiments e JOIN jobs j ON j.job_id = e.run_id ORDER BY 1").fetchall()
        answered = con.execute("SELECT DISTINCT a.content->>'profile' FROM survey_answers a JOIN "
                               "experiments e USING (run_id)").fetchall()
    assert runs == [("a", fitted["job"]), ("b", fitted["job"])]
    assert answered == [(fitted["job"],)]


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_answers_of_an_uninterrupted_one(
        fitted: dict[str, Any], tmp_path: Path) -> None:
    """The endpoint goes away at step 2, where the profile answers: the step is not committed,
    and the resume draws the answers an uninterrupted run draws."""
    db = _copy(fitted, tmp_path)
    path = _scenario(fitted, tmp_path / "two.py", questions=fitted["held"][:2], steps=2)
    config = RunConfig(scenario=load_scenario(path), db=db, survey_profile=fitted["job"])
    whole = run_simulation(config)
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(config, client=FakeClient(unreachable_from_step(2), seed=0))
    with duckdb.connect(str(db), read_only=True) as con:
        stopped, done = con.execute("SELECT run_id, steps_done FROM runs WHERE run_id <> ? "
                                    "ORDER BY run_id", [whole.run_id]).fetchall()[0]
    assert done == 1
    resume_run(stopped, db=db)
    assert [(s, a) for s, a, _, _ in _answers(db, stopped)] == \
           [(s, a) for s, a, _, _ in _answers(db, whole.run_id)]
