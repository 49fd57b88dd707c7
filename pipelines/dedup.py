"""personahub personas dedup as a job spec: near-duplicates by MinHash, then by embeddings.

Stage 1 is one batch (every survivor against every other). Stage 2 embeds in batches, reusing
stored vectors, and marks only once every vector is in, so nothing is marked from part of a
stage. A resume skips finished stages and embeds only what is missing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personahub.core.contracts import StructuredCaller, StructuredResult, carried_records
from personahub.core.engine_options import check_fields
from personahub.core.errors import AwaitingResults, PersonahubError, ResumableStop, UsageError
from personahub.core.kernel import (
    BatchOutcome,
    JobContext,
    check_cache_mode,
    engine,
    register,
    unfinished_twins,
)
from personahub.core.provider_batch_records import save_handle
from personahub.core.store import DEFAULT_DB
from personahub.executors import check_executor, minhash_source
from personahub.executors.shards import job_folder
from personahub.models.embedders import EmbedderSettings, calls_model
from personahub.models.embedding_batches import BatchingEmbedder
from personahub.personas.dedup import (
    DedupConfig,
    DedupSummary,
    MinHashSource,
    PairFinder,
    StageSummary,
    embed_texts,
    embedding_marks,
    local_signatures,
    minhash_duplicates,
    spilled_minhash,
    write_marks,
    write_spilled_marks,
)
from personahub.personas.dedup_jobs import detail_row, record_stage, stages_of
from personahub.personas.dedup_languages import JudgedLog, split_by_script, write_judged
from personahub.personas.embedding import (
    ANN_BACKENDS,
    Embedder,
    embedder_scripts,
    offline_embedder,
)
from personahub.personas.embedding_store import SurvivorBatch, survivor_batches, write_vectors
from personahub.personas.hub_memory import bound_memory, kept_memory
from personahub.personas.minhash import MinHashConfig
from personahub.personas.minhash_spill import Spilled, SpillPlan, spill_workers
from personahub.personas.store import flagged_duplicates, survivor_count
from personahub.pipelines.model_fields import ExecutorFields, RequestFields
from personahub.pipelines.provider_batch_jobs import BatchFields, batch_line, batch_status, job_book
from personahub.pipelines.shipped_spec import ShippedSpec

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

ANN_CHOICES = ("auto", *ANN_BACKENDS)
DEFAULT_MEMORY_MB = 1024
MIN_MEMORY_MB = 1
# stage-2 embedders that compute no model's vectors: cheap enough for the driver on any executor
DRIVER_EMBEDDERS = ("hash",)


@dataclass(frozen=True, kw_only=True)
class DedupJobConfig(BatchFields, RequestFields, ExecutorFields):
    """A dedup job: what it marks (stored with the job) and, in the engine fields, how this
    invocation runs (the shared request, executor and batch fields). With no embedder only
    stage 1 runs.
    """

    threshold: float = 0.9  # stage 1: MinHash Jaccard
    num_perm: int = 128
    ngram: int = 1
    embedder: str | None = "hash"
    embed_threshold: float = 0.9  # stage 2: cosine
    ann: str = "auto"
    batch_size: int = engine(50_000)  # stage 2: personas embedded per transaction
    # stage 1's working memory: past it, its stages spill to files beside the database
    memory_mb: int = engine(DEFAULT_MEMORY_MB)
    db: str = engine(DEFAULT_DB)

    def __post_init__(self) -> None:
        if self.embedder is not None and self.embedder.strip().lower() in ("", "none"):
            object.__setattr__(self, "embedder", None)
        if self.ann not in ANN_CHOICES:
            raise UsageError(f"--ann {self.ann!r}: use one of {', '.join(ANN_CHOICES)}")
        self.stages()  # the thresholds, n-grams, permutations and batch size
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int) \
                or self.memory_mb < MIN_MEMORY_MB:
            raise UsageError(f"--memory-mb {self.memory_mb!r}: give a whole number of MiB, at "
                             f"least {MIN_MEMORY_MB}")
        check_fields(self)  # the engine options' own checks: timeout, rate, workers, poll
        check_cache_mode(self.cache)
        check_executor(self.executor)  # the cache and Ray are weighed with the embedder below
        if self.embedder is None or not calls_model(self.embedder):
            given = [flag for flag, on in (("--cache", self.cache != "off"),
                                           ("--rps", self.rps is not None)) if on]
            if given:
                raise UsageError(f"{' and '.join(given)}: the {self.embedder or 'none'!r} "
                                 "embedder calls no model; they apply to --embedder "
                                 "openai:<model>")
        self.check_batch(executor=self.executor, cache=self.cache)
        if self.batching and (self.embedder is None or not calls_model(self.embedder)):
            raise UsageError(f"--provider-batch: the {self.embedder or 'none'!r} embedder calls no "
                             "model; batches apply to --embedder openai:<model>")
        if self.embedder is None:
            return
        if calls_model(self.embedder):
            EmbedderSettings(spec=self.embedder, rps=self.rps, timeout_s=self.timeout_s)
        else:
            offline_embedder(self.embedder)  # a bad spec fails before anything is opened
        if self.executor == "ray" and self.embedder.partition(":")[0].lower() not in DRIVER_EMBEDDERS:
            raise UsageError(f"--executor ray with --embedder {self.embedder}: stage 2's "
                             "embeddings do not run on Ray yet (docs/scale.md); use "
                             "--embedder hash or none with --executor ray, or --executor "
                             "local for a model embedder")

    def stages(self) -> DedupConfig:
        """Return the data side's settings of both stages."""
        try:
            return DedupConfig(
                minhash=MinHashConfig(num_perm=self.num_perm, threshold=self.threshold,
                                      ngram=self.ngram),
                embed_threshold=self.embed_threshold, embedder=self.embedder,
                ann_index=self.ann, batch_rows=self.batch_size)
        except ValueError as exc:
            raise PersonahubError(f"personas dedup: {exc}") from None


