"""Scenarios with ``policy="deliberate"``: a stored decision per agent-step, ``nothing`` emits nothing,
addressees map back to neighbours, seeded runs are identical whatever the completion order, and a
resumed run equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from personahub.agents.decide import NOBODY, NOTHING
from personahub.api import resume_run, run_simulation
from personahub.core.contracts import StructuredResult
from personahub.core.errors import PersonahubError
from personahub.pipelines.run import RunConfig
from personahub.results import Run
from personahub.sim.scenario import ScenarioError, load_scenario
from tests.conftest import persona_texts
from tests.fakes import FakeClient, shuffled_completion, unreachable_from_step

ROOT = Path(__file__).resolve().parents[2]
SEED = 23

SCENARIO = f"""
from personahub.sim.scenario import (Event, GraphGrowth, Intervention, Memory, PersonaSource,
                                     Scenario, Survey)

SCENARIO = Scenario(
    name="deliberating",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=4,
    tasks=("npc_dialogue", "conversation", "instruction", "math_problem"),
    task_weights=(1.0, 1.0, 1.0, 0.0),
    policy="deliberate",
    activation=0.8,
    memory=Memory(observations=2, own=1, summary_terms=6),
    inbox_size=2,
    events=(Event(step=2, text="The bridge is closed for repairs."),),
    interventions=(Intervention(step=3, action="remove_edge", target=1, other=2),),
    surveys=(Survey(id="mood", steps=(2, 4), question="How is the town doing?", answer="choice",
                    options=("well", "badly", "unsure"), remember=True),),
    seed={SEED},
)
"""

TABLES = {
    "decisions": "step, agent_id, persona_id, action, addressee_id, addressee_label, fallback, "
                 "reason, error",
    "emissions": "step, agent_id, persona_id, task, content, text, target_persona_id, "
                 "is_duplicate, duplicate_of",
    "messages": "message_id, step, sender_id, receiver_id, text, reply_to, thread_id",
    "survey_answers": "step, survey_id, persona_id, answer_choice, content",
    "steps": "step, n_active, n_emissions, n_messages, n_failed, n_answers",
    "agent_states": "agent_id, step, state",
}


def snapshot(db: Path, run_id: str) -> dict[str, list]:
    """The run's tables (timestamps left out), run ids replaced so two runs compare."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table, columns in TABLES.items():
            rows = con.execute(f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY ALL",
                               [run_id]).fetchall()
            out[table] = json.loads(json.dumps(rows, default=str).replace(run_id, "RUN"))
        out["llm_calls"] = con.execute(
            "SELECT step, purpose, status, count(*) FROM llm_calls WHERE run_id = ? "
            "GROUP BY ALL ORDER BY ALL", [run_id]).fetchall()
        out["runs"] = con.execute("SELECT status, steps_done FROM runs "
                                  "JOIN jobs ON job_id = run_id WHERE run_id = ?",
                                  [run_id]).fetchall()
        return out
    finally:
        con.close()


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(14)))
    path = tmp_path / "deliberating.py"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def uninterrupted(scenario_path: Path, tmp_path: Path) -> dict[str, list]:
    db = tmp_path / "whole.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db))
    return snapshot(db, summary.run_id)


def test_every_active_agent_step_has_one_stored_decision(scenario_path, tmp_path, uninterrupted):
    tables = uninterrupted
    decided = {}
    for step, *_ in tables["decisions"]:
        decided[step] = decided.get(step, 0) + 1
    assert decided == {step: n_active for step, n_active, *_ in tables["steps"]}
    calls = {(step, purpose): n for step, purpose, status, n in tables["llm_calls"]}
    assert all(calls[(step, "decide")] == n for step, n in decided.items())
    actions = {row[3] for row in tables["decisions"]}
    assert NOTHING in actions and "math_problem" not in actions  # weight 0: never an option
    acted = {(s, a) for s, a, _, action, *_ in tables["decisions"] if action != NOTHING}
    emitted = {(s, a) for s, a, *_ in tables["emissions"]}
    assert emitted == acted  # nothing emits nothing; every other decision acted (offline: valid)
    for step, agent, _, action, *_ in tables["decisions"]:
        kinds = [k for s, a, _, k, *_ in tables["emissions"] if (s, a) == (step, agent)]
        assert kinds == ([] if action == NOTHING else [action])
    with duckdb.connect(str(tmp_path / "whole.duckdb"), read_only=True) as con:
        policy, run_id = con.execute("SELECT config->>'$.scenario.policy', run_id FROM runs "
                                     "JOIN jobs ON job_id = run_id").fetchone()
    assert policy == "deliberate"
    frame = Run(job_id=run_id, db=tmp_path / "whole.duckdb").decisions()  # the Python API
    assert len(frame) == len(tables["decisions"]) and "reason" in frame.columns


