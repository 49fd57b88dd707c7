"""Persona-driven synthesis jobs: N personas x one task -> ``synth_items`` rows.

A job draws a seeded uniform sample of N personas from the hub (all non-duplicates, or those
matching an SQL ``WHERE`` filter and/or carve conditions; ``personas/sampling.py``), asks the
model for one item per persona (concurrently, bounded by the client's concurrency), optionally
solves math/reasoning problems in a second call, flags MinHash near-duplicates within the job,
and writes each batch of results with its ``llm_calls`` rows in one transaction. The job id is
the resume key: ``resume=JOB`` reloads the stored configuration (seed and generation settings
included) and the personas the job drew (``synth_job_personas``), skipping those done; its
near-duplicate index is rebuilt from the items the job kept, in selection order, so a resumed
job flags exactly what an uninterrupted one does.
Starting a job whose settings match an unfinished one is refused (it would be a second copy);
``fresh=True`` marks the old one ``superseded`` and starts anew.

An answer that fails its task's semantic check (``agents.validators``) is not solved and not
written as an item: it goes to ``rejected`` with its reason, in the same transaction, and counts
as failed (a resume asks that persona again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from personahub.agents.llm.adaptive_limit import Concurrency
from personahub.agents.llm.cache import attach_cache
from personahub.agents.llm.client import (
    LLMSettings,
    LLMUnavailable,
    check_reachable,
    make_client,
    redact_spec,
)
from personahub.agents.llm.failures import call_error
from personahub.agents.llm.generation import Generation
from personahub.agents.llm.settings import parse_concurrency
from personahub.agents.llm.structured import check_setting
from personahub.agents.prompts.synthesis import (
    PROMPTING_MODES,
    demo_persona_messages,
    solve_messages,
    synthesis_messages,
    world_for_prompt,
)
from personahub.agents.synthesis_schemas import InferredPersona, Solution, content_of
from personahub.agents.tasks import synthesis_task, tasks
from personahub.agents.tasks.shipped_demos import builtin_name, builtin_text, is_builtin
from personahub.analysis.kept import kept_lines
from personahub.core import jobs_store
from personahub.core.commit import JobRef, ProgressHook, commit_batch, records_of
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.failures import (
    DEFAULT_MAX_FAILED_SHARE,
    ModelRejected,
    batch_failure,
    check_max_failed_share,
)
from personahub.core.interrupts import Stopped, interrupts_from_queries, signal_name
from personahub.core.jobs_store import (
    UNFINISHED,
    create_job,
    find_job,
    finish_job,
    list_jobs,
    mark_running,
    supersede_jobs,
)
from personahub.core.kernel import check_cache_mode
from personahub.core.loop import JobLoop, job_loop
from personahub.core.store import (
    DEFAULT_DB,
    connect,
    fetch_personas,
    insert_columns,
    scalar,
    transaction,
    upsert_personas,
)
from personahub.personas.importers import iter_personas
from personahub.personas.near_dup import NearDuplicateIndex
from personahub.personas.quality import QualityIssue, rejected_row, tally
from personahub.personas.record import Persona
from personahub.personas.sampling import SAMPLE_MODES, HubQuery, draw
from personahub.sim.executors import check_executor
from personahub.sim.executors.shards import clear_job_folder

DEFAULT_NPC_WORLD = "worlds/fantasy_village.md"
# What a job makes (as stored in ``synth_jobs.config``): two jobs alike in these are one job.
# The engine settings a resume may change (db, concurrency, timeout, batch size) are not in it.
JOB_IDENTITY = ("task", "n", "where", "carve", "sample", "prompting", "examples", "world", "solve",
                "with_assistant", "llm", "seed", "structured", "max_tokens", "temperature", "top_p")


@dataclass(frozen=True, kw_only=True)
class SynthOptions:
    """What a synthesis job does; stored (spec redacted) in ``synth_jobs.config``."""

    task: str
    n: int = 10
    where: str | None = None  # one SQL condition (--personas)
    carve: tuple[str, ...] = ()  # carve conditions KEY OP VALUE, all must hold (--carve)
    sample: str = "uniform"  # uniform (seeded by ``seed``) or head (hub order, as jobs did before)
    prompting: str = "zero-shot"
    examples: str | None = None
    world: str | None = None
    solve: bool = False
    with_assistant: bool = False
    db: str = DEFAULT_DB
    llm: str = "offline"
    seed: int = 0
    concurrency: Concurrency = 16
    timeout_s: float = 60.0
    batch_size: int = 64
    structured: str = "auto"  # how the schema is asked for (agents/llm/structured.py)
    max_tokens: int | None = None  # None: per output kind (agents/llm/generation.py)
    temperature: float | None = None
    top_p: float | None = None
    cache: str = "off"  # off | record | replay (agents/llm/cache.py); the caller's, not the job's
    rps: float | None = None  # model requests per second at most; the caller's, not the job's
    # where the model calls run (sim/executors/__init__.py); the caller's, not the job's: the rows are
    # the same whichever runs them
    executor: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray started for the job
    ray_workers: int | None = None  # Ray actors asking the model; None: one per cluster CPU
    # a batch whose failed share passes this (and has >= 5 items) stops the job (agents.failures)
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE

    def __post_init__(self) -> None:
        object.__setattr__(self, "concurrency", parse_concurrency(self.concurrency))
        check_setting(self.structured)
        check_max_failed_share(self.max_failed_share)
        check_cache_mode(self.cache)
        check_executor(self.executor, cache=self.cache, workers=self.ray_workers)
        if self.rps is not None and self.rps <= 0:
            raise PersonahubError(f"--rps must be > 0, got {self.rps}")
        Generation(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)
        task = synthesis_task(self.task)  # PersonahubError naming the tasks when unknown
        if self.prompting not in PROMPTING_MODES:
            raise PersonahubError(
                f"--prompting {self.prompting!r}: choose one of {', '.join(PROMPTING_MODES)}")
        if self.n < 1:
            raise PersonahubError(f"--n must be >= 1, got {self.n}")
        if self.batch_size < 1:
            raise PersonahubError(f"batch size must be >= 1, got {self.batch_size}")
        if self.prompting != "zero-shot" and not self.examples:  # the shipped demonstrations
            object.__setattr__(self, "examples", builtin_name(self.task))
        if self.solve and not task.synthesis_spec().solvable:
            solvable = sorted(t.name for t in tasks() if t.synthesis and t.synthesis.solvable)
            raise PersonahubError(f"--solve applies to {', '.join(solvable)} only")
        if self.sample not in SAMPLE_MODES:
            raise PersonahubError(f"--sample {self.sample!r}: choose one of {', '.join(SAMPLE_MODES)}")
        self.query().conditions()  # one line naming --personas or --carve and the bad part

    def query(self) -> HubQuery:
        """Which personas the job may draw from."""
        return HubQuery(where=self.where or None, carve=tuple(self.carve))


@dataclass
class SynthSummary:
    """What a job did, for the console and for tests."""

    job_id: str
    task: str
    prompting: str
    engine: str
    offline: bool
    selected: int = 0
    skipped_done: int = 0
    written: int = 0
    duplicates: int = 0
    failed: int = 0  # includes items rejected by the quality gate
    solved: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # quality-gate rejects by reason
    calls: dict[str, int] = field(default_factory=dict)
    db: str = DEFAULT_DB
    kept: list[str] = field(default_factory=list)  # the kept share per kind, in plain words


class Answer(NamedTuple):
    """One persona's answer: its content (None if the call failed), solution, the quality
    gate's verdict (set when the content was rejected), and the results of the calls it took
    (whose records and cache entries the batch commit writes)."""

    persona: Persona
    content: dict[str, Any] | None
    solution: dict[str, Any] | None = None
    rejected: QualityIssue | None = None
    calls: tuple[StructuredResult[Any], ...] = ()

    @property
    def records(self) -> list[CallRecord]:
        """The call records of this persona's calls."""
        return records_of(self.calls)

    @property
    def cache_entries(self) -> list[CacheEntry]:
        """The cache entries this persona's calls recorded."""
        return [entry for call in self.calls for entry in call.cache_entries]


