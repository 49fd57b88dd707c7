"""personahub personas expand as a job spec: persona-to-persona expansion on the kernel.

The expansion goes level by level. Each batch is planned after the previous commit, so the next
batch checks its answers against every persona added so far; the asker therefore stays on the
driver (with Ray only the model calls are remote). An expansion that sets up a run stops when a
level keeps failing, rather than shrink the society.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.kernel import BatchOutcome, JobContext, engine, register
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import check_int, check_number
from personahub.executors.shards import job_folder
from personahub.personas.expand import (
    ASKS_PER_ROUND,
    DEFAULT_BATCH,
    MAX_HOPS,
    ExpandSummary,
    ExpansionIncomplete,
    Linking,
    ask_failed_again,
    expansion_personas,
    frontier_count,
    frontier_ids,
    hops_done,
    hub_index,
    level_rows,
    level_targets,
    link_embedder_of,
    new_expansion_rows,
    related_personas_schema,
    setup_stops,
    summary_of,
    to_ask,
    write_answer,
    write_next_level,
)
from personahub.personas.hub_memory import SUMMARY_MEMORY_MB, expand_memory_mb, held_memory
from personahub.personas.link_merge import load_aliases
from personahub.personas.link_nearest import load_pool
from personahub.personas.near_dup import NearIndex
from personahub.personas.quality import language_scripts, rejection_line
from personahub.personas.record import Persona
from personahub.personas.store import fetch_personas, live_persona_ids, personas_frame
from personahub.pipelines.expand_batch import GATE_ERROR, BatchAnswer, answer_batch
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.shipped_spec import ShippedSpec

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

ORIGINS = ("api", "cli", "run")


@dataclass(frozen=True, kw_only=True)
class ExpandConfig(EngineFields):
    """An expansion: what it makes (stored, model spec redacted) and, in the engine fields, how this
    invocation asks.
    """

    hops: int = 1
    fanout: int = 2
    threshold: float = 0.9  # near-duplicate (and embedding merge) threshold
    language: str | None = None
    link_candidates: int = 0  # close triangles: candidates per new persona (0: trees)
    link_embedder: str | None = None  # hash, lexical or local[:model]: nearest people, merges
    limit: int | None = None  # start from the hub's first N personas (when no start_ids)
    start_ids: tuple[str, ...] | None = None  # start from these personas (hub order)
    origin: str = "api"  # who started it: api, cli, or a run's setup
    seed: int = 0
    # frontier personas per transaction: what the job makes, as each batch is checked against
    # the people earlier batches added
    batch_size: int = DEFAULT_BATCH
    db: str = engine(DEFAULT_DB)
    # a run's setup: a level's still-failing personas stop the expansion before the next level,
    # resumable, instead of shrinking the society
    stop_on_failure: bool = engine(False)
    # whether answers the quality gate rejected count as failed actions against
    # max_failed_share (a run's setup without the scenario's graph.stop_on_rejected goes on
    # with the graph it has, and counts them)
    rejections_stop: bool = engine(True)

    def __post_init__(self) -> None:
        check_int(self.hops, "--hops", low=0, high=MAX_HOPS)
        check_int(self.fanout, "--fanout", low=1, high=20)
        check_number(self.threshold, "threshold", low=0, high=1)
        try:
            related_personas_schema(self.fanout)
            if self.language is not None:
                language_scripts(self.language)
        except ValueError as exc:
            raise PersonahubError(str(exc)) from None
        check_int(self.link_candidates, "--link-candidates", low=0, high=20)
        if self.link_embedder is not None:
            link_embedder_of(self.link_embedder)  # a bad spec fails before anything is opened
        if self.limit is not None:
            check_int(self.limit, "--limit", low=1)
        if self.start_ids is not None:
            object.__setattr__(self, "start_ids", tuple(self.start_ids))
        if self.origin not in ORIGINS:
            raise UsageError(f"origin {self.origin!r}: one of {', '.join(ORIGINS)}")
        check_int(self.batch_size, "--batch-size", low=1)
        check_model_fields(self)
        if self.provider_batch_file and self.link_candidates:
            raise UsageError("--provider-batch-file with --link-candidates: a batch's link questions "
                             "follow from its answers, so one file cannot hold them; use "
                             "--provider-batch, or --link-candidates 0")


@dataclass(frozen=True)
class ExpandBatch:
    """Frontier personas of one level asked together in one round (0: pending, 1: failed once)."""

    level: int
    round: int
    parents: Sequence[Persona]

    def __len__(self) -> int:
        return len(self.parents)


@dataclass
class ExpandState:
    """One expansion's own state: what the driver keeps between batches."""

    start: list[str] = field(default_factory=list)  # a new job's start personas
    index: NearIndex | None = None
    linking: Linking | None = None


