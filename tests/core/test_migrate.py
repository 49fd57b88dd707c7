"""A database written before the ``jobs`` table (schema version 1) is migrated on open: each job
kind's lifecycle is copied into ``jobs`` and dropped from its detail table, once; a reader sees
the old file in the new shape without changing a byte of it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb

from personahub.core.jobs_store import find_job, list_jobs
from personahub.core.migrate import SCHEMA_VERSION, schema_version
from personahub.core.store import connect, schema_sql

# The five job tables as schema version 1 (personahub before the jobs table) created them.
V1_JOB_TABLES = """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY, scenario VARCHAR, scenario_path VARCHAR, seed BIGINT, llm VARCHAR,
    config JSON, status VARCHAR, error VARCHAR, steps_planned INTEGER, steps_done INTEGER DEFAULT 0,
    started_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE synth_jobs (
    job_id VARCHAR PRIMARY KEY, task VARCHAR NOT NULL, prompting VARCHAR NOT NULL, n INTEGER,
    llm VARCHAR, config JSON, status VARCHAR, error VARCHAR, started_at TIMESTAMP,
    finished_at TIMESTAMP);
CREATE TABLE expansions (
    expansion_id VARCHAR PRIMARY KEY, params_key VARCHAR NOT NULL, config JSON, run_id VARCHAR,
    status VARCHAR, hops_done INTEGER DEFAULT 0, started_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP);
CREATE TABLE text_jobs (
    corpus VARCHAR PRIMARY KEY, config JSON, status VARCHAR, error VARCHAR, started_at TIMESTAMP,
    finished_at TIMESTAMP);
CREATE TABLE dedup_jobs (
    job_id VARCHAR PRIMARY KEY, config JSON, status VARCHAR, stages JSON, error VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP);
