"""``core.store.connect`` as a reader while this process already holds the file read-write (as
``run --view`` does: its live view keeps a connection open, and the run's end-of-job preview and
``--json`` object then read the same file)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub.core.dbcheck import DatabaseFileError
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


def test_a_file_brought_up_to_another_schema_gets_this_ones_tables(tmp_path: Path) -> None:
    """A writer skips the schema's DDL on a file that holds this schema's digest; a file whose
    digest is another's (written by another version) gets the DDL again, so what it lacks is
    created."""
    from personahub.core.store import DDL_KEY, connect

    db = tmp_path / "hub.duckdb"
    con = connect(db)
    digest = con.execute("SELECT value FROM schema_meta WHERE key = ?", [DDL_KEY]).fetchall()
    assert len(digest) == 1 and len(digest[0][0]) == 16
    con.execute("DROP TABLE prices")
    con.execute("UPDATE schema_meta SET value = 'another' WHERE key = ?", [DDL_KEY])
    con.close()
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM prices").fetchall() == [(0,)]
        assert con.execute("SELECT value FROM schema_meta WHERE key = ?",
                           [DDL_KEY]).fetchall() == digest
    finally:
        con.close()


def test_a_writer_opens_a_file_without_a_wal_once(tmp_path: Path, monkeypatch) -> None:
    """Reading a file writes nothing to it, so a writer checks it on its own read-write connection
    instead of a read-only probe first (each open of a file costs tens of milliseconds)."""
    from personahub.core import store

    db = tmp_path / "hub.duckdb"
    connect(db).close()
    opened: list[bool] = []
    real = duckdb.connect
    def counted(path: str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        opened.append(read_only)
        return real(path, read_only=read_only)

    monkeypatch.setattr(store.duckdb, "connect", counted)
    connect(db).close()
    assert opened == [False]


def test_a_refused_file_with_a_wal_is_left_untouched(tmp_path: Path) -> None:
    """A read-write open would replay the file's WAL into it: a file with one is checked read-only
    first, and one of another schema version keeps its bytes and its WAL's."""
    db = tmp_path / "old.duckdb"
    connect(db).close()
    con = duckdb.connect(str(db))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("UPDATE schema_meta SET value = '9' WHERE key = 'schema_version'")
    con.close()
    wal = Path(f"{db}.wal")
    assert wal.exists()
    before = db.read_bytes(), wal.read_bytes()
    with pytest.raises(DatabaseFileError, match="schema version 9"):
        connect(db)
    assert (db.read_bytes(), wal.read_bytes()) == before


@pytest.mark.slow
def test_every_connection_has_duckdb_progress_bar_off(tmp_path: Path, monkeypatch) -> None:
    """DuckDB's bar draws on stdout (ids, JSON, SQL tables a command prints): new, existing and
    read-only opens all turn it off, whatever DuckDB's default."""
    from personahub.core import store

    opened = duckdb.connect

    def bar_on(*args, **kwargs):
        con = opened(*args, **kwargs)
        con.execute("SET enable_progress_bar = true")
        return con

    monkeypatch.setattr(store.duckdb, "connect", bar_on)
    db = tmp_path / "bar.duckdb"
    seen = []
    for read_only in (False, False, True):  # created, existing, read-only
        con = connect(db, read_only=read_only)
        seen.append(con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0])
        con.close()
    assert seen == [False, False, False]
