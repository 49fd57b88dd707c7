"""A schema version 1 file (the output kind called ``kind`` in emissions, judgments and rejected)
is shown under the new name to readers, untouched, and upgraded in place, once, by a writer."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from personahub.core.store import RENAMED_V2, SCHEMA_VERSION, connect, schema_version
from tests.cli_helpers import ROOT, invoke

pytestmark = pytest.mark.slow  # a run, a judge, an export and a report over the CLI

# what version 1 stored besides its tables: views over the old column (its v_items said kind)
OLD_VIEWS = ("CREATE VIEW v_items AS SELECT 'run' AS source, run_id AS source_id, "
             "emission_id AS item_id, kind FROM emissions",
             "CREATE VIEW v_old_judged AS SELECT item_id, kind FROM judgments")


@pytest.fixture(scope="module")
def today(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A file this version wrote: a one-step offline run and a judge of its emissions."""
    db = tmp_path_factory.mktemp("today") / "hub.duckdb"
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1",
                    "--preview", "0")
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    run_id = con.execute("SELECT job_id FROM jobs WHERE kind = 'run'").fetchall()[0][0]
    con.close()
    result = invoke("judge", "--run", run_id, "--sample", "3", "--db", db)
    assert result.exit_code == 0, result.output
    return db, run_id


def as_version_1(db: Path, path: Path) -> Path:
    """Copy a file and give it version 1's shape: the old column names, version 1's views, its
    schema_meta rows."""
    shutil.copy(db, path)
    con = duckdb.connect(str(path))
    for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                               "AND schema_name = 'main'").fetchall():
        con.execute(f'DROP VIEW "{view}"')
    for table, old, new in RENAMED_V2:
        con.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
    for view in OLD_VIEWS:
        con.execute(view)
    con.execute("UPDATE schema_meta SET value = '1' WHERE key = 'schema_version'")
    con.execute("UPDATE schema_meta SET value = 'v1-views' WHERE key = 'views_version'")
    con.execute("UPDATE schema_meta SET value = 'v_items,v_old_judged' WHERE key = 'views'")
    con.close()
    return path


def columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def content(db: Path) -> dict[str, list[tuple]]:
    """What the renamed tables hold, column order and all."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t, _, _ in RENAMED_V2}
    finally:
        con.close()


def test_a_version_1_file_is_upgraded_once_and_keeps_its_rows(today: tuple[Path, str],
                                                              tmp_path: Path) -> None:
    db, _ = today
    old = as_version_1(db, tmp_path / "old.duckdb")
    before = content(old)
    assert before["emissions"] and before["judgments"]
    con = connect(old)
    try:
        assert schema_version(con) == str(SCHEMA_VERSION) == "3"
        for table, was, now in RENAMED_V2:
            assert now in columns(con, table) and was not in columns(con, table), table
        upgraded = con.execute("SELECT value FROM schema_meta WHERE key = 'migrated_v1_v2'"
                               ).fetchall()
        assert len(upgraded) == 1
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT "
                                           "internal AND NOT temporary").fetchall()}
        assert "v_old_judged" not in views and "v_items" in views
        assert con.execute("SELECT count(*) FROM v_items WHERE task IS NULL").fetchall() == [(0,)]
    finally:
        con.close()
    assert content(old) == before  # the same rows, each value where it was
    again = connect(old)  # opening again changes nothing: the upgrade ran once
    try:
        assert again.execute("SELECT value FROM schema_meta WHERE key = 'migrated_v1_v2'"
                             ).fetchall() == upgraded
    finally:
        again.close()


def test_a_reader_sees_a_version_1_file_under_the_new_names_and_leaves_it(
        today: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = today
    old = as_version_1(db, tmp_path / "old.duckdb")
    bytes_before = old.read_bytes()
    result = invoke("sql", "--db", old, "--format", "csv", "--no-header",
                    "select task, count(*) from emissions group by 1 order by 1")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    con = duckdb.connect(str(db), read_only=True)
    expected = [[k, str(n)] for k, n in con.execute(
        "SELECT task, count(*) FROM emissions GROUP BY 1 ORDER BY 1").fetchall()]
    con.close()
    assert rows == expected
    assert old.read_bytes() == bytes_before


def test_export_report_and_a_run_work_on_an_upgraded_file(today: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    db, run_id = today
    old = as_version_1(db, tmp_path / "old.duckdb")
    out = tmp_path / "items.jsonl"
    result = invoke("export", "--db", old, "--run", run_id, "--task", "npc_dialogue", "--out", out)
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM emissions WHERE task = 'npc_dialogue'").fetchall()[0][0]
    con.close()
    assert len(exported) == n > 0
    result = invoke("report", "--db", old, "--run", run_id, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", old, "--steps", "1",
                    "--preview", "0")
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(old), read_only=True)
    assert con.execute("SELECT count(DISTINCT run_id) FROM emissions WHERE task IS NOT NULL"
                       ).fetchall() == [(2,)]
    con.close()
