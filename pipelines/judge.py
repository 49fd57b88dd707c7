"""The judge job: rate a synthesis job's items or a run's emissions against per-kind criteria.

Why: the paper measured its data (96.5% of 200 sampled math problems were valid); this makes
that measurement on any model. Each item gets one structured call (``agents/prompts/judge.py``,
purpose ``judge``) whose verdicts land in ``judgments``, batch by batch with the calls'
``llm_calls`` rows (``run_id`` = the judged job or run, ``job_kind`` = ``judge``, ``job_id`` =
the judge's id). The judge's id is derived from its settings, so running the same judge again
skips the items it has rated; ``sample`` draws the first N items in ``md5(seed:item_id)`` order
(as ``personas/sampling.py`` draws personas), the same N for the same seed.

A call that fails leaves no row (the next run asks again); a judge whose every call failed
raises one line. The offline engine's verdicts are deterministic and say nothing of quality.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
from pydantic import BaseModel

from personahub.agents.llm.adaptive_limit import Concurrency
from personahub.agents.llm.client import LLMSettings, check_reachable, make_client, redact_spec
from personahub.agents.llm.failures import call_error
from personahub.agents.llm.settings import parse_concurrency
from personahub.agents.llm.structured import check_setting
from personahub.agents.prompts.judge import JUDGE_PURPOSE, judge_messages, judge_schema, overall, verdicts
from personahub.agents.prompts.synthesis import world_for_prompt
from personahub.agents.tasks import Criterion, Task, stored_task
from personahub.core.commit import JobRef, ProgressHook, commit_batch, records_of
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.failures import (
    DEFAULT_MAX_FAILED_SHARE,
    ModelRejected,
    batch_failure,
    check_max_failed_share,
)
from personahub.core.jobs_store import find_job
from personahub.core.loop import job_loop
from personahub.core.store import DEFAULT_DB, connect

# What makes two judges the same judge (its id): the target, the items drawn, the model asked.
JUDGE_IDENTITY = ("job", "run", "kind", "sample", "seed", "llm", "structured", "max_tokens",
                  "temperature", "top_p")


@dataclass(frozen=True, kw_only=True)
class JudgeOptions:
    """What a judge rates and with which model; stored (spec redacted) in ``judgments.config``."""

    job: str | None = None  # a synthesis job's synth_items
    run: str | None = None  # or a run's emissions
    kind: str | None = None  # only items of this task / emission kind
    sample: int | None = None  # at most N items, drawn in md5(seed:item_id) order
    seed: int = 0
    db: str = DEFAULT_DB
    llm: str = "offline"
    concurrency: Concurrency = 16
    timeout_s: float = 60.0
    batch_size: int = 32
    structured: str = "auto"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    rps: float | None = None
    # a batch whose failed share passes this (and has >= 5 items) stops the judge
    # (agents.failures); not part of the judge's identity: it does not change the verdicts
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE

    def __post_init__(self) -> None:
        check_max_failed_share(self.max_failed_share)
        object.__setattr__(self, "concurrency", parse_concurrency(self.concurrency))
        if (self.job is None) == (self.run is None):
            raise PersonahubError("judge: give exactly one of --job or --run")
        if self.sample is not None and self.sample < 1:
            raise PersonahubError(f"--sample must be >= 1, got {self.sample}")
        if self.batch_size < 1:
            raise PersonahubError(f"batch size must be >= 1, got {self.batch_size}")
        check_setting(self.structured)

    @property
    def target(self) -> tuple[str, str]:
        """(``synthesis`` or ``run``, its id)."""
        return ("synthesis", self.job) if self.job is not None else ("run", str(self.run))

    def identity(self) -> dict[str, Any]:
        """The settings that name the judge (the model spec redacted)."""
        config = {key: getattr(self, key) for key in JUDGE_IDENTITY}
        config["llm"] = redact_spec(self.llm)
        return config


def judge_id_for(options: JudgeOptions) -> str:
    """``judge-`` + 12 hex digits of SHA-1 over the judge's identity: the same settings, the same
    judge (whose rated items a re-run skips)."""
    text = json.dumps(options.identity(), sort_keys=True)
    return "judge-" + hashlib.sha1(text.encode()).hexdigest()[:12]


class Item(NamedTuple):
    """One item to judge, as the judged table holds it."""

    item_id: str
    kind: str
    text: str
    persona: str
    solution: str


@dataclass
class JudgeSummary:
    """What a judge did, for the console and for tests."""

    judge_id: str
    target_kind: str
    target_id: str
    engine: str
    offline: bool
    selected: int = 0
    skipped_done: int = 0
    judged: int = 0
    failed: int = 0
    last_error: str | None = None
    calls: dict[str, int] = field(default_factory=dict)
    db: str = DEFAULT_DB


class Judgment(NamedTuple):
    """One item's judgment (None when its call failed) and the call's result."""

    item: Item
    row: dict[str, Any] | None
    call: StructuredResult[Any]

    @property
    def records(self) -> list[CallRecord]:
        return records_of([self.call])

    @property
    def cache_entries(self) -> list[CacheEntry]:
        return list(self.call.cache_entries)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _solution_text(raw: Any) -> str:
    if not raw:
        return ""
    value = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(value, dict) and "solution" in value:
        return f"{value['solution']}\n\nAnswer: {value.get('answer', '')}".strip()
    return json.dumps(value, ensure_ascii=False)


def select_items(con: duckdb.DuckDBPyConnection, options: JudgeOptions) -> list[Item]:
    """The items the judge rates: all of the target's (of ``kind``), or the first ``sample``
    in ``md5(seed:item_id)`` order — a seeded uniform sample, the same for the same seed."""
    what, target = options.target
    if what == "synthesis":
        if not con.execute("SELECT 1 FROM synth_jobs WHERE job_id = ?", [target]).fetchall():
            raise PersonahubError(f"--job {target}: no such synthesis job in {options.db}")
        sql = ("SELECT i.item_id, i.task, i.text, coalesce(p.text, ''), i.solution FROM synth_items i "
               "LEFT JOIN personas p USING (persona_id) WHERE i.job_id = ?")
        column = "i.task"
    else:
        if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [target]).fetchall():
            raise PersonahubError(f"--run {target}: no such run in {options.db}")
        sql = ("SELECT i.emission_id AS item_id, i.kind, i.text, coalesce(p.text, ''), NULL "
               "FROM emissions i LEFT JOIN personas p USING (persona_id) WHERE i.run_id = ?")
        column = "i.kind"
    params: list[Any] = [target]
    if options.kind is not None:
        sql += f" AND {column} = ?"
        params.append(options.kind)
    sql += " ORDER BY md5(? || ':' || item_id), item_id"
    params.append(str(options.seed))
    if options.sample is not None:
        sql += " LIMIT ?"
        params.append(options.sample)
    found = [Item(r[0], r[1], r[2], r[3], _solution_text(r[4]))
             for r in con.execute(sql, params).fetchall()]
    if not found:
        which = f" of kind {options.kind!r}" if options.kind else ""
        raise PersonahubError(f"--{'job' if what == 'synthesis' else 'run'} {target}: no items"
                              f"{which} to judge")
    return found


def target_world(con: duckdb.DuckDBPyConnection, options: JudgeOptions) -> str:
    """The world the judged items were written in (for "consistent with the world"), or ""."""
    what, target = options.target
    job = find_job(con, target)
    config = job.config if job is not None else {}
    if what == "synthesis":
        from personahub.pipelines.synthesize import SynthOptions, load_world

        try:
            return load_world(SynthOptions(task=config["task"], world=config.get("world")))
        except (KeyError, PersonahubError):
            return ""
    scenario = config.get("scenario") or {}
    parts = [str(scenario.get("world") or "").strip()]
    if scenario.get("world_file") and config.get("scenario_file"):
        path = Path(config["scenario_file"]).parent / scenario["world_file"]
        try:
            parts.append(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # gone, or no longer UTF-8 text
            pass
    text = "\n".join(p for p in parts if p)
    return world_for_prompt(text) if text else ""


def task_of(kind: str, *, emission: bool) -> Task:
    """The task of a stored kind; an unknown kind (a toy kind no longer registered) is judged
    with the default criteria."""
    task = stored_task(kind, emission=emission)
    return task if task is not None else Task(name=kind, schema=BaseModel, check=lambda _: None)


class Judge:
    """Asks the model about items and writes their judgments (the job's state, one connection)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, client: StructuredCaller,
                 options: JudgeOptions, judge_id: str, world: str) -> None:
        self.con = con
        self.client = client
        self.options = options
        self.judge_id = judge_id
        self.world = world
        self.config = options.identity()

    def _criteria(self, item: Item) -> tuple[Task, tuple[Criterion, ...]]:
        task = task_of(item.kind, emission=self.options.run is not None)
        return task, task.criteria_for(has_solution=bool(item.solution))

    async def _one(self, item: Item) -> Judgment:
        task, criteria = self._criteria(item)
        schema = judge_schema(tuple(c.name for c in criteria))
        messages = judge_messages(task, item.text, criteria, persona=item.persona,
                                  solution=item.solution, world=self.world)
        result = await self.client.structured(schema, messages, purpose=JUDGE_PURPOSE)
        if result.value is None:
            return Judgment(item, None, result)
        what, target = self.options.target
        valid, reason = overall(result.value)
        return Judgment(item, {
            "judge_id": self.judge_id, "target_kind": what, "target_id": target,
            "item_id": item.item_id, "kind": item.kind,
            "criteria": verdicts(result.value, criteria), "valid": valid, "reason": reason,
            "model": self.client.label, "config": self.config, "created_at": _now()}, result)

    async def run_batch(self, items: Sequence[Item]) -> list[Judgment]:
        """Judge a batch concurrently (the client bounds how many calls are in flight)."""
        return list(await asyncio.gather(*(self._one(item) for item in items)))

    def write_batch(self, results: Sequence[Judgment], summary: JudgeSummary) -> list[str | None]:
        """The batch's judgments and call records in one transaction; returns the error of
        each item left unjudged (for the failure policy)."""
        rows = [r.row for r in results if r.row is not None]
        errors: list[str | None] = []
        for result in results:
            if result.row is None:
                summary.failed += 1
                summary.last_error = result.call.last.error if result.call.records else None
                errors.append(call_error(result.call))
        commit_batch(self.con, JobRef("judge", self.judge_id, run_id=self.options.target[1]),
                     self.client, {"judgments": rows}, results)
        summary.judged += len(rows)
        return errors


