"""Persona Hub dedup over the personas table: MinHash, then embeddings.

Each stage reads the live personas in creation order and marks near-duplicates of an earlier kept
one in one transaction. Nothing is deleted, so a wrong threshold is undone by one UPDATE and an
interrupted stage leaves the table as it was. Stage 2 judges only texts in its embedder's scripts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.errors import PersonahubError
from personahub.core.loop import run as run_on_loop
from personahub.core.store import transaction
from personahub.personas.dedup_languages import JudgedLog, split_by_script
from personahub.personas.embedding import (
    Embedder,
    ModelEmbedder,
    embedder_scripts,
    embedding_duplicates,
    offline_embedder,
)
from personahub.personas.hub_memory import FLAGS_MEMORY_MB, held_memory
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    duplicates_from_signatures,
    resolve_first_seen,
    sketch,
    use_kernels,
)
from personahub.personas.minhash_spill import Spilled, SpillPlan, run_spilled, spill_chunks
from personahub.personas.store import (
    mark_duplicates,
    mark_spilled_duplicates,
    survivor_batches,
    survivor_count,
    survivor_fingerprint,
)

if TYPE_CHECKING:
    from personahub.core.contracts import StructuredResult

__all__ = [
    "DedupConfig",
    "DedupSummary",
    "MinHashSource",
    "PairFinder",
    "StageSummary",
    "embedding_stage",
    "local_signatures",
    "minhash_duplicates",
    "run_dedup",
    "run_embedding_stage",
    "run_minhash_stage",
    "spilled_minhash",
    "write_marks",
    "write_spilled_marks",
]

Progress = Callable[[str, int, int], None]
# stage 1's signatures per batch, computed here or on Ray workers; banding runs here
Signer = Callable[[Iterator[list[str]], MinHashConfig], Iterator[tuple[np.ndarray, FeatureSets]]]


@dataclass(frozen=True)
class PairFinder:
    """Stage 1 done elsewhere up to its verified pairs (a Ray shuffle); find returns (texts seen,
    pairs). spill, when given, runs the stage over a connection's survivors through a work
    folder, each task within the memory setting in MiB, and returns its marks there, so the
    driver holds no per-text array.
    """

    find: Callable[[Iterator[list[str]], MinHashConfig], tuple[int, np.ndarray]]
    spill: Callable[[duckdb.DuckDBPyConnection, DedupConfig, Path, int, Progress | None],
                    Spilled] | None = None


MinHashSource = Signer | PairFinder


@dataclass(frozen=True, kw_only=True)
class DedupConfig:
    """Settings shared by both stages.

    Attributes:
        minhash: Stage-1 settings (paper: 1-grams, 128 permutations, Jaccard 0.9).
        embed_threshold: Stage 2 marks pairs with cosine similarity above this.
        embedder: Embedder spec for stage 2 (hash, openai:<model>, local); None skips it.
        ann_index: ANN backend for stage 2 (auto, faiss, usearch, ivf).
        batch_rows: Rows fetched from DuckDB per batch while streaming.
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
    """What one stage saw and did; skipped texts were kept unjudged (not in the embedder's scripts)."""

    stage: str
    input: int
    marked: int
    seconds: float
    skipped: int = 0
    skipped_scripts: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        line = (
            f"{self.stage:9s} input {self.input:>10,}  marked {self.marked:>9,}  "
            f"kept {self.input - self.marked:>10,}  ({self.seconds:.1f}s)"
        )
        if self.skipped:
            by = ", ".join(f"{script} {n:,}" for script, n in self.skipped_scripts)
            line += f"\n            skipped for language {self.skipped:,}" + (f" ({by})" if by else "")
        return line


