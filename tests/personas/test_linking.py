"""Triangle closing in persona-to-persona: the offline graph is social, not a forest."""

import asyncio

import networkx as nx
import pytest
from personahub.agents.llm import LLMClient, LLMSettings
from personahub.personas.expand import expand_hub, expansion_graph_stats
from personahub.personas.graph import graph_stats, load_graph, shape_stats, social_view
from personahub.personas.linking import (
    LINK_SOURCE,
    CandidateLink,
    link_relations,
    link_schema,
    pick_candidates,
)
from personahub.personas.record import Persona
from personahub.personas.store import connect, upsert_personas

from tests.conftest import persona_texts


def _hub(tmp_path, n=4):
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in persona_texts(n)]
    upsert_personas(con, people)
    return con, [p.persona_id for p in people]


def _expand(con, ids, links, seed=4):
    return asyncio.run(expand_hub(con, LLMClient(LLMSettings(seed=seed)), start_ids=ids, hops=3,
                                  fanout=2, link_candidates=links))


def test_three_offline_hops_with_linking_close_triangles(tmp_path):
    con, ids = _hub(tmp_path)
    summary = _expand(con, ids, links=4)
    shape = summary.graph
    assert summary.linked > 0 and shape["cycles"] > 0
    assert shape["clustering"] > 0.1  # a tree's is exactly 0
    assert shape["cycles"] == shape["edges"] - shape["nodes"] + shape["components"]
    links = con.execute("SELECT count(*) FROM relations WHERE source = ?", [LINK_SOURCE]).fetchone()[0]
    assert links == summary.linked
    calls = con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'expand:link'").fetchone()[0]
    assert 0 < calls <= summary.new_personas
    stats = graph_stats(load_graph(con))
    assert stats["cycles"] > 0 and stats["clustering"] > 0.1


def test_linking_off_grows_the_same_forest_as_before(tmp_path):
    con, ids = _hub(tmp_path)
    summary = _expand(con, ids, links=0)
    assert summary.linked == 0 and summary.graph["cycles"] == 0
    assert summary.graph["clustering"] == 0.0
    assert con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'expand:link'").fetchone()[0] == 0
    other, _ = _hub(tmp_path / "b")
    linked = _expand(other, ids, links=4)
    # linking adds edges and calls, never changes what the hop calls answered
    assert linked.new_personas == summary.new_personas and linked.edges == summary.edges


def test_offline_linking_is_deterministic(tmp_path):
    first, ids = _hub(tmp_path / "a")
    second, _ = _hub(tmp_path / "b")
    a, b = _expand(first, ids, links=3), _expand(second, ids, links=3)
    assert a.graph == b.graph and a.linked == b.linked
    assert expansion_graph_stats(first, a.expansion_id) == a.graph


def test_pick_candidates_puts_siblings_first_and_skips_self_and_source():
    assert pick_candidates("c", "p", ["c", "s1", "s2"], ["p", "n1", "s1", "n2"], 3) == ["s1", "s2", "n1"]
    assert pick_candidates("c", "p", ["c"], [], 4) == []


def test_link_answers_become_labelled_edges():
    links = [CandidateLink(knows=True, relation="  Old  Neighbour "), CandidateLink(knows=False),
             CandidateLink(knows=True, relation="")]
    edges = link_relations("c", ["a", "b", "d"], links, 2)
    assert [(e.dst, e.relation, e.hop, e.source) for e in edges] == [
        ("a", "old neighbour", 2, LINK_SOURCE), ("d", "acquaintance", 2, LINK_SOURCE)]
    schema = link_schema(3).model_json_schema()
    assert schema["properties"]["links"]["minItems"] == schema["properties"]["links"]["maxItems"] == 3
    with pytest.raises(ValueError):
        link_schema(0)


def test_shape_stats_of_a_tree_and_a_triangle():
    tree = shape_stats(nx.path_graph(4))
    assert (tree["cycles"], tree["clustering"], tree["components"]) == (0, 0.0, 1)
    triangle = shape_stats(nx.complete_graph(3))
    assert triangle["cycles"] == 1 and triangle["clustering"] == 1.0
    assert triangle["degree_histogram"] == {"2": 3}
    assert social_view(nx.MultiDiGraph()).number_of_nodes() == 0
