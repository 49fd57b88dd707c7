"""Persona-driven synthesis jobs: N personas x one task, written as synthesized items. This is
the kernel's reference job spec.

A resume reloads the stored config and drawn personas and rebuilds the near-duplicate index from
the kept items in selection order, so it flags exactly what an uninterrupted job would. Answers
that fail their task's check are stored as rejected and asked again on resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from personahub.analysis.kept import kept_lines
from personahub.core.call_log import call_counts, unknown_usage, unknown_usage_note
from personahub.core.commit import records_of
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import now as _now
from personahub.core.kernel import (
    BatchOutcome,
    JobContext,
    engine,
    iter_batches,
    register,
)
from personahub.core.store import DEFAULT_DB, scalar
from personahub.core.validate import (
    check_int,
)
from personahub.models.failures import call_error
from personahub.personas.gate_labels import drawn_gates, spec_is_offline
from personahub.personas.near_dup import NearDuplicateIndex
from personahub.personas.quality import QualityIssue, rejected_row, rejection_line, tally
from personahub.personas.record import Persona
from personahub.personas.sampling import SAMPLE_MODES, HubQuery, gated_out
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.prompts.evaluate import SOLVE_MAX_TOKENS
from personahub.pipelines.prompts.synthesis import PROMPTING_MODES, solve_messages, synthesis_messages
from personahub.pipelines.shipped_spec import ItemJobSummary, ItemsInView, ShippedSpec
from personahub.pipelines.synthesis_inputs import (
    Demo,
    infer_personas,
    job_personas,
    load_examples,
    load_world,
    seed_hub_if_empty,
    select_personas,
    store_selection,
)
from personahub.tasks import synthesis_task, tasks
from personahub.tasks.max_tokens import synthesis_max_tokens
from personahub.tasks.shipped_demos import builtin_name
from personahub.tasks.synthesis_schemas import Solution, content_of


@dataclass(frozen=True, kw_only=True)
class SynthConfig(EngineFields):
    """What a synthesis job makes (stored, model spec redacted) and, in the engine fields, how this
    invocation asks (a resume takes those from its caller).
    """

    task: str
    n: int = 10  # personas drawn
    per_persona: int = 1  # items asked of each, each its own sample (--per-persona)
    where: str | None = None  # one SQL condition (--personas)
    carve: tuple[str, ...] = ()  # carve conditions KEY OP VALUE, all must hold (--carve)
    sample: str = "uniform"  # uniform (seeded by seed) or head (hub order)
    # draw personas the quality gate did not pass too (--include-ungated)
    include_ungated: bool = False
    prompting: str = "zero-shot"
    examples: str | None = None
    world: str | None = None
    solve: bool = False
    with_assistant: bool = False
    seed: int = 0
    db: str = engine(DEFAULT_DB)
    batch_size: int = engine(64)
    # fewer items than asked is an error for the caller unless set (the job keeps what it wrote)
    allow_fewer: bool = engine(False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "carve", tuple(self.carve))
        check_model_fields(self)
        check_int(self.n, "--n", low=1)
        check_int(self.per_persona, "--per-persona", low=1, high=MAX_PER_PERSONA)
        check_int(self.batch_size, "batch size", low=1)
        task = synthesis_task(self.task)  # PersonahubError naming the tasks when unknown
        if self.prompting not in PROMPTING_MODES:
            raise UsageError(
                f"--prompting {self.prompting!r}: choose one of {', '.join(PROMPTING_MODES)}")
        if self.prompting != "zero-shot" and not self.examples:  # the shipped demonstrations
            object.__setattr__(self, "examples", builtin_name(self.task))
        if self.solve and not task.synthesis_spec().solvable:
            solvable = sorted(t.name for t in tasks() if t.synthesis and t.synthesis.solvable)
            raise UsageError(f"--solve applies to {', '.join(solvable)} only")
        if self.sample not in SAMPLE_MODES:
            raise UsageError(f"--sample {self.sample!r}: choose one of {', '.join(SAMPLE_MODES)}")
        self.query().conditions()  # one line naming --personas or --carve and the bad part

    def query(self) -> HubQuery:
        """Which personas the job may draw from."""
        return HubQuery(where=self.where or None, carve=tuple(self.carve))


MAX_PER_PERSONA = 1000  # --per-persona at most (a typo of 10000 would ask for a fortune)


@dataclass(kw_only=True)
class SynthSummary(ItemJobSummary):
    """What a job did, for the console and for tests; its failed items include those the
    quality gate rejected."""

    job_id: str
    task: str
    prompting: str
    written: int = 0
    duplicates: int = 0
    solved: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # quality-gate rejects by reason
    unknown_usage: int = 0  # attempts whose token counts are unknown
    kept: list[str] = field(default_factory=list)  # the kept share per kind, in plain words
    asked: int = 0  # items asked: --n personas x --per-persona
    per_persona: int = 1
    seeded: int = 0  # shipped personas put into an empty hub for this job
    items: int = 0  # the job's items, all its runs together
    shortfall: str | None = None  # one line: fewer items than asked, and why (None: as asked)
    # fewer personas drawn than --n: the matching ones the quality gate held back, and the flag
    held_back: str | None = None


class Ask(NamedTuple):
    """One item asked: a persona and which of its --per-persona samples (0 first)."""

    persona: Persona
    sample: int = 0

    @property
    def key(self) -> str:
        """Its key among a job's asks (the persona's id for the first sample)."""
        pid = self.persona.persona_id
        return pid if not self.sample else f"{pid}#{self.sample}"


class Answer(NamedTuple):
    """One persona's answer: content (None if the call failed), solution, the gate's verdict, and
    the call results whose records the batch commit writes.
    """

    persona: Persona
    content: dict[str, object] | None
    solution: dict[str, object] | None = None
    rejected: QualityIssue | None = None
    calls: tuple[StructuredResult[Any], ...] = ()
    sample: int = 0  # which of the persona's samples (as in Ask)

    @property
    def records(self) -> list[CallRecord]:
        """The call records of this persona's calls."""
        return records_of(self.calls)

    @property
    def cache_entries(self) -> list[CacheEntry]:
        """The cache entries this persona's calls recorded."""
        return [entry for call in self.calls for entry in call.cache_entries]