@dataclass(frozen=True)
class DedupSummary:
    """Per-stage counts of a dedup run, printable as a small table."""

    stages: tuple[StageSummary, ...]
    provider_batches: str | None = None

    @property
    def marked(self) -> int:
        """Personas newly marked as duplicates by this run, all stages."""
        return sum(s.marked for s in self.stages)

    def stage(self, name: str) -> StageSummary | None:
        """Return the summary of a stage, if it ran."""
        return next((s for s in self.stages if s.stage == name), None)

    def __str__(self) -> str:
        lines = ["dedup:"] + [f"  {s}" for s in self.stages]
        lines.append(f"  total marked {self.marked:,}")
        if self.provider_batches:
            lines.append(self.provider_batches)
        return "\n".join(lines)


def write_marks(con: duckdb.DuckDBPyConnection, ids: np.ndarray, dup: np.ndarray,
                stage: str) -> int:
    """Mark ids[j] a duplicate of ids[dup[j]] where dup[j] >= 0, in the caller's transaction; return
    the count.
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
    mark_duplicates(con, marks, stage)
    return int(rows.size)


def write_spilled_marks(con: duckdb.DuckDBPyConnection, spilled: Spilled, stage: str) -> int:
    """Mark stage 1's spilled marks in the caller's transaction, from their files; return the count."""
    if spilled.marks:
        mark_duplicates_from_files(con, spilled, stage)
    return spilled.marks


def mark_duplicates_from_files(con: duckdb.DuckDBPyConnection, spilled: Spilled,
                               stage: str) -> None:
    """Write the marks of a spilled stage through the hub's owner of the personas table, with
    DuckDB held to a fixed share while it writes the table again."""
    with held_memory(con, FLAGS_MEMORY_MB):
        mark_spilled_duplicates(con, spilled.marks_files, spilled.ids_files, stage)


def spilled_minhash(con: duckdb.DuckDBPyConnection, config: DedupConfig, folder: Path,
                    memory_mb: int, *, workers: int = 1,
                    progress: Progress | None = None) -> Spilled:
    """Run stage 1 out of core through folder, each step within memory_mb; write nothing.

    The survivors are read in hub order in chunks the plan sets; a folder left by a killed run of
    the same stage over the same hub is resumed.
    """
    total = survivor_count(con)
    plan = SpillPlan.for_memory(total, memory_mb, config.minhash, workers)
    chunks = spill_chunks(survivor_batches(con, min(plan.chunk_rows, config.batch_rows)),
                          plan.chunk_rows)
    return run_spilled(chunks, plan, config.minhash, folder, survivor_fingerprint(con), progress)


def _mark(con: duckdb.DuckDBPyConnection, ids: np.ndarray, dup: np.ndarray, stage: str) -> int:
    with transaction(con):
        return write_marks(con, ids, dup, stage)


def local_signatures(texts: Iterator[list[str]], config: MinHashConfig, *,
                     compiled: bool | None = None) -> Iterator[tuple[np.ndarray, FeatureSets]]:
    """Compute each batch's signatures and feature sets in this process.

    Args:
        texts: The batches of texts.
        config: Stage 1's settings.
        compiled: Sign with the compiled kernel; None decides by each batch's size.

    Returns:
        Each batch's signatures and feature sets, in order.
    """
    return (sketch(batch, config, compiled=compiled) for batch in texts)


def minhash_duplicates(con: duckdb.DuckDBPyConnection, config: DedupConfig,
                       progress: Progress | None = None,
                       sign: MinHashSource = local_signatures) -> tuple[np.ndarray, np.ndarray]:
    """Run stage 1 up to its marks, writing nothing.

    Returns the live ids in order and, for each, the position of the earlier one it duplicates (-1: kept).
    """
    total = survivor_count(con)
    ids: list[str] = []

    def texts() -> Iterator[list[str]]:
        for batch_ids, batch_texts in survivor_batches(con, config.batch_rows):
            ids.extend(batch_ids)
            yield batch_texts

    if sign is local_signatures:  # the batches are signed as the whole stage is verified
        sign = partial(local_signatures, compiled=use_kernels(total))
    if isinstance(sign, PairFinder):
        n, pairs = sign.find(texts(), config.minhash)
        if n != len(ids):
            raise PersonahubError(f"minhash: the pair finder saw {n} texts of {len(ids)} personas")
        if progress:
            progress("minhash", n, total)
        return np.asarray(ids, dtype=object), resolve_first_seen(n, pairs)
    sig_parts: list[np.ndarray] = []
    feature_parts: list[FeatureSets] = []  # for exact-Jaccard verification (~4 bytes a word)
    signed = 0
    for sigs, features in sign(texts(), config.minhash):
        sig_parts.append(sigs)
        feature_parts.append(features)
        signed += len(sigs)
        if progress:
            progress("minhash", signed, total)
    if signed != len(ids):
        raise PersonahubError(f"minhash: {signed} signatures for {len(ids)} personas")
    if not ids:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    dup = duplicates_from_signatures(np.concatenate(sig_parts), config.minhash,
                                     FeatureSets.concat(feature_parts))
    return np.asarray(ids, dtype=object), dup


def run_minhash_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None,
    *, sign: MinHashSource = local_signatures,
) -> StageSummary:
    """Run stage 1 alone, marked in one transaction."""
    t0 = time.perf_counter()
    ids, dup = minhash_duplicates(con, config, progress, sign)
    marked = _mark(con, ids, dup, "minhash")
    return StageSummary("minhash", len(ids), marked, time.perf_counter() - t0)


def embedding_marks(ids: list[str], parts: list[np.ndarray], embedder: Embedder,
                    config: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return stage 2's marks once every judged survivor's vector is in."""
    if not ids:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    dup = embedding_duplicates(ids, embedder, config.embed_threshold, index=config.ann_index,
                               vectors=np.concatenate(parts))
    return np.asarray(ids, dtype=object), dup


