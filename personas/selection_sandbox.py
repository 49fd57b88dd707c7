"""Where user-written selection conditions run: a sandboxed in-memory DuckDB connection.

It holds an Arrow copy of only the personas columns the conditions name, so a condition cannot
read a file, and a million-persona hub copies a few small columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb

from personahub.core.sandbox import fragment_sandbox, referenced_columns
from personahub.personas.store import persona_table_columns, personas_arrow

_KEY_COLUMNS = ("persona_id", "seq", "is_duplicate", "gate")  # what every selection itself reads


@contextmanager
def persona_sandbox(con: duckdb.DuckDBPyConnection,
                    fragments: Sequence[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open a sandbox whose personas table holds the named columns plus the key columns."""
    columns = persona_table_columns(con)
    keep = set(referenced_columns(fragments, columns)) | set(_KEY_COLUMNS)
    table = personas_arrow(con, [c for c in columns if c in keep])
    with fragment_sandbox({"personas": table}, {"personas": ("attributes",)}) as sandbox:
        yield sandbox
