"""Persona Hub dedup over the DuckDB ``personas`` table: MinHash, then embeddings.

Each stage reads the personas still marked non-duplicate in ``seq`` (creation) order,
decides which are near-duplicates of an earlier kept persona, and marks them
(``is_duplicate``, ``duplicate_of``, ``dup_stage``) in one transaction with one batched
UPDATE. Nothing is deleted, so a wrong threshold can be undone with a single UPDATE, and
an interrupted stage leaves the table as it was: run it again.

``dedup_job`` is the same pipeline as a resumable job on the job kernel (``personas dedup``):
stages already done are noted in ``dedup_jobs``, and stage 2 keeps each batch's vectors in
``persona_embeddings`` with the batch's call records and cache entries
(``core.commit.commit_batch``), so an interrupted job embeds only what is missing.

Stage 2 judges only texts in the scripts its embedder was trained on (``dedup_languages``): an
English-only model leaves Chinese or Thai personas to stage 1, and ``dedup_judged`` records, per
persona and embedder, whether it was judged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.commit import JobRef, commit_batch
from personahub.core.contracts import ServesModels
from personahub.core.errors import PersonahubError
from personahub.core.store import transaction
from personahub.personas.dedup_jobs import record_stage
from personahub.personas.dedup_languages import JudgedLog, split_by_script, write_judged
from personahub.personas.embedding import (
    Embedder,
    ModelEmbedder,
    embedder_scripts,
    embedding_duplicates,
    make_embedder,
)
from personahub.personas.embedding_store import SurvivorBatch, survivor_batches, write_vectors
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    duplicates_from_signatures,
    resolve_first_seen,
    sketch,
)

__all__ = [
    "DedupConfig",
    "DedupSummary",
    "MinHashSource",
    "PairFinder",
    "StageSummary",
    "dedup_job",
    "embedding_stage",
    "run_dedup",
    "run_embedding_stage",
    "run_minhash_stage",
]

Progress = Callable[[str, int, int], None]
# Stage 1's signatures of each batch of texts, in order: ``local_signatures`` here, or on Ray
# workers (``sim.executors.ray_batches.minhash_signer``); the banding and verification then run here.
Signer = Callable[[Iterator[list[str]], MinHashConfig], Iterator[tuple[np.ndarray, FeatureSets]]]


@dataclass(frozen=True)
class PairFinder:
    """Stage 1 done elsewhere up to its verified pairs (``sim.executors.ray_minhash.minhash_pair_finder``:
    band buckets through a Ray shuffle), so no signature comes to this process.

    ``find(texts, config)`` consumes every batch of ``texts`` and returns ``(n, pairs)``: how many
    texts it saw and the unique (earlier, later) indices whose exact Jaccard reaches the
    threshold, as ``duplicates_from_signatures`` verifies them; the marks are resolved here.
    """

    find: Callable[[Iterator[list[str]], MinHashConfig], tuple[int, np.ndarray]]


# where stage 1's work runs: signatures (banded here) or verified pairs (banded elsewhere)
MinHashSource = Signer | PairFinder
# (input, marked, skipped for language), run in the transaction of the marks
StageDone = Callable[[int, int, int], None]

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
    """What one stage saw and did (``skipped``: kept without being judged, the embedder was not
    trained on their script; ``skipped_scripts``: how many of each script, when known)."""

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


def _mark(con: duckdb.DuckDBPyConnection, ids: np.ndarray, dup: np.ndarray, stage: str,
          then: Callable[[int], None] | None = None) -> int:
    """Mark ``ids[j]`` as a duplicate of ``ids[dup[j]]`` for every ``dup[j] >= 0``.

    One transaction, one UPDATE joined against a registered Arrow table; ``then(marked)`` runs
    inside it last (a job notes the stage as done in the same commit as its marks).
    """
    rows = np.flatnonzero(dup >= 0)
    if rows.size == 0:
        if then is not None:
            with transaction(con):
                then(0)
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
        with transaction(con):
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
            if then is not None:
                then(int(rows.size))
    finally:
        con.unregister(view)
    return int(rows.size)


def local_signatures(texts: Iterator[list[str]], config: MinHashConfig
                     ) -> Iterator[tuple[np.ndarray, FeatureSets]]:
    """Each batch's signatures and feature sets (for exact verification), computed in this
    process (the default ``Signer``)."""
    return (sketch(batch, config) for batch in texts)


def run_minhash_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None,
    *, done: StageDone | None = None, sign: MinHashSource = local_signatures,
) -> StageSummary:
    """Stage 1 alone: MinHash-LSH over the current non-duplicates (``done(input, marked)`` runs
    in the transaction of its marks; ``sign`` computes the signatures, here or elsewhere, or is
    a ``PairFinder`` that returns the verified pairs, so only they come back here)."""
    t0 = time.perf_counter()
    total = _count_survivors(con)
    ids: list[str] = []
    sig_parts: list[np.ndarray] = []
    feature_parts: list[FeatureSets] = []  # for exact-Jaccard verification (~4 bytes a word)

    def texts() -> Iterator[list[str]]:
        for batch_ids, batch_texts in _survivor_batches(con, config.batch_rows):
            ids.extend(batch_ids)
            yield batch_texts

    if isinstance(sign, PairFinder):
        return _stage_from_pairs(con, config, sign, texts(), ids, total, progress, done, t0)
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
        _mark(con, np.empty(0, dtype=object), np.empty(0, dtype=np.int64), "minhash", _bind(done, 0))
        return StageSummary("minhash", 0, 0, time.perf_counter() - t0)
    dup = duplicates_from_signatures(np.concatenate(sig_parts), config.minhash,
                                     FeatureSets.concat(feature_parts))
    marked = _mark(con, np.asarray(ids, dtype=object), dup, "minhash", _bind(done, len(ids)))
    return StageSummary("minhash", len(ids), marked, time.perf_counter() - t0)


def _stage_from_pairs(con: duckdb.DuckDBPyConnection, config: DedupConfig, finder: PairFinder,
                      texts: Iterator[list[str]], ids: list[str], total: int,
                      progress: Progress | None, done: StageDone | None, t0: float) -> StageSummary:
    """Stage 1's marks from a ``PairFinder``'s verified pairs (``ids`` fills as it reads)."""
    n, pairs = finder.find(texts, config.minhash)
    if n != len(ids):
        raise PersonahubError(f"minhash: the pair finder saw {n} texts of {len(ids)} personas")
    if progress:
        progress("minhash", n, total)
    dup = resolve_first_seen(n, pairs)
    marked = _mark(con, np.asarray(ids, dtype=object), dup, "minhash", _bind(done, n))
    return StageSummary("minhash", n, marked, time.perf_counter() - t0)


def _bind(done: StageDone | None, input_rows: int, skipped: int = 0) -> Callable[[int], None] | None:
    return None if done is None else (lambda marked: done(input_rows, marked, skipped))


async def _embed(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, list[Any]]:
    """(vectors, results): a model embedder's calls come back on results with its vectors."""
    if isinstance(embedder, ModelEmbedder):
        return await embedder.embed_with_results(texts)
    return embedder.embed(texts), []


