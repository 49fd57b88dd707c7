"""SQL a user typed (``personahub sql``), run over a read-only, locked-down connection with the
analysis views installed. Kept out of the CLI so the command only parses and prints."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from personahub.analysis.views import install_views
from personahub.core.errors import PersonahubError
from personahub.core.store import connect, has_extension_statement, lock_down


@dataclass(frozen=True)
class QueryResult:
    """A result set with its DuckDB column types (JSON columns come back as text: the type
    says which to decode so an export holds values, not JSON encoded twice)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def run_user_query(db: str | Path, query: str, *, allow_files: bool = False,
                   where: str = "") -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows) of the last statement of ``query``; any refusal or SQL error is one
    ``PersonahubError`` line starting ``sql: {where}`` (``where`` names a file, or is empty)."""
    result = user_query_result(db, query, allow_files=allow_files, where=where)
    return result.columns, result.rows


def user_query_result(db: str | Path, query: str, *, allow_files: bool = False,
                      where: str = "") -> QueryResult:
    """``run_user_query`` with the column types."""
    con = connect(db, read_only=True)
    try:
        install_views(con)
        lock_down(con, allow_files=allow_files)
        if has_extension_statement(con, query):
            raise PersonahubError(f"sql: {where}installing, loading or updating extensions is disabled")
        cursor = con.execute(query)
        description = cursor.description or []
        return QueryResult([d[0] for d in description], [str(d[1]) for d in description],
                           cursor.fetchall())
    except duckdb.Error as exc:
        raise PersonahubError(f"sql: {where}{sql_refusal(exc, allow_files)}") from exc
    finally:
        con.close()


def sql_refusal(exc: Exception, allow_files: bool) -> str:
    """One line for a failed ``sql`` statement, naming the way out when the sandbox refused it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException) and not allow_files:
        return "file access is disabled; use --allow-files to read or write files"
    if "configuration has been locked" in text:
        name = re.search(r'option "+([^"]+)"+', text)
        what = f"setting {name.group(1)!r}" if name else "settings"
        return f"{what} cannot be changed here (SET, RESET and PRAGMA settings are locked)"
    return text