@dataclass(frozen=True)
class Demo:
    """One demonstration: its text and (for persona-few-shot) its persona."""

    text: str
    persona: str | None = None


def new_job_id() -> str:
    """A fresh job id: ``synth-`` + UTC time + random suffix (sortable, unique)."""
    return "synth-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def load_examples(path: str | Path) -> list[Demo]:
    """Demonstrations from JSONL ``{"text": ..., "persona"?: ...}`` or a Persona Hub synthesis
    file (``input persona`` + ``synthesized text``: persona-enhanced demonstrations), or the
    shipped ones when ``path`` is ``builtin:<task>``; errors name file:line."""
    if isinstance(path, str) and is_builtin(path):
        return _parse_examples(builtin_text(path).splitlines(), path)
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PersonahubError(f"--examples {path}: {exc.strerror or exc}") from exc
    return _parse_examples(lines, path)


def _parse_examples(lines: list[str], path: str | Path) -> list[Demo]:
    """The demonstrations of a file's lines (``path`` names the file in errors)."""
    demos = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PersonahubError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if isinstance(record, dict) and "synthesized text" in record:
            record = _personahub_demo(record)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) \
                or not record["text"].strip():
            raise PersonahubError(f"{path}:{number}: expected an object with a non-empty 'text' "
                                  "(or a Persona Hub row with 'synthesized text')")
        persona = record.get("persona")
        if persona is not None and (not isinstance(persona, str) or not persona.strip()):
            raise PersonahubError(f"{path}:{number}: 'persona' must be a non-empty string")
        demos.append(Demo(record["text"].strip(), persona.strip() if persona else None))
    if not demos:
        raise PersonahubError(f"--examples {path}: no demonstrations in the file")
    return demos