"""
T0 = dt.datetime(2026, 1, 2, 3, 4, 5)
T1 = dt.datetime(2026, 1, 2, 3, 9, 0)


def v1_database(path: Path) -> Path:
    """A version-1 file: today's other tables, the five job tables as they were, one job of
    each kind (and a corpus named like the run, whose text job must take another id)."""
    con = duckdb.connect(str(path))
    con.execute(schema_sql())
    con.execute("DROP TABLE jobs; DROP TABLE schema_meta; DROP TABLE runs; DROP TABLE synth_jobs; "
                "DROP TABLE expansions; DROP TABLE text_jobs; DROP TABLE dedup_jobs")
    con.execute(V1_JOB_TABLES)
    con.execute("INSERT INTO runs VALUES ('20260102-030405-abcdef', 'town', 'town.py', 7, 'offline', "
                "'{\"seed\": 7, \"options\": {\"price_in\": 1.5}}', 'failed', 'RuntimeError: boom', 3, 1, "
                "?, ?)", [T0, T1])
    con.execute("INSERT INTO synth_jobs VALUES ('synth-1', 'instruction', 'zero-shot', 4, 'offline', "
                "'{\"task\": \"instruction\", \"seed\": 5, \"demos\": []}', 'interrupted', "
                "'interrupted by Ctrl-C', ?, ?)", [T0, T1])
    con.execute("INSERT INTO expansions VALUES ('exp-1', 'k', '{\"hops\": 2, \"seed\": 3}', "
                "'20260102-030405-abcdef', 'running', 1, ?, NULL)", [T0])
    con.execute("INSERT INTO text_jobs VALUES ('notes.txt', '{\"seed\": 2}', 'finished', NULL, ?, ?), "
                "('20260102-030405-abcdef', '{}', 'failed', 'x', ?, ?)", [T0, T1, T0, T1])
    con.execute("INSERT INTO dedup_jobs VALUES ('dedup-1', '{\"embedder\": \"hash\"}', 'finished', "
                "'{\"minhash\": {\"input\": 3, \"marked\": 1}}', NULL, ?, ?)", [T0, T1])
    con.execute("INSERT INTO llm_calls (call_id, job_kind, job_id, status) VALUES "
                "('c1', 'text_to_persona', 'notes.txt', 'ok'), "
                "('c2', 'text_to_persona', '20260102-030405-abcdef', 'ok')")
    con.close()
    return path


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                      "table_name = ? ORDER BY ordinal_position", [table]).fetchall()]


def test_a_version_1_file_is_migrated_once_on_open(tmp_path: Path) -> None:
    db = v1_database(tmp_path / "old.duckdb")
    con = connect(db)
    try:
        assert schema_version(con) == SCHEMA_VERSION
        run = find_job(con, "20260102-030405-abcdef")
        assert run is not None and (run.kind, run.status, run.seed, run.error) == (
            "run", "failed", 7, "RuntimeError: boom")
        assert run.config["options"]["price_in"] == 1.5
        assert (run.started_at, run.updated_at, run.finished_at) == (T0, T1, T1)
        synth = find_job(con, "synth-1")
        assert synth is not None and (synth.kind, synth.status, synth.seed) == ("synthesis", "interrupted", 5)
        expansion = find_job(con, "exp-1")
        assert expansion is not None and (expansion.kind, expansion.status, expansion.seed) == (
            "expansion", "running", 3)
        assert expansion.parent_id == "20260102-030405-abcdef" and expansion.finished_at is None
        dedup = find_job(con, "dedup-1")
        assert dedup is not None and dedup.config == {"embedder": "hash"} and dedup.seed is None
        # a text job keeps its corpus as its id (its calls are tagged so) unless that is taken
        texts = {j.job_id: j for j in list_jobs(con, kind="text_to_persona")}
        assert "notes.txt" in texts and texts["notes.txt"].seed == 2
        clash = next(j for j in texts if j != "notes.txt")
        assert clash.startswith("text-")
        assert con.execute("SELECT job_id, corpus FROM text_jobs ORDER BY corpus").fetchall() == [
            (clash, "20260102-030405-abcdef"), ("notes.txt", "notes.txt")]
        assert con.execute("SELECT job_id FROM llm_calls ORDER BY call_id").fetchall() == [
            ("notes.txt",), (clash,)]
        # the lifecycle left the detail tables; what is their own stayed
        assert columns(con, "runs") == ["run_id", "scenario", "scenario_path", "llm",
                                        "steps_planned", "steps_done"]
        assert columns(con, "synth_jobs") == ["job_id", "task", "prompting", "n", "llm"]
        assert columns(con, "expansions") == ["expansion_id", "params_key", "hops_done"]
        assert columns(con, "dedup_jobs") == ["job_id", "stages"]
        assert con.execute("SELECT steps_done FROM runs").fetchall() == [(1,)]
        assert json.loads(con.execute("SELECT stages FROM dedup_jobs").fetchall()[0][0]) == {
            "minhash": {"input": 3, "marked": 1}}
    finally:
        con.close()
    again = connect(db)  # a second open changes nothing
    try:
        assert len(list_jobs(again)) == 6
    finally:
        again.close()


def test_a_reader_sees_a_version_1_file_in_the_new_shape_without_changing_it(tmp_path: Path) -> None:
    db = v1_database(tmp_path / "old.duckdb")
    before = db.read_bytes()
    con = connect(db, read_only=True)
    try:
        assert {(j.job_id, j.kind, j.status) for j in list_jobs(con)} >= {
            ("synth-1", "synthesis", "interrupted"), ("notes.txt", "text_to_persona", "finished")}
        assert con.execute("SELECT run_id, steps_done, status FROM runs JOIN jobs ON job_id = run_id"
                           ).fetchall() == [("20260102-030405-abcdef", 1, "failed")]
        shape = [d[0] for d in con.execute("SELECT * FROM runs LIMIT 0").description]
        assert shape == ["run_id", "scenario", "scenario_path", "llm", "steps_planned", "steps_done"]
        assert con.execute("SELECT corpus FROM text_jobs WHERE job_id = 'notes.txt'").fetchall() == [
            ("notes.txt",)]
    finally:
        con.close()
    assert db.read_bytes() == before


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import pytest

    from personahub.core.errors import PersonahubError

    db = tmp_path / "new.duckdb"
    connect(db).close()
    raw = duckdb.connect(str(db))
    raw.execute("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    with pytest.raises(PersonahubError, match="newer personahub"):
        connect(db)
    assert db.read_bytes() == copy.read_bytes()


def test_token_counts_of_an_older_file_become_bigint_and_take_any_figure(tmp_path: Path) -> None:
    """Issue 42: a file whose token counts are INTEGER (as before) is widened by the first writer,
    its rows kept; a count past INT32 then fits. A file already widened is not written to."""
    from personahub.core.migrate import WIDENED
    from personahub.core.store import DDL_KEY

    db = tmp_path / "old.duckdb"
    connect(db).close()
    raw = duckdb.connect(str(db))
    for table, names in WIDENED.items():
        for name in names:
            raw.execute(f"ALTER TABLE {table} ALTER COLUMN {name} SET DATA TYPE INTEGER")
    raw.execute("INSERT INTO llm_calls (call_id, tokens_in, tokens_out) VALUES ('c1', 7, 9)")
    raw.execute("DELETE FROM schema_meta WHERE key = ?", [DDL_KEY])  # as an older schema left it
    raw.close()
    con = connect(db)
    try:
        types = con.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                            "WHERE column_name LIKE '%tokens%' AND table_name LIKE 'llm_ca%' "
                            "AND column_name <> 'max_tokens' ORDER BY 1, 2").fetchall()
        assert {t for _, _, t in types} == {"BIGINT"} and len(types) == 5
        con.execute("INSERT INTO llm_calls (call_id, tokens_out) VALUES ('c2', ?)", [2**40])
        assert con.execute("SELECT call_id, tokens_in, tokens_out FROM llm_calls ORDER BY 1"
                           ).fetchall() == [("c1", 7, 9), ("c2", None, 2**40)]
    finally:
        con.close()
    before = db.read_bytes()
    connect(db).close()
    assert db.read_bytes() == before
