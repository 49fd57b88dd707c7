import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.graph import (
    Relation,
    graph_stats,
    load_graph,
    read_graphml,
    save_graph,
    save_relations,
)
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.pipeline_helpers import personas_snapshot, relations_snapshot


def small_hub(path):
    con = connect(path)
    ps = [Persona(text=t, source="test", attributes={"age": 30 + i, "tags": ["a", "é"]})
          for i, t in enumerate(persona_texts(5))]
    upsert_personas(con, ps)
    a, b, c, d, _ = (p.persona_id for p in ps)
    save_relations(con, [Relation(a, b, "colleague", 1, "expand"), Relation(a, b, "neighbour", 1, "expand"),
                         Relation(b, c, "supplier", 2, "expand"), Relation(d, a, "acquaintance", 0,
                                                                           "scenario:x")])
    return con, ps


def test_stats_counts(tmp_path):
    con, ps = small_hub(tmp_path / "s.duckdb")
    stats = graph_stats(load_graph(con))
    # a and b are related twice: one edge (a pair of related personas), two relations
    assert (stats["nodes"], stats["edges"], stats["components"], stats["isolated"]) == (5, 3, 2, 1)
    assert stats["relations"] == 4 and stats["largest_component"] == 4
    assert stats["degree"] == {"min": 0, "median": 1, "max": 2, "mean": 1.2}
    assert stats["degree_histogram"] == {"0": 1, "1": 2, "2": 2}
    assert stats["relation_labels"] == {"colleague": 1, "neighbour": 1, "supplier": 1, "acquaintance": 1}
    assert stats["edges_by_hop"] == {0: 1, 1: 2, 2: 1} and stats["nodes_by_hop"] == {0: 5}
    assert graph_stats(nx.MultiDiGraph())["nodes"] == 0


def test_duckdb_networkx_duckdb_round_trip_is_lossless(tmp_path):
    con = connect(tmp_path / "a.duckdb")
    upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(4)])
    start = [r[0] for r in con.execute("select persona_id from personas order by seq").fetchall()]
    expand_hub(con, LLMClient(LLMSettings(seed=2)), start_ids=start, hops=2, fanout=2)
    copy = connect(tmp_path / "b.duckdb")
    save_graph(copy, load_graph(con))
    assert personas_snapshot(copy) == personas_snapshot(con)
    assert relations_snapshot(copy) == relations_snapshot(con)


def test_graphml_round_trip_preserves_nodes_edges_labels(tmp_path):
    con, ps = small_hub(tmp_path / "s.duckdb")
    graph = load_graph(con)
    con.close()
    runner = CliRunner()
    out = tmp_path / "g.graphml"
    result = runner.invoke(app, ["personas", "export-graph", "--db", str(tmp_path / "s.duckdb"), "--out",
                                 str(out)])
    assert result.exit_code == 0, result.output
    back = read_graphml(out)
    assert nx.utils.graphs_equal(graph, back)
    assert sorted(back.edges(keys=True)) == sorted(graph.edges(keys=True))
    for node, data in graph.nodes(data=True):
        assert back.nodes[node] == data
    for u, v, key, data in graph.edges(keys=True, data=True):
        assert back.edges[u, v, key] == data
    raw = nx.read_graphml(out)  # any GraphML reader sees scalars
    assert json.loads(raw.nodes[ps[0].persona_id]["attributes"]) == {"age": 30, "tags": ["a", "é"]}
    again = connect(tmp_path / "again.duckdb")
    save_graph(again, back)
    assert nx.utils.graphs_equal(load_graph(again), graph)


