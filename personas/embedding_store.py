"""Stored dedup vectors, which a resumed or repeated embedding stage reads instead of embedding again.

A persona's id derives from its text, so a vector never goes stale. Vectors keep the embedder's
own float32 bits, so a resumed stage marks what an uninterrupted one marks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.personas.store import SURVIVORS

_SURVIVORS_WITH_VECTORS = f"""
SELECT p.persona_id, p.text, e.vector
FROM ({SURVIVORS}) AS p
LEFT JOIN persona_embeddings AS e ON e.persona_id = p.persona_id AND e.model = ?
ORDER BY p.seq, p.persona_id
"""


@dataclass(frozen=True)
class SurvivorBatch:
    """Live personas in hub order, with the vectors already stored for them."""

    ids: list[str]
    texts: list[str]
    has_vector: np.ndarray
    stored: np.ndarray

    @property
    def missing(self) -> list[int]:
        """Return positions of the personas still to embed."""
        return np.flatnonzero(~self.has_vector).tolist()

    def select(self, keep: np.ndarray) -> SurvivorBatch:
        """Return the personas where keep is true, with their stored vectors."""
        if keep.all():
            return self
        stored = self.stored[keep[self.has_vector]]
        return SurvivorBatch([i for i, k in zip(self.ids, keep, strict=True) if k],
                             [t for t, k in zip(self.texts, keep, strict=True) if k],
                             self.has_vector[keep], stored)

    def with_new(self, new: np.ndarray) -> np.ndarray:
        """Return all the batch's vectors: the stored ones and one new per missing persona."""
        if not self.has_vector.any():
            return new
        out = np.empty((len(self.ids), self.stored.shape[1]), dtype=np.float32)
        out[self.has_vector] = self.stored
        if len(new):
            out[~self.has_vector] = new
        return out


def _batch(ids: list[str], texts: list[str], column: pa.Array) -> SurvivorBatch:
    """Build a batch from its vector column (null where none is stored)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    has = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    present = column.filter(pa.array(has))
    flat = pc.list_flatten(present).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    dim = flat.size // max(1, len(present))
    return SurvivorBatch(ids, texts, has, flat.reshape(len(present), dim))


def survivor_batches(con: duckdb.DuckDBPyConnection, model: str,
                     batch_rows: int) -> Iterator[SurvivorBatch]:
    """Stream live personas with their stored vectors on a cursor of their own, so con stays free for
    writes.
    """
    reader_con = con.cursor()
    try:
        rel = reader_con.sql(_SURVIVORS_WITH_VECTORS, params=[model])
        to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
        for batch in to_reader(batch_rows):
            yield _batch(batch.column(0).to_pylist(), batch.column(1).to_pylist(), batch.column(2))
    finally:
        reader_con.close()


def write_vectors(con: duckdb.DuckDBPyConnection, ids: list[str], model: str, vectors: np.ndarray,
                  job_id: str | None) -> int:
    """Store vectors under a model name; ids stored before keep theirs."""
    n = len(ids)
    if n == 0:
        return 0
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(x.shape[1])
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table = pa.table({
        "persona_id": pa.array(ids, pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "dim": pa.array([dim] * n, pa.int32()),
        "vector": pa.ListArray.from_arrays(offsets, pa.array(x.ravel(), pa.float32())),
        "job_id": pa.array([job_id] * n, pa.string()),
        "created_at": pa.array([now] * n, pa.timestamp("us")),
    })
    view, cols = "_batch_persona_embeddings", ", ".join(table.column_names)
    con.register(view, table)
    try:
        con.execute(f"INSERT OR IGNORE INTO persona_embeddings ({cols}) SELECT {cols} FROM {view}")
    finally:  # in an aborted transaction unregistering fails too
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)
    return n


def stored_vector_count(con: duckdb.DuckDBPyConnection, model: str) -> int:
    """Count personas with a stored vector for this model."""
    return int(con.execute("SELECT count(*) FROM persona_embeddings WHERE model = ?",
                           [model]).fetchall()[0][0])


def vectors_of(con: duckdb.DuckDBPyConnection, model: str,
               persona_ids: list[str]) -> list[tuple[str, list[float]]]:
    """Return (persona id, vector) stored for this model among the given personas."""
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = "
                       "'persona_embeddings'").fetchall():
        return []
    return [(str(pid), vector) for pid, vector in con.execute(
        "SELECT persona_id, vector FROM persona_embeddings WHERE model = ? "
        "AND list_contains(?, persona_id)", [model, persona_ids]).fetchall()]