@dataclass(frozen=True)
class MinHashPass:
    """Stage 1 over every survivor: one batch, one commit of its marks."""


@dataclass(frozen=True)
class EmbedBatch:
    """A batch of stage 2's survivors, some of whose vectors are still to be made."""

    batch: SurvivorBatch

    def __len__(self) -> int:
        return len(self.batch.missing)


@dataclass(frozen=True)
class EmbeddingPass:
    """Stage 2's marks, once every judged survivor's vector is in."""


DedupBatch = MinHashPass | EmbedBatch | EmbeddingPass


@dataclass(frozen=True)
class Marks:
    """A stage's marks, computed, not yet written."""

    ids: np.ndarray
    dup: np.ndarray
    seconds: float


@dataclass(frozen=True)
class SpilledMarks:
    """Stage 1's marks in its work folder, not yet written."""

    spilled: Spilled
    seconds: float


@dataclass(frozen=True)
class Vectors:
    """A batch's new vectors with the calls that made them (vectors is None when it failed)."""

    vectors: np.ndarray | None
    calls: list[StructuredResult[Any]]
    error: str | None = None


@dataclass
class DedupState:
    """What the driver keeps between batches (the job context's state)."""

    sign: MinHashSource  # where stage 1 runs (chosen by the executor)
    embedder: Embedder | None = None
    log: JudgedLog = field(default_factory=JudgedLog)
    ids: list[str] = field(default_factory=list)  # stage 2's judged survivors, in seq order
    parts: list[np.ndarray] = field(default_factory=list)  # and their vectors
    seconds: dict[str, float] = field(default_factory=dict)
    embedding_started: float = 0.0
    total: int | None = None  # survivors when stage 2 began (its progress bar's length)
    failed: str | None = None  # the error of a batch whose embedding failed for good


def _state(ctx: JobContext[DedupJobConfig]) -> DedupState:
    state: DedupState = ctx.state
    return state


