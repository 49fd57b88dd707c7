"""An archetype's call sees the history its members saw: the events so far, its arm's world text
and what its members remember, so an arm whose event changes per-agent answers changes the
archetype answers too (offline: any change to the prompt changes the answer)."""

import json
from pathlib import Path

import duckdb
import pytest

from personahub.experiments import experiment

RUMOUR = "A rumour: the new e-bike's battery is glued in."

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Event, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="told", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("instruction",),
    world="A small river town.",
    events=EVENTS,
    surveys=(Survey(id="buy", steps=(2,), options=("yes", "no", "unsure"), question="Buy it?"),
             Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="Fair price?")),
    seed=5)
EXPERIMENT = Experiment(arms=ARMS, replicates=1, DESIGN
                        outcomes=(Outcome(survey="buy", step=2, options=("yes",)),))
'''
BETWEEN = {"EVENTS": f"(Event(step=1, text={RUMOUR!r}),)", "DESIGN": "",
           "ARMS": '(Arm(name="quiet", drop_events=(0,)), Arm(name="told"))'}
WITHIN = {"EVENTS": "()", "DESIGN": 'design="within",',
          "ARMS": f'(Arm(name="quiet"), Arm(name="told", add_events=(Event(step=1, '
                  f'text={RUMOUR!r}),), world="A storm warning is in force."))'}


def _scenario(tmp_path: Path, parts: dict[str, str]) -> Path:
    text = SCENARIO
    for key, value in parts.items():
        text = text.replace(key, value)
    path = tmp_path / "told.py"
    path.write_text(text)
    return path


def _answers(db: Path, experiment_id: str) -> dict[str, list[tuple]]:
    """Each arm's step-2 answers and pooled step-2 emissions, in persona order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out: dict[str, list[tuple]] = {}
        for arm, run_id in con.execute("SELECT arm, run_id FROM experiments WHERE "
                                       "experiment_id = ? ORDER BY arm", [experiment_id]
                                       ).fetchall():
            answers = con.execute(
                "SELECT survey_id, persona_id, answer_choice, answer_scale FROM survey_answers "
                "WHERE run_id = ? AND step = 2 ORDER BY ALL", [run_id]).fetchall()
            said = con.execute("SELECT persona_id, text FROM emissions WHERE run_id = ? AND "
                               "step = 2 ORDER BY ALL", [run_id]).fetchall()
            out[arm] = answers + said
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_an_arms_earlier_event_changes_the_archetype_answers_as_it_changes_per_agent_ones(
        tmp_path):
    path = _scenario(tmp_path, BETWEEN)
    db = tmp_path / "exp.duckdb"
    experiment(path, db=db, experiment_id="full")
    experiment(path, db=db, experiment_id="arch", archetypes=2)
    full, arch = _answers(db, "full"), _answers(db, "arch")
    # the rumour at step 1 is in the told arm's memories at step 2: per agent, answers move
    assert full["told"] != full["quiet"]
    # and so does each archetype's one call (its members' memories), and its pooled action
    answers = [row for row in arch["told"] if len(row) == 4]
    assert len(answers) == 16  # 8 agents x 2 surveys, drawn
    assert arch["told"] != arch["quiet"]
    said = {arm: [row for row in rows if len(row) == 2] for arm, rows in arch.items()}
    assert said["told"] and said["told"] != said["quiet"]


def _archetype_prompts(db: Path, step_question: str) -> list[str]:
    """The recorded prompts of the archetype share calls asking one question."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        requests = [json.loads(r[0]) for r in con.execute(
            "SELECT CAST(request AS VARCHAR) FROM llm_cache").fetchall()]
    finally:
        con.close()
    prompts = [r["messages"][-1]["content"] for r in requests]
    return [p for p in prompts if "people like you (the persona's archetype)" in p
            and f"## Question\n{step_question}" in p]


@pytest.mark.slow
def test_within_a_world_each_arm_of_an_archetype_is_asked_with_its_own_history(tmp_path):
    """The two arms' agents share archetypes: each arm's part is asked apart, with its world text
    and its members' memory (the told arm's rumour), where one call once spoke for both."""
    path = _scenario(tmp_path, WITHIN)
    db = tmp_path / "exp.duckdb"
    result = experiment(path, db=db, archetypes=2, cache="record")
    con = duckdb.connect(str(db), read_only=True)
    try:
        parts = con.execute(
            "SELECT count(DISTINCT (a.archetype, e.arm)) FROM experiment_agents e JOIN "
            "run_agent_archetypes a USING (run_id, persona_id)").fetchone()[0]
    finally:
        con.close()
    prompts = _archetype_prompts(db, "Buy it?")
    assert len(prompts) == parts  # one call per archetype and arm, not per archetype
    stormy = [p for p in prompts if "A storm warning is in force." in p]
    told = [p for p in prompts if RUMOUR in p]
    assert stormy and len(stormy) < len(prompts)
    # the rumour reaches the told arm's members at step 1; the quiet arm's call never sees it
    assert told and set(told) <= set(stormy)
    assert set(result.agents.arm) == {"quiet", "told"}


@pytest.mark.slow
def test_a_large_archetype_reads_a_seeded_sample_of_its_members(tmp_path, monkeypatch):
    """Beyond MEMBERS_READ members a call reads a sample drawn from the run seed, so two runs (and
    a resume) ask the same prompts; answers kept with remember=True come back as the members'
    shares."""
    from personahub.sim import society
    from tests.fakes import FakeClient
    from tests.sim.test_archetypes_run import SEED, _run, _scenario, _snapshot

    monkeypatch.setattr(society, "MEMBERS_READ", 3)
    path = _scenario(tmp_path)
    clients = [FakeClient(seed=SEED), FakeClient(seed=SEED)]
    tables = [_snapshot(tmp_path / f"{i}.duckdb", _run(path, tmp_path / f"{i}.duckdb", client))
              for i, client in enumerate(clients)]
    assert tables[0] == tables[1]
    prompts = [[p for purpose, _, p in c.prompts if purpose == "survey_archetype"]
               for c in clients]
    assert prompts[0] == prompts[1]
    # step 3 asks "mood" again: the step-1 answers the members kept are in the one call's memory
    later = [p for p in prompts[0] if "Asked 'How is the town doing?'" in p]
    assert later and any("% of people like you]" in p for p in later)
