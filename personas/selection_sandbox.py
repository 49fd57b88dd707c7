"""Where user-written selection conditions run (``--personas``, ``--carve``, ``personas sample``
conditions, a scenario's ``where``): a sandboxed in-memory DuckDB connection
(``personahub.core.sandbox.fragment_sandbox``) holding the ``personas`` columns they name, copied
from the caller's connection as Arrow. The caller's connection (a writer, with file access)
never runs them, so a condition such as ``(SELECT content FROM read_text('FILE')) LIKE 'x%'``
cannot read a file one answer at a time.

Only the columns a condition names are copied (``referenced_columns``): a million-persona hub
copies four small columns for ``hop >= 1``, and the text only when a condition reads it.
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
    """A sandboxed in-memory connection (no file system, no extensions, locked settings) whose
    ``personas`` holds the columns of ``con``'s that SQL ``fragments`` name (all of them when a
    fragment could name one indirectly), plus the key columns. Where user conditions run."""
    columns = persona_table_columns(con)
    keep = set(referenced_columns(fragments, columns)) | set(_KEY_COLUMNS)
    table = personas_arrow(con, [c for c in columns if c in keep])
    with fragment_sandbox({"personas": table}, {"personas": ("attributes",)}) as sandbox:
        yield sandbox
