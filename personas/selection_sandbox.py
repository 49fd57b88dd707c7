"""Where user-written selection conditions run: a sandboxed in-memory DuckDB connection.

It holds an Arrow copy of only the personas columns the conditions name, so a condition cannot
read a file, and a million-persona hub copies a few small columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from personahub.core.sandbox import fragment_sandbox, referenced_columns
from personahub.personas.store import persona_table_columns, personas_arrow, personas_arrow_batches

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


# rows of the hub a streamed selection puts into its sandbox at a time
BATCH_ROWS = 200_000


@contextmanager
def persona_batches(con: duckdb.DuckDBPyConnection, fragments: Sequence[str],
                    rows: int | None = None
                    ) -> Iterator[tuple[duckdb.DuckDBPyConnection, Iterator[None]]]:
    """Open a sandbox and an iterator that puts the hub into it a batch at a time, in hub order.

    Each step of the iterator replaces the sandbox's personas table with the next batch of the
    named columns plus the key columns, so a query run then sees that batch alone.
    """
    columns = persona_table_columns(con)
    keep = [c for c in columns if c in set(referenced_columns(fragments, columns)) | set(_KEY_COLUMNS)]
    reader = personas_arrow_batches(con, keep, rows or BATCH_ROWS)
    empty = pa.schema(reader.schema).empty_table()
    with fragment_sandbox({"personas": empty}, {"personas": ("attributes",)}) as sandbox:

        def batches() -> Iterator[None]:
            for batch in reader:
                sandbox.register("_arrow_personas", pa.Table.from_batches([batch]))
                yield None

        yield sandbox, batches()