def item_id_for(job_id: str, persona_id: str, sample: int = 0) -> str:
    """Stable item id per (job, persona, sample), so a retried batch cannot create twins."""
    key = f"{job_id}\0{persona_id}" + (f"\0{sample}" if sample else "")
    return "s" + hashlib.sha1(key.encode()).hexdigest()[:15]


def sample_seed(sample: int) -> int:
    """Return the request sample number of a persona's nth item: 0, 2, 4, ... The odd numbers stay free for
    the fresh sample a weak answer earns, so each item is its own seeded draw.
    """
    return 2 * sample


class SynthesisAsker:
    """Asks the model for a batch of items, holding nothing of the database (a Ray worker rebuilds
    it); also encodes answers for Ray workers (a ShardCodec).
    """

    def __init__(self, config: SynthConfig, job_id: str, world: str, demos: list[Demo]) -> None:
        self.config = config
        self.job_id = job_id
        self.world = world
        self.demos = demos
        self.task = synthesis_task(config.task)
        self.schema = self.task.synthesis_schema(with_assistant=config.with_assistant)

    def __reduce__(self) -> tuple[object, ...]:
        # the task and its schema (classes built at run time) are rebuilt where it lands
        return (SynthesisAsker, (self.config, self.job_id, self.world, self.demos))

    async def _one(self, ask: Ask, caller: StructuredCaller) -> Answer:
        opts, (persona, k) = self.config, ask
        messages = synthesis_messages(
            opts.task, persona.text, mode=opts.prompting,
            examples=[(d.text, d.persona) for d in self.demos], world=self.world,
            with_assistant=opts.with_assistant)
        drawn: dict[str, Any] = {"sample": sample_seed(k)} if k else {}  # sample 0: no sample field
        result = await caller.structured(self.schema, messages, purpose=f"synth:{opts.task}",
                                         persona_id=persona.persona_id, check=self.task.gate,
                                         max_tokens=synthesis_max_tokens(opts.task),
                                         **drawn)
        if result.value is None:
            return Answer(persona, None, calls=(result,), sample=k)
        content = content_of(result.value)
        issue = self.task.check(content)
        if issue is not None:  # no solving junk
            return Answer(persona, content, rejected=issue, calls=(result,), sample=k)
        if not opts.solve:
            return Answer(persona, content, calls=(result,), sample=k)
        solved = await caller.structured(Solution, solve_messages(self.task.text(content)),
                                         purpose=f"solve:{opts.task}", persona_id=persona.persona_id,
                                         max_tokens=SOLVE_MAX_TOKENS,
                                         **drawn)
        solution = solved.value.model_dump() if solved.value is not None else None
        return Answer(persona, content, solution, calls=(result, solved), sample=k)

    async def run_batch(self, batch: Sequence[Ask], caller: StructuredCaller) -> list[Answer]:
        """All of a batch's asks concurrently (the client bounds calls in flight)."""
        return list(await asyncio.gather(*(self._one(a, caller) for a in batch)))

    # ShardCodec: how an answer travels from a Ray worker
    def key(self, ask: Ask) -> str:
        return ask.key

    def dump(self, answer: Answer) -> str:
        issue = answer.rejected
        return json.dumps({"content": answer.content, "solution": answer.solution,
                           "rejected": None if issue is None else [issue.code, issue.message]})

    def calls(self, answer: Answer) -> Sequence[StructuredResult[Any]]:
        return answer.calls

    def load(self, ask: Ask, value: str, calls: list[StructuredResult[Any]]) -> Answer:
        data = json.loads(value)
        issue = data["rejected"]
        return Answer(ask.persona, data["content"], data["solution"],
                      None if issue is None else QualityIssue(*issue), tuple(calls), ask.sample)


