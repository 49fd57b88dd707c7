"""The analysis views live in the database file: any DuckDB client sees them; a writer re-creates
them when the installed views.sql changes; a reader never writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from personahub.analysis.views import VIEW_NAMES
from personahub.core import stored_views
from personahub.core.store import connect


def _views(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)  # a plain DuckDB client, not personahub
    try:
        return {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                          "WHERE NOT internal AND NOT temporary").fetchall()}
    finally:
        con.close()


def _meta(path: Path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM schema_meta").fetchall())
    finally:
        con.close()


def test_a_plain_duckdb_client_sees_the_views(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    connect(db).close()
    assert set(VIEW_NAMES) <= _views(db)
    con = duckdb.connect(str(db), read_only=True)
    try:  # they run, on an empty database, from a client that knows nothing of personahub
        for name in VIEW_NAMES:
            con.execute(f"SELECT * FROM {name}").fetchall()
        columns = [d[0] for d in con.execute("SELECT * FROM v_run_cost").description]
    finally:
        con.close()
    assert columns[:2] == ["run_id", "calls"]
    meta = _meta(db)
    assert meta["views_version"] == stored_views.version(stored_views.views_text())
    assert meta["views"].split(",") == list(VIEW_NAMES)


def test_a_writer_recreates_views_of_another_version(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    con.execute("CREATE VIEW my_view AS SELECT 1 AS mine")  # the user's own: left alone
    older = ("CREATE OR REPLACE {temp} VIEW v_run_cost AS SELECT 1 AS stale\n;\n"
             "CREATE OR REPLACE {temp} VIEW v_gone AS SELECT 2 AS stale\n;\n")
    assert stored_views.sync_views(con, older)  # as an older personahub stored them
    con.close()
    assert {"v_gone", "my_view"} <= _views(db)

    connect(db).close()  # this version opens it for writing
    views = _views(db)
    assert "v_gone" not in views and "my_view" in views and set(VIEW_NAMES) <= views
    plain = duckdb.connect(str(db), read_only=True)
    try:
        assert "stale" not in [d[0] for d in plain.execute("SELECT * FROM v_run_cost").description]
    finally:
        plain.close()


def test_views_are_created_once_per_version(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    try:
        assert not stored_views.sync_views(con)  # connect stored them; nothing to do again
        con.execute("DROP VIEW v_rejected")  # one missing: all re-created
        assert stored_views.sync_views(con)
        assert not stored_views.sync_views(con)
    finally:
        con.close()


def test_a_reader_does_not_write_the_views(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = connect(db)
    for name in VIEW_NAMES:  # a file from before stored views
        con.execute(f"DROP VIEW {name}")
    con.execute("DELETE FROM schema_meta WHERE key IN ('views', 'views_version')")
    con.execute("CHECKPOINT")
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    reader = connect(db, read_only=True)
    reader.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not set(VIEW_NAMES) & _views(db)


def test_a_reader_of_a_file_with_other_views_sees_this_versions(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = connect(db)
    older = "CREATE OR REPLACE {temp} VIEW v_items AS SELECT 1 AS stale\n;\n"
    assert stored_views.sync_views(con, older)  # as an older personahub stored them
    con.execute("CHECKPOINT")
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    reader = connect(db, read_only=True)
    try:  # TEMP copies over the stored ones: the items' shape this version reads
        columns = [d[0] for d in reader.execute("SELECT * FROM v_items").description]
        assert columns[:3] == ["source", "source_id", "item_id"]
        assert all(reader.execute(f"SELECT count(*) FROM {name}").fetchall() for name in VIEW_NAMES)
    finally:
        reader.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert "v_item_sources" not in _views(db)  # nothing stored: the file is as it was
    current = connect(db, read_only=False)
    current.close()
    reader = connect(db, read_only=True)  # the file's views are this version's: none laid
    try:
        assert not stored_views.lay_views(reader)
        assert not reader.execute("SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal"
                                  ).fetchall()[0][0]
    finally:
        reader.close()
