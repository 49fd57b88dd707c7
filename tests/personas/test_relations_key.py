"""The relations table without its key: a new hub's has none (DuckDB holds a key's index in
memory whatever its memory_limit, and an expansion's inserts loaded it: 72 MiB at 2M relations,
177 MiB at 6M), so its writers keep each (src, dst, relation) once themselves, and an
expansion's held memory does not grow with the relations. A hub made with the key keeps it, and
its old behaviour."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from personahub.core.store import connect, transaction
from personahub.personas.graph import Relation, save_links, save_relations
from personahub.personas.hub_memory import EXPAND_MEMORY_MB, KEY_BYTES_A_RELATION, expand_memory_mb
from personahub.personas.store import add_relations, relation_rows, relations_keyed

# the relations table as hubs made before its key was dropped have it
KEYED_RELATIONS = """
CREATE TABLE relations (
    src        VARCHAR NOT NULL,
    dst        VARCHAR NOT NULL,
    relation   VARCHAR NOT NULL,
    hop        INTEGER,
    source     VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (src, dst, relation)
)"""


def keyed_hub(path: Path) -> duckdb.DuckDBPyConnection:
    """Make a hub file whose relations table has the key, as earlier hubs do, and open it."""
    connect(path).close()
    raw = duckdb.connect(str(path))
    raw.execute("DROP TABLE relations")
    raw.execute(KEYED_RELATIONS)
    raw.close()
    return connect(path)


def columns(rows: list[tuple[str, str, str, int]]) -> dict[str, list[object]]:
    return {"src": [r[0] for r in rows], "dst": [r[1] for r in rows],
            "relation": [r[2] for r in rows], "hop": [r[3] for r in rows],
            "source": ["test"] * len(rows)}


# the same pair twice with one label (the second row's hop differs: the first row wins), and
# with another label (a relation of its own)
BATCH = [("a", "b", "colleague", 1), ("b", "c", "neighbour", 1), ("a", "b", "colleague", 2),
         ("a", "b", "rival", 1)]
STORED = [("a", "b", "colleague", 1, "test"), ("a", "b", "rival", 1, "test"),
          ("b", "c", "neighbour", 1, "test")]


def test_a_new_hub_has_no_key_on_relations(tmp_path):
    """Fails on main: the schema made the relations table with PRIMARY KEY (src, dst, relation)."""
    con = connect(tmp_path / "hub.duckdb")
    assert not relations_keyed(con)
    assert not con.execute("SELECT 1 FROM duckdb_indexes() WHERE table_name = 'relations'").fetchall()


def test_a_relation_given_twice_is_stored_once(tmp_path):
    """Repeats within one batch, across batches, and across batches of one transaction (not yet
    committed) go in once, the first row each."""
    con = connect(tmp_path / "hub.duckdb")
    assert add_relations(con, columns(BATCH)) == 4  # the rows offered
    add_relations(con, columns(BATCH[::-1][:2]))
    with transaction(con):
        add_relations(con, columns(BATCH))
        add_relations(con, columns(BATCH + [("c", "d", "friend", 3)]))
    assert relation_rows(con) == [*STORED, ("c", "d", "friend", 3, "test")]


def test_the_expansions_and_links_writers_store_a_relation_once(tmp_path):
    """save_relations (the expansion's batches) and save_links (acquaintances: distinct ids are
    anti-joined alone, repeated ids grouped first) leave what is stored."""
    con = connect(tmp_path / "hub.duckdb")
    relations = [Relation("a", "b", "colleague", 1), Relation("a", "b", "colleague", 2)]
    save_relations(con, relations)
    save_relations(con, relations)
    near, far = np.array([0, 1, 0]), np.array([1, 2, 2])
    for ids in (["p", "q", "r"], ["p", "q", "r"], ["s", "t", "s"]):  # s-t, t-s, s-s: s-t twice
        save_links(con, ids, near, far, relation="acquaintance", hop=0, source="scenario:x")
    assert [r[:3] for r in relation_rows(con)] == [
        ("a", "b", "colleague"), ("p", "q", "acquaintance"), ("p", "r", "acquaintance"),
        ("q", "r", "acquaintance"), ("s", "s", "acquaintance"), ("s", "t", "acquaintance"),
        ("t", "s", "acquaintance")]
    assert relation_rows(con)[0][3] == 1


def fill_relations(con: duckdb.DuckDBPyConnection, count: int, first: int = 0) -> None:
    """Store count distinct relations, numbered from first."""
    con.execute("INSERT INTO relations (src, dst, relation, hop, source) SELECT 'a' || i, "
                "'b' || i, 'knows', 1, 'fixture' FROM range(?, ?) t(i)", [first, first + count])


def test_an_expansions_share_does_not_grow_with_the_relations_of_a_new_hub(tmp_path):
    """Fails on main: the share grew by KEY_BYTES_A_RELATION a relation on every hub (131 MiB
    with these 50,000), for a key a new hub no longer has."""
    con = connect(tmp_path / "hub.duckdb")
    fill_relations(con, 50_000)
    small = expand_memory_mb(con)
    fill_relations(con, 200_000, first=50_000)
    assert small == expand_memory_mb(con) == EXPAND_MEMORY_MB


def test_a_hub_made_with_the_key_keeps_it_and_its_old_behaviour(tmp_path):
    """A hub file made with the key: opened now it keeps the key, which leaves repeats out as
    before (INSERT OR IGNORE; distinct links by an anti-join), and an expansion's share still
    leaves room for the key's index."""
    con = keyed_hub(tmp_path / "old.duckdb")
    assert relations_keyed(con)
    add_relations(con, columns(BATCH))
    with transaction(con):
        add_relations(con, columns(BATCH))
    save_links(con, ["p", "q"], np.array([0]), np.array([1]), relation="acquaintance", hop=0,
               source="scenario:x")
    save_links(con, ["p", "q"], np.array([0]), np.array([1]), relation="acquaintance", hop=0,
               source="scenario:x")
    assert relation_rows(con) == [*STORED, ("p", "q", "acquaintance", 0, "scenario:x")]
    fill_relations(con, 50_000)
    assert expand_memory_mb(con) == EXPAND_MEMORY_MB + 50_004 * KEY_BYTES_A_RELATION // 2**20
    con.close()
    again = connect(tmp_path / "old.duckdb")
    assert relations_keyed(again)
