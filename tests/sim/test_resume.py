"""``personahub run --resume``: a stopped or killed run ends with the tables of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts
from tests.fakes import FakeClient, unreachable_from_step

ROOT = Path(__file__).resolve().parents[2]
SEED = 17

SCENARIO = f"""
from personahub.sim.scenario import (Audience, Event, GraphGrowth, Intervention, Memory, PersonaSource,
                          Scenario, Survey)

SCENARIO = Scenario(
    name="resumable",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=5,
    tasks=("npc_dialogue", "conversation", "instruction"),
    activation=0.8,
    memory=Memory(observations=2, own=1, summary_terms=6),
    inbox_size=2,
    events=(Event(step=1, text="The bridge is closed for repairs."),
            Event(step=3, text="A fire at the bakery.", audience=Audience(near=2, hops=1))),
    interventions=(Intervention(step=2, action="add_edge", target=1, other=9),
                   Intervention(step=2, action="remove_edge", target=1, other=2),
                   Intervention(step=3, action="set_persona", target=5,
                                text="A night-shift paramedic who sleeps through the mornings."),
                   Intervention(step=4, action="remove_edge", target=1, other=9)),
    surveys=(Survey(id="mood", steps=(2, 4), question="How is the town doing?", answer="choice",
                    options=("well", "badly", "unsure"), remember=True),),
    seed={SEED},
)
"""

TABLES = {
    "emissions": "step, agent_id, persona_id, task, content, text, target_persona_id, model, "
                 "is_duplicate, duplicate_of, emission_id",
    "messages": "message_id, step, sender_id, receiver_id, text, reply_to, emission_id, thread_id",
    "survey_answers": "step, survey_id, question, persona_id, agent_id, answer_kind, answer_choice, "
                      "answer_scale, answer_text, content",
    "steps": "step, n_active, n_emissions, n_messages, n_failed, n_answers",
    "events": "step, event_index, text, audience, n_recipients, recipients",
    "interventions": "step, intervention_index, action, persona_id, agent_id, other_persona_id, "
                     "text, relation, applied",
    "agent_states": "agent_id, step, state",
    "run_agents": "agent_id, persona_id",
    "run_edges": "src, dst, relation",
}


def snapshot(db: Path, run_id: str) -> dict[str, list]:
    """Every run table (timestamps left out), run ids replaced so two runs compare."""
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
        out["runs"] = con.execute("SELECT status, steps_done, steps_planned, seed FROM runs "
                                  "JOIN jobs ON job_id = run_id "
                                  "WHERE run_id = ?", [run_id]).fetchall()
        return out
    finally:
        con.close()


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(16)))
    path = tmp_path / "resumable.py"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def uninterrupted(scenario_path: Path, tmp_path: Path) -> dict[str, list]:
    db = tmp_path / "whole.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db))
    return snapshot(db, summary.run_id)


@pytest.mark.parametrize("fail_at", [1, 3, 5])
@pytest.mark.slow
def test_failed_run_resumes_to_the_uninterrupted_tables(scenario_path, tmp_path, uninterrupted, fail_at):
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db),
                       client=FakeClient(unreachable_from_step(fail_at), seed=SEED))
    con = duckdb.connect(str(db), read_only=True)
    run_id, status, done = con.execute("SELECT run_id, status, steps_done FROM runs "
                                       "JOIN jobs ON job_id = run_id").fetchone()
    con.close()
    assert (status, done) == ("failed", fail_at - 1)
    summary = resume_run(run_id, db=db)
    assert summary.steps == 5
    assert snapshot(db, run_id) == uninterrupted


def test_resume_refuses_finished_and_unknown_runs(scenario_path, tmp_path):
    db = tmp_path / "done.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, steps=1))
    with pytest.raises(PersonahubError, match="already finished"):
        resume_run(summary.run_id, db=db)
    with pytest.raises(PersonahubError, match="no such run"):
        resume_run("nope", db=db)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from personahub.cli.app import app; app()", *args]


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
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
        for line in proc.stderr:  # the CLI prints one line per committed step when not on a tty
            seen.append(line)
            if line.startswith("step 2/5 committed") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(s.startswith("step 2/5") for s in seen), "".join(seen)
    assert proc.returncode == -signal.SIGKILL
    con = duckdb.connect(str(db), read_only=True)
    run_id, status, done = con.execute("SELECT run_id, status, steps_done FROM runs "
                                       "JOIN jobs ON job_id = run_id").fetchone()
    con.close()
    assert status == "running" and 2 <= done < 5  # killed: nobody marked the run
    resumed = subprocess.run(_cli("run", "--resume", run_id, "--db", str(db)), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(db, run_id) == uninterrupted
