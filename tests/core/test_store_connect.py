"""``core.store.connect`` as a reader while this process already holds the file read-write (as
``run --view`` does: its live view keeps a connection open, and the run's end-of-job preview and
``--json`` object then read the same file)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from personahub.core.store import connect


def test_a_reader_shares_the_file_this_process_holds(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    writer = connect(db)
    writer.execute("CREATE TABLE marks (n INTEGER)")
    writer.execute("INSERT INTO marks VALUES (1), (2)")
    held = duckdb.connect(str(db))  # e.g. the live view's connection, kept open
    try:
        reader = connect(db, read_only=True)
        try:
            assert reader.execute("SELECT sum(n) FROM marks").fetchall() == [(3,)]
        finally:
            reader.close()
    finally:
        held.close()
        writer.close()
