import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personahub.api import run_simulation
from personahub.core.errors import PersonahubError
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from personahub.tasks.tool_spec import ToolSpec
from tests.conftest import persona_texts
from tests.fakes import FakeClient, shuffled_completion, unreachable_from_step

EMISSION_COLUMNS = "step, agent_id, persona_id, task, content, text, target_persona_id, is_duplicate"


def emissions(db: Path, run_id: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {EMISSION_COLUMNS} FROM emissions WHERE run_id = ? "
                           "ORDER BY step, agent_id", [run_id]).fetchall()
    finally:
        con.close()


def test_run_writes_all_kinds_messages_and_flags(scenario_file, tmp_path):
    db = tmp_path / "run.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_file()), db=db))
    assert summary.agents >= 30 and summary.steps == 3
    assert set(summary.emissions_by_kind) == {"instruction", "npc_dialogue", "tool_spec"}
    con = duckdb.connect(str(db), read_only=True)
    n_steps, = con.execute("SELECT count(*) FROM steps WHERE run_id = ?", [summary.run_id]).fetchone()
    assert n_steps == 3
    # every npc line is a message to a graph neighbour, delivered the step after
    bad = con.execute("""
        SELECT count(*) FROM messages m WHERE run_id = ? AND NOT EXISTS (
          SELECT 1 FROM relations r WHERE (r.src = m.sender_id AND r.dst = m.receiver_id)
                                      OR (r.dst = m.sender_id AND r.src = m.receiver_id))
    """, [summary.run_id]).fetchone()[0]
    assert bad == 0
    assert con.execute("SELECT count(*) FROM messages WHERE reply_to IS NOT NULL").fetchone()[0] > 0
    for (content,) in con.execute("SELECT content FROM emissions WHERE task = 'tool_spec'").fetchall():
        spec = ToolSpec.model_validate(json.loads(content))
        assert spec.function_name.isidentifier()
    status, done = con.execute("SELECT status, steps_done FROM runs JOIN jobs ON job_id = run_id").fetchone()
    assert (status, done) == ("finished", 3)
    calls, tokens = con.execute("SELECT count(*), sum(tokens_in) FROM llm_calls WHERE run_id = ?",
                                [summary.run_id]).fetchone()
    actions, = con.execute("SELECT sum(n_active) FROM steps WHERE run_id = ?",
                           [summary.run_id]).fetchone()
    assert calls == actions + 30  # one call per action, plus one expansion call per persona
    assert tokens > 0
    con.close()


@pytest.mark.slow
def test_same_seed_same_emissions_other_seed_differs(scenario_file, tmp_path):
    scenario = load_scenario(scenario_file())
    a = run_simulation(RunConfig(scenario=scenario, db=tmp_path / "a.duckdb", seed=5))
    b = run_simulation(RunConfig(scenario=scenario, db=tmp_path / "b.duckdb", seed=5))
    c = run_simulation(RunConfig(scenario=scenario, db=tmp_path / "c.duckdb", seed=6))
    rows_a = emissions(tmp_path / "a.duckdb", a.run_id)
    assert rows_a and rows_a == emissions(tmp_path / "b.duckdb", b.run_id)
    assert rows_a != emissions(tmp_path / "c.duckdb", c.run_id)


@pytest.mark.slow
def test_rerun_in_the_same_database_reaches_the_same_society(scenario_file, tmp_path):
    scenario = load_scenario(scenario_file())
    db = tmp_path / "same.duckdb"
    first = run_simulation(RunConfig(scenario=scenario, db=db, seed=5))
    second = run_simulation(RunConfig(scenario=scenario, db=db, seed=5))
    assert first.agents == second.agents
    assert emissions(db, first.run_id) == emissions(db, second.run_id)


@pytest.mark.slow
@settings(max_examples=4, deadline=None)
@given(order_seed=st.integers(0, 10_000))
def test_results_do_not_depend_on_completion_order(order_seed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("order")
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(12)))
    path = folder / "s.py"
    path.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n"
        f"SCENARIO = Scenario(name='order', personas=PersonaSource(path={str(people)!r}),"
        " graph=GraphGrowth(hops=0, acquaintances=4), steps=2, seed=3)\n")
    scenario = load_scenario(path)
    baseline = run_simulation(RunConfig(scenario=scenario, db=folder / "base.duckdb", chunk_size=3))
    shuffled = FakeClient(delay=shuffled_completion(order_seed), seed=3)
    other = run_simulation(RunConfig(scenario=scenario, db=folder / "shuf.duckdb", chunk_size=3),
                           client=shuffled)
    assert emissions(folder / "base.duckdb", baseline.run_id) == emissions(
        folder / "shuf.duckdb", other.run_id)


def test_failure_mid_run_keeps_committed_steps_and_marks_the_run(scenario_file, tmp_path):
    db = tmp_path / "fail.duckdb"
    scenario = load_scenario(scenario_file(steps=4))
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(RunConfig(scenario=scenario, db=db), client=FakeClient(unreachable_from_step(3)))
    con = duckdb.connect(str(db), read_only=True)
    status, done, error = con.execute("SELECT status, steps_done, error FROM runs "
                                      "JOIN jobs ON job_id = run_id").fetchone()
    assert status == "failed" and done == 2 and "unreachable" in error
    assert con.execute("SELECT max(step) FROM emissions").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 2
    con.close()


@pytest.mark.slow
def test_default_scenario_smoke(tmp_path):
    scenario = load_scenario(Path(__file__).parents[2] / "scenarios" / "riverside_town.py")
    summary = run_simulation(RunConfig(scenario=scenario, db=tmp_path / "default.duckdb"))
    assert summary.agents >= 100 and summary.steps >= 5
    assert set(summary.emissions_by_kind) == {"instruction", "npc_dialogue", "tool_spec"}
    assert summary.calls == {"ok": sum(summary.calls.values())}
    # the first run shows a survey: every agent answers it at the last step
    assert summary.answers == summary.agents
    assert len(summary.surveys) == 1 and summary.surveys[0].startswith("flood_wall, step 6:")
