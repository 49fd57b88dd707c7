"""``personahub sql``: read a query (argument or file), run it through ``analysis.user_sql``
and print the result as a table, CSV (``\n`` line ends), JSON (one array) or JSON Lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from personahub.cli.common import DbOption, error_line, one_line_errors, out
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import read_text_file

FORMATS = ("table", "csv", "json", "jsonl")


@one_line_errors
def sql(
    query: Annotated[str | None, typer.Argument(
        help="SQL to run (read-only), or a path ending in .sql.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="File of SQL to run.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    fmt: Annotated[str, typer.Option(
        "--format", help="table, csv, json (one array) or jsonl (JSON Lines).")] = "table",
    limit: Annotated[int, typer.Option(min=1, help="Rows to print at most (table).")] = 200,
    allow_files: Annotated[bool, typer.Option(
        "--allow-files", help="Let the SQL read other files (read_csv, read_parquet, glob, "
                              "ATTACH, which opens databases read-only). Nothing is written: "
                              "COPY ... TO and EXPORT DATABASE need --allow-writes.")] = False,
    allow_writes: Annotated[Path | None, typer.Option(
        "--allow-writes", metavar="DIR", help="Let the SQL read and write files inside DIR "
                                              "only (COPY ... TO, EXPORT DATABASE, ATTACH ... "
                                              "READ_WRITE). DIR may not hold the database or a "
                                              "link to it; the SQL runs on a private copy of "
                                              "the database. Not with --allow-files.")] = None,
) -> None:
    """Query the database with SQL over a read-only connection (analysis views included).

    A file may hold several statements; the result of the last one is printed. The views of
    ``analysis/views.sql`` (v_duplicate_rate, v_run_usage, ...) are installed as TEMP views.
    Nothing the SQL does reaches the database file, its WAL or its temp folder. The SQL cannot
    touch other files (unless --allow-files, to read, or --allow-writes DIR), install or load
    extensions, or change settings (SET, RESET, PRAGMA).
    """
    from personahub.analysis.user_sql import user_query_result

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    if allow_files and allow_writes is not None:
        error_line("sql: --allow-files and --allow-writes cannot be combined: with "
                   "--allow-writes DIR the SQL reads and writes inside DIR only (put the files "
                   "to read there)")
        raise typer.Exit(2)
    if file is None and query is not None and query.strip().lower().endswith(".sql"):
        file = Path(query.strip())
    if file is not None:
        query = read_text_file(file, "--file")
    if not query or not query.strip():
        raise PersonahubError("sql: give a query, a .sql path or --file FILE")
    where = f"{file}: " if file is not None else ""
    result = user_query_result(db, query, allow_files=allow_files, write_dir=allow_writes,
                               where=where)
    print_rows(result.columns, result.rows, fmt, limit, types=result.types)


def json_records(columns: list[str], rows: list[tuple[Any, ...]],
                 types: list[str] | None = None) -> list[str]:
    """Each row as one JSON object; a JSON-typed column holds its value, not its text."""
    decode = [t == "JSON" for t in types] if types else [False] * len(columns)
    return [json.dumps({c: json.loads(v) if d and isinstance(v, str) else v
                        for c, v, d in zip(columns, row, decode, strict=True)}, default=str)
            for row in rows]


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, limit: int,
               types: list[str] | None = None) -> None:
    """Print a result set as a table, CSV, a JSON array or JSON Lines."""
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")  # CRLF breaks $(... | tail -1)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    if fmt in ("json", "jsonl"):
        records = json_records(columns, rows, types)
        if fmt == "jsonl":
            sys.stdout.write("".join(r + "\n" for r in records))
        else:
            sys.stdout.write("[" + ",\n ".join(records) + "]\n")
        return
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*["NULL" if v is None else str(v) for v in row])
    out.print(table)
    if len(rows) > limit:
        out.print(f"({len(rows)} rows, first {limit} shown)", soft_wrap=True)
