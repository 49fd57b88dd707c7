"""personahub sql: read a query (argument or file), run it through analysis.user_sql and
print every statement's result in order: a table (as wide as its rows when piped, fitted to a
terminal), CSV, JSON, JSON Lines or Markdown (analysis.result_text), or one bare value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

from personahub.cli.common import console, error_line, one_line_errors, out, say
from personahub.cli.options import DbOption
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import read_text_file

if TYPE_CHECKING:
    from personahub.analysis.user_sql import QueryResult

Format = Literal["table", "csv", "json", "jsonl", "markdown"]
# Rendering a table wider than this is refused in favour of a terminal's width (a runaway cell).
MAX_TABLE_WIDTH = 100_000


@one_line_errors
def sql(
    query: Annotated[str | None, typer.Argument(
        help="SQL to run (read-only), or a path ending in .sql.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="File of SQL to run.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    fmt: Annotated[Format | None, typer.Option(
        "--format", help="table (default; as wide as its rows when piped), csv, json (one array "
                         "of objects), jsonl (one object per line) or markdown.")] = None,
    no_header: Annotated[bool, typer.Option(
        "--no-header", help="Leave out the column names (table and csv).")] = False,
    scalar: Annotated[bool, typer.Option(
        "--scalar", help="Print the one value of a result of one row and one column, bare "
                         "(NULL as an empty line), as $(personahub sql --scalar ...) wants; any "
                         "other shape is an error.")] = False,
    limit: Annotated[int, typer.Option(
        min=1, help="Rows to print at most per result (table and markdown).")] = 200,
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

    Every statement that returns rows prints its result, in order; in every format the results
    of several statements are separated by one empty line (json: one array per result). The
    statuses of other statements (CREATE, SET) are not printed. The views of
    ``analysis/views.sql`` (v_duplicate_rate, v_run_usage, ...) are stored in the database file
    (any DuckDB client sees them) and laid over as TEMP views here, as this version writes them.

    Nothing the SQL does reaches the database file, its WAL or its temp folder. The SQL cannot
    touch other files (unless --allow-files, to read, or --allow-writes DIR), install or load
    extensions, or change settings (SET, RESET, PRAGMA).

    Examples:

        personahub sql "select task, count(*) from emissions group by 1"
        personahub sql --format csv --no-header "select persona_id from personas" > ids.csv
        n=$(personahub sql --scalar "select count(*) from personas where not is_duplicate")
    """
    from personahub.analysis.user_sql import user_query_results

    if allow_files and allow_writes is not None:
        error_line("sql: --allow-files and --allow-writes cannot be combined: with "
                   "--allow-writes DIR the SQL reads and writes inside DIR only (put the files "
                   "to read there)")
        raise typer.Exit(2)
    if scalar and (fmt is not None or no_header):
        raise UsageError("sql: --scalar prints one bare value: no --format or --no-header")
    if no_header and fmt not in (None, "table", "csv"):
        raise UsageError(f"sql: --no-header applies to table and csv, not --format {fmt}")
    if file is None and query is not None and query.strip().lower().endswith(".sql"):
        file = Path(query.strip())
    if file is not None:
        query = read_text_file(file, "--file")
    if not query or not query.strip():
        raise UsageError("sql: give a query, a .sql path or --file FILE")
    where = f"{file}: " if file is not None else ""
    results = user_query_results(db, query, allow_files=allow_files, write_dir=allow_writes,
                                 where=where)
    if scalar:
        print_scalar(results)
        return
    for number, result in enumerate(results):
        if number:
            _write("\n")
        print_result(result, fmt or "table", limit, header=not no_header)


def _write(text: str) -> None:
    """Text on stdout as is, through the out console's file (which --json may move)."""
    out.file.write(text)
    out.file.flush()


def print_scalar(results: Sequence[QueryResult]) -> None:
    """Print the one value of the one result, or an error saying what came back instead."""
    from personahub.analysis.result_text import scalar_text

    if len(results) != 1:
        raise PersonahubError(f"sql --scalar: the SQL returned {len(results)} results; give one "
                              "query")
    result = results[0]
    if not result.rows:
        raise PersonahubError("sql --scalar: the query returned no row")
    if len(result.rows) != 1 or len(result.columns) != 1:
        rows, cols = len(result.rows), len(result.columns)
        raise PersonahubError(f"sql --scalar: the query returned {rows} row{'s' * (rows != 1)} "
                              f"of {cols} column{'s' * (cols != 1)}; one value needs 1 row of 1 "
                              "column")
    _write(scalar_text(result.rows[0][0]))


def print_result(result: QueryResult, fmt: Format, limit: int, *, header: bool = True) -> None:
    """One result set in fmt (limit rows at most in a table or Markdown)."""
    from personahub.analysis import result_text as text

    columns, rows, types = result.columns, result.rows, result.types
    if fmt == "csv":
        _write(text.csv_text(columns, rows, header=header))
    elif fmt == "json":
        _write(text.json_text(columns, rows, types))
    elif fmt == "jsonl":
        _write(text.jsonl_text(columns, rows, types))
    elif fmt == "markdown":
        _write(text.markdown_text(columns, rows[:limit], types))
    else:
        print_table(columns, rows[:limit], header=header)
    if fmt in ("table", "markdown") and len(rows) > limit:
        say(f"({len(rows)} rows, first {limit} shown; --limit N shows more)", to=console)


def print_table(columns: Sequence[str], rows: Sequence[tuple[object, ...]], *,
                header: bool = True) -> None:
    """Print a table of every cell verbatim, never truncated: fitted to a terminal (cells wrap), as
    wide as its longest rows otherwise (a pipe or a file gets whole lines)."""
    table = Table(*(Column(name, overflow="fold") for name in columns), show_header=header)
    for row in rows:
        table.add_row(*["NULL" if v is None else str(v) for v in row])
    if out.is_terminal:
        out.print(table)
        return
    wide = Measurement.get(out, out.options.update_width(MAX_TABLE_WIDTH), table).maximum
    Console(file=out.file, width=max(wide, 20), markup=False, emoji=False, highlight=False,
            color_system=None).print(table)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("sql",): sql}
