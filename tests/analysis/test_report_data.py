"""The data behind the report's charts: survey shares, events, roles, the drawn neighbourhood."""

from __future__ import annotations

from pathlib import Path

import duckdb
import networkx as nx
import pytest

from personahub.analysis.report import duplicate_axis_limit
from personahub.analysis.report_data import (
    NO_EMISSION,
    agent_roles,
    neighbourhood_sample,
    role_counts,
    run_events,
    survey_shares,
)
from personahub.core.store import connect

INTENT = ["definitely", "probably", "unsure", "probably not", "definitely not"]


def ro(db: object) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db), read_only=True)


def test_launch_survey_shares_sum_to_one_per_step_in_declared_order(launch_db: dict) -> None:
    con = ro(launch_db["db"])
    surveys = survey_shares(con, launch_db["run"])
    answers = con.execute("SELECT survey_id, step, answer_choice, count(*) FROM survey_answers "
                          "WHERE run_id = ? AND survey_id = 'purchase_intent' GROUP BY ALL",
                          [launch_db["run"]]).fetchall()
    con.close()
    assert [s.survey_id for s in surveys] == ["purchase_intent", "price_fairness"]  # scenario order
    intent, price = surveys
    assert intent.options == INTENT and intent.steps == [1, 3, 5]
    assert price.options == [str(v) for v in range(1, 11)] and price.steps == [5]
    for survey in surveys:
        for row in survey.shares():
            assert sum(row) == pytest.approx(1.0)
    for _, step, choice, n in answers:  # shares are counts over that step's answers
        i = intent.steps.index(step)
        assert intent.shares()[i][INTENT.index(choice)] == pytest.approx(n / intent.totals()[i])


def test_launch_events_and_roles(launch_db: dict) -> None:
    con = ro(launch_db["db"])
    events = run_events(con, launch_db["run"])
    roles = agent_roles(con, launch_db["run"])
    made = dict(con.execute("SELECT persona_id, count(*) FROM emissions WHERE run_id = ? GROUP BY 1",
                            [launch_db["run"]]).fetchall())
    agents = [r[0] for r in con.execute("SELECT persona_id FROM run_agents WHERE run_id = ?",
                                        [launch_db["run"]]).fetchall()]
    con.close()
    assert [(e.label, e.step) for e in events] == [("E1", 2), ("E2", 4), ("E3", 5)]
    assert events[0].text.startswith("Launch day") and events[0].recipients > 0
    assert set(roles) == set(made)
    assert set(roles.values()) <= {"instruction", "npc_dialogue", "knowledge_text"}
    counts = role_counts(agents, roles)
    assert sum(counts.values()) == len(agents)
    assert counts[NO_EMISSION] == len(agents) - len(made)


def _survey_db(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "s.duckdb")
    rows = [("r", 1, "q", "choice", "no", None)] * 3 + [("r", 1, "q", "choice", "yes", None)] \
        + [("r", 2, "q", "choice", "yes", None)] * 2 + [("r", 2, "s", "scale", None, 3)] \
        + [("r", 2, "s", "scale", None, 1)] + [("r", 2, "t", "text", None, None)]
    con.executemany("INSERT INTO survey_answers (run_id, step, survey_id, question, persona_id, "
                    "agent_id, answer_kind, answer_choice, answer_scale) "
                    "VALUES (?, ?, ?, 'q?', 'p', ?, ?, ?, ?)",
                    [(*r[:3], agent, *r[3:]) for agent, r in enumerate(rows)])
    return con


def test_shares_without_a_declared_scenario(tmp_path: Path) -> None:
    con = _survey_db(tmp_path)
    surveys = {s.survey_id: s for s in survey_shares(con, None)}
    con.close()
    assert set(surveys) == {"q", "s"}  # free-text surveys have no shares
    q = surveys["q"]
    assert q.options == ["no", "yes"] and q.steps == [1, 2]
    assert q.counts == [[3, 1], [0, 2]] and q.shares() == [[0.75, 0.25], [0.0, 1.0]]
    assert surveys["s"].options == ["1", "3"] and surveys["s"].shares() == [[0.5, 0.5]]


def test_neighbourhood_sample_is_connected_around_the_hub() -> None:
    graph = nx.barabasi_albert_graph(2000, 2, seed=3)
    hub = max(graph.nodes, key=graph.degree)
    nodes, starts = neighbourhood_sample(graph, 300)
    assert len(nodes) == 300 and starts[0] == hub
    assert nx.is_connected(graph.subgraph(nodes))  # not a ring of unconnected dots
    small = nx.path_graph(10)
    assert neighbourhood_sample(small, 300) == (list(range(10)), [])
    two = nx.disjoint_union(nx.star_graph(4), nx.star_graph(3))  # 5 + 4 nodes
    nodes, starts = neighbourhood_sample(two, 7)
    assert len(nodes) == 7 and len(starts) == 2


def test_duplicate_axis_is_scaled_to_the_data() -> None:
    assert duplicate_axis_limit([0.003]) == 0.01  # 0.3% is readable on a 0-1% axis
    assert duplicate_axis_limit([0.0, 0.0213]) == pytest.approx(0.0213 * 1.35)
    assert duplicate_axis_limit([0.9]) == 1.0
    assert duplicate_axis_limit([]) == 0.01
