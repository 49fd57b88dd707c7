"""The judge job: rate a synthesis job's items or a run's emissions against per-kind criteria.

It makes the paper's validity measurement (96.5% of 200) on any model. The judge's id comes from
its settings, so running it again skips rated items. The offline engine's verdicts say nothing
of quality.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
from pydantic import BaseModel

from personahub.analysis.judgments import judged_item_ids, judgment_rows, sample_judgments
from personahub.core.call_log import call_counts
from personahub.core.commit import records_of
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import find_job
from personahub.core.kernel import BatchOutcome, JobContext, engine, register
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import check_int, read_text_file
from personahub.models.client import redact_spec
from personahub.models.failures import call_error
from personahub.pipelines.batches import answered, remaining
from personahub.pipelines.model_fields import (
    ExecutorFields,
    GenerationFields,
    ModelFields,
    check_model_fields,
)
from personahub.pipelines.prompts.judge import (
    JUDGE_MAX_TOKENS,
    JUDGE_PURPOSE,
    judge_messages,
    judge_schema,
    overall,
    verdicts,
)
from personahub.pipelines.prompts.synthesis import world_for_prompt
from personahub.pipelines.provider_batch_jobs import BatchFields
from personahub.pipelines.shipped_spec import ItemJobSummary, ShippedSpec, stored_job_id
from personahub.tasks import Criterion, Task, stored_task

if TYPE_CHECKING:
    import pandas as pd

# what makes two judges the same judge (its id): the target, the items drawn, the model asked
JUDGE_IDENTITY = ("job", "run", "task", "sample", "seed", "llm", "structured", "max_tokens",
                  "temperature", "top_p")
# a field hashed under its name before the rename, so a judge keeps its id (and its ratings)
_HASHED_AS = {"task": "kind"}


@dataclass(frozen=True, kw_only=True)
class JudgeConfig(GenerationFields, BatchFields, ExecutorFields, ModelFields):
    """What a judge rates and with which model (its identity), and, in the engine fields, how this
    invocation asks.
    """

    job: str | None = None  # a synthesis job's synth_items
    run: str | None = None  # or a run's emissions
    task: str | None = None  # only items of this task (the output kind)
    sample: int | None = None  # at most N items, drawn in md5(seed:item_id) order
    seed: int = 0
    db: str = engine(DEFAULT_DB)
    batch_size: int = engine(32)

    def __post_init__(self) -> None:
        if (self.job is None) == (self.run is None):
            raise UsageError("judge: give exactly one of --job or --run")
        if self.sample is not None and self.sample < 1:
            raise UsageError(f"--sample must be >= 1, got {self.sample}")
        check_int(self.batch_size, "batch size", low=1)
        check_model_fields(self)

    @property
    def target(self) -> tuple[str, str]:
        """What is judged: ("synthesis", job id) or ("run", run id)."""
        return ("synthesis", self.job) if self.job is not None else ("run", str(self.run))

    def identity(self) -> dict[str, object]:
        """Return the settings that name the judge (the model spec redacted)."""
        config = {key: getattr(self, key) for key in JUDGE_IDENTITY}
        config["llm"] = redact_spec(self.llm)
        return config


def judge_id_for(options: JudgeConfig) -> str:
    """Return the judge's id, a hash of its identity: the same settings give the same judge."""
    hashed = {_HASHED_AS.get(key, key): value for key, value in options.identity().items()}
    text = json.dumps(hashed, sort_keys=True)
    return "judge-" + hashlib.sha1(text.encode()).hexdigest()[:12]


class Item(NamedTuple):
    """One item to judge, as the judged table holds it."""

    item_id: str
    task: str
    text: str
    persona: str
    solution: str


@dataclass(kw_only=True)
class JudgeSummary(ItemJobSummary):
    """What a judge did, for the console and for tests."""

    judge_id: str
    target_kind: str
    target_id: str
    judged: int = 0
    last_error: str | None = None


class Judgment(NamedTuple):
    """One item's judgment (None when its call failed) and the call's result."""

    item: Item
    row: dict[str, object] | None
    call: StructuredResult[Any]

    @property
    def records(self) -> list[CallRecord]:
        return records_of([self.call])

    @property
    def cache_entries(self) -> list[CacheEntry]:
        return list(self.call.cache_entries)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _solution_text(raw: object) -> str:
    if not raw:
        return ""
    value = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(value, dict) and "solution" in value:
        return f"{value['solution']}\n\nAnswer: {value.get('answer', '')}".strip()
    return json.dumps(value, ensure_ascii=False)