async def embed_texts(embedder: Embedder, texts: list[str]
                      ) -> tuple[np.ndarray, list[StructuredResult[Any]]]:
    """Return (vectors, call results); only a model embedder has results."""
    if isinstance(embedder, ModelEmbedder):
        return await embedder.embed_with_results(texts)
    return embedder.embed(texts), []


async def embedding_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, embedder: Embedder, *,
    progress: Progress | None = None,
) -> StageSummary:
    """Run stage 2 in memory: embed the live personas in the embedder's scripts, then mark ANN pairs."""
    t0 = time.perf_counter()
    total = survivor_count(con)
    scripts = embedder_scripts(embedder)
    log = JudgedLog()
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for batch_ids, texts in survivor_batches(con, config.batch_rows):
        judged, batch_scripts = split_by_script(texts, scripts)
        log.add(batch_ids, judged, batch_scripts)
        if judged.any():
            picked = np.flatnonzero(judged).tolist()
            parts.append((await embed_texts(embedder, [texts[i] for i in picked]))[0])
            ids.extend(batch_ids[i] for i in picked)
        if progress:
            progress("embedding", len(log.ids), total)
    marked = _mark(con, *embedding_marks(ids, parts, embedder, config), "embedding")
    return StageSummary("embedding", len(log.ids), marked, time.perf_counter() - t0, log.skipped,
                        log.skipped_by_script())


def run_embedding_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None,
    embedder: Embedder | None = None,
) -> StageSummary:
    """Run stage 2 alone with an embedder that calls no model."""
    if embedder is None:
        if config.embedder is None:
            raise PersonahubError("embedding stage needs DedupConfig.embedder (e.g. 'hash')")
        embedder = offline_embedder(config.embedder)
    return run_on_loop(embedding_stage(con, config, embedder, progress=progress))


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    config: DedupConfig,
    *,
    progress: Progress | None = None,
    sign: MinHashSource = local_signatures,
    embedder: Embedder | None = None,
) -> DedupSummary:
    """Run stage 1, then stage 2 on its survivors when an embedder is given; idempotent."""
    stages = [run_minhash_stage(con, config, progress, sign=sign)]
    if config.embedder is not None or embedder is not None:
        stages.append(run_embedding_stage(con, config, progress, embedder))
    return DedupSummary(tuple(stages))