@dataclass
class SynthState:
    """One job's own state: its inputs, near-duplicate index and counts."""

    demos: list[Demo]
    world: str
    personas: list[Persona]
    summary: SynthSummary
    index: NearDuplicateIndex = field(default_factory=NearDuplicateIndex)


def _state(ctx: JobContext[SynthConfig]) -> SynthState:
    state: SynthState = ctx.state
    return state


class SynthesisSpec(ItemsInView, ShippedSpec[SynthConfig, Sequence[Ask], list[Answer], SynthSummary],
                    kind="synthesis"):
    """The job spec behind personahub synthesize."""

    config_type = SynthConfig
    independent_batches = True
    item_source = "job"
    sample_columns = "persona, text"

    def prepare(self, ctx: JobContext[SynthConfig]) -> None:
        """Demonstrations, world and the personas to ask (on resume, those the job drew)."""
        config = ctx.config
        if ctx.resumed:
            demos = [Demo(**d) for d in ctx.stored.get("demos", [])]
        else:  # a few-shot mode without --examples has builtin:<task> (SynthConfig)
            demos = (load_examples(config.examples)
                     if config.examples and config.prompting != "zero-shot" else [])
        world = load_world(config)
        # a resume asks the personas the job drew
        personas = (job_personas(ctx.con, ctx.job_id) or []) if ctx.resumed else None
        seeded = 0
        held: str | None = None
        if personas is None:  # a new job
            if not config.where and not config.carve:
                seeded = seed_hub_if_empty(ctx.con)
            gates = drawn_gates(include_ungated=config.include_ungated,
                                offline=spec_is_offline(config.llm))
            personas = select_personas(ctx.con, config.where, config.n, carve=config.carve,
                                       seed=config.seed, sample=config.sample, gates=gates)
            if len(personas) < config.n:
                held = gated_out(ctx.con, HubQuery(where=config.where or None,
                                                   carve=tuple(config.carve)), gates)
        if not personas:
            raise PersonahubError(f"--resume {ctx.job_id}: the personas the job drew are gone "
                                  f"from --db {ctx.db}")
        summary = SynthSummary(job_id=ctx.job_id, task=config.task, prompting=config.prompting,
                               engine="", offline=False, selected=len(personas), db=str(ctx.db),
                               asked=config.n * config.per_persona,
                               per_persona=config.per_persona, seeded=seeded, held_back=held)
        ctx.state = SynthState(demos, world, personas, summary)
        ctx.total = len(personas) * config.per_persona

    def start(self, ctx: JobContext[SynthConfig]) -> BatchOutcome:
        """Return the job's row, its drawn personas, and (persona-few-shot) the demonstrations' inferred
        personas.
        """
        state, config = _state(ctx), ctx.config
        inferred: list[StructuredResult[Any]] = []
        if config.prompting == "persona-few-shot":
            state.demos, inferred = ctx.run(infer_personas(ctx.caller, state.demos))
        ctx.stored["demos"] = [asdict(d) for d in state.demos]
        return BatchOutcome(
            rows={"synth_jobs": [{"job_id": ctx.job_id, "task": config.task,
                                  "prompting": config.prompting, "n": config.n,
                                  "llm": ctx.caller.label}]},
            calls=inferred, then=lambda: store_selection(ctx.con, ctx.job_id, state.personas))

    def plan(self, ctx: JobContext[SynthConfig]) -> Iterator[Sequence[Ask]]:
        """Plan the asks not yet done, in batches, after rebuilding the index from kept items."""
        state = _state(ctx)
        _reload_index(ctx, state)
        done = {r[0] for r in ctx.con.execute("SELECT item_id FROM synth_items WHERE job_id = ?",
                                              [ctx.job_id]).fetchall()}
        asks = _asks(state.personas, ctx.config.per_persona)
        todo = [a for a in asks if item_id_for(ctx.job_id, a.persona.persona_id, a.sample) not in done]
        ctx.done_before = state.summary.skipped_done = len(asks) - len(todo)
        return iter(list(iter_batches(todo, ctx.config.batch_size)))

    def plain_asker(self, ctx: JobContext[SynthConfig]) -> SynthesisAsker:
        """Return the synthesis asker, with the job's world and demonstrations."""
        state = _state(ctx)
        return SynthesisAsker(ctx.config, ctx.job_id, state.world, state.demos)

    def commit(self, ctx: JobContext[SynthConfig], batch: Sequence[Ask],
               result: list[Answer]) -> BatchOutcome:
        """Return the batch's items (near-duplicates flagged) and rejects; one error per failed persona."""
        state, config, summary = _state(ctx), ctx.config, _state(ctx).summary
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        errors: list[str | None] = []
        task = synthesis_task(config.task)
        for persona, content, solution, issue, calls, sample in result:
            if content is None:
                errors.append(call_error(calls[0]) if calls else "no valid answer")
                continue
            item_id = item_id_for(ctx.job_id, persona.persona_id, sample)
            if issue is not None:
                errors.append(f"quality gate: {issue}")
                rejected.append(rejected_row("synthesis", issue, content, key=item_id,
                                             job_id=ctx.job_id, persona_id=persona.persona_id,
                                             task=config.task))
                continue
            summary.solved += solution is not None
            rows.append({"item_id": item_id, "job_id": ctx.job_id, "persona_id": persona.persona_id,
                         "task": config.task, "prompting": config.prompting,
                         "model": ctx.caller.label, "content": content, "text": task.text(content),
                         "solution": solution, "created_at": _now()})
        # one index call for the batch: each item is checked against those before it too
        originals = state.index.check_and_add_many([(r["item_id"], r["text"]) for r in rows])
        for row, original in zip(rows, originals, strict=True):
            row["is_duplicate"], row["duplicate_of"] = original is not None, original
        summary.duplicates += sum(original is not None for original in originals)
        summary.failed += len(errors)
        summary.written += len(rows)
        summary.rejected = tally(summary.rejected, (r["reason"] for r in rejected))
        return BatchOutcome(rows={"synth_items": rows, "rejected": rejected}, calls=result,
                            asked=len(batch), kept=len(rows), errors=errors)

    def report(self, summary: SynthSummary, db: Path) -> list[str]:
        """Report what the job did, in lines for the console (the last: how to export it)."""
        calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
        lines = [f"job {summary.job_id}: {summary.written} {summary.task} items written "
                 f"({summary.skipped_done} already done, {summary.failed} failed, "
                 f"{summary.duplicates} near-duplicates flagged, {summary.solved} solved) in {db}",
                 rejection_line(summary.rejected, "items"), *summary.kept,
                 f"model calls: {calls}{unknown_usage_note(summary.unknown_usage)}; "
                 f"engine: {summary.engine}"
                 + (" (offline engine, not a language model)" if summary.offline else "")]
        if summary.batches:
            lines.append(summary.batches)
        if summary.failed:
            lines.append(f"resume to retry the failed personas: {self.resume_hint(summary.job_id, db)}")
        if summary.shortfall:
            lines.append(summary.shortfall)
        lines.append(f"  personahub export --db {db} --job {summary.job_id} --format chat "
                     f"--out {summary.task}.chat.jsonl")
        return lines

    def stop_note(self, ctx: JobContext[SynthConfig]) -> str:
        summary = _state(ctx).summary
        total = summary.selected * summary.per_persona
        return f" ({summary.skipped_done + summary.written} of {total} items written)"

    def summary(self, ctx: JobContext[SynthConfig]) -> SynthSummary:
        summary = _state(ctx).summary
        summary.engine, summary.offline = ctx.caller.label, ctx.caller.is_offline
        summary.calls = call_counts(ctx.con, run_id=ctx.job_id)
        summary.unknown_usage = unknown_usage(ctx.con, run_id=ctx.job_id)
        summary.kept = kept_lines(ctx.con, run_id=ctx.job_id)
        summary.items = int(scalar(ctx.con, "SELECT count(*) FROM synth_items WHERE job_id = ?",
                                   [ctx.job_id]))
        summary.shortfall = shortfall(summary, ctx.config.n, self.resume_hint(ctx.job_id, ctx.db))
        summary.batches = self.batches_line(ctx)
        return summary