async def _kept_vectors(con: duckdb.DuckDBPyConnection, embedder: Embedder, batch: SurvivorBatch,
                        job: JobRef | None) -> np.ndarray:
    """The batch's vectors: those stored, and the missing ones embedded and committed (with
    their call records and cache entries) in one transaction."""
    missing = batch.missing
    if not missing:
        return batch.stored
    new, results = await _embed(embedder, [batch.texts[i] for i in missing])
    ids = [batch.ids[i] for i in missing]
    # a local embedder brings no results, so its (absent) endpoints are never asked
    commit_batch(con, job, cast(ServesModels, embedder), {}, results,
                 then=lambda: write_vectors(con, ids, embedder.name, new, job.job_id if job else None))
    return batch.with_new(new)


async def _survivor_vectors(con: duckdb.DuckDBPyConnection, embedder: Embedder, config: DedupConfig,
                            job: JobRef | None, keep: bool, progress: Progress | None,
                            log: JudgedLog) -> tuple[list[str], list[np.ndarray]]:
    """Ids and vectors of the current non-duplicates the embedder judges, in ``seq`` order
    (``keep``: read from and written to ``persona_embeddings``, batch by batch); every survivor's
    script and whether it is judged go to ``log``."""
    total = _count_survivors(con)
    scripts = embedder_scripts(embedder)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    if keep:
        for batch in survivor_batches(con, embedder.name, config.batch_rows):
            judged, batch_scripts = split_by_script(batch.texts, scripts)
            log.add(batch.ids, judged, batch_scripts)
            mine = batch.select(judged)
            if mine.ids:
                parts.append(await _kept_vectors(con, embedder, mine, job))
                ids.extend(mine.ids)
            if progress:
                progress("embedding", len(log.ids), total)
        return ids, parts
    for batch_ids, texts in _survivor_batches(con, config.batch_rows):
        judged, batch_scripts = split_by_script(texts, scripts)
        log.add(batch_ids, judged, batch_scripts)
        if judged.any():
            picked = np.flatnonzero(judged).tolist()
            parts.append((await _embed(embedder, [texts[i] for i in picked]))[0])
            ids.extend(batch_ids[i] for i in picked)
        if progress:
            progress("embedding", len(log.ids), total)
    return ids, parts


