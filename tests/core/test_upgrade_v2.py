"""A schema version 2 file (the provider's batches in ``llm_batches``, ``llm_calls.batch_id`` and
``prices.batch_price_*``) is shown under the new names to readers, untouched, and upgraded in
place, once, by a writer; a version 1 file goes through both upgrades."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from personahub.core.store import (
    RENAMED_TABLES_V3,
    RENAMED_V2,
    RENAMED_V3,
    SCHEMA_VERSION,
    connect,
    insert_rows,
    schema_version,
    transaction,
)

pytestmark = pytest.mark.slow  # files made, copied and opened a dozen times

# what version 2 stored besides its tables: a view over the old column (its v_run_cost said batch_id)
OLD_VIEW = ("CREATE VIEW v_old_cost AS SELECT call_id, batch_id IS NOT NULL AS batch "
            "FROM llm_calls")

CALLS = [{"call_id": "c1", "job_id": "j", "job_kind": "synthesis", "status": "ok",
          "model_name": "gpt-x", "tokens_in": 1_000_000, "tokens_out": 1_000_000,
          "provider_batch_id": "batch_1", "custom_id": "a#1"},
         {"call_id": "c2", "job_id": "j", "job_kind": "synthesis", "status": "ok",
          "model_name": "gpt-x", "tokens_in": 1_000_000, "tokens_out": 1_000_000}]
PRICES = [{"model": "gpt-x", "price_in": 2.0, "price_out": 8.0,
           "provider_batch_price_in": 0.2, "provider_batch_price_out": 0.8}]
BATCHES = [{"batch_key": "k1", "job_kind": "synthesis", "job_id": "j", "endpoint": 0,
            "model": "gpt-x", "batch_id": "batch_1", "status": "completed", "requests": 1,
            "completed": 1, "failed": 0, "custom_ids": '["a#1"]'}]


@pytest.fixture(scope="module")
def today(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file this version wrote, with a provider batch, its calls and a price."""
    db = tmp_path_factory.mktemp("today") / "hub.duckdb"
    con = connect(db)
    with transaction(con):
        insert_rows(con, "llm_calls", CALLS)
        insert_rows(con, "prices", PRICES)
        insert_rows(con, "provider_batches", BATCHES)
    con.close()
    return db


def _drop_views(con: duckdb.DuckDBPyConnection) -> None:
    for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                               "AND schema_name = 'main'").fetchall():
        con.execute(f'DROP VIEW "{view}"')


def as_version(db: Path, path: Path, version: int) -> Path:
    """Copy a file and give it an older version's shape: the old names, an old view and the
    version's schema_meta rows."""
    shutil.copy(db, path)
    con = duckdb.connect(str(path))
    _drop_views(con)
    for old, new in RENAMED_TABLES_V3:
        con.execute(f"ALTER TABLE {new} RENAME TO {old}")
    for table, old, new in RENAMED_V3 + (RENAMED_V2 if version == 1 else ()):
        con.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
    con.execute(OLD_VIEW)
    con.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [str(version)])
    con.execute("UPDATE schema_meta SET value = 'old-views' WHERE key = 'views_version'")
    con.execute("UPDATE schema_meta SET value = 'v_old_cost' WHERE key = 'views'")
    con.close()
    return path


def columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def content(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """What the renamed tables hold, under this version's names, column order and all."""
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("llm_calls", "prices", "provider_batches")}


def expected(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return content(con)
    finally:
        con.close()


@pytest.mark.parametrize("version", [2, 1])
def test_an_old_file_is_upgraded_once_and_keeps_its_rows(today: Path, tmp_path: Path,
                                                         version: int) -> None:
    old = as_version(today, tmp_path / "old.duckdb", version)
    con = connect(old)
    try:
        assert schema_version(con) == str(SCHEMA_VERSION) == "3"
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                            "WHERE schema_name = 'main'").fetchall()}
        assert "provider_batches" in tables and "llm_batches" not in tables
        for table, was, now in RENAMED_V3 + (RENAMED_V2 if version == 1 else ()):
            assert now in columns(con, table) and was not in columns(con, table), table
        upgraded = con.execute("SELECT value FROM schema_meta WHERE key = 'migrated_v2_v3'"
                               ).fetchall()
        assert len(upgraded) == 1
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT "
                                           "internal AND NOT temporary").fetchall()}
        assert "v_old_cost" not in views and "v_run_cost" in views
        assert con.execute("SELECT provider_batch_calls, provider_batch_cost_usd FROM v_run_cost "
                           "WHERE run_id = 'j'").fetchall() == [(1, pytest.approx(1.0))]
        assert content(con) == expected(today)  # the same rows, each value where it was
    finally:
        con.close()
    again = connect(old)  # opening again changes nothing: the upgrade ran once
    try:
        assert again.execute("SELECT value FROM schema_meta WHERE key = 'migrated_v2_v3'"
                             ).fetchall() == upgraded
    finally:
        again.close()


@pytest.mark.parametrize("version", [2, 1])
def test_a_reader_sees_an_old_file_under_the_new_names_and_leaves_it(today: Path, tmp_path: Path,
                                                                     version: int) -> None:
    old = as_version(today, tmp_path / "old.duckdb", version)
    bytes_before = old.read_bytes()
    con = connect(old, read_only=True)
    try:
        assert schema_version(con) == str(version)
        assert content(con) == expected(today)
        assert con.execute("SELECT count(*) FROM llm_calls WHERE provider_batch_id = 'batch_1'"
                           ).fetchall() == [(1,)]
        assert con.execute("SELECT provider_batch_calls FROM v_run_cost").fetchall() == [(1,)]
    finally:
        con.close()
    assert old.read_bytes() == bytes_before
