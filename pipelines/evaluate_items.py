"""Outside item sets (``evaluate --items``): stored once per content and column mapping.

An item set's id is a hash of its file's SHA-256 and the columns asked for, so two evaluations
of one file share its items, and an edited file is a new set. Its items keep their file row
(``row-000017``) and, where the file gives one, their reference answer.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb

from personahub.core.store import insert_columns
from personahub.pipelines.evaluate_files import OutsideItems

#: row numbers of the rows left out that an item set keeps, for a user to look them up
LEFT_OUT_ROWS = 20


@dataclass(frozen=True)
class ItemSet:
    """What an outside item file gave an evaluation.

    Attributes:
        source_id: the item set's id (``items-...``).
        path: the file as named.
        sha256: its content hash.
        question_column: the column read as the question.
        answer_column: the column read as the reference answer (None: none).
        rows: the file's rows.
        items: the items kept (rows with a question).
        with_reference: items with a reference answer.
        left_out: rows without a question, not evaluated.
    """

    source_id: str
    path: str
    sha256: str
    question_column: str
    answer_column: str | None
    rows: int
    items: int
    with_reference: int
    left_out: int


def item_id(row: int) -> str:
    """Return an outside item's id: its file row, zero-padded so ids sort in file order."""
    return f"row-{row:06d}"


def store_items(con: duckdb.DuckDBPyConnection, source: str, outside: OutsideItems) -> None:
    """Store an item set and its items, unless stored already (in the caller's transaction)."""
    if item_set(con, source) is not None:
        return
    left = {"no question": len(outside.left_out), "rows": outside.left_out[:LEFT_OUT_ROWS]}
    con.execute("INSERT INTO eval_item_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [source, outside.path, outside.sha256, outside.question_column,
                 outside.answer_column, outside.rows, json.dumps(left),
                 dt.datetime.now(dt.UTC).replace(tzinfo=None)])
    insert_columns(con, "eval_items", {
        "source_id": [source] * len(outside.items),
        "item_id": [item_id(row) for row, _, _ in outside.items],
        "file_row": [row for row, _, _ in outside.items],
        "text": [text for _, text, _ in outside.items],
        "reference": [reference for _, _, reference in outside.items]})


def item_set(con: duckdb.DuckDBPyConnection, source: str) -> ItemSet | None:
    """Return a stored item set's facts (None: no such set)."""
    row = con.execute(
        "SELECT s.path, s.sha256, s.question_column, s.answer_column, s.n_rows, s.left_out, "
        "(SELECT count(*) FROM eval_items i WHERE i.source_id = s.source_id), "
        "(SELECT count(reference) FROM eval_items i WHERE i.source_id = s.source_id) "
        "FROM eval_item_sets s WHERE s.source_id = ?", [source]).fetchone()
    if row is None:
        return None
    left = json.loads(row[5]) if row[5] else {}
    return ItemSet(source, str(row[0]), str(row[1]), str(row[2]), row[3], int(row[4]),
                   int(row[6]), int(row[7]), int(left.get("no question", 0)))


def items_without_reference(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """How many of an item set's items carry no reference answer."""
    row = con.execute("SELECT count(*) FILTER (reference IS NULL) FROM eval_items WHERE "
                      "source_id = ?", [source]).fetchone()
    return int(row[0]) if row else 0
