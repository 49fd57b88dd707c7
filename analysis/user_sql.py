"""SQL a user typed (``personahub sql``), run over a read-only connection locked down by
``personahub.core.sandbox`` with the analysis views installed. Kept out of the CLI so the
command only parses and prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from personahub.analysis.views import install_views
from personahub.core.errors import PersonahubError
from personahub.core.sandbox import (
    FileAccess,
    SandboxRefusal,
    refusal_text,
    run_user_sql,
    user_sql_connection,
)


@dataclass(frozen=True)
class QueryResult:
    """A result set with its DuckDB column types (JSON columns come back as text: the type
    says which to decode so an export holds values, not JSON encoded twice)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def run_user_query(db: str | Path, query: str, *, allow_files: bool = False,
                   write_dir: Path | None = None,
                   where: str = "") -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows) of the last statement of ``query``; any refusal or SQL error is one
    ``PersonahubError`` line starting ``sql: {where}`` (``where`` names a file, or is empty)."""
    result = user_query_result(db, query, allow_files=allow_files, write_dir=write_dir,
                               where=where)
    return result.columns, result.rows


def user_query_result(db: str | Path, query: str, *, allow_files: bool = False,
                      write_dir: Path | None = None, where: str = "") -> QueryResult:
    """``run_user_query`` with the column types."""
    access = FileAccess(read=allow_files, write_dir=write_dir)
    try:
        with user_sql_connection(db, access, prepare=install_views) as con:
            cursor = run_user_sql(con, query, access)
            description = cursor.description or []
            return QueryResult([d[0] for d in description], [str(d[1]) for d in description],
                               cursor.fetchall())
    except SandboxRefusal as exc:
        raise PersonahubError(f"sql: {where}{exc}") from None
    except duckdb.Error as exc:
        raise PersonahubError(f"sql: {where}{refusal_text(exc, access)}") from exc
