"""Bring a database written by an older personahub to this schema, once, when it is opened.

The schema's version is kept in ``schema_meta`` (``schema_version``). Version 1 (no
``schema_meta``) kept each job kind's lifecycle (status, config, seed, error, times) in its own
table: ``runs``, ``synth_jobs``, ``expansions`` (with ``run_id`` for the run it belonged to),
``text_jobs`` (keyed by corpus) and ``dedup_jobs``. Version 2 keeps it in ``jobs``; the detail
tables keep only their own columns, and ``text_jobs`` gains a job id.

Version 3 labels each persona with what a draw may take (``personas.gate``,
``personas/hub_gate.py``): the column is added by ``schema.sql``; the migration labels the rows
an older personahub wrote ``legacy``, which draws take as they did before.

Version 4 gives the tool kind one name: synthesis called it ``tool``, runs ``tool_spec``. The
migration renames the stored synthesis task (``synth_items``, ``synth_jobs``, judgments of its
items, its calls' purposes and its jobs' stored configuration) to ``tool_spec``; a reader sees an
older file's items under the new name through temporary views (``legacy_views``). A judge's id
stays what it was (it is a hash of the settings it was made with).

Version 5 gives ``llm_calls`` one name per thing: its engine label column ``model`` becomes
``llm`` (as in ``synth_jobs.llm`` and a run's ``llm``), and ``model_name`` (the served model's
name) is filled on rows written before the job kernel from that label (without ``@URL`` and
``openai:``). Its ``run_id`` holds a scenario run's id only: the calls of other jobs (synthesis,
a standalone expansion, dedup, text, a judge) had their own job's id, or the judged one's, there
and get NULL. A reader sees an older file's ``llm_calls`` so through a temporary view.

Whatever its version, a file whose token counts are INTEGER (before issue 42) has them widened
to BIGINT (``widen_counts``) by the first writer that opens it; no version number marks it.

A writer migrates in one transaction: the lifecycle is copied into ``jobs``, then dropped from
the detail tables. A migrated text job's id is its corpus name (what its ``llm_calls`` rows are
tagged with), unless another job already has that id (then ``text-`` and a hash, and its calls
are re-tagged). A reader cannot change the file: it sees a version-1 file through temporary views
of the version-2 shape instead (``legacy_views``), so reports, ``sql`` and the live view work on
an old file without writing to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import duckdb

from personahub.core.errors import PersonahubError

SCHEMA_VERSION: Final = 5
#: columns the migration adds to an older file's tables (the file-shape check lets them be missing)
ADDED_BY_MIGRATION: Final = {"text_jobs": frozenset({"job_id"}), "llm_calls": frozenset({"llm"})}
_LIFECYCLE = ("status", "config", "seed", "error", "started_at", "finished_at")
#: version 4: kinds' former names -> their names (as ``tasks.ALIASES``, which core cannot import)
RENAMED_KINDS: Final = {"tool": "tool_spec"}


@dataclass(frozen=True)
class _Legacy:
    """How one version-1 detail table maps onto ``jobs``."""

    table: str
    key: str  # the job id column
    kind: str
    seed_from_config: bool  # no seed column: read it from the stored config
    parent: str | None = None  # the column naming the parent job
    dropped: tuple[str, ...] = _LIFECYCLE


_TABLES = (
    _Legacy("runs", "run_id", "run", False),
    _Legacy("synth_jobs", "job_id", "synthesis", True),
    _Legacy("expansions", "expansion_id", "expansion", True, parent="run_id",
            dropped=(*_LIFECYCLE, "run_id")),
    _Legacy("dedup_jobs", "job_id", "dedup", False),
    _Legacy("text_jobs", "corpus", "text_to_persona", True),  # last: its ids avoid the others'
)
# a text job's id: its corpus name, unless another job has that id (``taken``: a query of ids)
_TEXT_KEY = ("CASE WHEN corpus IN ({taken}) THEN 'text-' || left(sha1(corpus), 12) "
             "ELSE corpus END")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = "
                       "current_database() AND schema_name = 'main' AND table_name = ?",
                       [table]).fetchall()
    return {r[0].lower() for r in rows}


def _legacy_tables(con: duckdb.DuckDBPyConnection) -> list[_Legacy]:
    """The detail tables that still hold a lifecycle (``status``): version-1 tables."""
    return [t for t in _TABLES if "status" in _columns(con, t.table)]


def _jobs_select(legacy: _Legacy, columns: set[str], source: str, key: str | None = None) -> str:
    """A version-1 table's rows as ``jobs`` rows (absent columns read as NULL); ``key`` is the
    job id's expression (default: the table's key column)."""
    def have(name: str, cast: str = "VARCHAR") -> str:
        return name if name in columns else f"CAST(NULL AS {cast})"

    seed = ("try_cast(json_extract_string(config, '$.seed') AS BIGINT)"
            if legacy.seed_from_config and "config" in columns else have("seed", "BIGINT"))
    started, finished = have("started_at", "TIMESTAMP"), have("finished_at", "TIMESTAMP")
    parent = legacy.parent if legacy.parent and legacy.parent in columns else "CAST(NULL AS VARCHAR)"
    return (f"SELECT {key or legacy.key} AS job_id, '{legacy.kind}' AS kind, "
            f"coalesce(status, 'running') AS status, CAST({have('config', 'JSON')} AS JSON) AS config, "
            f"{seed} AS seed, {have('error')} AS error, {started} AS started_at, "
            f"coalesce({finished}, {started}) AS updated_at, {finished} AS finished_at, "
            f"{parent} AS parent_id FROM {source}")


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version: 1 for a file without ``schema_meta`` (or without the key)."""
    try:
        rows = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        return 1
    return int(rows[0][0]) if rows else 1