def test_stats_cli(tmp_path):
    con, ps = small_hub(tmp_path / "s.duckdb")
    con.execute("update personas set is_duplicate = true where persona_id = ?", [ps[4].persona_id])
    con.close()
    runner = CliRunner()
    result = runner.invoke(app, ["personas", "stats", "--db", str(tmp_path / "s.duckdb"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["nodes"] == 4 and stats["flagged_duplicates"] == 1 and stats["components"] == 1
    table = runner.invoke(app, ["personas", "stats", "--db", str(tmp_path / "s.duckdb"),
                                "--include-duplicates"])
    assert table.exit_code == 0 and "relation labels" in table.output and "supplier" in table.output


def random_hub(path, seed: int):
    """Personas of several sources and hops, relations with repeated labels, a self-loop, ends
    outside the live set and flagged duplicates: what the SQL statistics must count as networkx
    does."""
    import random

    from personahub.personas.store import add_relations

    rng = random.Random(seed)
    con = connect(path)
    sources = ["expand", "text-to-persona", "seed", "people.jsonl", "scenario:town", "other.csv"]
    ps = [Persona(text=f"{t} {i}", source=rng.choice(sources), hop=rng.choice([0, 1, 2, 3]))
          for i, t in enumerate(persona_texts(40))]
    upsert_personas(con, ps)
    ids = [p.persona_id for p in ps]
    labels = ["friend", "colleague", "neighbour", "rival", "mentor"]
    rows = {(rng.choice(ids), rng.choice(ids), rng.choice(labels)) for _ in range(rng.randint(0, 70))}
    rows.add((ids[0], ids[0], "self"))
    rows = sorted(rows)
    add_relations(con, {"src": [r[0] for r in rows], "dst": [r[1] for r in rows],
                        "relation": [r[2] for r in rows],
                        "hop": [rng.choice([None, 0, 1, 2]) for _ in rows],
                        "source": ["test"] * len(rows)})
    con.execute("UPDATE personas SET is_duplicate = true WHERE persona_id IN (SELECT unnest(?))",
                [rng.sample(ids, 4)])
    return con


def test_stats_in_sql_equal_the_networkx_graph(tmp_path):
    from personahub.personas.graph import hub_graph_stats

    con = random_hub(tmp_path / "r.duckdb", 3)
    assert hub_graph_stats(con) == graph_stats(load_graph(con, include_duplicates=False))


def test_stats_in_sql_group_the_pairs_in_passes_as_in_one(tmp_path, monkeypatch):
    """The distinct pairs grouped a hash partition at a time give the networkx figures too."""
    from personahub.personas import store
    from personahub.personas.graph import hub_graph_stats

    monkeypatch.setattr(store, "PAIRS_A_PASS", 7)
    for seed in (3, 5):
        con = random_hub(tmp_path / f"p{seed}.duckdb", seed)
        for include in (False, True):
            assert hub_graph_stats(con, include_duplicates=include) == graph_stats(
                load_graph(con, include_duplicates=include))
        con.close()


@pytest.mark.slow
def test_stats_in_sql_equal_the_networkx_graphs(tmp_path):
    from personahub.personas.graph import hub_graph_stats

    for seed in range(12):
        con = random_hub(tmp_path / f"r{seed}.duckdb", seed)
        for include in (False, True):
            want = graph_stats(load_graph(con, include_duplicates=include))
            assert hub_graph_stats(con, include_duplicates=include) == want, (seed, include)
        con.close()
    con, _ = small_hub(tmp_path / "s.duckdb")
    assert hub_graph_stats(con) == graph_stats(load_graph(con, include_duplicates=False))
    con.execute("DELETE FROM relations")
    con.execute("DELETE FROM personas")
    assert hub_graph_stats(con) == graph_stats(nx.MultiDiGraph())


def test_stats_and_sample_print_no_progress_bar_into_their_output(tmp_path, monkeypatch):
    """DuckDB draws its progress bar on stdout once a query runs past two seconds, which a large
    hub's do: inside --json or a list of ids. The store's connections turn it off."""
    import duckdb

    from personahub.core import store
    from personahub.personas import carve, graph

    con, _ = small_hub(tmp_path / "s.duckdb")
    con.close()
    settings: list[object] = []
    opened = duckdb.connect

    def bar_on(*args, **kwargs):  # DuckDB's default outside pytest (here it starts off)
        con = opened(*args, **kwargs)
        con.execute("SET enable_progress_bar = true")
        return con

    monkeypatch.setattr(store.duckdb, "connect", bar_on)

    def watched(original):
        def call(con, *args, **kwargs):
            settings.append(con.execute(
                "SELECT current_setting('enable_progress_bar')").fetchall()[0][0])
            return original(con, *args, **kwargs)
        return call

    monkeypatch.setattr(graph, "hub_graph_stats", watched(graph.hub_graph_stats))
    monkeypatch.setattr(carve, "carve", watched(carve.carve))
    runner = CliRunner()
    stats = runner.invoke(app, ["personas", "stats", "--db", str(tmp_path / "s.duckdb"), "--json"])
    sample = runner.invoke(app, ["personas", "sample", "--db", str(tmp_path / "s.duckdb"), "-k",
                                 "2", "--format", "ids"])
    assert stats.exit_code == 0 and sample.exit_code == 0, stats.output + sample.output
    assert settings == [False, False]


def _component_sizes(edges, nodes):
    """The (size, count) rows the SQL contraction gives for a simple graph on nodes 1..nodes."""
    import duckdb

    from personahub.personas.store import _components

    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE _g_simple (x BIGINT, y BIGINT)")
    pairs = sorted({(min(a, b), max(a, b)) for a, b in edges if a != b})
    if pairs:
        con.executemany("INSERT INTO _g_simple VALUES (?, ?)", pairs)
    return _components(con, nodes)


def _networkx_sizes(edges, nodes):
    from collections import Counter

    g = nx.Graph()
    g.add_nodes_from(range(1, nodes + 1))
    g.add_edges_from(edges)
    return sorted(Counter(len(c) for c in nx.connected_components(g)).items())


@pytest.mark.slow
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(1, n), st.integers(1, n)), max_size=80))))
@settings(max_examples=60, deadline=None)
def test_components_by_contraction_equal_networkx(graph):
    nodes, edges = graph
    assert _component_sizes(edges, nodes) == _networkx_sizes(edges, nodes)


def test_components_by_contraction_on_paths_stars_and_cycles():
    """Shapes where hooks chain far: a path whose labels fall along it, a path in shuffled order,
    a star, a cycle, and isolated nodes beside them."""
    import random

    rng = random.Random(1)
    path = [(v, v + 1) for v in range(1, 300)]
    shuffled = list(range(301, 700))
    rng.shuffle(shuffled)
    wander = list(zip(shuffled, shuffled[1:], strict=False))
    star = [(700, v) for v in range(701, 760)]
    cycle = [(v, v + 1) for v in range(760, 800)] + [(800, 760)]
    edges = path + wander + star + cycle
    assert _component_sizes(edges, 820) == _networkx_sizes(edges, 820) == [
        (1, 20), (41, 1), (60, 1), (300, 1), (399, 1)]