def _asks(personas: Sequence[Persona], per_persona: int) -> list[Ask]:
    """Return what a job asks, in order: each persona's samples in turn."""
    return [Ask(p, k) for p in personas for k in range(per_persona)]


def shortfall(summary: SynthSummary, n: int, resume_hint: str) -> str | None:
    """One line when the job holds fewer items than asked, with why; near-duplicates count as items.
    """
    if summary.items >= summary.asked:
        return None
    k = summary.per_persona
    reasons = []
    if summary.selected < n:
        seeded = (f" (the hub was empty: {summary.seeded} shipped personas were imported)"
                  if summary.seeded else "")
        reasons.append(f"--n {n} but only {summary.selected} personas match{seeded}, so "
                       f"{(n - summary.selected) * k} items had no persona to ask")
        if summary.held_back:
            reasons.append(summary.held_back)
    missing = summary.selected * k - summary.items
    if missing > 0:
        reasons.append(f"{missing} asked items failed or were rejected (resume to retry: "
                       f"{resume_hint})")
    return (f"fewer items than asked: {summary.items} of {summary.asked}: "
            + "; ".join(reasons))


def _reload_index(ctx: JobContext[SynthConfig], state: SynthState) -> None:
    """Index a resumed job's kept items in the order the job asked them, as an uninterrupted job
    would have; items flagged as near-duplicates stay out of the index.
    """
    rows = ctx.con.execute("SELECT item_id, persona_id, text, is_duplicate FROM synth_items "
                           "WHERE job_id = ? ORDER BY created_at, item_id", [ctx.job_id]).fetchall()
    position = {item_id_for(ctx.job_id, a.persona.persona_id, a.sample): i
                for i, a in enumerate(_asks(state.personas, ctx.config.per_persona))}
    kept = sorted((r for r in rows if not r[3]), key=lambda r: position.get(r[0], len(position)))
    state.index.add_many([(item_id, text) for item_id, _, text, _ in kept])


SYNTHESIS = register(SynthesisSpec())
