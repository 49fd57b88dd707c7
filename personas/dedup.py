"""Persona Hub dedup over the DuckDB ``personas`` table: MinHash, then embeddings.

Each stage reads the personas still marked non-duplicate in ``seq`` (creation) order,
decides which are near-duplicates of an earlier kept persona, and marks them
(``is_duplicate``, ``duplicate_of``, ``dup_stage``) in one transaction with one batched
UPDATE. Nothing is deleted, so a wrong threshold can be undone with a single UPDATE, and
an interrupted stage leaves the table as it was: run it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
from personahub.personas.embedding import embedding_duplicates, make_embedder
from personahub.personas.errors import PersonahubError
from personahub.personas.minhash import MinHashConfig, duplicates_from_signatures, signatures

__all__ = [
    "DedupConfig",
    "DedupSummary",
    "StageSummary",
    "run_dedup",
    "run_embedding_stage",
    "run_minhash_stage",
]

Progress = Callable[[str, int, int], None]

_SURVIVORS = "FROM personas WHERE NOT coalesce(is_duplicate, false)"


@dataclass(frozen=True, kw_only=True)
class DedupConfig:
    """Settings shared by both stages.

    Attributes:
        minhash: stage-1 settings (paper: 1-grams, 128 permutations, Jaccard 0.9).
        embed_threshold: stage 2 marks pairs with cosine similarity above this.
        embedder: embedder spec for stage 2 (``hash``, ``openai:<model>``, ``local``);
            ``None`` skips stage 2.
        ann_index: ANN backend for stage 2 (``auto``, ``faiss``, ``usearch``, ``ivf``).
        batch_rows: rows fetched from DuckDB per batch while streaming.
    """

    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    embed_threshold: float = 0.9
    embedder: str | None = None
    ann_index: str = "auto"
    batch_rows: int = 50_000

    def __post_init__(self) -> None:
        if not 0.0 < self.embed_threshold < 1.0:
            raise ValueError(f"embed_threshold must be in (0, 1), got {self.embed_threshold}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")


@dataclass(frozen=True)
class StageSummary:
    """What one stage saw and did."""

    stage: str
    input: int
    marked: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.stage:9s} input {self.input:>10,}  marked {self.marked:>9,}  "
            f"kept {self.input - self.marked:>10,}  ({self.seconds:.1f}s)"
        )


@dataclass(frozen=True)
class DedupSummary:
    """Per-stage counts of a :func:`run_dedup` call, printable as a small table."""

    stages: tuple[StageSummary, ...]

    @property
    def marked(self) -> int:
        """Personas newly marked as duplicates by this run, all stages."""
        return sum(s.marked for s in self.stages)

    def stage(self, name: str) -> StageSummary | None:
        """The summary of stage ``name`` (``minhash`` / ``embedding``), if it ran."""
        return next((s for s in self.stages if s.stage == name), None)

    def __str__(self) -> str:
        lines = ["dedup:"] + [f"  {s}" for s in self.stages]
        lines.append(f"  total marked {self.marked:,}")
        return "\n".join(lines)


def _count_survivors(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT count(*) {_SURVIVORS}").fetchall()[0][0])


def _survivor_batches(
    con: duckdb.DuckDBPyConnection, batch_rows: int
) -> Iterator[tuple[list[str], list[str]]]:
    """(persona_ids, texts) of non-duplicates in ``seq`` order, streamed in batches."""
    rel = con.sql(f"SELECT persona_id, text {_SURVIVORS} ORDER BY seq, persona_id")
    # duckdb 2 names it to_arrow_reader, 1.x fetch_arrow_reader
    to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
    for batch in to_reader(batch_rows):
        yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def _mark(con: duckdb.DuckDBPyConnection, ids: np.ndarray, dup: np.ndarray, stage: str) -> int:
    """Mark ``ids[j]`` as a duplicate of ``ids[dup[j]]`` for every ``dup[j] >= 0``.

    One transaction, one UPDATE joined against a registered Arrow table.
    """
    rows = np.flatnonzero(dup >= 0)
    if rows.size == 0:
        return 0
    marks = pa.table(
        {
            "persona_id": pa.array(ids[rows].tolist(), pa.string()),
            "duplicate_of": pa.array(ids[dup[rows]].tolist(), pa.string()),
        }
    )
    view = f"_dedup_marks_{stage}"
    con.register(view, marks)
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"""
                UPDATE personas
                SET is_duplicate = true, duplicate_of = m.duplicate_of, dup_stage = ?
                FROM {view} AS m
                WHERE personas.persona_id = m.persona_id
                  AND NOT coalesce(personas.is_duplicate, false)
                """,
                [stage],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.unregister(view)
    return int(rows.size)


def run_minhash_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None
) -> StageSummary:
    """Stage 1 alone: MinHash-LSH over the current non-duplicates."""
    t0 = time.perf_counter()
    total = _count_survivors(con)
    ids: list[str] = []
    sig_parts: list[np.ndarray] = []
    for batch_ids, texts in _survivor_batches(con, config.batch_rows):
        ids.extend(batch_ids)
        sig_parts.append(signatures(texts, config.minhash))
        if progress:
            progress("minhash", len(ids), total)
    if not ids:
        return StageSummary("minhash", 0, 0, time.perf_counter() - t0)
    dup = duplicates_from_signatures(np.concatenate(sig_parts), config.minhash)
    marked = _mark(con, np.asarray(ids, dtype=object), dup, "minhash")
    return StageSummary("minhash", len(ids), marked, time.perf_counter() - t0)


def run_embedding_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None
) -> StageSummary:
    """Stage 2 alone: embed the current non-duplicates, mark ANN pairs above threshold."""
    if config.embedder is None:
        raise PersonahubError("embedding stage needs DedupConfig.embedder (e.g. 'hash')")
    t0 = time.perf_counter()
    embedder = make_embedder(config.embedder)
    total = _count_survivors(con)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for batch_ids, texts in _survivor_batches(con, config.batch_rows):
        ids.extend(batch_ids)
        parts.append(embedder.embed(texts))
        if progress:
            progress("embedding", len(ids), total)
    if not ids:
        return StageSummary("embedding", 0, 0, time.perf_counter() - t0)
    vectors = np.concatenate(parts)
    dup = embedding_duplicates(
        ids, embedder, config.embed_threshold, index=config.ann_index, vectors=vectors
    )
    marked = _mark(con, np.asarray(ids, dtype=object), dup, "embedding")
    return StageSummary("embedding", len(ids), marked, time.perf_counter() - t0)


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    config: DedupConfig,
    *,
    progress: Progress | None = None,
) -> DedupSummary:
    """Stage 1, then stage 2 on its survivors (if ``config.embedder``); idempotent."""
    stages = [run_minhash_stage(con, config, progress)]
    if config.embedder is not None:
        stages.append(run_embedding_stage(con, config, progress))
    return DedupSummary(tuple(stages))