def select_items(con: duckdb.DuckDBPyConnection, options: JudgeConfig) -> list[Item]:
    """Select the items to rate: all of the target's items (of the chosen kind, if any), or a seeded sample
    of them.
    """
    what, target = options.target
    source = "job" if what == "synthesis" else "run"
    if not con.execute("SELECT 1 FROM v_item_sources WHERE source = ? AND source_id = ?",
                       [source, target]).fetchall():
        which = "synthesis job" if what == "synthesis" else "run"
        raise PersonahubError(f"--{source} {target}: no such {which} in {options.db}")
    # the target's items with their personas' texts, through the analysis views
    sql = ("SELECT item_id, task, text, coalesce(persona, ''), solution FROM v_items "
           "WHERE source = ? AND source_id = ?")
    params: list[object] = [source, target]
    if options.task is not None:
        sql += " AND task = ?"
        params.append(options.task)
    sql += " ORDER BY md5(? || ':' || item_id), item_id"
    params.append(str(options.seed))
    if options.sample is not None:
        sql += " LIMIT ?"
        params.append(options.sample)
    found = [Item(r[0], r[1], r[2], r[3], _solution_text(r[4]))
             for r in con.execute(sql, params).fetchall()]
    if not found:
        which = f" of task {options.task!r}" if options.task else ""
        raise PersonahubError(f"--{'job' if what == 'synthesis' else 'run'} {target}: no items"
                              f"{which} to judge")
    return found


def target_world(con: duckdb.DuckDBPyConnection, options: JudgeConfig) -> str:
    """Return the world the judged items were written in (for "consistent with the world"), or ""."""
    what, target = options.target
    job = find_job(con, target)
    config = job.config if job is not None else {}
    if what == "synthesis":
        from personahub.pipelines.synthesis_inputs import load_world
        from personahub.pipelines.synthesize import SynthConfig

        try:
            return load_world(SynthConfig(task=config["task"], world=config.get("world")))
        except (KeyError, PersonahubError):
            return ""
    scenario = config.get("scenario") or {}
    parts = [str(scenario.get("world") or "").strip()]
    if scenario.get("world_file") and config.get("scenario_file"):
        path = Path(config["scenario_file"]).parent / scenario["world_file"]
        try:
            parts.append(read_text_file(path, "world_file"))
        except PersonahubError:  # gone, or no longer a UTF-8 text file
            pass
    parts.append(str(scenario.get("arm_world") or "").strip())  # an arm's text comes last
    text = "\n".join(p for p in parts if p)
    return world_for_prompt(text) if text else ""


def task_of(kind: str, *, emission: bool) -> Task:
    """Return the task of a stored kind; an unregistered kind is judged with the default criteria."""
    task = stored_task(kind, emission=emission)
    return task if task is not None else Task(name=kind, schema=BaseModel, check=lambda _: None)


class JudgeAsker:
    """Asks the model about a batch of items, holding nothing of the database (a worker rebuilds it).
    """

    def __init__(self, config: JudgeConfig, judge_id: str, world: str) -> None:
        self.config = config
        self.judge_id = judge_id
        self.world = world
        self.identity = config.identity()

    def _criteria(self, item: Item) -> tuple[Task, tuple[Criterion, ...]]:
        task = task_of(item.task, emission=self.config.run is not None)
        return task, task.criteria_for(has_solution=bool(item.solution))

    async def _one(self, item: Item, caller: StructuredCaller) -> Judgment:
        task, criteria = self._criteria(item)
        schema = judge_schema(tuple(c.name for c in criteria))
        messages = judge_messages(task, item.text, criteria, persona=item.persona,
                                  solution=item.solution, world=self.world)
        result = await caller.structured(schema, messages, purpose=JUDGE_PURPOSE,
                                         max_tokens=JUDGE_MAX_TOKENS)
        if result.value is None:
            return Judgment(item, None, result)
        what, target = self.config.target
        valid, reason = overall(result.value)
        return Judgment(item, {
            "judge_id": self.judge_id, "target_kind": what, "target_id": target,
            "item_id": item.item_id, "task": item.task,
            "criteria": verdicts(result.value, criteria), "valid": valid, "reason": reason,
            "model": caller.label, "config": self.identity, "created_at": _now()}, result)

    async def run_batch(self, batch: Sequence[Item], caller: StructuredCaller) -> list[Judgment]:
        """Judge a batch concurrently (the client bounds how many calls are in flight)."""
        return list(await asyncio.gather(*(self._one(item, caller) for item in batch)))

    # ShardCodec: how a judgment travels from a Ray worker
    def key(self, item: Item) -> str:
        return item.item_id

    def dump(self, answer: Judgment) -> str:
        return json.dumps(answer.row, default=str)

    def calls(self, answer: Judgment) -> Sequence[StructuredResult[Any]]:
        return [answer.call]

    def load(self, item: Item, value: str, calls: list[StructuredResult[Any]]) -> Judgment:
        row = json.loads(value)
        if row is not None:  # its time as a timestamp again (JSON has none)
            row["created_at"] = dt.datetime.fromisoformat(row["created_at"])
        return Judgment(item, row, calls[0])


