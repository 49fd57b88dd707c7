"""A spilled dedup stage's flags: the personas table written again with them, as an UPDATE would
leave it, in its order and with its definition."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personahub.core.errors import PersonahubError
from personahub.core.store import connect, scalar, transaction
from personahub.personas.dedup import mark_duplicates_from_files
from personahub.personas.minhash_spill import Spilled
from personahub.personas.store import mark_spilled_duplicates

COLUMNS = "persona_id, seq, text, source, source_ref, attributes, hop, created_at, " \
          "is_duplicate, duplicate_of, dup_stage, gate"


def fill(con: duckdb.DuckDBPyConnection, count: int) -> None:
    """count personas p0.. with texts, in seq order; p3 already flagged by stage 2."""
    con.execute(
        "INSERT INTO personas (persona_id, text, source, hop, gate) "
        "SELECT 'p' || i, 'text ' || i, 'bench', i % 3, 'passed' FROM range($n) AS r(i) ORDER BY i",
        {"n": count})
    con.execute("UPDATE personas SET is_duplicate = true, duplicate_of = 'p0', "
                "dup_stage = 'embedding' WHERE persona_id = 'p3'")


def write_stage(folder: Path, ids: list[str], marks: dict[int, int], shards: int = 3) -> Spilled:
    """A stage's files: the ids of its text indexes in shards, and its marks (later -> earlier)."""
    (folder / "sign").mkdir(parents=True)
    (folder / "marks").mkdir()
    step = -(-len(ids) // shards)
    for shard, start in enumerate(range(0, len(ids), step)):
        chunk = ids[start:start + step]
        pq.write_table(pa.table({"index": pa.array(range(start, start + len(chunk)), pa.int64()),
                                 "persona_id": chunk}),
                       folder / "sign" / f"{shard:06d}.ids.parquet")
    later = sorted(marks)
    half = len(later) // 2
    for part, keys in enumerate((later[:half], later[half:])):
        pq.write_table(pa.table({"later": pa.array(keys, pa.int64()),
                                 "earlier": pa.array([marks[k] for k in keys], pa.int64())}),
                       folder / "marks" / f"{part:06d}.parquet")
    return Spilled(len(ids), len(marks), folder)


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Every persona's columns, in the table's own order."""
    return con.execute(f"SELECT {COLUMNS} FROM personas ORDER BY rowid").fetchall()


@pytest.fixture
def hub(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "hub.duckdb")
    yield con
    con.close()


def test_the_flags_are_set_on_the_marked_and_nothing_else_moves(hub, tmp_path):
    count = 300_000  # three row groups, on disk: a parallel rewrite moved one of them
    fill(hub, count)
    hub.execute("CHECKPOINT")
    before = rows(hub)
    ids = [f"p{i}" for i in range(count)]
    # every 7th text a copy of the one before it; p3 (flagged already) is marked too
    marks = {i: i - 1 for i in range(7, count, 7)} | {3: 2}
    spilled = write_stage(tmp_path / "work", ids, marks)
    with transaction(hub):
        mark_spilled_duplicates(hub, spilled.marks_files, spilled.ids_files, "minhash")
    want = []
    for row in before:
        index = int(row[0][1:])
        if index in marks and not row[8]:
            row = (*row[:8], True, f"p{marks[index]}", "minhash", row[11])
        want.append(row)
    assert rows(hub) == want  # the same rows in the same order; p3 keeps stage 2's flag
    assert scalar(hub, "SELECT count(*) FROM personas WHERE dup_stage = 'minhash'") == \
        len(marks) - 1


def test_the_written_table_keeps_its_definition(hub, tmp_path):
    fill(hub, 20)
    spilled = write_stage(tmp_path / "work", [f"p{i}" for i in range(20)], {5: 1})
    with transaction(hub):
        mark_spilled_duplicates(hub, spilled.marks_files, spilled.ids_files, "minhash")
    hub.execute("INSERT INTO personas (persona_id, text, gate) VALUES ('new', 'a new one', 'passed')")
    new = hub.execute("SELECT seq, hop, is_duplicate FROM personas WHERE persona_id = 'new'").fetchone()
    assert new == (21, 0, False)  # the sequence and the defaults still apply
    with pytest.raises(duckdb.ConstraintException):
        hub.execute("INSERT INTO personas (persona_id, text, gate) VALUES ('x', NULL, 'passed')")


def test_an_index_a_user_made_on_the_table_is_made_again(hub, tmp_path):
    fill(hub, 20)
    hub.execute("CREATE INDEX by_source ON personas (source)")
    spilled = write_stage(tmp_path / "work", [f"p{i}" for i in range(20)], {6: 2})
    with transaction(hub):
        mark_spilled_duplicates(hub, spilled.marks_files, spilled.ids_files, "minhash")
    assert hub.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'personas'"
                       ).fetchall() == [("by_source",)]


def test_a_hub_with_the_old_key_keeps_it(tmp_path):
    con = connect(tmp_path / "keyed.duckdb")
    try:
        con.execute("DROP TABLE personas")
        con.execute("CREATE TABLE personas (persona_id VARCHAR PRIMARY KEY, seq BIGINT DEFAULT "
                    "nextval('persona_seq'), text VARCHAR NOT NULL, source VARCHAR, "
                    "source_ref VARCHAR, attributes JSON, hop INTEGER DEFAULT 0, created_at "
                    "TIMESTAMP DEFAULT current_timestamp, is_duplicate BOOLEAN DEFAULT false, "
                    "duplicate_of VARCHAR, dup_stage VARCHAR, gate VARCHAR NOT NULL)")
        fill(con, 30)
        spilled = write_stage(tmp_path / "work", [f"p{i}" for i in range(30)], {9: 8})
        with transaction(con):
            mark_spilled_duplicates(con, spilled.marks_files, spilled.ids_files, "minhash")
        assert scalar(con, "SELECT duplicate_of FROM personas WHERE persona_id = 'p9'") == "p8"
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO personas (persona_id, text, gate) VALUES ('p1', 'x', 'passed')")
    finally:
        con.close()


def test_a_write_that_would_change_the_rows_is_refused_and_leaves_the_table(hub, tmp_path):
    fill(hub, 10)
    hub.execute("INSERT INTO personas (persona_id, text, gate) VALUES ('p1', 'again', 'passed')")
    before = rows(hub)
    ids = [f"p{i}" for i in range(10)] + ["p1"]
    spilled = write_stage(tmp_path / "work", ids, {1: 0, 10: 0})  # both rows of the one id p1
    with pytest.raises(PersonahubError, match="13 rows of 11"), transaction(hub):
        mark_spilled_duplicates(hub, spilled.marks_files, spilled.ids_files, "minhash")
    assert rows(hub) == before
    assert scalar(hub, "SELECT count(*) FROM duckdb_tables() WHERE table_name <> 'personas' "
                       "AND table_name LIKE '%personas%flagged%'") == 0


def test_the_write_gives_the_connection_its_limit_and_threads_back(hub, tmp_path):
    fill(hub, 50)
    hub.execute("SET memory_limit = '3GiB'")
    hub.execute("SET threads = 2")
    limit = scalar(hub, "SELECT current_setting('memory_limit')")
    spilled = write_stage(tmp_path / "work", [f"p{i}" for i in range(50)], {40: 2})
    with transaction(hub):
        mark_duplicates_from_files(hub, spilled, "minhash")
    assert scalar(hub, "SELECT current_setting('memory_limit')") == limit
    assert scalar(hub, "SELECT current_setting('threads')") == 2
    assert scalar(hub, "SELECT dup_stage FROM personas WHERE persona_id = 'p40'") == "minhash"
