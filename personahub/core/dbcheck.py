"""Recognise a damaged or foreign database file before anything writes to it.

DuckDB checks a block only when a query reads it, so a damaged file took inserts without a word.
Every block is checked with DuckDB's own checksum when the header verifies with it, else every table
is read back; foreign files are refused by their columns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
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
    """The database file is damaged or foreign."""


def _fail(path: Path, reason: str) -> DatabaseFileError:
    return DatabaseFileError(f"--db {path}: {reason}")


def check_header(path: Path) -> None:
    """Refuse a file that does not start like a DuckDB database."""
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
    """DuckDB's block checksum of the 64-bit words after the stored checksum."""
    with np.errstate(over="ignore"):
        folded = np.bitwise_xor.reduce(words * _MULTIPLIER) if words.size else np.uint64(0)
    return int(folded) ^ _SEED


def _stored_and_computed(block: bytes | memoryview) -> tuple[int, int]:
    words = np.frombuffer(block, dtype="<u8")
    return int(words[0]), checksum(words[1:])


def format_is_known(path: Path) -> bool:
    """Return True when the main header verifies with the checksum as implemented here."""
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        return False
    stored, computed = _stored_and_computed(header)
    return stored == computed


def block_count(path: Path) -> int | None:
    """Return the number of blocks the active header counts (None when neither verifies). Bytes past them are
    a failed checkpoint's tail, which may end inside a block while the file and its WAL are whole.
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
    """First block number and bytes of the counted blocks, 16 MiB at a time."""
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
    """Refuse a file any counted block of which fails its checksum, or that ends inside one.

    A tail past the counted blocks is a failed checkpoint's, and DuckDB reopens it whole; a shorter file
    is fine (DuckDB trims free blocks), and all-zero blocks are punched holes. About a second per GiB.
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
    """Read every column of every table (DuckDB verifies each block it reads) when the block layout is
    unknown. Index blocks are not read.
    """
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
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


_SHORT_READ = re.compile(r"Could not read enough bytes from file .*: attempted to read (\d+) bytes "
                         r"from location (\d+)")
#: what DuckDB says when a query reads a block that is damaged, or past a truncated file's end
DAMAGE_TEXTS = ("Corrupt database file", "not a valid DuckDB database file",
                "Could not read enough bytes from file")


def is_damage(exc: BaseException) -> bool:
    """Return True when a DuckDB error says the database file is damaged or cut short."""
    text = str(exc)
    return any(t in text for t in DAMAGE_TEXTS)


def damage_reason(exc: BaseException) -> str:
    """Return the damage a DuckDB error reports, in words (a short read: where the file should go on)."""
    found = _SHORT_READ.search(str(exc))
    if found:
        end = int(found.group(2)) + int(found.group(1))
        return f"a query needed bytes up to {end}, past the end of the file: truncated?"
    return first_line(exc)


_TABLE_COLUMNS = ("SELECT c.table_name, c.column_name FROM duckdb_columns() c "
                  "JOIN duckdb_tables() t USING (database_name, schema_name, table_name) "
                  "WHERE t.database_name = current_database() AND t.schema_name = 'main' "
                  "AND NOT t.temporary")


@functools.lru_cache(maxsize=1)
def expected_tables() -> dict[str, frozenset[str]]:
    """Each personahub table's columns, read from schema.sql itself so the check never drifts."""
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


def check_shape(con: duckdb.DuckDBPyConnection, path: Path,
                renamed: Iterable[tuple[str, str, str]] = (),
                renamed_tables: Iterable[tuple[str, str]] = ()) -> None:
    """Refuse a DuckDB file that is not a personahub database.

    Args:
        con: A connection to the file.
        path: The file, for the message.
        renamed: (table, old, new) columns an older version named ``old``: either name passes.
        renamed_tables: (old, new) tables an older version named ``old``: either name passes.
    """
    rows = con.execute(_TABLE_COLUMNS).fetchall()
    if not rows:
        return
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table.lower(), set()).add(column.lower())
    for old_table, new_table in renamed_tables:
        if old_table in present and new_table not in present:
            present[new_table] = present.pop(old_table)
    for table, old, new in renamed:
        if old in present.get(table, ()):
            present[table].add(new)
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