def test_addressees_are_the_labelled_neighbours_the_model_chose(scenario_path, tmp_path):
    """The fake always picks the last person shown; the message goes to that persona."""

    def script(call):
        if call.purpose != "decide":
            return None
        people = call.schema.model_json_schema()["properties"]["addressee"]["enum"]
        return call.schema(action="npc_dialogue", addressee=people[-1], reason="last one")

    fake = FakeClient(script, seed=SEED)
    db = tmp_path / "address.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db), client=fake)
    con = duckdb.connect(str(db), read_only=True)
    texts = dict(con.execute("SELECT persona_id, text FROM personas").fetchall())
    rows = con.execute("SELECT d.step, d.agent_id, d.addressee_id, d.addressee_label, "
                       "e.target_persona_id, m.receiver_id FROM decisions d "
                       "JOIN emissions e USING (run_id, step, agent_id) "
                       "JOIN messages m ON m.emission_id = e.emission_id").fetchall()
    assert len(rows) == summary.emissions_by_kind["npc_dialogue"] > 0
    decide_prompts = [p for purpose, _, p in fake.prompts if purpose == "decide"]
    for _step, _agent, addressee, label, target, receiver in rows:
        assert addressee == target == receiver and label != NOBODY
        # the label the model copied names that persona in some decide prompt
        shown = f"{label}: {texts[addressee][:40]}"
        assert any(shown in p for p in decide_prompts)
    # every addressee is a neighbour on the run's graph at that step (edges only removed at 3)
    bad = con.execute("SELECT count(*) FROM decisions d JOIN run_agents a USING (run_id, agent_id) "
                      "WHERE d.addressee_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM run_edges r "
                      "WHERE r.run_id = d.run_id AND ((r.src = a.persona_id AND r.dst = d.addressee_id) "
                      "OR (r.dst = a.persona_id AND r.src = d.addressee_id)))").fetchone()[0]
    con.close()
    assert bad == 0


def test_nothing_makes_no_act_call_and_a_failed_decision_is_a_failed_action(scenario_path, tmp_path):
    def script(call):
        if call.purpose != "decide":
            return None
        if call.persona_id and int(call.persona_id[-1], 16) % 2:  # half say nothing
            return call.schema(action=NOTHING, addressee=NOBODY, reason="busy")
        if call.step == 4 and int(call.persona_id[-1], 16) % 4 == 0:  # a few cannot decide
            return StructuredResult(None, [])
        return call.schema(action="instruction", addressee=NOBODY, reason="a question")

    fake = FakeClient(script, seed=SEED)
    db = tmp_path / "nothing.duckdb"
    run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db), client=fake)
    con = duckdb.connect(str(db), read_only=True)
    by_action = dict(con.execute("SELECT coalesce(action, 'FAILED'), count(*) FROM decisions "
                                 "GROUP BY 1").fetchall())
    emitted = con.execute("SELECT count(*) FROM emissions").fetchone()[0]
    assert emitted == by_action["instruction"] == fake.by_purpose["instruction"]
    assert "npc_dialogue" not in fake.by_purpose
    failed = con.execute("SELECT sum(n_failed) FROM steps WHERE step = 4").fetchone()[0]
    assert failed == by_action["FAILED"] > 0
    assert con.execute("SELECT count(*) FROM decisions WHERE action IS NULL AND "
                       "error = 'no valid answer'").fetchone()[0] == failed
    con.close()


@pytest.mark.parametrize("order_seed", [1, 2])
@pytest.mark.slow
def test_seeded_runs_are_identical_whatever_the_completion_order(scenario_path, tmp_path,
                                                                 uninterrupted, order_seed):
    db = tmp_path / f"shuffled{order_seed}.duckdb"
    shuffled = FakeClient(delay=shuffled_completion(order_seed), seed=SEED)
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, chunk_size=3),
                             client=shuffled)
    assert snapshot(db, summary.run_id) == uninterrupted


@pytest.mark.parametrize("fail_at", [2, 4])
@pytest.mark.slow
def test_failed_run_resumes_to_the_uninterrupted_tables(scenario_path, tmp_path, uninterrupted,
                                                        fail_at):
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db),
                       client=FakeClient(unreachable_from_step(fail_at), seed=SEED))
    con = duckdb.connect(str(db), read_only=True)
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done == fail_at - 1
    resume_run(run_id, db=db)
    assert snapshot(db, run_id) == uninterrupted


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from personahub.cli.app import app; app()", *args]


@pytest.mark.slow  # end to end, as tests/sim/test_resume.py's kill -9 test
def test_kill_dash_nine_then_resume_equals_an_uninterrupted_run(scenario_path, tmp_path, uninterrupted):
    db = tmp_path / "killed.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")}
    proc = subprocess.Popen(_cli("run", str(scenario_path), "--db", str(db), "--offline-latency", "0.3"),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("step 2/4 committed") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(s.startswith("step 2/4") for s in seen), "".join(seen)
    con = duckdb.connect(str(db), read_only=True)
    run_id, status, done = con.execute("SELECT run_id, status, steps_done FROM runs "
                                       "JOIN jobs ON job_id = run_id").fetchone()
    con.close()
    assert status == "running" and 2 <= done < 4
    resumed = subprocess.run(_cli("run", "--resume", run_id, "--db", str(db)), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(db, run_id) == uninterrupted


def test_scripted_runs_write_no_decisions_and_make_no_decide_call(scenario_path, tmp_path):
    path = tmp_path / "scripted.py"
    path.write_text(SCENARIO.replace('policy="deliberate",', ""))
    fake = FakeClient(seed=SEED)
    db = tmp_path / "scripted.duckdb"
    run_simulation(RunConfig(scenario=load_scenario(path), db=db), client=fake)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
        assert con.execute("SELECT config->>'$.scenario.policy' FROM runs "
                           "JOIN jobs ON job_id = run_id").fetchone()[0] == "scripted"
    assert "decide" not in fake.by_purpose


def test_unknown_policy_fails_at_load_naming_the_choices(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from personahub.sim.scenario import Scenario\n"
                    "SCENARIO = Scenario(name='bad', policy='greedy')\n")
    with pytest.raises(ScenarioError, match=r"scenario.policy must be one of \('scripted', "
                                            r"'deliberate'\), got 'greedy'"):
        load_scenario(path)