@dataclass
class JudgeState:
    """One judge's own state: what it rates, in what world, and its counts."""

    items: list[Item]
    world: str
    summary: JudgeSummary


def _state(ctx: JobContext[JudgeConfig]) -> JudgeState:
    state: JudgeState = ctx.state
    return state


class JudgeSpec(ShippedSpec[JudgeConfig, Sequence[Item], list[Judgment], JudgeSummary], kind="judge"):
    """The job spec behind personahub judge."""

    calls_in_run = False  # a judge of a run is its own job: its calls get no run_id
    config_type = JudgeConfig
    independent_batches = True  # every item's batch is planned ahead: Ray may ship them all
    # the id is the settings: a second start is the same job, which the adapters resume
    refuses_twins = False

    def job_id_for(self, config: JudgeConfig) -> str:
        return judge_id_for(config)

    def belongs_to(self, config: JudgeConfig) -> str | None:
        return config.target[1]

    def upgrade(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Return a stored config under today's names (``kind`` was the task's)."""
        stored = dict(stored)
        if "kind" in stored:
            stored.setdefault("task", stored.pop("kind"))
        return stored

    def prepare(self, ctx: JobContext[JudgeConfig]) -> None:
        """Read the target's items; a missing target or no items is a one-line error, nothing recorded.
        """
        config = ctx.config
        items = select_items(ctx.con, config)
        what, target = config.target
        summary = JudgeSummary(judge_id=ctx.job_id, target_kind=what, target_id=target,
                               engine="", offline=False, selected=len(items), db=str(ctx.db))
        ctx.state = JudgeState(items, target_world(ctx.con, config), summary)
        ctx.total = len(items)

    def plan(self, ctx: JobContext[JudgeConfig]) -> Iterator[Sequence[Item]]:
        """Plan the items this judge has not rated, in batches."""
        state = _state(ctx)
        done = judged_item_ids(ctx.con, ctx.job_id)
        batches = remaining(ctx, state.items, done, lambda item: item.item_id,
                            ctx.config.batch_size)
        state.summary.skipped_done = ctx.done_before
        return batches

    def plain_asker(self, ctx: JobContext[JudgeConfig]) -> JudgeAsker:
        """Return the judge's asker, over the world it judges in."""
        return JudgeAsker(ctx.config, ctx.job_id, _state(ctx).world)

    def commit(self, ctx: JobContext[JudgeConfig], batch: Sequence[Item],
               result: list[Judgment]) -> BatchOutcome:
        """Return the batch's judgments; one error per item left unjudged (for the failure policy)."""
        outcome = answered(batch, result, lambda j: j.row, lambda j: call_error(j.call),
                           table="judgments")
        summary = _state(ctx).summary
        summary.judged += outcome.kept
        summary.failed += len(outcome.errors)
        for judgment in result:
            if judgment.row is None and judgment.call.records:
                summary.last_error = judgment.call.last.error
        return outcome

    def nothing_kept(self, ctx: JobContext[JudgeConfig], asked: int) -> str:
        return f"every model call failed ({asked} items)"

    def stop_note(self, ctx: JobContext[JudgeConfig]) -> str:
        summary = _state(ctx).summary
        return f" ({summary.skipped_done + summary.judged} of {summary.selected} items judged)"

    def report(self, summary: JudgeSummary, db: Path) -> list[str]:
        target = f"{'job' if summary.target_kind == 'synthesis' else 'run'} {summary.target_id}"
        calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
        lines = [f"judge {summary.judge_id} of {target}: {summary.judged} items judged "
                 f"({summary.skipped_done} already judged, {summary.failed} failed) in {db}; "
                 f"model calls: {calls}"]
        if summary.batches:
            lines.append(summary.batches)
        if summary.failed:
            lines.append("run the same command again to retry the failed items")
        return lines

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Return the judge's judgments by item id, criteria as JSON text."""
        return judgment_rows(con, job_id)

    def sample(self, con: duckdb.DuckDBPyConnection, job_id: str, n: int) -> pd.DataFrame:
        """Return a few of the judge's verdicts, the same ones each time."""
        return sample_judgments(con, job_id, n)

    def summary(self, ctx: JobContext[JudgeConfig]) -> JudgeSummary:
        summary = _state(ctx).summary
        summary.engine, summary.offline = ctx.caller.label, ctx.caller.is_offline
        summary.calls = call_counts(ctx.con, job_id=ctx.job_id)
        summary.batches = self.batches_line(ctx)
        return summary


def judge_resume(config: JudgeConfig) -> str | None:
    """Return this judge's id when its database already holds the job (to resume), else None."""
    return stored_job_id(config.db, judge_id_for(config))


JUDGE = register(JudgeSpec())
