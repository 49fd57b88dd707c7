"""An import's writes to a hub without a key: stage every batch, collapse repeats, then insert.

Checking each batch against the hub read every stored id once per batch: time grew with the
square of the file, and DuckDB kept the id column cached, so memory grew with the hub. Here each
batch goes into a temporary table as it comes (repeats within it dropped, first wins; DuckDB
spills the table to its temporary folder past its memory limit). Once the whole file is in, still
inside the import's transaction, one pass per hash partition of the ids finds each persona's
earliest row, in the hub or in the file, and deletes the staged later ones; what is left goes into
the personas table in one insert. A partition holds about PASS_ROWS personas, so a pass's memory
is that of a fixed number of ids, whatever the size of the hub. The repeats are deleted from the
staging table, not from personas: DuckDB commits a table's uncommitted rows with deletes among
them by appending them again, in memory until its checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from personahub.core.store import insert_columns, scalar
from personahub.personas.record import Persona
from personahub.personas.store import next_seqs, persona_arrays, persona_columns

# personas grouped in one pass of the collapse: its hash table holds this many ids at most
PASS_ROWS = 500_000
_STAGED = "_import_staged"
_COLUMNS = "persona_id, seq, text, source, source_ref, attributes, hop, gate"


@dataclass
class ImportWrites:
    """What an import staged: the first seq it drew and how many rows (repeats still in)."""

    first_seq: int | None = None
    staged: int = 0


def stage_personas(con: duckdb.DuckDBPyConnection, personas: Iterable[Persona],
                   writes: ImportWrites) -> None:
    """Stage a batch's personas without looking them up in the hub; insert_staged does that.

    Rows written without a model have their text checked (gate label), as upsert_personas does.
    """
    columns = persona_columns(personas)
    count = len(columns["persona_id"])
    if not count:
        return
    if writes.first_seq is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGED} AS "
                    f"SELECT {_COLUMNS} FROM personas LIMIT 0")
    seqs = next_seqs(con, count)
    if writes.first_seq is None:
        writes.first_seq = int(seqs[0].as_py())
    insert_columns(con, _STAGED, {**persona_arrays(columns), "seq": seqs})
    writes.staged += count


def insert_staged(con: duckdb.DuckDBPyConnection, writes: ImportWrites,
                  pass_rows: int = PASS_ROWS) -> tuple[int, int]:
    """Insert the staged personas the hub does not hold yet, each one's first row only.

    Run inside the import's transaction, after its last batch. Each pass groups one hash
    partition of the hub's and the staged ids, keeping those staged that are repeated or whose
    kept row is labelled failed; the staged later rows of each repeat are deleted. The rest go
    into the personas table in seq order.

    Returns:
        (new personas, distinct personas of the import labelled failed).
    """
    if writes.first_seq is None:
        return 0, 0
    total = int(scalar(con, "SELECT count(*) FROM personas")) + writes.staged
    parts = max(1, -(-total // max(1, pass_rows)))
    removed = failed = 0
    for part in range(parts):
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _import_repeats AS
            SELECT persona_id, min(seq) AS kept, arg_min(gate, seq) = 'failed' AS failed
            FROM (SELECT persona_id, seq, gate FROM personas WHERE hash(persona_id) % $parts = $part
                  UNION ALL
                  SELECT persona_id, seq, gate FROM {_STAGED} WHERE hash(persona_id) % $parts = $part)
            GROUP BY persona_id
            HAVING max(seq) >= $since AND (count(*) > 1 OR arg_min(gate, seq) = 'failed')""",
                    {"parts": parts, "part": part, "since": writes.first_seq})
        failed += int(scalar(con, "SELECT count(*) FROM _import_repeats WHERE failed"))
        rows = con.execute(f"DELETE FROM {_STAGED} s USING _import_repeats r "
                           "WHERE s.persona_id = r.persona_id AND s.seq > r.kept").fetchall()
        removed += int(rows[0][0]) if rows else 0
    con.execute(f"INSERT INTO personas ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGED}")
    con.execute(f"DROP TABLE {_STAGED}")
    con.execute("DROP TABLE _import_repeats")
    return writes.staged - removed, failed
