"""The persona hub's tables: personas (written once, read in hub order), relations and merges.

This module owns their SQL. Writes are Arrow batches: a dict per row cost seconds per 100,000 personas.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError
from personahub.core.store import has_key, insert_columns, insert_rows, one_thread, scalar
from personahub.personas.gate_labels import checked_gate, written_gate
from personahub.personas.record import Persona

if TYPE_CHECKING:
    import pandas as pd

# A live persona is one not flagged as a duplicate; other owners join SURVIVORS as a subquery.
_LIVE = "NOT coalesce(is_duplicate, false)"
SURVIVORS = f"SELECT persona_id, text, seq FROM personas WHERE {_LIVE}"
#: every persona's id, text and attributes (as JSON text), for a query of another family to join
PERSONA_TEXTS = "SELECT persona_id, text, CAST(attributes AS VARCHAR) AS attributes FROM personas"


def persona_columns(personas: Iterable[Persona], gate: str | None = None, *,
                    first_only: bool = True) -> dict[str, list[Any]]:
    """Return persona columns, one row per distinct id (first wins; every row with first_only
    False); gate labels every row, else each text is checked.
    """
    people = list(personas)
    ids = [p.persona_id for p in people]
    if first_only and len(set(ids)) < len(ids):
        first: dict[str, Persona] = {}
        for p in people:
            first.setdefault(p.persona_id, p)
        people = list(first.values())
        ids = [p.persona_id for p in people]
    return {
        "persona_id": ids,
        "text": [p.text for p in people],
        "source": [p.source for p in people],
        "source_ref": [p.source_ref for p in people],
        "attributes": [json.dumps(dict(p.attributes), ensure_ascii=False, default=str)
                       if p.attributes else "{}" for p in people],
        "hop": [p.hop for p in people],
        "gate": [gate or checked_gate(p) for p in people],
    }


def persona_arrays(columns: dict[str, list[object]]) -> dict[str, pa.Array]:
    """Return persona_columns' lists as Arrow arrays, for an insert."""
    return {name: pa.array(values, type=pa.int32() if name == "hop" else pa.string())
            for name, values in columns.items()}


def upsert_personas(con: duckdb.DuckDBPyConnection, personas: Iterable[Persona],
                    written_by: StructuredCaller | None = None, *, gate: str | None = None) -> int:
    """Insert personas not yet in the hub; return how many were new.

    A model's answers are labelled passed (offline from the offline engine); rows written without
    a model have their text checked; gate sets the label outright.
    """
    if gate is None and written_by is not None:
        gate = written_gate(written_by.is_offline)
    columns = persona_columns(personas, gate)
    if not columns["persona_id"]:
        return 0
    return upsert_persona_table(con, pa.table(persona_arrays(columns)))


