"""SQL a user typed, run read-only in the sandbox with the analysis views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from personahub.analysis.views import install_views
from personahub.core.errors import PersonahubError
from personahub.core.sandbox import (
    FileAccess,
    SandboxRefusal,
    refusal_text,
    user_sql_connection,
    user_sql_statements,
)

# Statements whose result is rows; those that never return rows (only a status); and the others
# (INSERT, COPY...), shown only when their result is not a status (INSERT ... RETURNING).
_QUERY_KINDS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "MULTI", "UNKNOWN"})
_NEVER_ROWS = frozenset({"ATTACH", "DETACH", "SET", "VARIABLE_SET", "TRANSACTION", "VACUUM",
                         "ANALYZE", "DROP", "ALTER", "CREATE", "CREATE_FUNC", "LOAD", "EXTENSION",
                         "EXPORT", "COPY_DATABASE"})
_STATUS_COLUMNS = (["Count"], ["Success"])


@dataclass(frozen=True)
class QueryResult:
    """A result set with its DuckDB column types, so JSON columns are decoded once."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[object, ...]]
    kind: str = "SELECT"  # the statement's kind, as DuckDB's parser names it

    @property
    def is_status(self) -> bool:
        """Whether this is only a statement's status, not rows asked for."""
        return self.kind in _NEVER_ROWS or (self.kind not in _QUERY_KINDS
                                            and self.columns in _STATUS_COLUMNS)


def run_user_query(db: str | Path, query: str, *, allow_files: bool = False,
                   write_dir: Path | None = None,
                   where: str = "") -> tuple[list[str], list[tuple[object, ...]]]:
    """(column names, rows) of the last statement; a refusal or SQL error is one PersonahubError line."""
    result = user_query_result(db, query, allow_files=allow_files, write_dir=write_dir,
                               where=where)
    return result.columns, result.rows


def user_query_result(db: str | Path, query: str, *, allow_files: bool = False,
                      write_dir: Path | None = None, where: str = "") -> QueryResult:
    """Return the last statement's result with its column types."""
    return _all_results(db, query, allow_files=allow_files, write_dir=write_dir, where=where)[-1]


def user_query_results(db: str | Path, query: str, *, allow_files: bool = False,
                       write_dir: Path | None = None, where: str = "") -> list[QueryResult]:
    """Return the result of every statement that returns rows, in order."""
    results = _all_results(db, query, allow_files=allow_files, write_dir=write_dir, where=where)
    return [r for r in results if not r.is_status]


def _all_results(db: str | Path, query: str, *, allow_files: bool, write_dir: Path | None,
                 where: str) -> list[QueryResult]:
    access = FileAccess(read=allow_files, write_dir=write_dir)
    results = []
    try:
        with user_sql_connection(db, access, prepare=install_views) as con:
            for kind in user_sql_statements(con, query, access):
                description = con.description or []
                results.append(QueryResult([d[0] for d in description],
                                           [str(d[1]) for d in description], con.fetchall(), kind))
        return results
    except SandboxRefusal as exc:
        raise PersonahubError(f"sql: {where}{exc}") from None
    except duckdb.Error as exc:
        raise PersonahubError(f"sql: {where}{refusal_text(exc, access)}") from exc
