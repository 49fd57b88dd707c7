"""What an imported Persona Hub synthesis row held besides its persona, kept whole.

Export reproduces the file row for row, and synthesis can use the rows as demonstrations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from personahub.core.errors import PersonahubError
from personahub.core.store import insert_columns

__all__ = ["SourceText", "insert_source_texts", "iter_source_rows", "resolve_source"]


@dataclass(frozen=True)
class SourceText:
    """One synthesis-file row: where it was, whose persona it is, and the row itself."""

    source: str
    row_no: int
    persona_id: str
    row: dict[str, object]

    @classmethod
    def of(cls, source: str, row_no: int, persona_id: str, row: dict[str, object]) -> SourceText:
        return cls(source, row_no, persona_id, dict(row))


def _text_or_none(value: object) -> str | None:
    """Store a field: strings verbatim, other JSON values as JSON text, absent as NULL."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def insert_source_texts(con: duckdb.DuckDBPyConnection, texts: Sequence[SourceText]) -> int:
    """Keep rows (a re-import adds nothing); return how many were given."""
    if not texts:
        return 0
    insert_columns(con, "persona_texts", {
        "source": [t.source for t in texts],
        "row_no": [t.row_no for t in texts],
        "persona_id": [t.persona_id for t in texts],
        "synthesized_text": [_text_or_none(t.row.get("synthesized text")) for t in texts],
        "description": [_text_or_none(t.row.get("description")) for t in texts],
        "raw": [json.dumps(t.row, ensure_ascii=False) for t in texts],
    }, ignore_conflicts=True)
    return len(texts)


def resolve_source(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Return the stored source a user means: the path as imported, or its unique file name."""
    sources = [r[0] for r in con.execute(
        "SELECT DISTINCT source FROM persona_texts ORDER BY 1").fetchall()]
    if name in sources:
        return name
    by_name = [s for s in sources if Path(s).name == Path(name).name]
    if len(by_name) == 1:
        return by_name[0]
    known = ", ".join(sources) or "none imported"
    why = "ambiguous" if by_name else "not an imported synthesis file"
    raise PersonahubError(f"--source-file {name}: {why} (known: {known})")


def iter_source_rows(con: duckdb.DuckDBPyConnection, source: str) -> Iterator[dict[str, object]]:
    """Yield one imported file's rows in file order, exactly as read."""
    cursor = con.execute("SELECT raw FROM persona_texts WHERE source = ? ORDER BY row_no",
                         [source])
    while batch := cursor.fetchmany(10_000):
        for (raw,) in batch:
            yield json.loads(raw)
