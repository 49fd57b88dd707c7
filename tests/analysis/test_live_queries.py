"""The live view's queries over a finished product-launch run: the numbers the page shows are the
run's own (checked against plain SQL), the survey counts per step are complete, the graph is a
connected neighbourhood sample when the society is larger than the drawing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import networkx as nx
import pytest

from personahub.analysis import live_queries as q
from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, str]:
    db = tmp_path_factory.mktemp("live") / "launch.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(SCENARIOS / "product_launch.py"), db=db))
    con = duckdb.connect(str(db), read_only=True)
    yield con, summary.run_id
    con.close()


@pytest.mark.slow
def test_resolve_run(launch):
    con, run_id = launch
    assert q.resolve_run(con, None) == run_id
    assert q.resolve_run(con, run_id) == run_id
    assert q.resolve_run(con, "no-such-run") is None
    assert [r["run_id"] for r in q.list_runs(con)] == [run_id]


def test_overview_counts_are_the_runs(launch):
    con, run_id = launch
    o = q.overview(con, run_id)
    one = lambda sql: con.execute(sql, [run_id]).fetchone()[0]  # noqa: E731
    assert o["status"] == "finished" and o["steps_done"] == o["steps_planned"] == 5
    assert o["calls"] == one("select count(*) from llm_calls where run_id = ?") > 0
    assert o["tokens_in"] == one("select sum(tokens_in) from llm_calls where run_id = ?")
    assert o["duplicates"] == one("select count(*) from emissions where run_id = ? and is_duplicate")
    assert o["emissions"] == one("select count(*) from emissions where run_id = ?")
    assert o["answers"] == one("select count(*) from survey_answers where run_id = ?")
    assert o["agents"] == one("select count(*) from run_agents where run_id = ?")
    assert o["failed_actions"] == 0 and o["failed_calls"] == 0
    assert o["offline"] and "not a language model" in o["engine"]
    assert o["calls_per_s"] is None or o["calls_per_s"] > 0
    assert 0 <= o["duplicate_rate"] < 1


def test_steps_and_events(launch):
    con, run_id = launch
    steps = q.step_rows(con, run_id)
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert sum(s["calls"] for s in steps) == con.execute(
        "select count(*) from llm_calls where run_id = ? and step is not null", [run_id]).fetchone()[0]
    assert [e["step"] for e in q.events(con, run_id)] == [2, 4, 5]


def test_survey_distributions_per_step(launch):
    con, run_id = launch
    by_id = {s["id"]: s for s in q.surveys(con, run_id)}
    intent = by_id["purchase_intent"]
    assert intent["options"] == ["definitely", "probably", "unsure", "probably not", "definitely not"]
    assert intent["steps_planned"] == [1, 3, 5] and sorted(intent["steps"]) == ["1", "3", "5"]
    agents = con.execute("select count(*) from run_agents where run_id = ?", [run_id]).fetchone()[0]
    for step, counts in intent["steps"].items():
        assert sum(counts.values()) == agents
        assert counts == dict(con.execute(
            "select answer_choice, count(*) from survey_answers where run_id = ? and step = ? and "
            "survey_id = 'purchase_intent' group by 1", [run_id, int(step)]).fetchall())
    fairness = by_id["price_fairness"]
    assert fairness["kind"] == "scale" and fairness["options"] == [str(v) for v in range(1, 11)]
    assert set(fairness["steps"]["5"]) <= set(fairness["options"])


def test_stream_is_newest_first_and_bounded(launch):
    con, run_id = launch
    items = q.stream(con, run_id, limit=7)
    assert len(items) == 7
    assert [i["step"] for i in items] == sorted((i["step"] for i in items), reverse=True)
    assert items[0]["step"] == 5
    dialogue = [i for i in q.stream(con, run_id, limit=500) if i["kind"] == "npc_dialogue"]
    assert dialogue and all(i["to_agent"] is not None for i in dialogue)


def test_graph_whole_and_sampled(launch):
    con, run_id = launch
    whole = q.graph(con, run_id)
    assert not whole["sampled"] and len(whole["nodes"]) == whole["total_nodes"] == 120
    kinds = {n["kind"] for n in whole["nodes"]}
    assert "idle" in kinds and kinds - {"idle"} <= {"instruction", "npc_dialogue", "knowledge_text"}
    part = q.graph(con, run_id, max_nodes=25)
    assert part["sampled"] and len(part["nodes"]) == 25 and part["total_nodes"] == 120
    g = nx.Graph(part["edges"])
    g.add_nodes_from(n["id"] for n in part["nodes"])
    assert nx.is_connected(g)  # a neighbourhood, not a scatter
    ids = {n["id"] for n in part["nodes"]}
    assert all(a in ids and b in ids for a, b in part["edges"])
    assert q.graph(con, run_id, max_nodes=25) == part  # seeded: the same drawing every poll
