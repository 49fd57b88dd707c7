
import networkx as nx

from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.expand import related_personas_schema
from personahub.personas.graph import Relation, load_graph, save_graph, save_relations, social_view
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.fakes import FakeClient, people_answers


def hub(tmp_path, n=8):
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in persona_texts(n)]
    upsert_personas(con, people)
    return con, people


def test_graph_round_trips_with_multiple_labels(tmp_path):
    con, people = hub(tmp_path)
    a, b, c = (p.persona_id for p in people[:3])
    save_relations(con, [Relation(a, b, "colleague", 1), Relation(a, b, "neighbour", 1),
                         Relation(b, c, "supplier", 2)])
    graph = load_graph(con)
    other = connect(tmp_path / "copy.duckdb")
    save_graph(other, graph)
    again = load_graph(other)
    assert nx.utils.graphs_equal(graph, again)
    assert sorted(k for _, _, k in again.edges(keys=True)) == ["colleague", "neighbour", "supplier"]
    assert again.nodes[a]["text"] == people[0].text
    assert social_view(again).number_of_edges() == 2


def test_near_duplicate_becomes_an_edge_not_a_node(tmp_path):
    con, people = hub(tmp_path, n=2)
    twin = people[1].text + " "  # same words: a near (here exact) duplicate of persona 2
    fresh = "A glassblower from Murano who teaches night classes and keeps rescue pigeons."
    caller = FakeClient(people_answers([twin, fresh]))
    summary = expand_hub(con, caller, start_ids=[people[0].persona_id], hops=1,
                                     fanout=2)
    assert summary.new_personas == 1 and summary.merged_into_existing == 1
    graph = load_graph(con)
    assert graph.has_edge(people[0].persona_id, people[1].persona_id)
    assert graph.number_of_nodes() == 3


def test_offline_expansion_hops_and_schema(tmp_path):
    con, people = hub(tmp_path, n=4)
    assert related_personas_schema(3).model_json_schema()["properties"]["people"]["minItems"] == 3
    summary = expand_hub(con, LLMClient(LLMSettings(seed=4)),
                                     start_ids=[p.persona_id for p in people], hops=3, fanout=2)
    assert summary.hops == 3 and summary.asked >= 4 + 8  # 4 seeds, then their 8 relations, ...
    hops = dict(con.execute("select hop, count(*) from personas group by 1").fetchall())
    assert hops[0] == 4 and hops[1] > 0 and hops[3] > 0
    assert con.execute("select count(*) from llm_calls where purpose='expand'").fetchone()[0] == summary.asked


def test_social_graph_matches_the_multigraph_view(tmp_path):
    con, people = hub(tmp_path, n=6)
    ids = [p.persona_id for p in people]
    save_relations(con, [Relation(ids[0], ids[1], "colleague", 1), Relation(ids[1], ids[0], "rival", 1),
                         Relation(ids[2], ids[3], "supplier", 1), Relation(ids[4], ids[5], "parent", 1)])
    from personahub.personas.graph import social_graph
    subset = ids[:4]
    direct = social_graph(con, subset)
    via_multigraph = social_view(load_graph(con, subset))
    assert list(direct.nodes) == subset
    assert {frozenset(e) for e in direct.edges} == {frozenset(e) for e in via_multigraph.edges}
    assert direct.edges[ids[0], ids[1]]["relation"] == "colleague"  # first label alphabetically


def test_small_world_pairs_are_seeded_simple_and_keep_the_edge_count():
    from personahub.personas.graph import small_world_pairs

    pairs = small_world_pairs(200, 4, 0.2, seed=3)
    assert pairs == small_world_pairs(200, 4, 0.2, seed=3)
    assert pairs != small_world_pairs(200, 4, 0.2, seed=4)
    assert len(pairs) == len(set(pairs)) == 200 * 2  # n * k / 2 edges, no duplicates
    assert all(0 <= a < b < 200 for a, b in pairs)  # no self loops, normalised
    ring = small_world_pairs(10, 4, 0.0, seed=1)
    assert (0, 1) in ring and (0, 2) in ring and (0, 3) not in ring
    assert small_world_pairs(2, 4, 0.1, seed=1) == []


def test_social_edges_group_and_order_pairs_by_their_ids(tmp_path):
    """Pairs grouped by the unordered (id, id), first label alphabetically, listed by the lesser
    id then the greater: what the string-keyed query gave, whatever the persona order."""
    import random

    from personahub.personas.graph import social_edges

    con, people = hub(tmp_path, n=30)
    ids = [p.persona_id for p in people]
    rng = random.Random(5)
    relations = {Relation(rng.choice(ids), rng.choice(ids), rng.choice(["a", "b", "c"]), 1)
                 for _ in range(120)}
    save_relations(con, relations)
    subset = rng.sample(ids, 25)
    best: dict[tuple[str, str], str] = {}
    for r in relations:
        if r.src != r.dst and r.src in subset and r.dst in subset:
            key = (min(r.src, r.dst), max(r.src, r.dst))
            best[key] = min(best.get(key, r.relation), r.relation)
    pos = {pid: i for i, pid in enumerate(subset)}
    want = [(a, b, best[a, b]) for a, b in sorted(best)]  # the order pairs were added in
    edges = social_edges(con, subset)
    order = sorted(range(len(edges)), key=lambda i: int(edges.added[i]))
    src, dst, rel = edges.rows()
    got = [(min(src[i], dst[i]), max(src[i], dst[i]), rel[i]) for i in order]
    assert got == want
    assert all(pos[s] < pos[d] for s, d in zip(src, dst, strict=True))


