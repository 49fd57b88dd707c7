"""DuckDB access shared by every layer: open a database, create the schema, batch-insert rows.

Rows go as Arrow batches: a per-row INSERT loop is orders of magnitude slower
(bench/bench_runlog_writes.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from personahub.core.dbcheck import (
    DatabaseFileError,
    check_blocks,
    check_header,
    check_shape,
    damage_reason,
    first_line,
    format_is_known,
    is_damage,
    read_back,
)
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.live_jobs import interrupt_orphans
from personahub.core.stored_views import lay_views, sync_views

DEFAULT_DB = "personahub.duckdb"

#: a file of another version is refused, except versions 1 and 2, which a writer upgrades
#: (``_upgrade_v1``, then ``_upgrade_v2``)
SCHEMA_VERSION: Final = 3

#: version 1 called the output kind ``kind`` in these tables (``synth_items.task`` already said task)
RENAMED_V2: Final = (("emissions", "kind", "task"), ("judgments", "kind", "task"),
                     ("rejected", "kind", "task"))

#: version 2 and before called the provider's batches ``llm_batches``
RENAMED_TABLES_V3: Final = (("llm_batches", "provider_batches"),)
#: and the columns that name them ``batch_*`` (the commit unit keeps ``batch``: interviews.batch_id)
RENAMED_V3: Final = (("llm_calls", "batch_id", "provider_batch_id"),
                     ("prices", "batch_price_in", "provider_batch_price_in"),
                     ("prices", "batch_price_out", "provider_batch_price_out"))

#: the versions a writer upgrades and a reader shows under this version's names
_OLD_VERSIONS: Final = ("1", "2")


# a file that holds this DDL's digest runs no DDL on open (about half of a writer's connect)
DDL_KEY = "schema_ddl"


def _digest(ddl: str) -> str:
    return hashlib.sha256(ddl.encode("utf-8")).hexdigest()[:16]


def _schema_current(con: duckdb.DuckDBPyConnection, ddl: str) -> bool:
    try:
        rows = dict(con.execute("SELECT key, value FROM schema_meta WHERE key IN (?, ?)",
                                [DDL_KEY, "schema_version"]).fetchall())
    except duckdb.CatalogException:
        return False
    return rows.get(DDL_KEY) == _digest(ddl) and rows.get("schema_version") == str(SCHEMA_VERSION)


def schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        rows = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        return None
    return str(rows[0][0]) if rows else None


def _readable_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """Return the file's schema version, or None where a damaged file cannot say (checks name it)."""
    try:
        return schema_version(con)
    except duckdb.Error:
        return None


