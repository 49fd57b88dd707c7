"""Recognise a damaged or foreign database file before anything writes to it.

``personahub.core.store.connect`` runs these checks on an existing ``--db`` file, in this order, and
each failure is one line naming the file:

- the file is a DuckDB file at all (random bytes, an empty file or an SQLite file are not);
- the personahub tables it holds have personahub's columns: a DuckDB file of another program
  (say with a ``personas`` table of its own shape) is refused, not filled with ours next to it
  (a personahub file of another schema version is refused before this: ``store.check_version``);
- for writers, every stored block passes its checksum. DuckDB checks a block only when a query
  reads it, and an insert reads little: a file with a damaged table block or index block took
  new rows without a word. The blocks are checked here with DuckDB's own block checksum
  (``Checksum`` in ``src/common/checksum.cpp``: 5381 xor-folded with every 64-bit word times
  0xbf58476d1ce4e5b9, stored in the block's first 8 bytes). That layout is DuckDB's internal
  one, so it is used only when the file's main header verifies with it; otherwise (a storage
  format this code does not know) every table is read back instead, which covers table data but
  not index blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np

from personahub.core.errors import PersonahubError

MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB file, after the main header's checksum
HEADER_SIZE = 4096  # the main header and two database headers precede the first block
HEADERS = 3
_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)
_SEED = 5381
_BLOCKS_PER_READ = 64  # 16 MiB at DuckDB's default 256 KiB blocks


class DatabaseFileError(PersonahubError):
    """``--db`` names a file that is not a usable personahub database (damaged or foreign)."""


def _fail(path: Path, reason: str) -> DatabaseFileError:
    return DatabaseFileError(f"--db {path}: {reason}")


def check_header(path: Path) -> None:
    """Refuse a file that does not start like a DuckDB database (before DuckDB opens it)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE * HEADERS)
    if not head:
        raise _fail(path, "the file is empty, not a DuckDB database; give another --db "
                          "(or delete the empty file)")
    if head.startswith(b"SQLite format 3\0"):
        raise _fail(path, "is an SQLite database, not a DuckDB one; give another --db")
    if head[8:12] != MAGIC:
        raise _fail(path, "not a DuckDB database file (no DuckDB header); give another --db")
    if len(head) < HEADER_SIZE * HEADERS:
        raise _fail(path, "the DuckDB file is damaged (it ends inside its headers)")


def checksum(words: np.ndarray) -> int:
    """DuckDB's block checksum of the little-endian 64-bit words after the stored checksum."""
    with np.errstate(over="ignore"):
        folded = np.bitwise_xor.reduce(words * _MULTIPLIER) if words.size else np.uint64(0)
    return int(folded) ^ _SEED


def _stored_and_computed(block: bytes | memoryview) -> tuple[int, int]:
    words = np.frombuffer(block, dtype="<u8")
    return int(words[0]), checksum(words[1:])


def format_is_known(path: Path) -> bool:
    """True when the main header verifies with DuckDB's checksum as implemented here."""
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        return False
    stored, computed = _stored_and_computed(header)
    return stored == computed


def block_count(path: Path) -> int | None:
    """The number of blocks the database holds, from its active database header (the one of
    the two with a valid checksum and the higher iteration); None when neither verifies.

    Bytes past those blocks belong to no checkpoint: a checkpoint writes its new blocks there
    before it writes the header that counts them, so one that failed (a full disk, a kill)
    leaves a tail that may end inside a block while the file and its WAL are whole.
    """
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE)
        headers = f.read(HEADER_SIZE * 2)
    found: list[tuple[int, int]] = []
    for offset in (0, HEADER_SIZE):
        header = headers[offset:offset + HEADER_SIZE]
        if len(header) < HEADER_SIZE:
            continue
        stored, computed = _stored_and_computed(header)
        if stored == computed:  # [checksum, iteration, meta block, free list, block count, ...]
            iteration, count = (int(w) for w in np.frombuffer(header, dtype="<u8")[[1, 4]])
            found.append((iteration, count))
    return max(found)[1] if found else None


def _chunks(path: Path, block_size: int, blocks: int | None) -> Iterator[tuple[int, bytes]]:
    """(number of the first block, bytes) of the first ``blocks`` blocks after the headers (all
    of them when None), 16 MiB at a time."""
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE * HEADERS)
        number = 0
        while blocks is None or number < blocks:
            want = _BLOCKS_PER_READ if blocks is None else min(_BLOCKS_PER_READ, blocks - number)
            chunk = f.read(block_size * want)
            if not chunk:
                break
            yield number, chunk
            number += len(chunk) // block_size
            if len(chunk) < block_size * want:
                break