def run_judge(options: JudgeOptions, *, client: StructuredCaller | None = None,
              progress: ProgressHook | None = None,
              on_ready: Callable[[str], None] | None = None) -> JudgeSummary:
    """Judge the target's items (skipping those this judge rated before); returns the summary.

    ``on_ready(judge_id)`` is called once the target and its items are found, before the first
    call (a command announces the judge only then, so a bad target prints one line). Raises
    PersonahubError when the target or its items are missing, or when every call failed.
    """
    con = connect(options.db)
    try:
        items = select_items(con, options)
        world = target_world(con, options)
        if client is None:
            built = make_client(LLMSettings(
                spec=options.llm, seed=options.seed, concurrency=options.concurrency,
                timeout_s=options.timeout_s, structured=options.structured,  # type: ignore[arg-type]
                max_tokens=options.max_tokens, temperature=options.temperature,
                top_p=options.top_p, rps=options.rps))
            check_reachable(built)
            client = built
        judge_id = judge_id_for(options)
        if on_ready is not None:
            on_ready(judge_id)
        what, target = options.target
        summary = JudgeSummary(judge_id=judge_id, target_kind=what, target_id=target,
                               engine=client.label, offline=client.is_offline,
                               selected=len(items), db=str(options.db))
        done = {r[0] for r in con.execute("SELECT item_id FROM judgments WHERE judge_id = ?",
                                          [judge_id]).fetchall()}
        todo = [item for item in items if item.item_id not in done]
        summary.skipped_done = len(items) - len(todo)
        judge = Judge(con, client, options, judge_id, world)
        with job_loop() as loop:
            for start in range(0, len(todo), options.batch_size):
                batch = todo[start:start + options.batch_size]
                results = loop.run(judge.run_batch(batch))
                errors = judge.write_batch(results, summary)
                if progress is not None:
                    progress("judge", summary.skipped_done + start + len(batch), len(items))
                reason = batch_failure(f"batch {start // options.batch_size + 1}", len(batch),
                                       errors, [r for j in results for r in j.call.records],
                                       options.max_failed_share)
                if reason is not None and summary.judged:  # committed: a re-run goes on
                    raise ModelRejected(f"judge {judge_id} stopped: {reason}; re-run the same "
                                        "command to go on")
                if reason is not None:  # nothing judged yet: said below as every call failing
                    break
        summary.calls = dict(con.execute(
            "SELECT status, count(*) FROM llm_calls WHERE job_id = ? GROUP BY 1 ORDER BY 1",
            [judge_id]).fetchall())
    finally:
        con.close()
    if todo and summary.judged == 0:
        raise PersonahubError(f"judge {judge_id}: every model call failed ({summary.failed} items; "
                              f"last error: {summary.last_error or 'no valid answer'}); re-run "
                              "the same command to go on")
    return summary