def check_version(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a personahub file of another schema version in one line; versions 1 and 2 are upgraded
    on open."""
    try:
        found = schema_version(con)
    except duckdb.Error:  # a damaged file: the block checks that follow name the damage
        return
    if found == str(SCHEMA_VERSION) or found in _OLD_VERSIONS:
        return
    if found is None:
        check_shape(con, path)
        if not con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
                           "AND schema_name = 'main' AND NOT temporary LIMIT 1").fetchall():
            return
    version = "no schema version" if found is None else f"schema version {found}"
    raise DatabaseFileError(
        f"--db {path}: written by another personahub ({version}; this one reads schema version "
        f"{SCHEMA_VERSION} and upgrades versions {' and '.join(_OLD_VERSIONS)}); give a new --db, "
        "and take what you need out of this file with "
        "the personahub that wrote it (personahub export, personahub sql)")


@functools.cache
def schema_sql() -> str:
    """Return this version's schema DDL (read once a process)."""
    return resources.files("personahub.core").joinpath("schema.sql").read_text(encoding="utf-8")


SAME_FILE_OTHER_CONFIG = "different configuration than existing connections"


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file, with DuckDB's progress bar off: it draws on stdout, inside what a command prints.

    In a Jupyter kernel DuckDB draws it as a widget instead, and refuses to change the setting
    when ipywidgets is missing: the setting is then left as it is.
    """
    con = _connect(path, read_only)
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    return con


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        if read_only and SAME_FILE_OTHER_CONFIG in str(exc):
            # this process already holds the file read-write: DuckDB opens a file once per process
            return duckdb.connect(str(path))
        if is_damage(exc):
            raise DatabaseFileError(f"--db {path}: the database file is damaged "
                                    f"({damage_reason(exc)}); nothing was written to it") from None
        holder = _lock_holder(str(exc))
        if holder is not None:
            raise DatabaseFileError(f"--db {path}: in use by another process ({holder} holds its "
                                    "lock); try again when it has finished") from None
        how = "read-only " if read_only else ""
        raise DatabaseFileError(f"--db {path}: cannot open {how}({first_line(exc)})") from None


def _lock_holder(message: str) -> str | None:
    """Who holds the database's lock, from DuckDB's error; None for another error."""
    if "Could not set lock" not in message and "Conflicting lock" not in message:
        return None
    match = re.search(r"\(PID (\d+)\)", message)
    return f"PID {match.group(1)}" if match else "another process"


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and for writers, create) a database; a refused file is left untouched.

    A writer also marks interrupted the jobs the file says are running whose process is gone
    (``core/live_jobs.py``).

    Args:
        path: The database file.
        read_only: Open without writing anything.

    Returns:
        An open DuckDB connection.
    """
    path = Path(path)
    if path.is_dir():
        raise DatabaseFileError(f"--db {path}: is a folder; give a database file")
    exists = path.exists()
    if read_only and not exists:
        raise PersonahubError(f"--db {path}: no such database (run a scenario first)")
    con: duckdb.DuckDBPyConnection | None = None
    if exists:
        check_header(path)
        # Reading a file writes nothing to it unless DuckDB replays a WAL, which a read-write open
        # does: so a file without one is opened once, read-write for a writer, and checked there;
        # a file with one is checked through a read-only probe first, and a refused file is untouched.
        replays = Path(f"{path}.wal").exists()
        con = _open(path, read_only=read_only or replays)
        try:
            version = _checked_version(con, path, read_only)
        except BaseException:
            con.close()
            raise
        if read_only:
            if version in _OLD_VERSIONS:
                _present_old(con, version)
            lay_views(con)
            return con
        if replays:
            con.close()
            con = None
    elif not path.parent.is_dir():  # a mistyped folder is not created
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"--db {path}: the folder {path.parent} {what}; create it first")
    con = con or _open(path, read_only=False)
    try:
        _bring_up(con)
        if exists:  # this process holds the file: a running job it does not run has no process
            interrupt_orphans(con)
    except BaseException:
        con.close()
        raise
    return con


def _checked_version(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> str | None:
    """Refuse a file of another version, shape or damaged blocks; return its schema version."""
    try:
        check_version(con, path)
        version = _readable_version(con)
        check_shape(con, path, *_renames_since(version))
        if not read_only:
            block_size = int(con.execute("SELECT block_size FROM pragma_database_size() "
                                         "WHERE database_name = current_database()").fetchall()[0][0])
            if format_is_known(path):
                check_blocks(path, block_size)
            else:
                read_back(con, path)
    except duckdb.Error as exc:
        raise DatabaseFileError(f"--db {path}: cannot be read ({first_line(exc)})") from None
    return version


def _bring_up(con: duckdb.DuckDBPyConnection) -> None:
    """Upgrade an older file, lay this schema's tables where its digest is not the file's, and the
    views."""
    ddl = schema_sql()
    version = schema_version(con)
    if version == "1":
        _upgrade_v1(con)
    if version in ("1", "2"):
        _upgrade_v2(con)
    if not _schema_current(con, ddl):
        with transaction(con):  # one commit for every table
            con.execute(ddl)
            con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?), "
                        "(?, ?)", [str(SCHEMA_VERSION), DDL_KEY, _digest(ddl)])
    sync_views(con)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = 'main' AND table_catalog = current_database()", [table]).fetchall()}


def _upgrade_v1(con: duckdb.DuckDBPyConnection) -> None:
    """Rename version 1's output-kind columns to ``task``, in one transaction, and record version 2.

    The stored views read the old names, so they are dropped first; ``sync_views`` stores them again.
    """
    with transaction(con):
        _drop_stored_views(con)
        _rename_columns(con, RENAMED_V2)
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', '2'), "
                    "('migrated_v1_v2', CAST(current_timestamp AS VARCHAR))")