def _state(ctx: JobContext[ExpandConfig]) -> ExpandState:
    state: ExpandState = ctx.state
    return state


class ExpandAsker:
    """Asks about one batch of frontier personas, on the driver, checking answers against the index
    and merges as they grow.
    """

    def __init__(self, ctx: JobContext[ExpandConfig], index: NearIndex,
                 linking: Linking) -> None:
        self.con, self.job_id, self.config = ctx.con, ctx.job_id, ctx.config
        self.run_id = ctx.env.parent
        self.index, self.linking = index, linking

    async def run_batch(self, batch: ExpandBatch, caller: StructuredCaller) -> BatchAnswer:
        return await answer_batch(self.con, caller, self.index, self.job_id, batch.level,
                                  list(batch.parents), self.config.fanout, self.run_id,
                                  self.config.language, self.linking)


class ExpandSpec(ShippedSpec[ExpandConfig, ExpandBatch, BatchAnswer, ExpandSummary], kind="expansion"):
    """The job spec behind personahub personas expand."""

    config_type = ExpandConfig
    refuses_twins = False  # the adapters find an unfinished twin and resume it
    progress_per_answer = False  # its progress counts its own stages, not batch items

    def end_status(self, ctx: JobContext[ExpandConfig], asked: int, kept: int) -> str:
        """Finished: personas whose answers failed are counted on the frontier, not missing."""
        return "finished"

    def nothing_kept(self, ctx: JobContext[ExpandConfig], asked: int) -> str:
        return f"none of its {asked} calls yielded a persona"

    def prepare(self, ctx: JobContext[ExpandConfig]) -> None:
        """Check that a new expansion has personas to start from, before anything is recorded."""
        ctx.state = ExpandState()
        if ctx.resumed:
            ctx.done_before = frontier_count(ctx.con, ctx.job_id, asked=True)
            return
        config = ctx.config
        start = (list(config.start_ids) if config.start_ids is not None
                 else live_persona_ids(ctx.con, config.limit))
        if not start:
            raise PersonahubError(f"db {ctx.db}: the hub has no personas to expand from; run "
                                  "'personahub personas import' first")
        ctx.state.start = start

    def start(self, ctx: JobContext[ExpandConfig]) -> BatchOutcome:
        """Record the expansion and its first level within SUMMARY_MEMORY_MB: finding the start
        ids scans the whole hub, and DuckDB's default pool kept every block it read, so the
        command's peak grew with the hub (bench/RESULTS.md, bench_hub_scale)."""
        config = ctx.config
        with held_memory(ctx.con, SUMMARY_MEMORY_MB):
            rows = new_expansion_rows(ctx.con, ctx.job_id, _state(ctx).start, config.threshold,
                                      config.hops, config.fanout)
        return BatchOutcome(rows=rows)

    def running(self, ctx: JobContext[ExpandConfig]) -> AbstractContextManager[None]:
        """Hold DuckDB to a fixed share while the batches run, and give the connection its own limit
        back after: each batch's writes check new ids against the whole hub and read texts by id,
        and DuckDB's default pool kept every block those scans read (the command grew from 546 MiB
        at 1M personas to 870 MiB at 10M). On a hub made before the relations key was dropped, the
        share is over that key's index, which the inserts load and DuckDB cannot evict
        (expand_memory_mb)."""
        return held_memory(ctx.con, expand_memory_mb(ctx.con))

    def plain_asker(self, ctx: JobContext[ExpandConfig]) -> ExpandAsker:
        """Return the driver's asker, with the index, merges and nearest-people pool loaded."""
        config, state = ctx.config, _state(ctx)
        state.index = hub_index(ctx.con, config.threshold,
                                job_folder(ctx.db, ctx.job_id) / "hub-index")
        embedder = link_embedder_of(config.link_embedder)
        state.linking = Linking(
            candidates=config.link_candidates, threshold=config.threshold,
            aliases=load_aliases(ctx.con, ctx.job_id, state.index),
            pool=load_pool(ctx.con, embedder, expansion_personas(ctx.con, ctx.job_id))
            if embedder is not None else None)
        return ExpandAsker(ctx, state.index, state.linking)

    def plan(self, ctx: JobContext[ExpandConfig]) -> Iterator[ExpandBatch]:
        if ctx.status == "finished":
            return iter(())
        return self._levels(ctx)

    def _levels(self, ctx: JobContext[ExpandConfig]) -> Iterator[ExpandBatch]:
        """Level by level from the first one not done."""
        con, config, job_id = ctx.con, ctx.config, ctx.job_id
        first_level = hops_done(con, job_id)
        if ctx.resumed and (config.stop_on_failure or ctx.status == "failed"):
            ask_failed_again(con, job_id, first_level)  # the level that stopped on them
        visited = frontier_ids(con, job_id)
        for level in range(first_level, config.hops):
            if not level_rows(con, job_id, level):
                break
            for round_ in range(ASKS_PER_ROUND):
                todo = to_ask(level_rows(con, job_id, level), round_)
                by_id = {p.persona_id: p for p in fetch_personas(con, todo)}
                queue = [by_id[pid] for pid in todo if pid in by_id]
                for first in range(0, len(queue), config.batch_size):
                    yield ExpandBatch(level, round_, queue[first:first + config.batch_size])
            self._end_level(ctx, level, visited)

    def _end_level(self, ctx: JobContext[ExpandConfig], level: int, visited: set[str]) -> None:
        """End a level: a run's setup stops on its failures, or the next level is written (everyone
        it reached first, new or already in the hub, so a re-run reaches the same people).
        """
        con, config, job_id = ctx.con, ctx.config, ctx.job_id
        failed = frontier_count(con, job_id, level=level, status="failed")
        if failed and config.stop_on_failure and setup_stops(
                con, job_id, level, ctx.env.parent, failed, config.max_failed_share):
            raise ExpansionIncomplete(job_id, failed, frontier_count(con, job_id, asked=True),
                                      level)
        next_ids = [t for t in dict.fromkeys(level_targets(con, job_id, level)) if t not in visited]
        visited.update(next_ids)
        reached = ([p.persona_id for p in fetch_personas(con, next_ids)]
                   if level + 1 < config.hops else [])
        write_next_level(con, job_id, level, reached)
        ctx.report("expand", level + 1, config.hops)

    def commit(self, ctx: JobContext[ExpandConfig], batch: ExpandBatch,
               result: BatchAnswer) -> BatchOutcome:
        """Return the batch's graph rows and frontier marks with its calls; the error of each frontier persona
        that yielded no one.
        """
        state = _state(ctx)

        def write() -> None:
            write_answer(ctx.con, ctx.caller, ctx.job_id, batch.level, result.created,
                         result.relations, result.merges, result.marks)

        if state.linking is not None and state.linking.pool is not None:
            pool = state.linking.pool
            created = [(p.persona_id, p.text) for p in result.created]

            def write_and_pool() -> None:  # committed: later batches may merge into them
                write()
                pool.add(created)

            then = write_and_pool
        else:
            then = write
        config = ctx.config
        kept = len(batch) if config.stop_on_failure else result.kept
        errors = result.errors
        if config.stop_on_failure and not config.rejections_stop:  # only the calls' failures
            errors = [e for e in errors if not (e or "").startswith(GATE_ERROR)]
        return BatchOutcome(rows={"rejected": result.rejected}, calls=result.calls,
                            asked=len(batch), kept=kept, errors=errors, then=then,
                            label=f"a batch of hop {batch.level + 1}",
                            progress=("expand", batch.level, ctx.config.hops))

    def stop_note(self, ctx: JobContext[ExpandConfig]) -> str:
        return f" ({frontier_count(ctx.con, ctx.job_id, asked=True)} personas asked)"

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Every persona the expansion asked about, reached or created."""
        return personas_frame(con, expansion_personas(con, job_id))

    def summary(self, ctx: JobContext[ExpandConfig]) -> ExpandSummary:
        """Count the expansion within SUMMARY_MEMORY_MB: its graph's shape joins the hub's whole
        relations table, and DuckDB's default pool kept every block of it (the summary added 104
        MiB at 1M personas, 207 MiB at 3M)."""
        with held_memory(ctx.con, SUMMARY_MEMORY_MB):
            summary = summary_of(ctx.con, ctx.job_id)
        summary.resumed = ctx.resumed
        summary.provider_batches = self.batches_line(ctx)
        return summary

    def report(self, summary: ExpandSummary, db: Path) -> list[str]:
        return expansion_lines(summary)


def expansion_lines(summary: ExpandSummary) -> list[str]:
    """Return what an expansion did, in lines for the console."""
    lines = [f"expansion {summary.expansion_id}{' (resumed)' if summary.resumed else ''}: "
             f"asked {summary.asked} personas over {summary.hops} hop(s): "
             f"{summary.new_personas} new personas, {summary.merged_into_existing} merged into "
             f"existing ones, {summary.edges} relations, {summary.linked} closing triangles, "
             f"{summary.failed_calls} failed calls"]
    shape = summary.graph
    if shape:
        lines.append(f"graph of the expansion: {shape['nodes']} nodes, {shape['edges']} edges "
                     "(pairs of related personas, as personas stats counts them), "
                     f"{shape['components']} components, {shape['cycles']} cycles, clustering "
                     f"{shape['clustering']}, degrees {shape['degree_histogram']}")
    lines.append(rejection_line(summary.rejected, "personas"))
    if summary.provider_batches:
        lines.append(summary.provider_batches)
    return lines


EXPANSION = register(ExpandSpec())