def migrate(con: duckdb.DuckDBPyConnection, ddl: str, path: object = "") -> None:
    """Bring a writable connection's file (its tables created by ``ddl``) to ``SCHEMA_VERSION``."""
    version = schema_version(con)
    if version > SCHEMA_VERSION:
        raise PersonahubError(f"--db {path}: written by a newer personahub (schema version "
                              f"{version}, this one knows {SCHEMA_VERSION}); upgrade personahub")
    widen_counts(con)
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for legacy in _legacy_tables(con):
            _migrate_table(con, legacy, ddl)
        if version < 3:  # rows written before the label: drawn as they were (gate_labels.LEGACY)
            con.execute("UPDATE personas SET gate = 'legacy' WHERE gate IS NULL")
        if version < 4:
            _rename_kinds(con)
        if version < 5 and "model" in _columns(con, "llm_calls"):
            con.execute(f"UPDATE llm_calls SET model_name = {_SERVED_NAME} WHERE model_name IS NULL")
            con.execute("ALTER TABLE llm_calls RENAME COLUMN model TO llm")
            con.execute(f"UPDATE llm_calls SET run_id = NULL WHERE NOT ({_RUN_ID_KEPT})")
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)])
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


#: token counts once INTEGER, BIGINT since issue 42 (a real count of a long job's sums, or a
#: server's figure, must never fail to fit: ``contracts.token_count`` bounds what is stored)
WIDENED: Final = {"llm_calls": ("tokens_in", "tokens_out", "cached_prompt_tokens"),
                  "llm_cache": ("tokens_in", "tokens_out")}


def widen_counts(con: duckdb.DuckDBPyConnection) -> None:
    """Make an older file's token count columns BIGINT (only those still INTEGER, so a current
    file is not written to)."""
    for table, names in WIDENED.items():
        marks = ", ".join("?" * len(names))
        narrow = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            f"AND schema_name = 'main' AND table_name = ? AND column_name IN ({marks}) "
            "AND data_type = 'INTEGER'", [table, *names]).fetchall()]
        for name in narrow:
            con.execute(f"ALTER TABLE {table} ALTER COLUMN {name} SET DATA TYPE BIGINT")


