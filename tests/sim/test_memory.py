"""Memory that retrieves and reflects (``Memory(retrieve=..., reflect_every=..., reflect_overflow=...)``).

Defaults stay the keyword memory (same state, same prompts, no extra call); retrieval picks the
items that matter for the step; reflections are model calls accounted like any other, applied in
agent-id order, bounded, and resumable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import networkx as nx
import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.contracts import StructuredResult
from personahub.core.errors import PersonahubError
from personahub.personas.record import Persona
from personahub.pipelines.run import RunConfig
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.scenario import Event, Memory, Scenario, ScenarioError, load_scenario
from personahub.sim.society import SocietyModel
from personahub.tasks.reflection import Reflection
from tests.conftest import persona_texts
from tests.fakes import FakeClient, shuffled_completion, unreachable_from_step
from tests.sim.test_resume import snapshot

ROOT = Path(__file__).resolve().parents[2]
SEED = 11
REMEMBERS = Memory(observations=2, own=1, summary_terms=6, retrieve=True, store=5, top_k=3,
                   reflect_every=3, reflect_overflow=4)


def retrieving(**kw) -> AgentMemory:
    args = {"observations": 2, "messages": 2, "own": 1, "summary_terms": 6, "retrieve": True,
            "store": 8, "top_k": 2} | kw
    return AgentMemory(**args)


def make_model(scenario: Scenario, n: int = 3, client=None, seed: int = SEED) -> SocietyModel:
    personas = [Persona(text=t) for t in persona_texts(n)]
    graph = nx.relabel_nodes(nx.complete_graph(n), {i: p.persona_id for i, p in enumerate(personas)})
    loop = asyncio.new_event_loop()
    return SocietyModel(scenario=scenario, personas=personas, graph=graph,
                        llm=client or FakeClient(seed=seed), run_id="r", seed=seed,
                        runner=loop.run_until_complete)


def harbour_scenario(memory: Memory = REMEMBERS, steps: int = 8) -> Scenario:
    words = ["flood", "fire", "market", "ferry", "storm", "festival"]
    return Scenario(name="harbour", tasks=("npc_dialogue", "conversation", "instruction"),
                    memory=memory, inbox_size=2, steps=steps,
                    events=[Event(step=s, text=f"The {words[s % len(words)]} at the harbour, day {s}.")
                            for s in range(1, steps + 1, 2)])


# -- configuration ------------------------------------------------------------------------------
def test_defaults_are_the_keyword_memory_with_the_same_state():
    assert not Memory().retrieve and not Memory().reflects
    old_style = AgentMemory(observations=2, messages=1, own=1, summary_terms=4)
    for i in range(6):
        old_style.observe(i, f"event {i} about lanterns")
        old_style.remember_own(i, "instruction", f"note {i} about ferries")
    assert set(old_style.to_state()) == {"observations", "inbox", "own", "summary"}
    assert old_style.prompt_lines(9)[0].startswith("Earlier, things about: ")


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k must be >= 1"),
    ({"store": -1}, "store must be >= 0"),
    ({"reflect_every": 0}, "reflect_every must be an int >= 1 or None"),
    ({"reflect_overflow": 2.5}, "reflect_overflow must be an int >= 1 or None"),
    ({"retrieve": "yes"}, "retrieve must be True or False"),
    ({"observations": True}, "observations must be an int"),
])
def test_memory_settings_are_validated(kwargs, message):
    with pytest.raises(ScenarioError, match=message):
        Memory(**kwargs)


# -- retrieval ----------------------------------------------------------------------------------
def test_retrieval_prefers_what_is_relevant_to_the_step_then_recent_and_important():
    memory = retrieving(store=16)
    memory.observe(1, "The old bridge over the river is closed for repairs.")
    for step in range(2, 8):
        memory.remember_own(step, "instruction", f"Write a recipe for lemon cake number {step}.")
        memory.observe(step, f"Rain again on day {step}.")
    memory.observe(8, "Workers reopened the bridge over the river.")  # this step's event
    chosen = memory.retrieved(8)
    assert len(chosen) == 2
    assert chosen[0][2].startswith("The old bridge")  # old, but about this step's event
    assert chosen[1] == (7, "event", "Rain again on day 7.")  # newest event beats own output
    lines = memory.prompt_lines(8)
    assert lines[-2:] == ["(step 1) The old bridge over the river is closed for repairs.",
                          "(step 7) Rain again on day 7."]  # oldest first


def test_messages_received_steer_retrieval_and_leave_view_into_the_store():
    memory = retrieving(top_k=1)
    memory.receive(Message("m1", 1, "a", "me", "Did you see the lighthouse keeper yesterday?"))
    for step in range(2, 6):
        memory.receive(Message(f"m{step}", step, "b", "me", f"Tea at {step}?"))
        memory.observe(step, f"Quiet day {step}.")
    assert [m.message_id for m in memory.inbox] == ["m4", "m5"]
    assert memory.retrieved(6) == [(5, "event", "Quiet day 5.")]
    memory.receive(Message("m6", 6, "c", "me", "The lighthouse keeper is retiring."))
    assert memory.retrieved(7) == [(1, "message", "Did you see the lighthouse keeper yesterday?")]
    assert memory.prompt_lines(7)[-1].startswith("(step 1) heard: Did you see")


def test_retrieving_memory_stays_bounded_and_round_trips():
    memory = retrieving(reflect=True, reflect_overflow=3)
    for i in range(400):
        memory.observe(i, f"event {i} about lanterns harbour weather{i % 7}")
        memory.receive(Message(f"m{i}", i, "a", "b", f"message about ferries{i % 5} and tides"))
        memory.remember_own(i, "instruction", f"my own emission about gardening{i % 3}")
        if memory.reflection_due(i, None):
            memory.reflected(i, "I keep thinking about the harbour. " * 40)
    state = memory.to_state()
    assert len(state["store"]) == 8 and len(state["unreflected"]) <= 12
    assert len(state["reflection"]) <= 280
    assert len(json.dumps(state)) < 5000
    again = retrieving(reflect=True, reflect_overflow=3)
    again.load_state(json.loads(json.dumps(state)))
    assert again.to_state() == state
    assert again.prompt_lines(400) == memory.prompt_lines(400)


# -- reflection ---------------------------------------------------------------------------------
def test_reflection_is_due_periodically_when_something_is_new_or_on_overflow():
    memory = AgentMemory(observations=1, messages=1, own=1, summary_terms=4, reflect=True,
                         reflect_overflow=2)
    assert not memory.reflection_due(3, 3)  # nothing remembered yet
    memory.observe(1, "The ferry is late.")
    assert memory.reflection_due(3, 3) and not memory.reflection_due(4, 3)
    memory.observe(2, "The ferry sank.")  # evicts one
    memory.observe(3, "The ferry was raised.")  # evicts another: overflow
    assert memory.reflection_due(4, None)
    memory.reflected(4, "Ferries worry me.")
    assert not memory.reflection_due(6, 3) and not memory.reflection_due(5, None)
    assert memory.summary == {} and memory.prompt_lines(9) == [
        "(step 3) The ferry was raised.", "(step 4) In my own words: Ferries worry me."]
    memory.observe(5, "Fishing boats went out.")
    assert memory.prompt_lines(9)[0].startswith("Since then, things about: ")
    assert memory.summary_lines()[0] == "In my own words: Ferries worry me."


def test_reflections_are_model_calls_applied_in_agent_id_order_and_seeded():
    results = []
    for order in (1, 2):
        client = FakeClient(seed=SEED, delay=shuffled_completion(order))
        model = make_model(harbour_scenario(), client=client)
        reflected = []
        for _ in range(8):
            model.step()
            reflected.append(sum(r.purpose == "reflection" for r in model.last_result.records))
        assert client.by_purpose["reflection"] == sum(reflected) > 0
        assert reflected[2] == 3  # step 3: every agent has something new
        results.append([a.get_state() for a in model.ordered])
    assert results[0] == results[1]
    assert all(s["memory"]["reflection"] for s in results[0])


def test_a_failed_reflection_keeps_the_summary_and_is_a_failure():
    def no_reflection(call):
        if call.purpose == "reflection":
            return StructuredResult(None, [])
        return None

    model = make_model(harbour_scenario(), client=FakeClient(answer=no_reflection, seed=SEED))
    twin = make_model(harbour_scenario(Memory(**{**vars(REMEMBERS), "reflect_every": None,
                                                  "reflect_overflow": None})))
    failed = []
    for _ in range(4):
        model.step()
        twin.step()
        failed += [e for _, e in model.last_result.failures]
    assert failed and all(e == "reflection: no valid reflection" for e in failed)
    for agent, other in zip(model.ordered, twin.ordered, strict=True):
        assert agent.memory.reflection == ""
        # nothing lost: the same summary and store as a memory that never reflects
        assert agent.memory.summary == other.memory.summary
        assert list(agent.memory.store) == list(other.memory.store)


def test_reflections_receive_the_summary_and_what_left_memory():
    client = FakeClient(seed=SEED)
    model = make_model(harbour_scenario(), client=client)
    for _ in range(6):
        model.step()
    prompts = [p for purpose, _, p in client.prompts if purpose == "reflection"]
    assert prompts and all("## Your summary so far" in p and "## Task" in p for p in prompts)
    assert any("In my own words:" in p.split("## Your summary so far")[1]
               for p in prompts)  # a later one sees the earlier one
    acting = [p for purpose, _, p in client.prompts if purpose not in ("reflection", "survey")]
    assert any("In my own words:" in p for p in acting[-6:])  # and the prompts show it


@pytest.mark.slow
def test_memory_stays_bounded_over_hundreds_of_steps():
    model = make_model(harbour_scenario(steps=300), n=2)
    sizes = {}
    for _ in range(300):
        model.step()
        if model.steps in (100, 300):
            sizes[model.steps] = max(len(json.dumps(a.get_state())) for a in model.ordered)
    assert sizes[300] < 6000 and sizes[300] <= sizes[100] * 1.5, sizes
    for agent in model.ordered:
        memory = agent.memory
        assert len(memory.store) <= 5 and len(memory.unreflected) <= 12
        assert len(memory.summary) <= 6 and memory.reflection


# -- runs: accounting and resume ----------------------------------------------------------------
SCENARIO = f"""
from personahub.sim.scenario import Event, GraphGrowth, Memory, PersonaSource, Scenario