def upsert_persona_table(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> int:
    """Insert a table of persona columns (``persona_columns``' names, one row per id) whose
    personas are not in the hub yet, in the table's order; return how many were new."""
    batch = _new_personas(con, batch)
    if batch.num_rows:
        insert_columns(con, "personas", {**dict(zip(batch.column_names, batch.columns, strict=True)),
                                         "seq": next_seqs(con, batch.num_rows)})
    return batch.num_rows


def _new_personas(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> pa.Table:
    """Keep the batch's rows whose persona is not in the hub yet, in the batch's order.

    An anti-join's output follows its hash table, not its input, so the rows are picked by
    position and taken in order rather than inserted from the join.
    """
    # read by DuckDB's replacement scan of this local, as insert_columns reads its batch: a
    # registered view's table would stay in memory until the import's transaction ends
    _upsert_ids = pa.table({"persona_id": batch["persona_id"],  # noqa: F841 (named in the SQL)
                            "row": pa.array(np.arange(batch.num_rows))})
    rows = con.execute("SELECT b.row FROM _upsert_ids b WHERE NOT EXISTS (SELECT 1 FROM "
                       "personas t WHERE t.persona_id = b.persona_id)").fetchnumpy()["row"]
    return batch.take(pa.array(np.sort(rows))) if len(rows) < batch.num_rows else batch


def next_seqs(con: duckdb.DuckDBPyConnection, count: int) -> pa.Array:
    """Draw count values of the hub's sequence, ascending: seq is the hub's order of arrival.

    Drawn in one query and sorted, then given out in row order, so seq follows the rows whatever
    order the query drew them in.
    """
    drawn = con.execute("SELECT nextval('persona_seq') AS seq FROM range(?)", [count]).fetchnumpy()
    return pa.array(np.sort(drawn["seq"]).astype(np.int64))


def fetch_personas(
    con: duckdb.DuckDBPyConnection, ids: Sequence[str] | None = None
) -> list[Persona]:
    """Return personas in hub order.

    Args:
        con: A connection to the database (from personahub.connect).
        ids: Keep only these persona ids (None: every persona).

    Returns:
        The personas, in the order they entered the hub.
    """
    sql = "SELECT persona_id, text, source, source_ref, attributes, hop FROM personas"
    params: list[object] = []
    if ids is not None:
        con.register("_ids", pa.table({"id": list(ids)}))
        sql += " WHERE persona_id IN (SELECT id FROM _ids)"
    sql += " ORDER BY seq"
    try:
        rows = con.execute(sql, params).fetchall()
    finally:
        if ids is not None:
            con.unregister("_ids")
    return [
        Persona(persona_id=r[0], text=r[1], source=r[2] or "", source_ref=r[3] or "",
                attributes=json.loads(r[4]) if r[4] else {}, hop=r[5] or 0)
        for r in rows
    ]


def flagged_duplicate_count(con: duckdb.DuckDBPyConnection) -> int:
    """Count personas flagged as near-duplicates."""
    return int(scalar(con, "SELECT count(*) FROM personas WHERE is_duplicate"))


def live_persona_ids(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[str]:
    """Return ids of live personas in hub order, the first limit of them."""
    rows = con.execute(f"SELECT persona_id FROM ({SURVIVORS}) ORDER BY seq LIMIT ?",
                       [limit]).fetchall()
    return [r[0] for r in rows]


def persona_count(con: duckdb.DuckDBPyConnection) -> int:
    """Count all personas, duplicates and ungated ones too."""
    return int(scalar(con, "SELECT count(*) FROM personas"))


def population_persona_ids(con: duckdb.DuckDBPyConnection, population_id: str) -> set[str]:
    """Return the ids of the personas written for a population."""
    return {r[0] for r in con.execute(
        "SELECT persona_id FROM personas WHERE json_extract_string(attributes, '$.population') = ?",
        [population_id]).fetchall()}


def source_counts(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> list[tuple[str, int]]:
    """Return (source, count) among the given personas, most first."""
    return [(str(s), int(n)) for s, n in con.execute(
        "SELECT coalesce(source, 'unknown'), count(*) FROM personas WHERE list_contains(?, persona_id) "
        "GROUP BY 1 ORDER BY 2 DESC, 1", [list(persona_ids)]).fetchall()]


def persona_sources(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> dict[str, str]:
    """Map the given personas found to their source."""
    return dict(con.execute(
        "SELECT persona_id, source FROM personas WHERE persona_id IN "
        "(SELECT unnest(?::VARCHAR[]))", [list(persona_ids)]).fetchall())


def persona_text(con: duckdb.DuckDBPyConnection, persona_id: str) -> str | None:
    """Return a persona's text, or None when it is not in the hub."""
    row = con.execute("SELECT text FROM personas WHERE persona_id = ?", [persona_id]).fetchone()
    return str(row[0]) if row else None


def flagged_duplicates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Return every column of the flagged duplicates, in hub order."""
    return con.execute("SELECT * FROM personas WHERE coalesce(is_duplicate, false) "
                       "ORDER BY seq").df()


def personas_frame(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> pd.DataFrame:
    """Return every column of the given personas, in hub order."""
    return con.execute("SELECT * FROM personas WHERE list_contains(?, persona_id) ORDER BY seq",
                       [list(persona_ids)]).df()


def relation_edges(con: duckdb.DuckDBPyConnection,
                   persona_ids: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Return relation edges (src, dst): all, or those between two of the given personas."""
    if persona_ids is None:
        return [(str(s), str(d)) for s, d in con.execute("SELECT src, dst FROM relations").fetchall()]
    ids = list(persona_ids)
    return [(str(s), str(d)) for s, d in con.execute(
        "SELECT src, dst FROM relations WHERE list_contains(?, src) AND list_contains(?, dst)",
        [ids, ids]).fetchall()]


# A text-to-persona job's personas in the preview's shape, for one corpus (the ? parameter).
# Texts are not stored: the source column names each text by corpus and id.
CORPUS_PERSONAS = """
SELECT coalesce(attributes->>'relation', 'persona'), persona_id, attributes->>'text_id',
       'text ' || coalesce(attributes->>'text_id', '?') || ' of ' || (attributes->>'corpus'), text,
       coalesce(is_duplicate, false), duplicate_of
FROM personas WHERE source = 'text-to-persona' AND attributes->>'corpus' = ?
"""


def child_personas(children: str) -> str:
    """Return SQL for the preview rows of the personas a (parent, child, hop) query made.

    hop is the job's own, not the stored hop from a seed.
    """
    return f"""
WITH made AS ({children})
SELECT 'hop ' || m.hop, c.persona_id, m.parent, coalesce(p.text, '?'),
       coalesce(c.attributes->>'relation' || ': ', '') || c.text,
       coalesce(c.is_duplicate, false), c.duplicate_of
FROM made m JOIN personas c ON c.persona_id = m.child LEFT JOIN personas p ON p.persona_id = m.parent
"""


def persona_table_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Return the personas table's column names, in table order."""
    return list(con.sql("SELECT * FROM personas LIMIT 0").columns)


def personas_arrow(con: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> pa.Table:
    """Return the given columns of every persona as one Arrow table."""
    names = ", ".join(f'"{c}"' for c in columns)
    return con.sql(f"SELECT {names} FROM personas").to_arrow_table()


def personas_arrow_batches(con: duckdb.DuckDBPyConnection, columns: Sequence[str],
                           rows: int) -> pa.RecordBatchReader:
    """Stream the given columns of every persona in hub order, about rows at a time.

    Each batch is one range of rows values of seq, sorted on its own (rows without a seq come
    last, as ORDER BY seq puts them). One ORDER BY seq over the hub would sort all of it at once,
    so DuckDB would hold the whole hub's columns up to its memory limit; a range's sort holds a
    batch. Each range is found through the column's min/max per row group, which the hub's
    order of arrival keeps apart.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    select = f"SELECT {names} FROM personas"
    schema = con.sql(f"{select} LIMIT 0").to_arrow_table().schema
    step = max(1, int(rows))

    def batches() -> Iterator[pa.RecordBatch]:
        low, high = con.execute("SELECT min(seq), max(seq) FROM personas").fetchall()[0]
        start = low
        while start is not None and start <= high:
            # literals, not parameters: a constant bound reaches the scan's min/max check
            table = con.sql(f"{select} WHERE seq >= {int(start)} AND seq < {int(start) + step} "
                            "ORDER BY seq").to_arrow_table()
            if table.num_rows:
                yield from table.to_batches()
                start += step
            else:  # a gap in seq: jump to the next value held
                start = con.sql("SELECT min(seq) FROM personas "
                                f"WHERE seq >= {int(start) + step}").fetchall()[0][0]
        unnumbered = con.sql(f"{select} WHERE seq IS NULL")
        to_reader = getattr(unnumbered, "to_arrow_reader", None) or unnumbered.fetch_arrow_reader
        yield from to_reader(step)

    return pa.RecordBatchReader.from_batches(schema, batches())


def gate_counts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Return (gate label, count) among live personas."""
    return [(str(gate), int(n)) for gate, n in con.execute(
        f"SELECT gate, count(*) FROM personas WHERE {_LIVE} "
        "GROUP BY ALL ORDER BY 1").fetchall()]


def gates_of(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> dict[str, str]:
    """Map the given personas the hub holds to their gate label."""
    rows = con.execute("SELECT persona_id, gate FROM personas "
                       "WHERE persona_id IN (SELECT unnest(?))", [list(persona_ids)]).fetchall()
    return {pid: gate for pid, gate in rows}


def failed_count(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> int:
    """Count the given personas labelled failed."""
    # fetchall: DuckDB 2 keeps a result open after fetchone, refusing the connection's next work
    rows = con.execute("SELECT count(*) FROM personas WHERE gate = 'failed' AND persona_id IN "
                       "(SELECT unnest(?))", [list(persona_ids)]).fetchall()
    return int(rows[0][0]) if rows else 0


def has_persona(con: duckdb.DuckDBPyConnection, persona_id: str) -> bool:
    """Whether the hub holds a persona, flagged duplicates too."""
    return bool(con.execute("SELECT 1 FROM personas WHERE persona_id = ?", [persona_id]).fetchall())


def texts_by_id(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> dict[str, str]:
    """Map the given personas the hub holds to their text."""
    return dict(con.execute("SELECT persona_id, text FROM personas WHERE persona_id IN "
                            "(SELECT unnest(?))", [list(persona_ids)]).fetchall())


def duplicate_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Return ids of personas flagged as near-duplicates."""
    return {r[0] for r in con.execute("SELECT persona_id FROM personas WHERE is_duplicate").fetchall()}


def live_persona_texts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Return (persona id, text) of live personas, in hub order."""
    rows: list[tuple[str, str]] = con.execute(
        f"SELECT persona_id, text FROM ({SURVIVORS}) ORDER BY seq").fetchall()
    return rows


def survivor_count(con: duckdb.DuckDBPyConnection) -> int:
    """Count personas not (yet) flagged as duplicates."""
    return int(scalar(con, f"SELECT count(*) FROM ({SURVIVORS})"))


def survivor_batches(con: duckdb.DuckDBPyConnection,
                     batch_rows: int) -> Iterator[tuple[list[str], list[str]]]:
    """Stream (persona ids, texts) of live personas in hub order, in Arrow batches."""
    rel = con.sql(f"SELECT persona_id, text FROM ({SURVIVORS}) ORDER BY seq, persona_id")
    # duckdb 2 names it to_arrow_reader, 1.x fetch_arrow_reader
    to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
    for batch in to_reader(batch_rows):
        yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def survivor_ranges(con: duckdb.DuckDBPyConnection,
                    batch_rows: int) -> Iterator[tuple[list[str], list[str]]]:
    """Stream (persona ids, texts) of live personas in hub order, a range of seq at a time.

    The rows survivor_batches yields, in batches of at most batch_rows, without its one ORDER BY
    over the hub: DuckDB holds that sort's ids and texts up to its memory limit (2.3 GB of peak
    RSS at 10M personas with the default limit), each range's sort holds a batch
    (``personas_arrow_batches``). Every persona gets its seq from the table's sequence.
    """
    for batch in personas_arrow_batches(con, ["persona_id", "text", "is_duplicate"], batch_rows):
        live = batch.filter(pc.invert(pc.fill_null(batch.column(2), False)))
        if live.num_rows:
            yield live.column(0).to_pylist(), live.column(1).to_pylist()


def _sql_path(path: Path) -> str:
    """Quote path as an SQL string literal (COPY takes no parameter for its file)."""
    return "'" + str(path).replace("'", "''") + "'"


def copy_survivor_ranges(con: duckdb.DuckDBPyConnection, batch_rows: int,
                         folder: Path) -> Iterator[tuple[Path, int]]:
    """Write the live personas to Parquet files in folder, a range of seq at a time, and yield
    each file and its rows.

    Each file holds ``index`` (the texts numbered from 0 in hub order, across files),
    ``persona_id`` and ``text``, in that order; the first range is ``000000.ids.parquet``. DuckDB's
    COPY writes them, so no row becomes a Python object and each range's sort holds one range.
    Personas without a seq come last, by id, as ``survivor_batches`` orders them.

    Args:
        con: The hub's connection.
        batch_rows: Values of seq a range covers (a file holds at most this many personas).
        folder: An existing folder; files of empty ranges are not kept.
    """
    step = max(1, int(batch_rows))
    low, high = con.execute("SELECT min(seq), max(seq) FROM personas").fetchall()[0]
    ranges: list[str] = []
    start = low
    while start is not None and start <= high:
        # literals, not parameters: a constant bound reaches the scan's min/max check
        ranges.append(f"seq >= {int(start)} AND seq < {int(start) + step}")
        start = con.execute(f"SELECT min(seq) FROM personas WHERE seq >= {int(start) + step}"
                            ).fetchall()[0][0]
    ranges.append("seq IS NULL")
    n = 0
    for c, where in enumerate(ranges):
        path = folder / f"{c:06d}.ids.parquet"
        order = "persona_id" if where == "seq IS NULL" else "seq"
        rows = int(con.execute(
            f"COPY (SELECT {n} + row_number() OVER (ORDER BY {order}) - 1 AS index, persona_id, "
            f"text FROM personas WHERE {where} AND {_LIVE} ORDER BY {order}) "
            f"TO {_sql_path(path)} (FORMAT parquet)").fetchall()[0][0])
        if rows == 0:
            path.unlink(missing_ok=True)
            continue
        n += rows
        yield path, rows


def survivor_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Return what tells one set of survivors from another: their count and first and last."""
    row = con.execute(f"SELECT count(*), min(seq), max(seq), arg_min(persona_id, seq), "
                      f"arg_max(persona_id, seq) FROM ({SURVIVORS})").fetchall()[0]
    return ":".join(str(v) for v in row)


def mark_spilled_duplicates(con: duckdb.DuckDBPyConnection, marks: list[str], ids: list[str],
                            stage: str) -> None:
    """Flag personas from Parquet marks (later, earlier text indexes) and the ids of the indexes,
    by writing the personas table again with the flags set.

    marks and ids are the Parquet files a dedup stage wrote; already flagged personas stay as they
    are, and no marks file flags nothing. An UPDATE would keep a copy of every 2,048-row vector it
    touches until the transaction ends, and a stage's marks touch nearly every vector of the hub:
    memory (or spilling) in proportion to the hub. A new table is written row group by row group
    to the file, so the write holds about what DuckDB's limit allows whatever the hub's size;
    the old table's blocks are free for later writes once it commits (the file does not shrink).
    """
    if not marks:
        return
    with one_thread(con):  # in order (a parallel insert moved a row group), and within the limit
        _flag_from_files(con, marks, ids, stage)


def _flag_from_files(con: duckdb.DuckDBPyConnection, marks: list[str], ids: list[str],
                     stage: str) -> None:
    con.execute(
        f"""
        CREATE TEMP TABLE {_MARKED} AS
        SELECT l.persona_id, e.persona_id AS duplicate_of
        FROM read_parquet(?) AS k
        JOIN read_parquet(?) AS l ON l.index = k.later
        JOIN read_parquet(?) AS e ON e.index = k.earlier
        """,
        [marks, ids, ids],
    )
    try:
        _rewrite_personas(
            con,
            f"""
            SELECT p.* REPLACE (
                CASE WHEN m.persona_id IS NULL THEN p.is_duplicate ELSE true END AS is_duplicate,
                CASE WHEN m.persona_id IS NULL THEN p.duplicate_of ELSE m.duplicate_of END
                    AS duplicate_of,
                CASE WHEN m.persona_id IS NULL THEN p.dup_stage ELSE $stage END AS dup_stage)
            FROM personas AS p
            LEFT JOIN {_MARKED} AS m ON m.persona_id = p.persona_id AND NOT coalesce(p.is_duplicate, false)
            """,
            {"stage": stage},
        )
    finally:  # in an aborted transaction dropping fails too, and the table went with it
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP TABLE IF EXISTS {_MARKED}")


# the temporary table of a spilled stage's marks, resolved to ids, and the rewritten personas
_MARKED = "_dedup_marked"
_REWRITTEN = "_personas_flagged"
# the start of the personas table's definition as DuckDB gives it back, up to its columns
_PERSONAS_DDL = re.compile(r'^\s*CREATE\s+TABLE\s+(?:"?main"?\.)?"?personas"?\s*\(', re.IGNORECASE)


def _rewrite_personas(con: duckdb.DuckDBPyConnection, select: str,
                      params: Mapping[str, object]) -> None:
    """Replace the personas table by the rows select gives, in the caller's transaction.

    The new table has the old one's definition (its defaults, and the key an older file has) and
    the indexes a user made on it, and select must give every persona once: any other count is
    refused before the old table goes.
    """
    where = "database_name = current_database() AND schema_name = 'main' AND table_name = 'personas'"
    ddl = scalar(con, f"SELECT sql FROM duckdb_tables() WHERE {where}")
    indexes = [row[0] for row in con.execute(
        f"SELECT sql FROM duckdb_indexes() WHERE {where} AND sql IS NOT NULL").fetchall()]
    created = _PERSONAS_DDL.sub(f"CREATE TABLE {_REWRITTEN}(", str(ddl), count=1)
    if created == ddl:
        raise PersonahubError(f"personas: cannot read the table's definition to write it again: {ddl}")
    before = persona_count(con)
    con.execute(created)
    written = con.execute(f"INSERT INTO {_REWRITTEN} {select}", dict(params)).fetchall()[0][0]
    if written != before:
        raise PersonahubError(f"personas: rewriting the table gave {written:,} rows of {before:,}")
    con.execute("DROP TABLE personas")
    con.execute(f"ALTER TABLE {_REWRITTEN} RENAME TO personas")
    for index in indexes:
        con.execute(index)


def mark_duplicates(con: duckdb.DuckDBPyConnection, marks: pa.Table, stage: str) -> None:
    """Flag each marked persona as a duplicate by this dedup stage, unless already flagged."""
    view = f"_dedup_marks_{stage}"
    con.register(view, marks)
    try:
        con.execute(
            f"""
            UPDATE personas
            SET is_duplicate = true, duplicate_of = m.duplicate_of, dup_stage = ?
            FROM {view} AS m
            WHERE personas.persona_id = m.persona_id
              AND NOT coalesce(personas.is_duplicate, false)
            """,
            [stage],
        )
    finally:  # in an aborted transaction unregistering fails too: the update's error counts
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)


#: what a relation is stored once by: a pair of personas and its label
RELATION_KEY = ("src", "dst", "relation")


def relations_keyed(con: duckdb.DuckDBPyConnection) -> bool:
    """Tell whether the relations table has its key (src, dst, relation), as files made before it
    was dropped do: DuckDB holds its index in memory outside memory_limit, loaded by any insert."""
    return has_key(con, "relations")


def add_relations(con: duckdb.DuckDBPyConnection,
                  columns: Mapping[str, Sequence[object] | pa.Array | pa.ChunkedArray], *,
                  distinct: bool = False) -> int:
    """Insert relation rows given as columns, each (src, dst, relation) once; return how many were
    offered.

    A relation stored already is left out, and so is a repeat within the batch (its first row
    goes in). The table has no key in a hub made now, so the batch's repeats are dropped here and
    the rest anti-joined against the table, a join DuckDB spills past its memory limit; a hub made
    before keeps its key, which leaves them out as it did (its index held in memory).

    Args:
        con: a connection to the hub.
        columns: src, dst and relation, with hop and source if known, one row a relation.
        distinct: the caller knows no (src, dst, relation) repeats within the batch (links
            between distinct ids), so it is not grouped here.

    Returns:
        The rows offered, stored ones and repeats included.
    """
    if relations_keyed(con):  # the key leaves them out; distinct rows by an anti-join, as before
        return insert_columns(con, "relations", columns, ignore_conflicts=True,
                              new_by=RELATION_KEY if distinct else ())
    offered = pa.table(dict(columns))
    batch = offered if distinct else _first_relations(offered)
    insert_columns(con, "relations", dict(zip(batch.column_names, batch.columns, strict=True)),
                   new_by=RELATION_KEY)
    return offered.num_rows


def _first_relations(batch: pa.Table) -> pa.Table:
    """Keep each (src, dst, relation)'s first row of the batch, in the batch's order."""
    keyed = batch.select(list(RELATION_KEY)).append_column(
        "_row", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
    first = keyed.group_by(list(RELATION_KEY), use_threads=False).aggregate([("_row", "min")])
    if first.num_rows == batch.num_rows:
        return batch
    return batch.take(pa.array(np.sort(first["_row_min"].to_numpy())))


def relation_count(con: duckdb.DuckDBPyConnection) -> int:
    """Return how many relations the hub holds (what the relations key's index is built over)."""
    return int(con.execute("SELECT count(*) FROM relations").fetchall()[0][0])


def relation_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    """Return every stored relation as (src, dst, relation, hop, source), ordered."""
    rows = con.execute("SELECT src, dst, relation, hop, source FROM relations ORDER BY src, dst, relation")
    return rows.fetchall()


def adjacent_ids(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> list[str]:
    """Return ids one relation away from any of the given personas, in no set order."""
    con.register("_adjacent_of", pa.table({"id": list(persona_ids)}))
    try:
        rows = con.execute(
            "SELECT dst FROM relations WHERE src IN (SELECT id FROM _adjacent_of) "
            "UNION SELECT src FROM relations WHERE dst IN (SELECT id FROM _adjacent_of)"
        ).fetchall()
    finally:
        con.unregister("_adjacent_of")
    return [r[0] for r in rows]


def relation_neighbours(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]
                        ) -> dict[str, list[str]]:
    """Map each given persona to its related ids in either direction, sorted."""
    rows = con.execute(
        "SELECT p, list(DISTINCT q ORDER BY q) FROM ("
        " SELECT src AS p, dst AS q FROM relations WHERE src IN (SELECT unnest(?))"
        " UNION SELECT dst AS p, src AS q FROM relations WHERE dst IN (SELECT unnest(?)))"
        " WHERE p <> q GROUP BY p", [list(persona_ids), list(persona_ids)]).fetchall()
    return {p: list(qs) for p, qs in rows}


# source prefix of the acquaintance links a scenario run stores
SCENARIO_LINKS = "scenario:"


def social_pairs(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str] | pa.Array,
                 own_links: pa.Table | None = None) -> pa.Table:
    """Return the undirected simple graph among the personas as (pa, pb, r) position rows.

    pa is the lesser id and r the first relation. With own_links, links stored by other scenario
    runs are replaced by these, so a run's graph holds its own seed's links only.
    """
    ids = persona_ids if isinstance(persona_ids, pa.Array) else list(persona_ids)
    con.register("_social_ids", pa.table({"id": ids, "pos": np.arange(len(ids), dtype=np.int64)}))
    links = "relations"
    if own_links is not None:
        links = (f"(SELECT src, dst, relation FROM relations "
                 f"WHERE coalesce(source, '') NOT LIKE '{SCENARIO_LINKS}%' "
                 "UNION ALL SELECT src, dst, relation FROM _own_links)")
    try:
        if own_links is not None:
            con.register("_own_links", own_links.select(["src", "dst", "relation"]))
        # ranks stand in for ids, so pairs group and sort as integers
        return con.sql(f"""
            WITH ranked AS (
                SELECT id, pos, row_number() OVER (ORDER BY id) AS rk FROM _social_ids),
            ends AS (
                SELECT s.pos AS ps, d.pos AS pd, s.rk AS rs, d.rk AS rd, relation
                FROM {links} JOIN ranked s ON s.id = src JOIN ranked d ON d.id = dst
                WHERE src <> dst)
            SELECT CASE WHEN rs < rd THEN ps ELSE pd END AS pa,
                   CASE WHEN rs < rd THEN pd ELSE ps END AS pb, min(relation) AS r
            FROM ends GROUP BY least(rs, rd), greatest(rs, rd), 1, 2
            ORDER BY least(rs, rd), greatest(rs, rd)""").to_arrow_table()
    finally:
        con.unregister("_social_ids")
        if own_links is not None:
            con.unregister("_own_links")


def add_merges(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert persona_merges rows, leaving stored ones."""
    insert_rows(con, "persona_merges", rows, ignore_conflicts=True)


def expansion_merges(con: duckdb.DuckDBPyConnection,
                     expansion_id: str) -> list[tuple[str, str, str]]:
    """Return (persona id, text, merged into) of an expansion's merges, in order."""
    rows: list[tuple[str, str, str]] = con.execute(
        "SELECT persona_id, text, merged_into FROM persona_merges "
        "WHERE expansion_id = ? ORDER BY position", [expansion_id]).fetchall()
    return rows


# -- graph statistics in SQL: the hub is never loaded whole ---------------------------------

# edges whose distinct pairs one pass groups: DuckDB sizes a pass's hash table by its pairs, in
# one allocation its memory limit does not split (20M edges asked for 128 MiB at once and failed
# under 512 MiB), so the pairs are grouped a hash partition of their lesser end at a time
PAIRS_A_PASS = 2_000_000

def _graph_tables(con: duckdb.DuckDBPyConnection, include_duplicates: bool) -> None:
    """Lay out temporary node and edge tables: nodes numbered in hub order, edges by number."""
    live = "" if include_duplicates else f"WHERE {_LIVE}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _g_nodes AS SELECT row_number() OVER (ORDER BY seq) "
                f"AS v, persona_id, seq, coalesce(hop, 0) AS hop, coalesce(source, '') AS source "
                f"FROM personas {live}")
    con.execute("CREATE OR REPLACE TEMP TABLE _g_edges AS SELECT a.v AS a, b.v AS b, a.seq AS "
                "aseq, r.dst, r.relation, r.hop FROM relations r JOIN _g_nodes a ON "
                "a.persona_id = r.src JOIN _g_nodes b ON b.persona_id = r.dst")
    edges = int(con.execute("SELECT count(*) FROM _g_edges").fetchall()[0][0])
    parts = max(1, -(-edges // PAIRS_A_PASS))
    con.execute("CREATE OR REPLACE TEMP TABLE _g_simple (x BIGINT, y BIGINT)")
    if parts == 1:
        con.execute("INSERT INTO _g_simple SELECT DISTINCT least(a, b) AS x, greatest(a, b) AS y "
                    "FROM _g_edges WHERE a <> b")
        return
    # the undirected ends sorted by their partition once, so that each pass reads its own
    # partition's row groups (their min and max of part skip the rest) instead of every edge
    con.execute("CREATE OR REPLACE TEMP TABLE _g_ends AS SELECT hash(least(a, b)) % $parts AS "
                "part, least(a, b) AS x, greatest(a, b) AS y FROM _g_edges WHERE a <> b "
                "ORDER BY part", {"parts": parts})
    for part in range(parts):
        con.execute("INSERT INTO _g_simple SELECT DISTINCT x, y FROM _g_ends WHERE part = $part",
                    {"part": part})
    con.execute("DROP TABLE _g_ends")


def _drop_graph_tables(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("_g_nodes", "_g_edges", "_g_ends", "_g_simple", "_g_pairs", "_g_weight", "_g_done",
                 "_g_hook", "_g_left", "_g_next"):
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _components(con: duckdb.DuckDBPyConnection, nodes: int) -> list[tuple[int, int]]:
    """Return (component size, count) of the simple graph by contraction: each round every node
    of the edge list hooks to its least neighbour, the hooks are followed to their roots, and the
    edges are rewritten between roots, so a component's edges shrink to nothing and its root
    carries the number of nodes it stands for.

    Each round at least halves the nodes left in the edge list (a node that is its own least
    neighbour has a neighbour that hooked to it), and a round reads only the edges left, not the
    hub's nodes: the earlier min-label propagation read every node and edge each round, and its
    rounds grew with the graph's diameter.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE _g_pairs AS SELECT x, y FROM _g_simple")
    con.execute("CREATE OR REPLACE TEMP TABLE _g_weight AS SELECT v, 1::BIGINT AS w FROM "
                "(SELECT x AS v FROM _g_simple UNION SELECT y FROM _g_simple)")
    in_edges = int(con.execute("SELECT count(*) FROM _g_weight").fetchall()[0][0])
    con.execute("CREATE OR REPLACE TEMP TABLE _g_done (w BIGINT)")
    while con.execute("SELECT 1 FROM _g_pairs LIMIT 1").fetchall():
        # each node's least neighbour, or itself when it is the least
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _g_hook AS
            SELECT v, least(v, min(u)) AS p FROM (
                SELECT x AS v, y AS u FROM _g_pairs UNION ALL SELECT y, x FROM _g_pairs)
            GROUP BY v""")
        # follow the hooks to their roots by pointer jumping (a hook only ever points lower)
        while True:
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _g_next AS
                SELECT h.v, j.p, j.p <> h.p AS moved FROM _g_hook h JOIN _g_hook j ON j.v = h.p""")
            moved = con.execute("SELECT count(*) FROM _g_next WHERE moved").fetchall()[0][0]
            con.execute("CREATE OR REPLACE TEMP TABLE _g_hook AS SELECT v, p FROM _g_next")
            if not moved:
                break
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _g_next AS
            SELECT DISTINCT least(a.p, b.p) AS x, greatest(a.p, b.p) AS y
            FROM _g_pairs e JOIN _g_hook a ON a.v = e.x JOIN _g_hook b ON b.v = e.y
            WHERE a.p <> b.p""")
        con.execute("CREATE OR REPLACE TEMP TABLE _g_pairs AS SELECT * FROM _g_next")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _g_next AS
            SELECT h.p AS v, sum(w.w)::BIGINT AS w FROM _g_weight w JOIN _g_hook h USING (v)
            GROUP BY h.p""")
        # a root left without edges is a whole component: its weight is the component's size
        con.execute("CREATE OR REPLACE TEMP TABLE _g_left AS "
                    "SELECT x AS v FROM _g_pairs UNION SELECT y FROM _g_pairs")
        con.execute("INSERT INTO _g_done SELECT n.w FROM _g_next n ANTI JOIN _g_left e USING (v)")
        con.execute("CREATE OR REPLACE TEMP TABLE _g_weight AS "
                    "SELECT n.* FROM _g_next n SEMI JOIN _g_left e USING (v)")
    sizes = dict(con.execute("SELECT w, count(*) FROM _g_done GROUP BY w").fetchall())
    if nodes > in_edges:  # nodes on no simple edge are components of one
        sizes[1] = sizes.get(1, 0) + nodes - in_edges
    return [(int(size), int(sizes[size])) for size in sorted(sizes)]


def graph_tallies(con: duckdb.DuckDBPyConnection, include_duplicates: bool) -> dict[str, Any]:
    """Return the persona graph's tallies, each a small table computed in SQL.

    degrees (degree in the undirected simple view, nodes); components (size, count);
    simple_edges; clustering_sum (each node's clustering coefficient summed); hops, edge_hops,
    sources (kind, count) in first-seen order for ties; labels (label, count) in the order
    networkx's edge walk first meets them.
    """
    _graph_tables(con, include_duplicates)
    try:
        nodes = con.execute("SELECT count(*) FROM _g_nodes").fetchall()[0][0]
        edges = con.execute("SELECT count(*) FROM _g_edges").fetchall()[0][0]
        degrees = con.execute("""
            WITH ends AS (SELECT x AS v FROM _g_simple UNION ALL SELECT y FROM _g_simple),
            d AS (SELECT n.v, count(e.v) AS degree FROM _g_nodes n LEFT JOIN ends e USING (v)
                  GROUP BY n.v)
            SELECT degree, count(*) FROM d GROUP BY degree ORDER BY degree""").fetchall()
        simple = con.execute("SELECT count(*) FROM _g_simple").fetchall()[0][0]
        clustering = con.execute("""
            WITH adj AS (SELECT x AS p, y AS q FROM _g_simple UNION ALL SELECT y, x FROM _g_simple),
            deg AS (SELECT p AS v, count(*) AS d FROM adj GROUP BY p),
            common AS (SELECT s.x, s.y, count(*) AS c FROM _g_simple s
                       JOIN adj i ON i.p = s.x JOIN adj j ON j.p = s.y AND j.q = i.q
                       GROUP BY s.x, s.y),
            tri AS (SELECT v, sum(c) / 2 AS t FROM (SELECT x AS v, c FROM common
                                                    UNION ALL SELECT y, c FROM common) GROUP BY v)
            SELECT coalesce(sum(2.0 * t / (d * (d - 1))), 0) FROM tri JOIN deg USING (v)
            WHERE d > 1""").fetchall()[0][0]
        hops = con.execute("SELECT hop, count(*) FROM _g_nodes GROUP BY hop ORDER BY hop").fetchall()
        edge_hops = con.execute("SELECT coalesce(hop, -1) AS h, count(*) FROM _g_edges GROUP BY h "
                                "ORDER BY h").fetchall()
        sources = con.execute("""
            SELECT kind, count(*) AS n FROM (
                SELECT seq, CASE WHEN source IN ('expand', 'text-to-persona', 'seed', '')
                                 THEN source WHEN source LIKE 'scenario:%' THEN 'scenario'
                                 ELSE 'file' END AS kind FROM _g_nodes)
            GROUP BY kind ORDER BY n DESC, min(seq)""").fetchall()
        labels = con.execute("""
            SELECT relation, count(*) AS n FROM _g_edges GROUP BY relation
            ORDER BY n DESC, min({'s': aseq, 'd': dst})""").fetchall()
        components = _components(con, int(nodes)) if nodes else []
    finally:
        _drop_graph_tables(con)
    return {"nodes": int(nodes), "edges": int(edges), "simple_edges": int(simple),
            "degrees": [(int(d), int(n)) for d, n in degrees], "components": components,
            "clustering_sum": float(clustering), "hops": hops, "edge_hops": edge_hops,
            "sources": sources, "labels": labels}
