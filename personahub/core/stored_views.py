"""The analysis views stored in the database file, so any DuckDB client sees them.

A writer re-creates the views when the file holds another text of them (tracked by a hash). A
read-only connection never writes: it lays TEMP copies over stale views. The core reads the views'
SQL as data and imports no analysis code.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import duckdb

VERSION_KEY = "views_version"
NAMES_KEY = "views"


def views_text() -> str:
    """Return the text of the installed views.sql."""
    return resources.files("personahub.analysis").joinpath("views.sql").read_text(encoding="utf-8")


def statements(text: str, *, temporary: bool) -> list[str]:
    """Return the CREATE VIEW statements of a text, TEMP or stored."""
    text = text.replace("{temp}", "TEMP" if temporary else "")
    return [s.strip() for s in text.split("\n;") if "CREATE" in s]


def view_names(text: str) -> list[str]:
    """Return the names of the views a text creates, in order."""
    names = []
    for statement in statements(text, temporary=False):
        words = statement[statement.index("CREATE"):].split()
        names.append(words[words.index("VIEW") + 1])
    return names


def version(text: str) -> str:
    """Return what identifies one text of the views (any change re-creates them)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = con.execute("SELECT value FROM schema_meta WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


def _stored(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = "
                       "current_database() AND schema_name = 'main' AND NOT temporary").fetchall()
    return {r[0] for r in rows}


def sync_views(con: duckdb.DuckDBPyConnection, text: str | None = None) -> bool:
    """On a writable connection, store the views unless the file holds them; True when (re-)created."""
    text = views_text() if text is None else text
    wanted, names = version(text), view_names(text)
    if _meta(con, VERSION_KEY) == wanted and set(names) <= _stored(con):
        return False
    previous = set(filter(None, (_meta(con, NAMES_KEY) or "").split(",")))
    con.execute("BEGIN TRANSACTION")
    try:
        for name in sorted(previous - set(names)):
            con.execute(f'DROP VIEW IF EXISTS "{name}"')
        for statement in statements(text, temporary=False):
            con.execute(statement)
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES (?, ?), (?, ?)",
                    [VERSION_KEY, wanted, NAMES_KEY, ",".join(names)])
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return True


_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.DOTALL)


def stand_in_missing_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Empty TEMP copies of tables a read-only file lacks, so every view reads as empty; returns the names."""
    ddl = resources.files("personahub.core").joinpath("schema.sql").read_text(encoding="utf-8")
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    missing = []
    for name, body in _TABLE.findall(ddl):
        if name not in present:
            columns = re.sub(r"DEFAULT nextval\('\w+'\)", "", body)
            con.execute(f"CREATE TEMP TABLE {name} ({columns}\n)")
            missing.append(name)
    return missing


def holds_views(con: duckdb.DuckDBPyConnection, text: str | None = None) -> bool:
    """Whether the file stores these views already (TEMP copies would list every view twice)."""
    text = views_text() if text is None else text
    try:
        return _meta(con, VERSION_KEY) == version(text)
    except duckdb.CatalogException:
        return False


def lay_views(con: duckdb.DuckDBPyConnection, text: str | None = None) -> bool:
    """On a read-only connection, lay TEMP copies of the views unless the file holds them; True when laid."""
    text = views_text() if text is None else text
    if holds_views(con, text):
        return False
    stand_in_missing_tables(con)
    for statement in statements(text, temporary=True):
        con.execute(statement)
    return True