SCENARIO = Scenario(
    name="reflective",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=2),
    steps=5,
    tasks=("npc_dialogue", "conversation", "instruction"),
    memory=Memory(observations=2, own=1, summary_terms=6, retrieve=True, store=4, top_k=3,
                  reflect_every=2, reflect_overflow=3),
    inbox_size=2,
    events=(Event(step=1, text="The bridge is closed for repairs."),
            Event(step=3, text="A fire at the bakery.")),
    seed={SEED},
)
"""


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(3)))
    path = tmp_path / "reflective.py"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def uninterrupted(scenario_path: Path, tmp_path: Path) -> dict[str, list]:
    db = tmp_path / "whole.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db))
    return snapshot(db, summary.run_id)


def test_reflections_are_accounted_in_llm_calls(uninterrupted):
    reflections = [row for row in uninterrupted["llm_calls"] if row[1] == "reflection"]
    assert reflections and all(status == "ok" for _, _, status, _ in reflections)
    states = [json.loads(state) for _, _, state in uninterrupted["agent_states"]]
    assert any(s["memory"].get("reflection") for s in states)


@pytest.mark.parametrize("fail_at", [2, 4])
@pytest.mark.slow
def test_a_failed_run_resumes_to_the_uninterrupted_tables(scenario_path, tmp_path, uninterrupted,
                                                          fail_at):
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db),
                       client=FakeClient(unreachable_from_step(fail_at), seed=SEED))
    con = duckdb.connect(str(db), read_only=True)
    run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
    con.close()
    resume_run(run_id, db=db)
    assert snapshot(db, run_id) == uninterrupted


@pytest.mark.slow  # end to end through the CLI
def test_kill_dash_nine_then_resume_equals_an_uninterrupted_run(scenario_path, tmp_path, uninterrupted):
    db = tmp_path / "killed.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")}

    def cli(*args: str) -> list[str]:
        return [sys.executable, "-c", "from personahub.cli.app import app; app()", *args]

    proc = subprocess.Popen(cli("run", str(scenario_path), "--db", str(db), "--offline-latency", "0.3"),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("step 2/5 committed") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(s.startswith("step 2/5") for s in seen), "".join(seen)
    con = duckdb.connect(str(db), read_only=True)
    run_id, status, done = con.execute("SELECT run_id, status, steps_done FROM runs "
                                       "JOIN jobs ON job_id = run_id").fetchone()
    con.close()
    assert status == "running" and 2 <= done < 5
    resumed = subprocess.run(cli("run", "--resume", run_id, "--db", str(db)), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(db, run_id) == uninterrupted


def test_reflection_schema_is_small():
    assert list(Reflection.model_fields) == ["summary"]


# -- against a real model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama():
    from personahub.models.llamacpp import local_llama_cpp
    from tests.optional import need_llama_cpp

    need_llama_cpp()
    with local_llama_cpp() as server:
        yield server


@pytest.mark.real_model
def test_a_reflection_against_the_loopback_llama_server(llama, tmp_path):
    """Two agents, two steps, reflect_every=1: reflections go to the model and every call,
    failed or not, is a row of ``llm_calls`` with max_tokens; the run finishes."""
    from typer.testing import CliRunner

    from personahub.cli.app import app

    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(2)))
    scenario = tmp_path / "reflect_real.py"
    scenario.write_text(
        "from personahub.sim.scenario import Event, GraphGrowth, Memory, PersonaSource, Scenario\n"
        "SCENARIO = Scenario(name='reflect_real', personas=PersonaSource(path='people.jsonl'),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=1), steps=2, tasks=('instruction',),\n"
        "    events=(Event(step=1, text='The ferry is cancelled for a week.'),),\n"
        "    memory=Memory(retrieve=True, reflect_every=1), seed=3)\n")
    db = tmp_path / "real.duckdb"
    result = CliRunner().invoke(app, ["run", str(scenario), "--db", str(db), "--llm", llama.spec,
                                      "--concurrency", "2", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT status, error, max_tokens, purpose, step FROM llm_calls "
                           "WHERE purpose = 'reflection'").fetchall()
        n_failed = con.execute("SELECT sum(n_failed) FROM steps").fetchone()[0]
        states = [json.loads(s) for (s,) in con.execute("SELECT state FROM agent_states").fetchall()]
    finally:
        con.close()
    assert {r[4] for r in rows} == {1, 2}  # both steps reflected (each agent had something new)
    assert all(r[2] and r[2] > 0 for r in rows)
    assert all(r[1] for r in rows if r[0] != "ok")  # every failed attempt says why
    asked = [r for r in rows if not (r[1] or "").startswith("json_schema refused")]  # the probe
    assert sum(r[0] == "ok" for r in asked) / len(asked) >= 0.5, rows
    reflected = [s for s in states if s["memory"].get("reflection")]
    # each agent-step's reflection either took (a summary in memory) or is a counted failure
    assert reflected or n_failed