async def embedding_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, embedder: Embedder, *,
    job: JobRef | None = None, keep_vectors: bool = False, progress: Progress | None = None,
    done: StageDone | None = None,
) -> StageSummary:
    """Stage 2: embed the current non-duplicates, then mark ANN pairs above threshold once all
    vectors are in. ``keep_vectors`` stores each batch's vectors (with its call records, tagged
    with ``job``) and reuses stored ones, so an interrupted stage goes on where it stopped, and
    records which texts were judged (``dedup_judged``); texts outside the embedder's scripts are
    not embedded nor judged; ``done(input, marked, skipped)`` runs in the transaction of the marks."""
    t0 = time.perf_counter()
    log = JudgedLog()
    ids, parts = await _survivor_vectors(con, embedder, config, job, keep_vectors, progress, log)
    seen, skipped = len(log.ids), log.skipped
    bound = _bind(done, seen, skipped)

    def then(marked: int) -> None:  # in the transaction of the marks
        if keep_vectors:  # the stored record goes with the stored vectors
            write_judged(con, log, embedder.name, job.job_id if job else None)
        if bound is not None:
            bound(marked)

    if not ids:
        _mark(con, np.empty(0, dtype=object), np.empty(0, dtype=np.int64), "embedding", then)
        marked = 0
    else:
        dup = embedding_duplicates(
            ids, embedder, config.embed_threshold, index=config.ann_index, vectors=np.concatenate(parts)
        )
        marked = _mark(con, np.asarray(ids, dtype=object), dup, "embedding", then)
    return StageSummary("embedding", seen, marked, time.perf_counter() - t0, skipped,
                        log.skipped_by_script())


def run_embedding_stage(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, progress: Progress | None = None
) -> StageSummary:
    """Stage 2 alone, vectors in memory only (``embedding_stage`` with ``keep_vectors`` is the
    resumable job's)."""
    if config.embedder is None:
        raise PersonahubError("embedding stage needs DedupConfig.embedder (e.g. 'hash')")
    embedder = make_embedder(config.embedder)
    return asyncio.run(embedding_stage(con, config, embedder, progress=progress))


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    config: DedupConfig,
    *,
    progress: Progress | None = None,
    sign: MinHashSource = local_signatures,
) -> DedupSummary:
    """Stage 1, then stage 2 on its survivors (if ``config.embedder``); idempotent."""
    stages = [run_minhash_stage(con, config, progress, sign=sign)]
    if config.embedder is not None:
        stages.append(run_embedding_stage(con, config, progress))
    return DedupSummary(tuple(stages))


async def dedup_job(
    con: duckdb.DuckDBPyConnection, config: DedupConfig, embedder: Embedder, job: JobRef, *,
    stages_done: Mapping[str, Mapping[str, int]] | None = None, progress: Progress | None = None,
    sign: MinHashSource = local_signatures,
) -> DedupSummary:
    """``run_dedup`` as a resumable kernel job: each stage is noted in ``dedup_jobs`` with its
    marks, a stage noted before is not run again, and stage 2 keeps its vectors batch by batch
    (``persona_embeddings``), so a resumed job embeds only what is missing."""
    try:
        return await _dedup_stages(con, config, embedder, job, dict(stages_done or {}), progress,
                                   sign)
    finally:  # a model embedder's connections close on the loop that opened them
        close = getattr(embedder, "aclose", None)
        if close is not None:
            await close()


async def _dedup_stages(con: duckdb.DuckDBPyConnection, config: DedupConfig, embedder: Embedder,
                        job: JobRef, done: dict[str, Mapping[str, int]],
                        progress: Progress | None, sign: MinHashSource) -> DedupSummary:
    stages: list[StageSummary] = []
    for name in ("minhash", "embedding"):
        if name in done:
            stages.append(StageSummary(name, int(done[name]["input"]), int(done[name]["marked"]), 0.0,
                                       int(done[name].get("skipped_language", 0))))
            continue

        def note(input_rows: int, marked: int, skipped: int, stage: str = name) -> None:
            record_stage(con, job.job_id, stage, input_rows, marked,
                         skipped if stage == "embedding" else None)

        if name == "minhash":
            stages.append(run_minhash_stage(con, config, progress, done=note, sign=sign))
        else:
            stages.append(await embedding_stage(con, config, embedder, job=job, keep_vectors=True,
                                                progress=progress, done=note))
    return DedupSummary(tuple(stages))