def _limit_while_expanding(con, people, monkeypatch) -> list[str]:
    """Expand one persona and return DuckDB's memory limit as the batches' index is built."""
    import personahub.pipelines.expand as pipeline

    seen = []
    build = pipeline.hub_index

    def watched(c, threshold, folder):
        seen.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return build(c, threshold, folder)

    monkeypatch.setattr(pipeline, "hub_index", watched)
    fresh = ["A glassblower from Murano who teaches night classes and keeps rescue pigeons.",
             "A tugboat engineer in Rotterdam who restores jukeboxes on her days off."]
    expand_hub(con, FakeClient(people_answers(fresh)), start_ids=[people[0].persona_id], hops=1,
               fanout=2)
    return seen


def test_an_expansion_holds_duckdb_to_its_share_of_memory(tmp_path, monkeypatch):
    """The expansion's writes scan the hub (ids checked, texts read by id): DuckDB's pool is held
    to a fixed share while its batches run, so a larger hub evicts blocks instead of growing."""
    con, people = hub(tmp_path, n=2)
    con.execute("SET memory_limit = '2GiB'")
    assert _limit_while_expanding(con, people, monkeypatch) == ["128.0 MiB"]


def test_an_expansions_share_leaves_room_for_the_relations_key(tmp_path, monkeypatch):
    """On a hub made with the relations key, DuckDB keeps its index in memory and counts it
    against the limit; a hold fixed at 128 MiB refused a 3M hub's expansion once its inserts
    loaded the index (177 MiB), so there the share grows by KEY_BYTES_A_RELATION for each
    relation the hub holds (a new hub's stays fixed: test_relations_key.py)."""
    from personahub.personas.hub_memory import KEY_BYTES_A_RELATION
    from tests.personas.test_relations_key import keyed_hub

    con = keyed_hub(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in persona_texts(2)]
    upsert_personas(con, people)
    con.execute("INSERT INTO relations (src, dst, relation, hop, source) SELECT 'a' || i, "
                "'b' || i, 'knows', 1, 'fixture' FROM range(50000) t(i)")
    seen = _limit_while_expanding(con, people, monkeypatch)
    assert seen == [f"{128 + 50000 * KEY_BYTES_A_RELATION // 2**20}.0 MiB"] == ["131.0 MiB"]


def test_an_expansion_gives_the_callers_connection_its_memory_limit_back(tmp_path):
    """The expansion holds DuckDB to a fixed share while it runs (and checks that it does), then
    leaves a connection passed in with the limit it had."""
    con, people = hub(tmp_path, n=4)
    con.execute("SET memory_limit = '3GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    during = []

    class Watching(LLMClient):
        async def structured(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            during.append(con.cursor().execute("SELECT current_setting('memory_limit')")
                          .fetchone()[0])
            return await super().structured(*args, **kwargs)

    expand_hub(con, Watching(LLMSettings(seed=4)), start_ids=[p.persona_id for p in people],
               hops=1, fanout=2)
    assert during and set(during) == {"128.0 MiB"}
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == before


def test_an_expansions_summary_reads_the_relations_within_its_share(tmp_path, monkeypatch):
    """The summary's graph joins the hub's whole relations table after the batches: DuckDB is held
    to SUMMARY_MEMORY_MB while it counts (on main it ran at the caller's limit, and the pool kept
    every block it read), and the caller's limit comes back after."""
    import personahub.personas.expand as expand

    con, people = hub(tmp_path, n=4)
    con.execute("SET memory_limit = '3GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    seen = []
    shape = expand.expansion_graph_stats

    def watched(c, expansion_id):
        seen.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return shape(c, expansion_id)

    monkeypatch.setattr(expand, "expansion_graph_stats", watched)
    summary = expand_hub(con, LLMClient(LLMSettings(seed=4)),
                         start_ids=[p.persona_id for p in people], hops=1, fanout=2)
    assert seen == ["64.0 MiB"] and summary.graph["nodes"] > 4
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == before


def test_an_expansions_start_reads_the_hub_within_its_share(tmp_path, monkeypatch):
    """Recording a new expansion finds its start ids in the whole hub: DuckDB is held to
    SUMMARY_MEMORY_MB while it does (at the caller's limit the pool kept every block of the scan,
    and the command's peak grew with the hub), and the caller's limit comes back after."""
    import personahub.personas.expand as expand

    con, people = hub(tmp_path, n=4)
    con.execute("SET memory_limit = '3GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    seen = []
    fetch = expand.fetch_personas

    def watched(c, ids=None):
        seen.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return fetch(c, ids)

    monkeypatch.setattr(expand, "fetch_personas", watched)
    expand_hub(con, LLMClient(LLMSettings(seed=4)), start_ids=[p.persona_id for p in people],
               hops=1, fanout=2)
    assert seen == ["64.0 MiB"]
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == before