def _personahub_demo(row: dict[str, Any]) -> dict[str, Any]:
    """A Persona Hub row as ``{"text", "persona"}``: a tool's text is JSON text inside a JSON
    string (as released), so that one string layer comes off and the demo shows the tool."""
    text = row.get("synthesized text")
    if isinstance(text, str) and text.startswith('"'):
        try:
            inner = json.loads(text)
        except json.JSONDecodeError:
            inner = None
        if isinstance(inner, str):
            text = inner
    return {"text": text, "persona": row.get("input persona")}


def load_world(options: SynthOptions) -> str:
    """The world text for the prompt (npc defaults to the shipped fantasy village)."""
    if options.world:
        path = Path(options.world)
    elif synthesis_task(options.task).synthesis_spec().needs_world:
        path = Path(str(resources.files("personahub.scenarios").joinpath(DEFAULT_NPC_WORLD)))
    else:
        return ""
    try:
        return world_for_prompt(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PersonahubError(f"--world {path}: {exc.strerror or exc}") from exc


def select_personas(con: duckdb.DuckDBPyConnection, where: str | None, n: int, *,
                    carve: Sequence[str] = (), seed: int = 0, sample: str = "uniform") -> list[Persona]:
    """``n`` non-duplicate personas matching ``where`` (SQL) and ``carve``: a seeded uniform
    sample in sample-key order (``head``: the first in hub order). None matching is an error."""
    return draw(con, HubQuery(where=where or None, carve=tuple(carve)), n, seed=seed, mode=sample)


def job_personas(con: duckdb.DuckDBPyConnection, job_id: str) -> list[Persona] | None:
    """The personas job ``job_id`` drew, in its order (None for a job that stored none)."""
    ids = [r[0] for r in con.execute("SELECT persona_id FROM synth_job_personas WHERE job_id = ? "
                                     "ORDER BY position", [job_id]).fetchall()]
    if not ids:
        return None
    found = {p.persona_id: p for p in fetch_personas(con, ids)}
    return [found[i] for i in ids if i in found]


def _store_selection(con: duckdb.DuckDBPyConnection, job_id: str, personas: Sequence[Persona]) -> None:
    insert_columns(con, "synth_job_personas", {
        "job_id": [job_id] * len(personas), "position": list(range(len(personas))),
        "persona_id": [p.persona_id for p in personas]})


def _seed_hub_if_empty(con: duckdb.DuckDBPyConnection) -> int:
    """Import the shipped seed personas into an empty hub, so a fresh database just works."""
    if scalar(con, "SELECT count(*) FROM personas"):
        return 0
    path = resources.files("personahub.personas").joinpath("data/seed_personas.jsonl")
    with transaction(con):
        return upsert_personas(con, iter_personas(str(path), source="seed"))


def item_id_for(job_id: str, persona_id: str) -> str:
    """Stable item id per (job, persona), so a retried batch cannot create twins."""
    return "s" + hashlib.sha1(f"{job_id}\0{persona_id}".encode()).hexdigest()[:15]


class SynthesisAsker:
    """What asking the model for a batch needs (options, demonstrations, world, client) and
    nothing of the database: the part of a job a Ray worker rebuilds (``sim.executor_ray``)."""

    def __init__(self, client: StructuredCaller, options: SynthOptions, job_id: str, world: str,
                 demos: list[Demo]) -> None:
        self.client = client
        self.options = options
        self.job_id = job_id
        self.world = world
        self.demos = demos
        self.task = synthesis_task(options.task)
        self.schema = self.task.synthesis_schema(with_assistant=options.with_assistant)

    async def _one(self, persona: Persona) -> Answer:
        opts = self.options
        messages = synthesis_messages(
            opts.task, persona.text, mode=opts.prompting,
            examples=[(d.text, d.persona) for d in self.demos], world=self.world,
            with_assistant=opts.with_assistant)
        result = await self.client.structured(self.schema, messages, purpose=f"synth:{opts.task}",
                                              persona_id=persona.persona_id, check=self.task.gate)
        if result.value is None:
            return Answer(persona, None, calls=(result,))
        content = content_of(result.value)
        issue = self.task.check(content)
        if issue is not None:  # no solving junk
            return Answer(persona, content, rejected=issue, calls=(result,))
        solution = None
        if opts.solve:
            solved = await self.client.structured(
                Solution, solve_messages(self.task.text(content)),
                purpose=f"solve:{opts.task}", persona_id=persona.persona_id)
            solution = solved.value.model_dump() if solved.value is not None else None
            return Answer(persona, content, solution, calls=(result, solved))
        return Answer(persona, content, calls=(result,))

    async def run_batch(self, batch: Sequence[Persona]) -> list[Answer]:
        """All of a batch's personas concurrently (the client bounds calls in flight)."""
        return list(await asyncio.gather(*(self._one(p) for p in batch)))


class SynthesisJob(SynthesisAsker):
    """One job's state: the asker, the near-duplicate index and the database it commits to."""

    def __init__(self, con: duckdb.DuckDBPyConnection, client: StructuredCaller, options: SynthOptions,
                 job_id: str, world: str, demos: list[Demo]) -> None:
        super().__init__(client, options, job_id, world, demos)
        self.con = con
        self.index = NearDuplicateIndex()

    def reload_index(self, personas: Iterable[Persona] = ()) -> int:
        """Index the items a resumed job already kept; returns how many items are written.

        Only kept items: an uninterrupted job never indexes an item it flagged, so neither may
        a resume (a later item close to a flagged one but not to its original would be flagged
        only after a resume). In the order the job asked its ``personas``, which is the order an
        uninterrupted job indexed them in; items of personas no longer selected go last.
        """
        rows = self.con.execute(
            "SELECT item_id, persona_id, text, is_duplicate FROM synth_items WHERE job_id = ? "
            "ORDER BY created_at, item_id", [self.job_id]).fetchall()
        position = {p.persona_id: i for i, p in enumerate(personas)}
        kept = sorted((r for r in rows if not r[3]), key=lambda r: position.get(r[1], len(position)))
        self.index.add_many([(item_id, text) for item_id, _, text, _ in kept])
        return len(rows)

    def write_batch(self, results: Sequence[Answer], summary: SynthSummary) -> list[str | None]:
        """Flag near-duplicates and write the batch's items, rejected answers and call records
        atomically; returns the error of each failed item (for the failure policy)."""
        rows: list[dict[str, Any]] = []
        rejected = []
        errors: list[str | None] = []
        for persona, content, solution, issue, calls in results:
            if content is None:
                summary.failed += 1
                errors.append(call_error(calls[0]) if calls else "no valid answer")
                continue
            item_id = item_id_for(self.job_id, persona.persona_id)
            if issue is not None:
                summary.failed += 1
                errors.append(f"quality gate: {issue}")
                rejected.append(rejected_row("synthesis", issue, content, key=item_id,
                                             job_id=self.job_id, persona_id=persona.persona_id,
                                             kind=self.options.task))
                continue
            summary.solved += solution is not None
            rows.append({
                "item_id": item_id, "job_id": self.job_id, "persona_id": persona.persona_id,
                "task": self.options.task, "prompting": self.options.prompting,
                "model": self.client.label, "content": content, "text": self.task.text(content),
                "solution": solution, "created_at": _now(),
            })
        # one index call for the batch: it checks the items in order, each against the ones
        # before it too, so the flags are those of one call per item (which cost the driver
        # most of its time per batch)
        originals = self.index.check_and_add_many([(r["item_id"], r["text"]) for r in rows])
        for row, original in zip(rows, originals, strict=True):
            row["is_duplicate"], row["duplicate_of"] = original is not None, original
        summary.duplicates += sum(original is not None for original in originals)
        commit_batch(self.con, JobRef("synthesis", self.job_id, run_id=self.job_id), self.client,
                     {"synth_items": rows, "rejected": rejected}, results)
        summary.written += len(rows)
        summary.rejected = tally(summary.rejected, (r["reason"] for r in rejected))
        return errors


async def infer_personas(client: StructuredCaller,
                         demos: list[Demo]) -> tuple[list[Demo], list[StructuredResult[Any]]]:
    """Give every demonstration without a persona one inferred by a text-to-persona call;
    returns the demonstrations and the calls' results (their records are the job's)."""
    async def fill(demo: Demo) -> tuple[Demo, StructuredResult[Any] | None]:
        if demo.persona:
            return demo, None
        result = await client.structured(InferredPersona, demo_persona_messages(demo.text),
                                         purpose="text_to_persona")
        if result.value is None:
            raise PersonahubError("--examples: text-to-persona failed for a demonstration "
                                  f"starting {demo.text[:40]!r}; give it a 'persona'")
        return replace(demo, persona=result.value.persona), result

    filled = await asyncio.gather(*(fill(d) for d in demos))
    return [demo for demo, _ in filled], [result for _, result in filled if result is not None]


def _config(options: SynthOptions, demos: list[Demo]) -> dict[str, Any]:
    config = asdict(options)
    config["llm"] = redact_spec(options.llm)
    config["demos"] = [asdict(d) for d in demos]
    return config


def _resume_options(con: duckdb.DuckDBPyConnection, job_id: str,
                    base: SynthOptions | None) -> tuple[SynthOptions, list[Demo]]:
    job = find_job(con, job_id)
    if job is None or job.kind != "synthesis":
        raise PersonahubError(f"--resume {job_id}: no such synthesis job in the database")
    config = dict(job.config)
    demos = [Demo(**d) for d in config.pop("demos", [])]
    config.setdefault("sample", "head")  # a job from before sampling took the hub's first N
    config["carve"] = tuple(config.get("carve") or ())
    if base is not None:  # the caller's engine settings win; what to make stays the job's
        for key in ("llm", "db", "concurrency", "timeout_s", "batch_size", "cache", "rps",
                    "executor", "ray_address", "ray_workers", "max_failed_share"):
            config[key] = getattr(base, key)
    if base is not None and base.task != config["task"]:
        raise PersonahubError(f"--resume {job_id}: the job's task is {config['task']}, "
                              f"not {base.task}")
    known = set(SynthOptions.__dataclass_fields__)
    return SynthOptions(**{k: v for k, v in config.items() if k in known}), demos


def job_options(db: str | Path, job_id: str) -> SynthOptions:
    """The options job ``job_id`` was started with (seed and generation settings included),
    so a resume builds its model client as the job did."""
    con = connect(db, read_only=True)
    try:
        return _resume_options(con, job_id, None)[0]
    except duckdb.CatalogException as exc:  # an old database has no job tables
        raise PersonahubError(f"--resume {job_id}: no synthesis jobs in {db}") from exc
    finally:
        con.close()


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in JOB_IDENTITY}


