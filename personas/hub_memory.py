"""How much memory DuckDB may hold for the hub commands, so a big hub spills instead of growing.

DuckDB's default buffer pool is most of the machine's memory: a scan of a large hub would keep
what it read and the process would grow with the hub. The hub commands set it to a fixed share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from personahub.core.store import memory_limit

# DuckDB's buffers for stats (MiB); dedup takes a quarter of its --memory-mb
HUB_MEMORY_MB = 512
# a sample's: it streams the hub in ranges of seq, each sorted on its own, so what DuckDB holds
# past a range is its cache of the blocks it read (about 50 MiB at a million personas, the texts
# of the drawn rows most of it); a larger hub evicts instead of growing
SAMPLE_MEMORY_MB = 64
# an import's (personas/hub_import.py): its staged rows and the table's written blocks spill past
# it, so a smaller pool fills by a million personas and then stays full, instead of growing to 512
IMPORT_MEMORY_MB = 192
# an expansion's: its batches' writes scan the hub's ids and read texts by id, and DuckDB kept
# every block they read; the hub's near-duplicate index is built within SAMPLE_MEMORY_MB
EXPAND_MEMORY_MB = 128


def bound_memory(con: duckdb.DuckDBPyConnection, memory_mb: int = HUB_MEMORY_MB) -> None:
    """Hold DuckDB's buffers to memory_mb (at least 64), spilling to its temporary folder past it."""
    con.execute(f"SET memory_limit = '{max(64, int(memory_mb))}MiB'")


@contextmanager
def held_memory(con: duckdb.DuckDBPyConnection, memory_mb: int) -> Iterator[None]:
    """Hold DuckDB's buffers to memory_mb while the block runs, then give the connection back its
    own limit, so a caller that passed its connection in finds it as it was.

    Args:
        con: the connection whose buffer pool is held.
        memory_mb: the limit while the block runs (at least 64 MiB).
    """
    with memory_limit(con, f"{max(64, int(memory_mb))}MiB"):
        yield


def personas_keyed(con: duckdb.DuckDBPyConnection) -> bool:
    """Tell whether the personas table has a key, as files made before it was dropped do.

    DuckDB holds a key's index in memory outside memory_limit, so on such a file a limit would
    stop a large import rather than bound it.
    """
    return bool(con.execute(
        "SELECT 1 FROM duckdb_constraints() WHERE table_name = 'personas' AND database_name = "
        "current_database() AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall())
