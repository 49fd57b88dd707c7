"""A run's starting graph is its own: the hub's links among its agents and the acquaintance
links of its own seed, not those other runs stored in the same database (an experiment's arms
and replicates share one file; in parallel they would otherwise see each other's links)."""

from __future__ import annotations

from pathlib import Path

import duckdb

import personahub
from personahub.personas.graph import Relation, save_relations, small_world_arrays
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="own_graph", personas=PersonaSource(limit=8),
                    graph=GraphGrowth(hops=0, acquaintances=2, rewire=0.6), steps=1,
                    tasks=("npc_dialogue",), activation=Activation(mode="count", count=1))


def edges(db: Path, run_id: str) -> set[tuple[str, str, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return set(con.execute("SELECT src, dst, relation FROM run_edges WHERE run_id = ?",
                               [run_id]).fetchall())


def run(db: Path, seed: int) -> str:
    return personahub.run_scenario(SCENARIO, db=db, seed=seed, progress=False).run_id


def test_a_run_sees_its_own_seed_s_acquaintances_not_an_earlier_run_s(tmp_path: Path) -> None:
    shared = tmp_path / "shared.duckdb"
    first, second = run(shared, 1), run(shared, 2)
    alone = run(tmp_path / "alone.duckdb", 2)
    assert edges(shared, first) != edges(shared, second)  # the seeds draw different graphs
    assert edges(shared, second) == edges(tmp_path / "alone.duckdb", alone)
    # the hub still records every run's acquaintance links
    with duckdb.connect(str(shared), read_only=True) as con:
        stored = set(con.execute("SELECT src, dst, relation FROM relations").fetchall())
    assert edges(shared, first) | edges(shared, second) <= stored


def test_the_hub_s_own_links_among_the_agents_stay_in_the_graph(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    first = run(db, 1)
    with duckdb.connect(str(db)) as con:
        ids = [r[0] for r in con.execute("SELECT persona_id FROM run_agents WHERE run_id = ? "
                                         "ORDER BY agent_id", [first]).fetchall()]
        near, far = small_world_arrays(len(ids), 2, 0.6, 3)  # the pairs seed 3 acquaints
        linked = set(zip(near.tolist(), far.tolist(), strict=True))
        a, b = next((a, b) for a in range(8) for b in range(a + 1, 8) if (a, b) not in linked)
        save_relations(con, [Relation(ids[a], ids[b], "friend", 1, "import")])
    later = edges(db, run(db, 3))
    assert (ids[a], ids[b], "friend") in later or (ids[b], ids[a], "friend") in later
