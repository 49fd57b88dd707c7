"""A query result as text: CSV, JSON, JSON Lines, a Markdown table, or one bare value."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

# DuckDB type names whose Markdown column is right-aligned.
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")

Rows = Sequence[tuple[object, ...]]


def _json_columns(columns: Sequence[str], types: Sequence[str] | None) -> list[bool]:
    return [t == "JSON" for t in types] if types else [False] * len(columns)


def json_records(columns: Sequence[str], rows: Rows,
                 types: Sequence[str] | None = None) -> list[str]:
    """Each row as one JSON object; a JSON-typed column holds its value, not its text."""
    decode = _json_columns(columns, types)
    return [json.dumps({c: json.loads(v) if d and isinstance(v, str) else v
                        for c, v, d in zip(columns, row, decode, strict=True)}, default=str)
            for row in rows]


def csv_text(columns: Sequence[str], rows: Rows, *, header: bool = True) -> str:
    """CSV with LF line ends (CRLF would leave a CR in a shell's command substitution)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(columns: Sequence[str], rows: Rows, types: Sequence[str] | None = None) -> str:
    """One JSON array of objects, on lines of one record."""
    return "[" + ",\n ".join(json_records(columns, rows, types)) + "]\n"


def jsonl_text(columns: Sequence[str], rows: Rows, types: Sequence[str] | None = None) -> str:
    """JSON Lines: one object per row."""
    return "".join(record + "\n" for record in json_records(columns, rows, types))


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>") \
        .replace("\n", "<br>")


def markdown_text(columns: Sequence[str], rows: Rows, types: Sequence[str] | None = None) -> str:
    """Return a GitHub Markdown table: numbers right-aligned, pipes escaped, NULL spelled out."""
    kinds = list(types) if types else [""] * len(columns)
    rule = ["---:" if t.split("(")[0] in _NUMERIC else "---" for t in kinds]
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def scalar_text(value: object) -> str:
    """One value as a shell wants it: NULL as an empty line, lists and structs as JSON."""
    if value is None:
        return "\n"
    if isinstance(value, bool):
        return ("true" if value else "false") + "\n"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str) + "\n"
    return str(value) + "\n"