class DedupAsker:
    """Stage 1's marks, a batch's vectors and stage 2's marks, on the driver (stage 1 reads the
    survivors through the job's connection, and may send the work to Ray).
    """

    def __init__(self, ctx: JobContext[DedupJobConfig], state: DedupState) -> None:
        self.con, self.config, self.state = ctx.con, ctx.config.stages(), state
        self.report = ctx.report
        self.memory_mb = ctx.config.memory_mb
        self.folder = job_folder(ctx.db, ctx.job_id) / "minhash"

    async def committed(self) -> None:
        """After each commit, delete the provider files of batches whose answers are in."""
        forget = getattr(self.state.embedder, "forget_spent", None)
        if forget is not None:
            await forget()

    async def run_batch(self, batch: DedupBatch, caller: StructuredCaller
                        ) -> Marks | SpilledMarks | Vectors:
        embedder = self.state.embedder
        if isinstance(batch, MinHashPass):
            return self._minhash()
        assert embedder is not None  # stage 2 is planned only with an embedder
        if isinstance(batch, EmbedBatch):
            texts = [batch.batch.texts[i] for i in batch.batch.missing]
            try:
                vectors, calls = await embed_texts(embedder, texts)
            except AwaitingResults:  # a batch file written: the job waits (not a failure)
                raise
            except PersonahubError as exc:  # failed for good: its attempts are still accounted
                return Vectors(None, [StructuredResult(None, carried_records(exc))], str(exc))
            return Vectors(vectors, calls)
        t0 = time.perf_counter()
        ids, dup = embedding_marks(self.state.ids, self.state.parts, embedder, self.config)
        return Marks(ids, dup, time.perf_counter() - t0)

    def _minhash(self) -> Marks | SpilledMarks:
        """Stage 1 in memory when the survivors fit --memory-mb (or on Ray), else spilled."""
        t0 = time.perf_counter()
        sign = self.state.sign
        if sign is local_signatures and not SpillPlan.fits_in_memory(survivor_count(self.con),
                                                                     self.memory_mb):
            bound_memory(self.con, self.memory_mb // 4)
            spilled = spilled_minhash(self.con, self.config, self.folder, self.memory_mb,
                                      workers=spill_workers(), progress=self.report)
            return SpilledMarks(spilled, time.perf_counter() - t0)
        if isinstance(sign, PairFinder) and sign.spill is not None:
            bound_memory(self.con, self.memory_mb // 4)
            spilled = sign.spill(self.con, self.config, self.folder, self.memory_mb, self.report)
            return SpilledMarks(spilled, time.perf_counter() - t0)
        ids, dup = minhash_duplicates(self.con, self.config, self.report, sign)
        return Marks(ids, dup, time.perf_counter() - t0)


class DedupSpec(ShippedSpec[DedupJobConfig, DedupBatch, Marks | SpilledMarks | Vectors, DedupSummary],
                kind="dedup"):
    """The job spec behind personahub personas dedup."""

    config_type = DedupJobConfig
    refuses_twins = False  # the adapters find an unfinished twin and resume it
    progress_per_answer = False  # its progress counts its own stages, not batch items

    def model_settings(self, config: DedupJobConfig) -> EmbedderSettings | None:
        """Return a model embedder's settings (the seam's factory builds it); None for an offline one."""
        if config.embedder is None or not calls_model(config.embedder):
            return None
        return EmbedderSettings(spec=config.embedder, rps=config.rps, timeout_s=config.timeout_s)

    def end_status(self, ctx: JobContext[DedupJobConfig], asked: int, kept: int) -> str:
        return "finished"  # a batch that failed stopped the job: there is no partial dedup

    def nothing_kept(self, ctx: JobContext[DedupJobConfig], asked: int) -> str:
        return f"none of its {asked} personas was embedded"

    def prepare(self, ctx: JobContext[DedupJobConfig]) -> None:
        ctx.state = DedupState(sign=minhash_source(ctx.executor))

    def running(self, ctx: JobContext[DedupJobConfig]) -> AbstractContextManager[None]:
        """Give the connection its own memory limit back after the stages: a spilled stage 1 holds
        DuckDB to a quarter of --memory-mb through its writes, and a caller that passed its
        connection in would otherwise keep that quarter."""
        return kept_memory(ctx.con)

    def start(self, ctx: JobContext[DedupJobConfig]) -> BatchOutcome:
        return BatchOutcome(rows={"dedup_jobs": [detail_row(ctx.job_id)]})

    def asker(self, ctx: JobContext[DedupJobConfig]) -> DedupAsker:
        """Return the driver's asker; the embedder is the job's model client, or a local one."""
        state, config = _state(ctx), ctx.config
        spec = config.embedder
        if spec is not None and not calls_model(spec):
            state.embedder = offline_embedder(spec)
        elif spec is not None and config.batching:
            state.embedder = BatchingEmbedder(
                ctx.client, job_book(ctx), job_kind=self.kind,  # type: ignore[arg-type]
                job_id=ctx.job_id, window=config.provider_batch_window,
                fallback=config.provider_batch_fallback, batch_file=config.provider_batch_file,
                poll_s=config.provider_batch_poll_s,
                max_poll_s=max(60.0, config.provider_batch_poll_s),
                on_handle=lambda handle: save_handle(ctx.con, handle),
                on_status=batch_status(ctx))
        elif spec is not None:
            state.embedder = ctx.client  # type: ignore[assignment]
        return DedupAsker(ctx, state)

    def plan(self, ctx: JobContext[DedupJobConfig]) -> Iterator[DedupBatch]:
        done = stages_of(ctx.con, ctx.job_id)
        if "minhash" not in done:
            yield MinHashPass()
        if ctx.config.embedder is None or "embedding" in done:
            return
        yield from self._embedding(ctx)
        yield EmbeddingPass()

    def _embedding(self, ctx: JobContext[DedupJobConfig]) -> Iterator[EmbedBatch]:
        """Stage 2's survivors batch by batch: stored vectors read, missing ones asked."""
        state = _state(ctx)
        embedder = state.embedder
        assert embedder is not None
        state.embedding_started = time.perf_counter()
        scripts = embedder_scripts(embedder)
        state.total = total = survivor_count(ctx.con)
        for batch in survivor_batches(ctx.con, embedder.name, ctx.config.batch_size):
            judged, batch_scripts = split_by_script(batch.texts, scripts)
            state.log.add(batch.ids, judged, batch_scripts)
            mine = batch.select(judged)
            if mine.missing:
                yield EmbedBatch(mine)
                if state.failed is not None:
                    raise ResumableStop(state.failed)
            elif mine.ids:
                state.parts.append(mine.stored)
                state.ids.extend(mine.ids)
            ctx.report("embedding", len(state.log.ids), total)

    def commit(self, ctx: JobContext[DedupJobConfig], batch: DedupBatch,
               result: Marks | SpilledMarks | Vectors) -> BatchOutcome:
        con, job_id, state = ctx.con, ctx.job_id, _state(ctx)
        if isinstance(batch, EmbedBatch):
            assert isinstance(result, Vectors) and state.embedder is not None
            asked = len(batch)
            if result.vectors is None:
                state.failed = result.error
                return BatchOutcome(calls=result.calls, asked=asked, label="an embedding batch")
            name, new, ids = state.embedder.name, result.vectors, [batch.batch.ids[i] for i in
                                                                   batch.batch.missing]

            def keep() -> None:
                write_vectors(con, ids, name, new, job_id)

            state.parts.append(batch.batch.with_new(new))
            state.ids.extend(batch.batch.ids)
            return BatchOutcome(calls=result.calls, asked=asked, kept=asked, then=keep,
                                label="an embedding batch",
                                progress=("embedding", len(state.log.ids), state.total))
        if isinstance(result, SpilledMarks):
            return self._commit_spilled(ctx, result)
        assert isinstance(result, Marks)
        stage = "minhash" if isinstance(batch, MinHashPass) else "embedding"
        state.seconds[stage] = result.seconds + (
            time.perf_counter() - state.embedding_started if stage == "embedding" else 0.0)
        log = state.log

        def mark() -> None:
            marked = write_marks(con, result.ids, result.dup, stage)
            if stage == "minhash":
                record_stage(con, job_id, stage, len(result.ids), marked)
                return
            assert state.embedder is not None
            write_judged(con, log, state.embedder.name, job_id)
            record_stage(con, job_id, stage, len(log.ids), marked, log.skipped)

        return BatchOutcome(then=mark, label=f"the {stage} stage",
                            progress=(stage, len(result.ids), len(result.ids)))

    def _commit_spilled(self, ctx: JobContext[DedupJobConfig],
                        result: SpilledMarks) -> BatchOutcome:
        """Stage 1's spilled marks, written from its files with the stage's record."""
        con, job_id, state = ctx.con, ctx.job_id, _state(ctx)
        state.seconds["minhash"] = result.seconds
        texts = result.spilled.texts

        def mark() -> None:
            marked = write_spilled_marks(con, result.spilled, "minhash")
            record_stage(con, job_id, "minhash", texts, marked)

        return BatchOutcome(then=mark, label="the minhash stage",
                            progress=("minhash", texts, texts))

    def stop_note(self, ctx: JobContext[DedupJobConfig]) -> str:
        done = stages_of(ctx.con, ctx.job_id)
        return f" (stages done: {', '.join(done) or 'none'})"

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Return the hub's flagged duplicates."""
        return flagged_duplicates(con)

    def summary(self, ctx: JobContext[DedupJobConfig]) -> DedupSummary:
        state = _state(ctx)  # set by prepare, which runs for a finished job too
        stages = []
        for name, counts in stages_of(ctx.con, ctx.job_id).items():
            skipped = int(counts.get("skipped_language", 0))
            ran = name in state.seconds  # by this run: its log knows the scripts it skipped
            by_script = state.log.skipped_by_script() if name == "embedding" and ran else ()
            stages.append(StageSummary(name, int(counts["input"]), int(counts["marked"]),
                                       state.seconds.get(name, 0.0), skipped, by_script))
        order = {"minhash": 0, "embedding": 1}
        return DedupSummary(tuple(sorted(stages, key=lambda s: order.get(s.stage, 2))),
                            provider_batches=batch_line(state.embedder))

    def report(self, summary: DedupSummary, db: Path) -> list[str]:
        return dedup_lines(summary)


def dedup_job_of(db: str | Path, config: DedupJobConfig) -> str | None:
    """Return the newest unfinished dedup job in the database that marks what this config marks (the one
    re-running the same command resumes); None if there is none.
    """
    from personahub.core.store import connect

    if not Path(db).exists():
        return None
    con = connect(db, read_only=True)
    try:
        twins = unfinished_twins(DEDUP, con, dataclasses.asdict(config))
    finally:
        con.close()
    return twins[0] if twins else None


def dedup_lines(summary: DedupSummary) -> list[str]:
    """Return what a dedup job did, in lines for the console."""
    return str(summary).splitlines()


DEDUP = register(DedupSpec())