def check_blocks(path: Path, block_size: int) -> None:
    """Refuse a file any block of which fails its checksum (or that ends inside a block the
    database holds: truncated).

    Only the blocks the active header counts (``block_count``) are checked: a tail past them
    is what a failed checkpoint wrote, and DuckDB reopens such a file with its WAL whole (issue
    32: a run that filled its disk was refused as truncated). A whole file that holds fewer
    blocks than its header counts is not refused: DuckDB trims free blocks off a file's end, so
    a valid database can be shorter than its count; a cut at a block boundary reaches DuckDB's
    own check. All-zero blocks are skipped:
    DuckDB punches holes where it frees blocks, and they read as zeros (a block it wrote never
    does: its checksum is not zero). Blocks are checked a chunk at a time with numpy (about a
    second per GiB).
    """
    words_per_block = block_size // 8
    held = block_count(path)
    for first, chunk in _chunks(path, block_size, held):
        whole = len(chunk) // block_size
        if len(chunk) % block_size:
            raise _fail(path, f"the database file is damaged (it ends inside block "
                              f"{first + whole}: truncated?); nothing was written to it")
        blocks = np.frombuffer(chunk[:whole * block_size], dtype="<u8").reshape(whole,
                                                                                words_per_block)
        with np.errstate(over="ignore"):
            computed = np.bitwise_xor.reduce(blocks[:, 1:] * _MULTIPLIER, axis=1) ^ np.uint64(_SEED)
        bad = [int(i) for i in np.flatnonzero(blocks[:, 0] != computed) if blocks[i].any()]
        if bad:
            number = first + bad[0]
            offset = HEADER_SIZE * HEADERS + number * block_size
            raise _fail(path, f"the database file is damaged (block {number} at byte {offset} "
                              "fails its checksum); nothing was written to it - restore it from a "
                              "backup or give another --db")


def read_back(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Read every column of every table (DuckDB verifies each block it reads); the fallback
    when the block layout is not the one ``check_blocks`` knows. Index blocks are not read."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary").fetchall()]
    if not tables:
        return
    query = " UNION ALL ".join(f'SELECT max(hash("{t}")) FROM "{t}"' for t in tables)
    try:
        con.execute(query).fetchall()
    except duckdb.Error as exc:
        raise _fail(path, f"the database file is damaged ({first_line(exc)}); nothing was "
                          "written to it") from None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB's run over several)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# the columns of the base tables (not views) of the open database's main schema
_TABLE_COLUMNS = ("SELECT c.table_name, c.column_name FROM duckdb_columns() c "
                  "JOIN duckdb_tables() t USING (database_name, schema_name, table_name) "
                  "WHERE t.database_name = current_database() AND t.schema_name = 'main' "
                  "AND NOT t.temporary")


@functools.lru_cache(maxsize=1)
def expected_tables() -> dict[str, frozenset[str]]:
    """Per personahub table, its columns: read from ``schema.sql`` itself (built in memory), so
    the check never drifts from the schema."""
    sql = resources.files("personahub.core").joinpath("schema.sql").read_text(encoding="utf-8")
    con = duckdb.connect(":memory:")
    try:
        con.execute(sql)
        rows = con.execute(_TABLE_COLUMNS).fetchall()
    finally:
        con.close()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    return {t: frozenset(c) for t, c in columns.items()}


def check_shape(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a DuckDB file that is not a personahub database (no schema is added to it)."""
    rows = con.execute(_TABLE_COLUMNS).fetchall()
    if not rows:
        return  # an empty DuckDB file: ours to fill
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table.lower(), set()).add(column.lower())
    expected = expected_tables()
    ours = sorted(set(present) & set(expected))
    if not ours:
        names = ", ".join(sorted(present)[:5])
        raise _fail(path, f"not a personahub database (it holds other tables: {names}); "
                          "give another --db")
    for table in ours:
        missing = sorted(expected[table] - present[table])
        if missing:
            raise _fail(path, f"not a personahub database, or one damaged: its table {table} "
                              f"lacks column(s) {', '.join(missing[:5])}; give another --db")
