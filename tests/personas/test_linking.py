"""Triangle closing in persona-to-persona: the offline graph is social, not a forest."""


import networkx as nx
import pytest

from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.expand import expansion_graph_stats, related_personas_schema
from personahub.personas.graph import graph_stats, load_graph, shape_stats, social_view
from personahub.personas.linking import (
    LINK_SOURCE,
    CandidateLink,
    link_relations,
    link_schema,
    pick_candidates,
)
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.fakes import FakeClient, same_person_links


def _hub(tmp_path, n=4):
    tmp_path.mkdir(exist_ok=True)  # a database's folder is never created for it
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in persona_texts(n)]
    upsert_personas(con, people)
    return con, [p.persona_id for p in people]


def _expand(con, ids, links, seed=4):
    return expand_hub(con, LLMClient(LLMSettings(seed=seed)), start_ids=ids, hops=3,
                                  fanout=2, link_candidates=links)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_link_embedder_joins_the_seeds_trees(tmp_path):
    """Candidates from the source's circle never leave its seed's tree; the nearest people of
    the whole expansion do, so the graph becomes one society instead of one per seed."""
    con, ids = _hub(tmp_path / "a", n=6)
    alone = _expand(con, ids, links=4)
    other, _ = _hub(tmp_path / "b", n=6)
    joined = expand_hub(other, LLMClient(LLMSettings(seed=4)), start_ids=ids, hops=3,
                                    fanout=2, link_candidates=4, link_embedder="hash")
    assert alone.graph["components"] == 6
    assert joined.graph["components"] < alone.graph["components"]
    assert joined.graph["cycles"] > 0 and joined.graph["clustering"] > 0.1
    config = other.execute("SELECT config FROM expansions JOIN jobs ON job_id = expansion_id").fetchone()[0]
    assert '"link_embedder": "hash"' in config


def test_the_model_saying_same_person_merges_instead_of_adding(tmp_path):
    con, ids = _hub(tmp_path)
    fake = FakeClient(same_person_links(), inner=LLMClient(LLMSettings(seed=4)))
    summary = expand_hub(con, fake, start_ids=ids, hops=2, fanout=2, link_candidates=3)
    merges = con.execute("SELECT persona_id, merged_into, method FROM persona_merges").fetchall()
    assert merges and {m for *_, m in merges} == {"model"}
    gone = [pid for pid, *_ in merges]
    assert con.execute("SELECT count(*) FROM personas WHERE persona_id IN (SELECT unnest(?))",
                       [gone]).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM relations WHERE src IN (SELECT unnest(?)) "
                       "OR dst IN (SELECT unnest(?))", [gone, gone]).fetchone()[0] == 0
    known = {r[0] for r in con.execute("SELECT persona_id FROM personas").fetchall()}
    assert {into for _, into, _ in merges} <= known
    assert summary.merged_into_existing >= len(merges)
    assert not set(gone) & set(summary.new_ids)


def test_a_persona_close_to_a_known_one_by_embedding_is_merged(tmp_path):
    """Reworded (four words added to twenty): MinHash at 0.9 lets it through, cosine does not."""
    long = [f"{t[:-1]} on weekends and teaches evening classes at the community centre downtown."
            for t in persona_texts(3)]
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in long]
    upsert_personas(con, people)
    reworded = long[1][:-1] + " with great patience every week."
    related = related_personas_schema(1)

    def answer(call):
        if call.purpose == "expand" and call.persona_id == people[0].persona_id:
            return related(people=[{"relation": "cousin", "persona": reworded}])
        return None

    fake = FakeClient(answer, inner=LLMClient(LLMSettings(seed=4)))
    expand_hub(con, fake, start_ids=[p.persona_id for p in people], hops=1, fanout=1,
                           link_embedder="hash")
    [(into, method, score)] = con.execute(
        "SELECT merged_into, method, score FROM persona_merges").fetchall()
    assert (into, method) == (people[1].persona_id, "embedding") and 0.9 <= score < 1
    assert con.execute("SELECT count(*) FROM relations WHERE src = ? AND dst = ?",
                       [people[0].persona_id, people[1].persona_id]).fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM personas WHERE text = ?", [reworded]).fetchone()[0] == 0