def _rename_kinds(con: duckdb.DuckDBPyConnection) -> None:
    """Version 4: a kind's former synthesis name becomes its one name wherever it is stored."""
    for old, new in RENAMED_KINDS.items():
        con.execute("UPDATE synth_items SET task = ? WHERE task = ?", [new, old])
        con.execute("UPDATE synth_jobs SET task = ? WHERE task = ?", [new, old])
        con.execute("UPDATE judgments SET kind = ? WHERE kind = ? AND target_kind = 'synthesis'",
                    [new, old])
        for verb in ("synth", "solve"):
            con.execute("UPDATE llm_calls SET purpose = ? WHERE purpose = ?",
                        [f"{verb}:{new}", f"{verb}:{old}"])
        patches = (("task", old, new), ("examples", f"builtin:{old}", f"builtin:{new}"))
        for key, was, now in patches:
            con.execute("UPDATE jobs SET config = json_merge_patch(config, json_object(?, ?)) "
                        "WHERE kind = 'synthesis' AND json_extract_string(config, '$.' || ?) = ?",
                        [key, now, key, was])


#: version 5: the served model's name read from a pre-kernel row's engine label (``model``)
_SERVED_NAME: Final = "regexp_replace(regexp_replace(coalesce(model, ''), '@.*$', ''), '^openai:', '')"

#: version 5: an older row's run_id that is a scenario run's (the rest were other jobs' ids)
_RUN_ID_KEPT: Final = ("job_kind IS NULL OR job_kind = 'run' "
                       "OR (job_kind <> 'judge' AND run_id IS DISTINCT FROM job_id)")


def _renamed(column: str) -> str:
    """``column`` read with each former kind name as the kind's name (version-4 shape)."""
    cases = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in RENAMED_KINDS.items())
    return f"CASE {column} {cases} ELSE {column} END"


def _migrate_table(con: duckdb.DuckDBPyConnection, legacy: _Legacy, ddl: str) -> None:
    columns = _columns(con, legacy.table)
    if legacy.table == "text_jobs":
        _migrate_text_jobs(con, columns, ddl)
        return
    con.execute(f"INSERT INTO jobs {_jobs_select(legacy, columns, legacy.table)}")
    for column in legacy.dropped:
        if column in columns:
            con.execute(f"ALTER TABLE {legacy.table} DROP COLUMN {column}")


def _migrate_text_jobs(con: duckdb.DuckDBPyConnection, columns: set[str], ddl: str) -> None:
    """Text jobs were keyed by corpus: the table is rebuilt with a job id per corpus, and the
    calls of a job whose id is not its corpus name follow it."""
    con.execute("ALTER TABLE text_jobs RENAME TO _v1_text_jobs")
    con.execute(ddl)  # CREATE ... IF NOT EXISTS: only the new text_jobs is made
    legacy = next(t for t in _TABLES if t.table == "text_jobs")
    key = _TEXT_KEY.format(taken="SELECT job_id FROM jobs")  # every other kind is in jobs
    con.execute(f"CREATE TEMP TABLE _v1_text_ids AS SELECT corpus, {key} AS job_id "
                "FROM _v1_text_jobs")
    rows = _jobs_select(legacy, columns, "_v1_text_jobs JOIN _v1_text_ids USING (corpus)",
                        key="_v1_text_ids.job_id")
    con.execute(f"INSERT INTO jobs {rows}")
    con.execute("INSERT INTO text_jobs (job_id, corpus) SELECT job_id, corpus FROM _v1_text_ids")
    con.execute("UPDATE llm_calls SET job_id = i.job_id FROM _v1_text_ids i WHERE llm_calls.job_kind "
                "= 'text_to_persona' AND llm_calls.job_id = i.corpus AND i.job_id <> i.corpus")
    con.execute("DROP TABLE _v1_text_ids")
    con.execute("DROP TABLE _v1_text_jobs")