def _upgrade_v2(con: duckdb.DuckDBPyConnection) -> None:
    """Rename version 2's provider-batch table and columns to ``provider_batch*``, in one
    transaction, and record version 3.

    The stored views read the old names, so they are dropped first; ``sync_views`` stores them again.
    """
    with transaction(con):
        _drop_stored_views(con)
        tables = _tables(con)
        for old, new in RENAMED_TABLES_V3:
            if old in tables and new not in tables:
                con.execute(f"ALTER TABLE {old} RENAME TO {new}")
        _rename_columns(con, RENAMED_V3)
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?), "
                    "('migrated_v2_v3', CAST(current_timestamp AS VARCHAR))", [str(SCHEMA_VERSION)])


def _drop_stored_views(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the file's stored views and forget their version, so that ``sync_views`` lays them again."""
    views = [r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary").fetchall()]
    for view in views:
        con.execute(f'DROP VIEW IF EXISTS "{view}"')
    con.execute("DELETE FROM schema_meta WHERE key = 'views_version'")


def _rename_columns(con: duckdb.DuckDBPyConnection,
                    renamed: tuple[tuple[str, str, str], ...]) -> None:
    for table, old, new in renamed:
        if old in _columns(con, table):
            con.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary").fetchall()}


def _renames_since(version: str | None
                   ) -> tuple[tuple[tuple[str, str, str], ...], tuple[tuple[str, str], ...]]:
    """Return the column and table renames between a file's version and this one."""
    if version == "1":
        return RENAMED_V2 + RENAMED_V3, RENAMED_TABLES_V3
    if version == "2":
        return RENAMED_V3, RENAMED_TABLES_V3
    return (), ()


def _present_old(con: duckdb.DuckDBPyConnection, version: str) -> None:
    """Show a read-only older file's tables under this version's names (TEMP views)."""
    database = str(scalar(con, "SELECT current_database()")).replace('"', '""')
    columns, tables = _renames_since(version)
    new_name = dict(tables)
    for table in sorted(_tables(con)):
        renames = [(old, new) for t, old, new in columns
                   if t == new_name.get(table, table) and old in _columns(con, table)]
        name = new_name.get(table)
        if not renames and name is None:
            continue
        select = "*" if not renames else (
            "* RENAME (" + ", ".join(f"{old} AS {new}" for old, new in renames) + ")")
        con.execute(f"CREATE TEMP VIEW {name or table} AS SELECT {select} "
                    f'FROM "{database}".main.{table}')


# Write transactions of this process take turns: DuckDB's concurrency is optimistic, so two
# transactions inserting the same key both pass and one fails at COMMIT. Re-entrant.
_WRITES = threading.RLock()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing block: commit on success, roll back on any exception."""
    with _WRITES:
        yield from _transaction(con)


def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # a broken connection: the error that broke it counts
            pass
        if isinstance(exc, duckdb.Error) and is_damage(exc):
            raise DatabaseFileError(f"--db {database_path(con)}: the database file is damaged "
                                    f"({damage_reason(exc)}); this transaction was rolled back"
                                    ) from None
        raise
    con.execute("COMMIT")


def database_path(con: duckdb.DuckDBPyConnection) -> str:
    try:
        rows = con.execute("SELECT path FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchall()
    except duckdb.Error:
        return "?"
    return str(rows[0][0]) if rows and rows[0][0] else "?"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> Any:
    """First column of the first row (reads the whole result, as DuckDB 2 requires)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None


@contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """Hold DuckDB's buffer pool to ``limit`` while the block runs, then give the database back the
    limit it had (kept_limit). The limit is the database instance's, shared by its connections.

    Args:
        con: a connection to the database whose pool is held.
        limit: a DuckDB size, such as ``'96MiB'`` or ``'100663296B'``.

    Raises:
        duckdb.Error: DuckDB refused the limit (a locked configuration); nothing changed.
    """
    with kept_limit(con):
        con.execute(f"SET memory_limit = '{limit}'")
        yield


@contextmanager
def kept_limit(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Give the database back, after the block, the memory limit it had before it, whatever the
    block set: DuckDB's default (reset, not rounded), or its caller's own (as DuckDB shows it, to
    a tenth of a unit), so a connection passed in is found as it was.

    Args:
        con: a connection to the database whose limit is kept.
    """
    before = _memory_limit(con)
    con.execute("RESET memory_limit")
    default = _memory_limit(con) == before
    _restore_limit(con, None if default else before)
    try:
        yield
    finally:
        _restore_limit(con, None if default else before)


@contextmanager
def one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run DuckDB's work on one thread while the block runs, then give back the threads it had.

    In a small fixed pool a join or a sort spills past the room on one thread where two threads'
    buffers together fail to pin a block (measured: a 10,000,000-row join and its sort in 96 MiB).

    Args:
        con: a connection to the database whose threads are set (the setting is the instance's).
    """
    before = int(scalar(con, "SELECT current_setting('threads')"))
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {before}")


def _memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(scalar(con, "SELECT current_setting('memory_limit')"))


def _restore_limit(con: duckdb.DuckDBPyConnection, limit: str | None) -> None:
    """Set the limit back (None: DuckDB's default); one below what the pool holds now is refused,
    and the held limit stays."""
    with suppress(duckdb.Error):
        con.execute("RESET memory_limit" if limit is None else f"SET memory_limit = '{limit}'")


def has_key(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Tell whether a table of the database has a PRIMARY KEY or UNIQUE constraint.

    The hub's personas and relations tables have none in files made now (DuckDB holds a key's
    index in memory whatever its memory_limit); files made before keep theirs, and their writers
    lean on it.

    Args:
        con: a connection to the database.
        table: the table's name.
    """
    return bool(con.execute(
        "SELECT 1 FROM duckdb_constraints() WHERE table_name = ? AND database_name = "
        "current_database() AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')", [table]).fetchall())


_SCALARS = frozenset({str, int, float, bool, type(None), dt.datetime, dt.date})


def _plain(value: object) -> object:
    if isinstance(value, Mapping | list | tuple) and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[Mapping[str, object]],
    *,
    ignore_conflicts: bool = False,
) -> int:
    """Insert row dicts into a table as one Arrow batch."""
    if not rows:
        return 0
    return insert_columns(con, table, {c: [r.get(c) for r in rows] for c in rows[0]},
                          ignore_conflicts=ignore_conflicts)


def insert_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Mapping[str, Sequence[object] | pa.Array | pa.ChunkedArray],
    *,
    ignore_conflicts: bool = False,
    new_by: Sequence[str] = (),
) -> int:
    """Insert columns of one length into a table as one Arrow batch. With key columns, only new keys go in,
    by an anti-join (a quarter faster than a conflict check at a million personas).
    """
    data: dict[str, Sequence[object] | pa.Array | pa.ChunkedArray] = {}
    for name, values in columns.items():
        # plain scalars need no per-value conversion (an isinstance check cost a second per 100k rows)
        if isinstance(values, pa.Array | pa.ChunkedArray) or set(map(type, values)) <= _SCALARS:
            data[name] = values
        else:
            data[name] = [_plain(v) for v in values]
    batch = pa.table(data)
    count = batch.num_rows
    if not count:
        return 0
    verb = "INSERT OR IGNORE INTO" if ignore_conflicts and not new_by else "INSERT INTO"
    cols = ", ".join(data)
    where = ""
    if new_by:
        match = " AND ".join(f"t.{k} = b.{k}" for k in new_by)
        where = f" b WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match})"
    # Read by DuckDB's replacement scan of this local, for this statement only: a registered view's
    # table lives until the transaction ends (an import is one transaction), and a relation's
    # query() reports a constraint error as "transaction is aborted", losing the error.
    _personahub_batch = batch  # noqa: F841 (named in the SQL)
    con.execute(f"{verb} {table} ({cols}) SELECT {cols} FROM _personahub_batch{where}")
    return count


def record_rows(records: Iterable[DataclassInstance], **extra: object) -> list[dict[str, object]]:
    """Dataclass records as row dicts; float epoch fields ending in _at become timestamps."""
    rows = []
    layouts: dict[type, tuple[list[str], list[str]]] = {}
    for record in records:
        layout = layouts.get(type(record))
        if layout is None:
            names = [f.name for f in dataclasses.fields(record)]
            layout = layouts[type(record)] = (names, [n for n in names if n.endswith("_at")])
        names, stamps = layout
        # shallow: asdict's deep copy dominated step writes
        row = {name: getattr(record, name) for name in names}
        for key in stamps:
            value = row[key]
            if isinstance(value, float):
                row[key] = dt.datetime.fromtimestamp(value, tz=dt.UTC).replace(tzinfo=None)
        row.update(extra)
        rows.append(row)
    return rows