def unfinished_twins(con: duckdb.DuckDBPyConnection, options: SynthOptions) -> list[str]:
    """Unfinished jobs (running, interrupted, failed) started with the same settings, newest first."""
    mine = _identity(json.loads(json.dumps(_config(options, []))))  # as stored: tuples are lists
    return [job.job_id for job in list_jobs(con, kind="synthesis", status=UNFINISHED)
            if _identity(job.config) == mine]


def run_synthesis(
    options: SynthOptions,
    *,
    resume: str | None = None,
    client: StructuredCaller | None = None,
    progress: ProgressHook | None = None,
    on_ready: Callable[[], None] | None = None,
    fresh: bool = False,
    on_start: Callable[[str], None] | None = None,
) -> SynthSummary:
    """Run (or resume) a synthesis job; returns the summary or raises PersonahubError.

    ``on_ready`` is called once the options, examples, world and persona selection are found
    good, before the job is recorded (a command announces the job only then). A new job whose
    settings match an unfinished one is refused with the way to resume it; ``fresh`` marks such
    jobs ``superseded`` and starts anew. ``on_start(job_id)`` is called once the job is recorded
    (or marked running again), before its first model call.
    """
    con = connect(options.db)
    try:
        if resume:
            options, demos = _resume_options(con, resume, options)
        else:
            twins = unfinished_twins(con, options)
            if twins and not fresh:
                raise PersonahubError(f"job {twins[0]} with the same settings is unfinished: resume it "
                                      f"with personahub synthesize --resume {twins[0]} --db "
                                      f"{options.db}, or pass --fresh")
            # a few-shot mode without --examples has builtin:<task> (__post_init__)
            demos = (load_examples(options.examples)
                     if options.examples and options.prompting != "zero-shot" else [])
        world = load_world(options)
        if client is None:
            built = make_client(LLMSettings(spec=options.llm, seed=options.seed,
                                            concurrency=options.concurrency,
                                            timeout_s=options.timeout_s,
                                            structured=options.structured,  # type: ignore[arg-type]
                                            max_tokens=options.max_tokens,
                                            temperature=options.temperature, top_p=options.top_p,
                                            rps=options.rps))
            if options.cache != "replay":  # a replay calls no model
                check_reachable(built)
            client = built
        stored = job_personas(con, resume) if resume else None
        if stored is not None:
            personas = stored  # what the job drew, whatever the hub gained or flagged since
        else:
            if not options.where and not options.carve:
                _seed_hub_if_empty(con)
            personas = select_personas(con, options.where, options.n, carve=options.carve,
                                       seed=options.seed, sample=options.sample)
        if not personas:
            raise PersonahubError(f"--resume {resume}: the personas the job drew are gone from "
                                  f"--db {options.db}")
        if options.executor == "ray":  # before the job is recorded: a refusal leaves nothing
            from personahub.sim.executors.ray_batches import check_ray_client

            check_ray_client(client)
        if on_ready is not None:
            on_ready()
        job_id = resume or new_job_id()
        if not resume and fresh:
            twins = unfinished_twins(con, options)
            supersede_jobs(con, twins)
        attach_cache(con, client, options.cache)
        with job_loop() as loop:
            return _run(con, client, options, job_id, world, demos, personas, bool(resume),
                        loop, progress, on_start)
    finally:
        con.close()


