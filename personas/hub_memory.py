"""How much memory DuckDB may hold for the hub commands, so a big hub spills instead of growing.

DuckDB's default buffer pool is most of the machine's memory: a scan of a large hub would keep
what it read and the process would grow with the hub. The hub commands set it to a fixed share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from personahub.core.store import has_key, kept_limit
from personahub.personas.store import relation_count, relations_keyed

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
# on a hub made before the relations key was dropped, an expansion's inserts into relations load
# that key's index (ART), which DuckDB keeps in memory whatever the limit and counts against it:
# 72 MiB at a million personas, 177 at 3M (about 31-38 bytes a relation), so a fixed hold refused
# the 3M expansion's batches. On such a hub the share is held over this much a relation (twice
# that, for margin); a hub made now has no key, and the share stays fixed
KEY_BYTES_A_RELATION = 64
# an expansion's summary's (its graph's shape joins the whole relations table: the blocks it read
# were 42 MiB at a million personas, 135 at 3M) and the end-of-job preview's and kept shares'
# (personahub/cli/job_running.py: an expansion's preview joins its few hundred personas with the
# whole hub, 44 and 130 MiB): below what a million personas reads, so the pool stays flat past it
SUMMARY_MEMORY_MB = 64
# a text job's (personas from-text): each batch's write checks its ids against the hub's, a scan
# of the persona_id column whose blocks the default pool kept (11 MiB at a million personas, 32 at
# 3M); held below what ten million read, as the summary is
TEXT_MEMORY_MB = 64
# a spilled dedup stage's flags' write (personas/store.py writes the table again with them): a
# stream through a join with the stage's marks, so a fixed share, below what a quarter of
# --memory-mb would let it fill at a large hub, keeps the command's peak from growing with it
FLAGS_MEMORY_MB = 128


# what DuckDB holds that a lower limit cannot evict: a key's index (ART_INDEX) is kept in memory
# whatever the limit, as are the blocks a running query pins; the hub's blocks (BASE_TABLE) are
# evicted
UNEVICTED = "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag <> 'BASE_TABLE'"


def bound_memory(con: duckdb.DuckDBPyConnection, memory_mb: int = HUB_MEMORY_MB) -> None:
    """Hold DuckDB's buffers to memory_mb (at least 64), spilling to its temporary folder past it.

    DuckDB refuses a limit below what it holds and cannot evict (after an expansion's batches on a
    hub made before the relations key was dropped, that key's index: 72 MiB at a million
    personas); the limit is then memory_mb over that.

    Args:
        con: the connection whose buffer pool is held.
        memory_mb: the share of evictable buffers (the hub's blocks read), in MiB.
    """
    want = max(64, int(memory_mb))
    try:
        con.execute(f"SET memory_limit = '{want}MiB'")
    except duckdb.OutOfMemoryException:
        unevicted = int(con.execute(UNEVICTED).fetchall()[0][0])
        con.execute(f"SET memory_limit = '{want + -(-unevicted // 2**20)}MiB'")


def expand_memory_mb(con: duckdb.DuckDBPyConnection) -> int:
    """Return the limit an expansion's batches are held to: EXPAND_MEMORY_MB of evictable blocks,
    and on a hub whose relations table has its key (made before it was dropped), the room that
    key's index takes as the batches' inserts load it.

    Args:
        con: a connection to the hub.
    """
    if not relations_keyed(con):
        return EXPAND_MEMORY_MB
    return EXPAND_MEMORY_MB + relation_count(con) * KEY_BYTES_A_RELATION // 2**20


@contextmanager
def kept_memory(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Give the connection back the memory limit it had before the block, whatever the block set,
    so a caller that passed its connection in finds it as it was (DuckDB's default reset, not
    rounded; a caller's own as DuckDB shows it).

    Args:
        con: the connection whose limit is restored.
    """
    with kept_limit(con):
        yield


@contextmanager
def held_memory(con: duckdb.DuckDBPyConnection, memory_mb: int) -> Iterator[None]:
    """Hold DuckDB's buffers to memory_mb while the block runs, then give the connection back its
    own limit (kept_memory).

    Args:
        con: the connection whose buffer pool is held.
        memory_mb: the limit while the block runs (at least 64 MiB).
    """
    with kept_memory(con):
        bound_memory(con, memory_mb)
        yield


def personas_keyed(con: duckdb.DuckDBPyConnection) -> bool:
    """Tell whether the personas table has a key, as files made before it was dropped do.

    DuckDB holds a key's index in memory outside memory_limit, so on such a file a limit would
    stop a large import rather than bound it.
    """
    return has_key(con, "personas")