# the version-2 shape of each detail table, read from a version-1 table (``legacy_views``)
_DETAIL_VIEWS = {
    "runs": "run_id, scenario, scenario_path, llm, steps_planned, steps_done",
    "synth_jobs": f"job_id, {_renamed('task')} AS task, prompting, n, llm",
    "expansions": "expansion_id, params_key, hops_done",
    "text_jobs": "{text_key} AS job_id, corpus",
    "dedup_jobs": "job_id, stages",
}
_NO_JOBS = ("SELECT CAST(NULL AS VARCHAR) AS job_id, CAST(NULL AS VARCHAR) AS kind, "
            "CAST(NULL AS VARCHAR) AS status, CAST(NULL AS JSON) AS config, "
            "CAST(NULL AS BIGINT) AS seed, CAST(NULL AS VARCHAR) AS error, "
            "CAST(NULL AS TIMESTAMP) AS started_at, CAST(NULL AS TIMESTAMP) AS updated_at, "
            "CAST(NULL AS TIMESTAMP) AS finished_at, CAST(NULL AS VARCHAR) AS parent_id WHERE false")


def legacy_views(con: duckdb.DuckDBPyConnection) -> None:
    """On a read-only connection to an older file: temporary views in this schema's shape, named
    after the tables they stand for (the file is not changed)."""
    if schema_version(con) >= SCHEMA_VERSION:
        return
    db = con.execute("SELECT current_database()").fetchall()[0][0].replace('"', '""')
    shadowed = _version_1_views(con, db)
    _renamed_kind_views(con, db, shadowed)
    calls = _columns(con, "llm_calls")
    if "model" in calls:  # before version 5: llm_calls.model is llm
        named = "model_name" in calls
        served = f"coalesce(model_name, {_SERVED_NAME})" if named else _SERVED_NAME
        run_id = (f"CASE WHEN {_RUN_ID_KEPT} THEN run_id END" if "job_kind" in calls
                  else "run_id")  # before the job kernel: no other jobs' ids to tell apart
        con.execute(f"CREATE OR REPLACE TEMP VIEW llm_calls AS SELECT * EXCLUDE "
                    f"({'model, model_name' if named else 'model'}) REPLACE ({run_id} AS run_id), "
                    f'model AS llm, {served} AS model_name FROM "{db}".main.llm_calls')


def _version_1_views(con: duckdb.DuckDBPyConnection, db: str) -> set[str]:
    """A version-1 file: ``jobs`` and each detail table in the version-2 shape; returns the
    tables it stood in for."""
    has_jobs = bool(_columns(con, "jobs"))
    legacy = _legacy_tables(con)
    if has_jobs and not legacy:
        return set()
    others = " UNION ALL ".join([f'SELECT {t.key} FROM "{db}".main.{t.table}' for t in legacy
                                 if t.table != "text_jobs"] or ["SELECT NULL WHERE false"])
    text_key = _TEXT_KEY.format(taken=others)
    selects = [_jobs_select(t, _columns(con, t.table), f'"{db}".main.{t.table}',
                            key=text_key if t.table == "text_jobs" else None) for t in legacy]
    if not has_jobs:
        con.execute(f"CREATE OR REPLACE TEMP VIEW jobs AS {' UNION ALL '.join(selects or [_NO_JOBS])}")
    for t in legacy:
        shape = _DETAIL_VIEWS[t.table].format(text_key=text_key)
        con.execute(f'CREATE OR REPLACE TEMP VIEW {t.table} AS SELECT {shape} FROM "{db}".main.{t.table}')
    return {t.table for t in legacy}


def _renamed_kind_views(con: duckdb.DuckDBPyConnection, db: str, shadowed: set[str]) -> None:
    """A file before version 4: its synthesis items (and their judgments) under the kinds'
    names (``RENAMED_KINDS``)."""
    for table, column in (("synth_items", "task"), ("synth_jobs", "task"), ("judgments", "kind")):
        if table in shadowed or column not in _columns(con, table):
            continue
        renamed = _renamed(column)
        if table == "judgments":
            renamed = f"CASE WHEN target_kind = 'synthesis' THEN {renamed} ELSE {column} END"
        con.execute(f'CREATE OR REPLACE TEMP VIEW {table} AS SELECT * REPLACE ({renamed} AS {column}) '
                    f'FROM "{db}".main.{table}')