def _run(con: duckdb.DuckDBPyConnection, client: StructuredCaller, options: SynthOptions, job_id: str,
         world: str, demos: list[Demo], personas: list[Persona], resuming: bool,
         loop: JobLoop, progress: ProgressHook | None,
         on_start: Callable[[str], None] | None = None) -> SynthSummary:
    if not resuming:
        inferred: list[StructuredResult[Any]] = []
        if options.prompting == "persona-few-shot":
            demos, inferred = loop.run(infer_personas(client, demos))
        def record() -> None:
            create_job(con, job_id, "synthesis", _config(options, demos), seed=options.seed)
            _store_selection(con, job_id, personas)

        commit_batch(con, JobRef("synthesis", job_id, run_id=job_id), client, {"synth_jobs": [{
            "job_id": job_id, "task": options.task, "prompting": options.prompting,
            "n": options.n, "llm": client.label,
        }]}, inferred,  # the demonstrations' inferred personas
            then=record)
    else:
        mark_running(con, job_id)
    summary = SynthSummary(job_id=job_id, task=options.task, prompting=options.prompting,
                           engine=client.label, offline=client.is_offline,
                           selected=len(personas), db=str(options.db))
    try:
        with interrupts_from_queries():
            if on_start is not None:
                on_start(job_id)
            job = SynthesisJob(con, client, options, job_id, world, demos)
            job.reload_index(personas)
            done = {r[0] for r in con.execute("SELECT persona_id FROM synth_items WHERE job_id = ?",
                                              [job_id]).fetchall()}
            todo = [p for p in personas if p.persona_id not in done]
            summary.skipped_done = len(personas) - len(todo)
            batches = [todo[start:start + options.batch_size]
                       for start in range(0, len(todo), options.batch_size)]
            asked = summary.skipped_done
            # in batch order whatever runs the calls: the commit (and the near-duplicate index) sees
            # the same batches in the same order as a local job
            for number, (batch, results) in enumerate(
                    zip(batches, _answers(job, batches, loop), strict=True), 1):
                errors = job.write_batch(results, summary)
                asked += len(batch)
                if progress:
                    progress("synthesis", asked, len(personas))
                reason = batch_failure(f"batch {number}", len(batch), errors,
                                       [r for answer in results for r in answer.records],
                                       options.max_failed_share)
                if reason is not None:  # the batch is committed: the job stops resumable
                    raise ModelRejected(f"synthesis job {job_id} stopped: {reason}; resume with "
                                        f"personahub synthesize --resume {job_id} --db {options.db}")
    except KeyboardInterrupt as exc:
        how = signal_name(exc)
        _finish(con, job_id, "interrupted", f"interrupted by {how}")
        raise Stopped(f"job {job_id} interrupted by {how} ({summary.skipped_done + summary.written} "
                      f"of {len(personas)} items written); resume with personahub synthesize "
                      f"--resume {job_id} --db {options.db}", exc) from None
    except BaseException as exc:
        _finish(con, job_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])
        if isinstance(exc, ModelRejected | LLMUnavailable) and "--resume" not in str(exc):
            raise PersonahubError(f"synthesis job {job_id} stopped: {exc}; resume with personahub "
                                  f"synthesize --resume {job_id} --db {options.db}") from None
        if isinstance(exc, PersonahubError):
            raise
        raise PersonahubError(f"synthesis job {job_id} failed: {type(exc).__name__}: {exc}; "
                              f"resume with --resume {job_id}") from exc
    asked = summary.selected - summary.skipped_done
    if asked and not summary.written and not summary.skipped_done:  # nothing kept, ever
        error = jobs_store.most_common_job_error(con, "synthesis", job_id)
        _finish(con, job_id, "failed", f"kept none of {asked} items: {error}"[:1000])
        raise PersonahubError(f"synthesis job {job_id}: kept none of its {asked} items (most "
                              f"often: {error}); resume with personahub synthesize --resume "
                              f"{job_id} --db {options.db}")
    _finish(con, job_id, "finished" if not summary.failed else "partial", None)
    clear_job_folder(options.db, job_id)  # every answer is committed (a Ray attempt's leftovers too)
    rows = con.execute("SELECT status, count(*) FROM llm_calls WHERE run_id = ? GROUP BY 1 "
                       "ORDER BY 1", [job_id]).fetchall()
    summary.calls = {status: n for status, n in rows}
    summary.kept = kept_lines(con, run_id=job_id)
    return summary


def _answers(job: SynthesisJob, batches: Sequence[Sequence[Persona]],
             loop: JobLoop) -> Iterator[list[Answer]]:
    """Each batch's answers, in batch order: on the job's loop, or on Ray workers."""
    if job.options.executor == "ray":
        from personahub.sim.executors.ray_batches import synthesis_answers

        yield from synthesis_answers(job, batches)
        return
    for batch in batches:
        yield loop.run(job.run_batch(batch))


def _finish(con: duckdb.DuckDBPyConnection, job_id: str, status: str, error: str | None) -> None:
    finish_job(con, job_id, status, error)
