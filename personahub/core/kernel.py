"""The job kernel: every job kind is a spec, and one runner runs any of them.

A spec says what a job checks, plans, asks and commits; the kernel does the rest (resume, client,
ordered commits, failure policy, interrupts, progress, child jobs) once for all kinds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Never, Protocol, TypeAlias, TypeVar, cast

import duckdb
from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd

from personahub.core import call_log, call_spill, jobs_store
from personahub.core.commit import (
    JobRef,
    ProgressHook,
    commit_batch,
    commit_spilled,
    not_kept_call_ids,
    records_of,
)
from personahub.core.contracts import CACHE_MODES, CarriesCalls, StructuredCaller, StructuredResult
from personahub.core.diskfull import DiskFull, is_disk_full, mark, mark_unmarked, what_filled
from personahub.core.engine_options import renamed_fields
from personahub.core.errors import AwaitingResults, PersonahubError, ResumableStop, UsageError
from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE, ModelRejected, batch_failure
from personahub.core.interrupts import Stopped, interrupts_from_queries, signal_name
from personahub.core.json_types import JsonObject
from personahub.core.live_jobs import running_here
from personahub.core.loop import JobLoop, job_loop
from personahub.core.store import connect, insert_rows, transaction

C = TypeVar("C")
B = TypeVar("B")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
B_contra = TypeVar("B_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
S_co = TypeVar("S_co", covariant=True)
C2 = TypeVar("C2")
M = TypeVar("M", bound=BaseModel)


def engine(default: object = dataclasses.MISSING, *, identity: bool = False, secret: bool = False,
           default_factory: Callable[[], object] | None = None) -> Any:
    """Declare a config field on how the job runs, not what it makes: a resume takes the caller's value. An
    identity one still tells jobs apart; a secret one is stored redacted.
    """
    meta = {"engine": True, "identity": identity, "secret": secret}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _fields(config_type: type) -> tuple[dataclasses.Field[object], ...]:
    return dataclasses.fields(config_type)


def engine_fields(config_type: type) -> frozenset[str]:
    return frozenset(f.name for f in _fields(config_type) if f.metadata.get("engine"))


def identity_fields(config_type: type) -> tuple[str, ...]:
    """Return the fields that say what a job makes."""
    return tuple(f.name for f in _fields(config_type)
                 if not f.metadata.get("engine") or f.metadata.get("identity"))


def check_cache_mode(mode: str) -> None:
    if mode not in CACHE_MODES:
        raise UsageError(f"--cache {mode!r}: use one of {', '.join(CACHE_MODES)}")


class Asker(Protocol[B_contra, R_co]):
    """Asks the model for one batch; picklable and database-free, so a Ray worker can rebuild it."""

    async def run_batch(self, batch: B_contra, caller: StructuredCaller) -> R_co: ...


I_contra = TypeVar("I_contra", contravariant=True)
A = TypeVar("A")


class ShardCodec(Protocol[I_contra, A]):
    """How an asker of independent batches ships them to workers as plain data, keyed stably across
    resumes.
    """

    def key(self, item: I_contra) -> str:
        ...

    def dump(self, answer: A) -> str:
        ...

    def calls(self, answer: A) -> Sequence[StructuredResult[BaseModel]]:
        """Return the calls the answer took, whose records and cache entries travel with it."""
        ...

    def load(self, item: I_contra, value: str, calls: list[StructuredResult[BaseModel]]) -> A:
        ...


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch (or a job's start) writes in one transaction, and its counts."""

    rows: Mapping[str, Sequence[Mapping[str, object]]] = field(default_factory=dict)
    calls: Sequence[CarriesCalls] = ()
    asked: int = 0
    kept: int = 0
    errors: Sequence[str | None] = ()
    then: Callable[[], object] | None = None
    label: str | None = None
    progress: tuple[str, int, int | None] | None = None


class Models(Protocol):
    """The model seam as the kernel sees it."""

    def build(self, settings: Any) -> StructuredCaller:
        ...

    def check_reachable(self, client: StructuredCaller) -> None:
        """Fail fast when no endpoint answers."""
        ...

    def attach_cache(self, con: duckdb.DuckDBPyConnection, client: StructuredCaller,
                     mode: str) -> None:
        ...

    def redact(self, spec: str) -> str:
        ...


class Executor(Protocol):
    """Where a job's batches are asked (local or Ray); the kernel still commits in order."""

    name: str

    def check(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> None:
        """Refuse early a job this executor cannot run."""
        ...

    def session(self, ctx: JobContext[C]) -> AbstractContextManager[None]:
        ...

    def batches(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C], asker: Asker[B, R],
                plan: Iterator[B]) -> Iterator[tuple[B, R]]:
        """Each planned batch with its answers, in plan order."""
        ...

    def finish(self, ctx: JobContext[C]) -> None:
        ...


class JobSpec(Protocol[C, B, R, S_co]):
    """A job kind; SpecBase gives the optional parts defaults."""

    @property
    def kind(self) -> str:
        ...

    @property
    def config_type(self) -> type[C]:
        ...

    @property
    def independent_batches(self) -> bool:
        """True: every batch is planned ahead, so an executor may ship them at once."""
        ...

    @property
    def refuses_twins(self) -> bool:
        """True: a new job is refused while an unfinished twin exists."""
        ...

    @property
    def noun(self) -> str:
        ...

    @property
    def unit(self) -> str:
        ...

    def model_settings(self, config: C) -> object | None: ...
    def prepare(self, ctx: JobContext[C]) -> None: ...
    def start(self, ctx: JobContext[C]) -> BatchOutcome: ...
    def plan(self, ctx: JobContext[C]) -> Iterator[B]: ...
    def asker(self, ctx: JobContext[C]) -> Asker[B, R]: ...
    def commit(self, ctx: JobContext[C], batch: B, result: R) -> BatchOutcome: ...
    def summary(self, ctx: JobContext[C]) -> S_co: ...
    def new_id(self) -> str: ...
    def job_id_for(self, config: C) -> str: ...
    def belongs_to(self, config: C) -> str | None: ...
    def upgrade(self, stored: JsonObject) -> JsonObject: ...
    def resume_hint(self, job_id: str, db: Path) -> str: ...
    def stop_note(self, ctx: JobContext[C]) -> str: ...
    def report(self, summary: Any, db: Path) -> list[str]: ...
    def label(self, config: Mapping[str, object]) -> str: ...
    def end_status(self, ctx: JobContext[C], asked: int, kept: int) -> str: ...
    def nothing_kept(self, ctx: JobContext[C], asked: int) -> str: ...
    def failure_text(self, ctx: JobContext[C], exc: BaseException) -> str: ...
    def running(self, ctx: JobContext[C]) -> AbstractContextManager[None]: ...
    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame | None: ...
    def sample(self, con: duckdb.DuckDBPyConnection, job_id: str, n: int) -> pd.DataFrame | None: ...


class SpecBase(Generic[C, B, R, S]):
    """Defaults for the optional parts of a job spec."""

    kind: ClassVar[str]
    config_type: type[C]
    independent_batches: ClassVar[bool] = False
    refuses_twins: ClassVar[bool] = True
    noun: ClassVar[str] = "job"
    unit: ClassVar[str] = "items"
    id_prefix: ClassVar[str] = ""
    # False for a kind whose progress counts something else
    progress_per_answer: ClassVar[bool] = True
    # False for a kind whose calls are not part of its run (a judge)
    calls_in_run: ClassVar[bool] = True

    def model_settings(self, config: C) -> object | None:
        """Return the model settings (None: the job calls no model)."""
        return None

    def prepare(self, ctx: JobContext[C]) -> None:
        """Check inputs before anything is recorded."""

    def start(self, ctx: JobContext[C]) -> BatchOutcome:
        """Return the job's own rows, written with its jobs row."""
        return BatchOutcome()

    def new_id(self) -> str:
        """Sortable and unique: a prefix, the UTC time and a random suffix."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-")
        return f"{self.id_prefix or self.kind}-{stamp}{uuid.uuid4().hex[:6]}"

    def job_id_for(self, config: C) -> str:
        """Return a new job's id (a judge's follows from its settings)."""
        return self.new_id()

    def belongs_to(self, config: C) -> str | None:
        """Return the run or job this kind works on, or None."""
        return None

    def upgrade(self, stored: JsonObject) -> JsonObject:
        return stored

    def resume_hint(self, job_id: str, db: Path) -> str:
        return f"personahub resume {job_id} --db {db}"

    def stop_note(self, ctx: JobContext[C]) -> str:
        return ""

    def report(self, summary: S, db: Path) -> list[str]:
        return [f"{self.noun}: {summary}"]

    def label(self, config: Mapping[str, object]) -> str:
        return ""

    def end_status(self, ctx: JobContext[C], asked: int, kept: int) -> str:
        """Return the status of a job that ran to its end and kept something."""
        return "finished" if kept >= asked else "partial"

    def nothing_kept(self, ctx: JobContext[C], asked: int) -> str:
        return f"kept none of its {asked} {self.unit}"

    def failure_text(self, ctx: JobContext[C], exc: BaseException) -> str:
        return f"failed: {type(exc).__name__}: {exc}"

    def running(self, ctx: JobContext[C]) -> AbstractContextManager[None]:
        """Return a context held while the batches run."""
        return nullcontext()

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame | None:
        """Return what a job of this kind made, as a DataFrame, for its handle's ``items()``; None: the
        kind makes nothing a handle lists."""
        return None

    def sample(self, con: duckdb.DuckDBPyConnection, job_id: str, n: int) -> pd.DataFrame | None:
        """Return a few of a job's rows, the same ones each time, for its handle's card; None: the first
        n of ``items``."""
        return None


@dataclass(frozen=True)
class JobResult(Generic[S]):
    """How a job ended."""

    job_id: str
    status: str
    summary: S
    ran: bool = True


ExecutorChoice = Executor | Callable[[object], Executor]


#: called with the connection and the new job's id inside the transaction that records the job
RecordHook = Callable[[duckdb.DuckDBPyConnection, str], object]


@dataclass(frozen=True)
class _Env:

    db: Path
    con: duckdb.DuckDBPyConnection
    loop: JobLoop
    models: Models
    choice: ExecutorChoice
    progress: ProgressHook | None = None
    on_ready: Callable[[StructuredCaller | None], None] | None = None
    on_start: Callable[[str, bool], None] | None = None
    parent: str | None = None
    client: StructuredCaller | None = None
    on_record: RecordHook | None = None


@dataclass(eq=False)
class JobContext(Generic[C]):
    """One job as its spec sees it."""

    spec: JobSpec[C, Any, Any, Any]
    config: C
    job_id: str
    resumed: bool
    stored: dict[str, Any]
    env: _Env
    client: StructuredCaller | None = None
    state: Any = None
    done_before: int = 0
    total: int | None = None
    status: str = "running"
    spill: call_spill.CallSpill | None = None
    spilled_ids: frozenset[str] = frozenset()
    asked: int = 0
    asker: Asker[Never, object] | None = None  # the asker this run drives (set by the kernel)
    executor: Executor = field(init=False)

    def __post_init__(self) -> None:
        choice = self.env.choice
        self.executor = (choice if hasattr(choice, "batches")  # type: ignore[assignment]
                         else choice(self.config))

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.env.con

    @property
    def db(self) -> Path:
        return self.env.db

    @property
    def parent_id(self) -> str | None:
        """The job this one runs under, or the one it works on."""
        return self.env.parent or self.spec.belongs_to(self.config)

    @property
    def ref(self) -> JobRef:
        """How the job's model calls are tagged."""
        kind = self.spec.kind
        in_run = getattr(self.spec, "calls_in_run", True)
        run_id = self.job_id if kind == "run" else self.parent_id if in_run else None
        return JobRef(kind, self.job_id, run_id=run_id)

    @property
    def caller(self) -> StructuredCaller:
        if self.client is None:
            raise PersonahubError(f"{self.spec.kind}: this job calls no model")
        return self.client

    def run(self, coro: Coroutine[object, Never, T]) -> T:
        return self.env.loop.run(coro)

    def report(self, phase: str, done: int, total: int | None) -> None:
        if self.env.progress is not None:
            self.env.progress(phase, done, total)

    def counting(self, caller: StructuredCaller, batch: object) -> StructuredCaller:
        """Return the client, reporting progress per answered call."""
        if (self.env.progress is None or not getattr(self.spec, "progress_per_answer", True)
                or not isinstance(batch, Sequence)):
            return caller
        return cast(StructuredCaller, _Counting(caller, self, len(batch)))

    def run_child(self, spec: JobSpec[C2, B, R, S], config: C2 | Mapping[str, object], *,
                  resume: str | None = None) -> JobResult[S]:
        """Run a child job on this job's connection, loop, client and executor."""
        child = dataclasses.replace(self.env, parent=self.job_id, client=self.client,
                                    choice=self.executor, on_ready=None, on_start=None,
                                    on_record=None)
        return _run(spec, config, child, resume=resume, fresh=False)


class _Counting(Generic[C]):
    """A model client that reports progress as each call is answered."""

    def __init__(self, caller: StructuredCaller, ctx: JobContext[C], size: int) -> None:
        self._caller, self._ctx, self._size, self._answered = caller, ctx, size, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._caller, name)

    def alongside(self, client: StructuredCaller) -> StructuredCaller:
        """Another client a batch asks instead (a job of several models), counted the same way
        and run where this caller runs."""
        inner = getattr(self._caller, "alongside", None)
        return cast(StructuredCaller, _Counting(inner(client) if inner is not None else client,
                                                self._ctx, self._size))

    async def structured(self, schema: type[M], messages: list[object], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[M], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[M]:
        try:
            return await self._caller.structured(schema, messages, purpose=purpose,
                                                 persona_id=persona_id, step=step, check=check,
                                                 sample=sample, max_tokens=max_tokens)
        finally:
            self._answered += 1
            ctx = self._ctx
            ctx.report(ctx.spec.kind, ctx.done_before + ctx.asked + min(self._answered, self._size),
                       ctx.total)


#: a spec of some kind, its config, batch, result and summary types unknown here: the registry
#: holds kinds of every type, and a caller who looks one up knows its types no more than this
SomeSpec: TypeAlias = "JobSpec[Any, Any, Any, Any]"

SP = TypeVar("SP", bound=SomeSpec)

_REGISTRY: dict[str, SomeSpec] = {}


def register(spec: SP) -> SP:
    """Make a kind known to the jobs and resume commands."""
    known = _REGISTRY.get(spec.kind)
    if known is not None and type(known) is not type(spec):
        raise PersonahubError(f"job kind {spec.kind!r} is registered already ({type(known).__name__})")
    _REGISTRY[spec.kind] = spec
    return spec


def spec_for(kind: str) -> SomeSpec | None:
    return _REGISTRY.get(kind)


def registered() -> dict[str, SomeSpec]:
    return dict(_REGISTRY)


def run_job(spec: JobSpec[C, B, R, S], config: C | Mapping[str, object], db: str | Path, *,
            models: Models, executor: ExecutorChoice, resume: str | None = None,
            fresh: bool = False,
            progress: ProgressHook | None = None,
            on_ready: Callable[[StructuredCaller | None], None] | None = None,
            on_start: Callable[[str, bool], None] | None = None,
            con: duckdb.DuckDBPyConnection | None = None,
            on_record: RecordHook | None = None) -> JobResult[S]:
    """Run (or resume) one job of a spec in a database; ``on_record`` writes what belongs with a
    new job's row in its transaction (an experiment notes its arm run), so no kill falls between."""
    if con is not None:
        with job_loop() as loop:
            env = _Env(Path(db), con, loop, models, executor, progress, on_ready, on_start,
                       on_record=on_record)
            return _run(spec, config, env, resume=resume, fresh=fresh)
    created = not Path(db).exists()
    empty = False
    with job_loop() as loop:
        con = connect(db)
        try:
            env = _Env(Path(db), con, loop, models, executor, progress, on_ready, on_start,
                       on_record=on_record)
            return _run(spec, config, env, resume=resume, fresh=fresh)
        except DiskFull as stop:  # a fresh connection: its own may have failed
            con.close()
            mark_unmarked(Path(db), stop)
            raise
        except BaseException:
            empty = created and _nothing_recorded(con)
            raise
        finally:
            con.close()
            if empty:
                _remove_database(Path(db))


def _nothing_recorded(con: duckdb.DuckDBPyConnection) -> bool:
    """Return True when the database holds no job (False when unreadable: keep it)."""
    try:
        return not jobs_store.list_jobs(con)
    except duckdb.Error:
        return False


def _remove_database(db: Path) -> None:
    """Remove a database this call created and left empty."""
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)


def _run(spec: JobSpec[C, B, R, S], config: C | Mapping[str, object], env: _Env, *,
         resume: str | None, fresh: bool) -> JobResult[S]:
    ctx = _open(spec, config, env, resume)
    twins = [] if resume or not spec.refuses_twins else _twins(spec, ctx)
    if twins and not fresh:
        raise PersonahubError(f"job {twins[0]} with the same settings is unfinished: resume it "
                              f"with {spec.resume_hint(twins[0], env.db)}, or pass --fresh")
    spec.prepare(ctx)
    ctx.client = env.client if env.client is not None else _client(spec, ctx)
    if ctx.status == "finished":
        spec.plan(ctx)
        return JobResult(ctx.job_id, "finished", _summary(spec, ctx, "finished"), ran=False)
    ctx.executor.check(spec, ctx)
    if env.on_ready is not None:
        env.on_ready(ctx.client)
    with running_here(ctx.job_id):  # from before its row says running until its end is written
        _record(spec, ctx, twins)
        if env.client is None:
            env.loop.watch(getattr(ctx.client, "liveness", None))
        with _guard(spec, ctx), _spilling(ctx):
            if env.on_start is not None:
                env.on_start(ctx.job_id, ctx.resumed)
            with ctx.executor.session(ctx), spec.running(ctx):
                asked, kept = _drive(spec, ctx)
        status = _conclude(spec, ctx, asked, kept)
    return JobResult(ctx.job_id, status, _summary(spec, ctx, status))


def _summary(spec: JobSpec[C, B, R, S], ctx: JobContext[C], status: str) -> S:
    """Return the ended job's summary; a full disk while a summary writes (a calibration's scores) is one
    line naming the command that writes it once space is back."""
    try:
        return spec.summary(ctx)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise PersonahubError(
            f"{spec.noun} {ctx.job_id} {status}, but "
            f"the disk filled while its summary was written ({what_filled(exc)}: no space left on "
            f"device); free space, then {spec.resume_hint(ctx.job_id, ctx.db)} writes it") from None


def _open(spec: JobSpec[C, B, R, S], config: C | Mapping[str, object], env: _Env,
          resume: str | None) -> JobContext[C]:
    if resume is None:
        if not isinstance(config, spec.config_type):
            raise TypeError(f"{spec.kind}: a new job needs a {spec.config_type.__name__}")
        stored = config_json(config, env.models)
        return JobContext(spec, config, spec.job_id_for(config), False, stored, env)
    row = jobs_store.find_job(env.con, resume)
    if row is None or row.kind != spec.kind:
        raise PersonahubError(f"--resume {resume}: no such {spec.noun} in {env.db}")
    stored = spec.upgrade(renamed_fields(row.config))
    config = resumed_config(spec, stored, config, resume)
    return JobContext(spec, config, resume, True, stored, env, status=row.status)


def config_json(config: object, models: Models) -> JsonObject:
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"a job's config is a dataclass instance, not {type(config).__name__}")
    stored = dataclasses.asdict(config)
    for f in _fields(type(config)):
        if f.metadata.get("secret") and isinstance(stored[f.name], str):
            stored[f.name] = models.redact(stored[f.name])
    loaded: JsonObject = json.loads(json.dumps(stored, default=str))
    return loaded


def resumed_config(spec: JobSpec[C, B, R, S], stored: Mapping[str, object],
                   caller: C | Mapping[str, object], job_id: str) -> C:
    """Return the config a resume runs with: stored identity fields, the caller's engine fields."""
    config_type = spec.config_type
    engines = engine_fields(config_type)
    whole = isinstance(caller, config_type)
    given = ({f.name: getattr(caller, f.name) for f in _fields(config_type)} if whole
             else dict(typing.cast(Mapping[str, object], caller)))
    hints = typing.get_type_hints(config_type)
    values: dict[str, object] = {}
    for f in _fields(config_type):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name in engines and f.name in given:
            values[f.name] = given[f.name]
        elif f.name in stored and not f.metadata.get("secret"):
            values[f.name] = _typed(stored[f.name], hints.get(f.name))
        elif required:
            values[f.name] = given.get(f.name)
        named = given.get(f.name) if (required or not whole) else None
        if f.name not in engines and named is not None and named != values.get(f.name, named):
            raise PersonahubError(f"--resume {job_id}: the job's {f.name} is {values[f.name]}, "
                                  f"not {named}")
    return config_type(**values)


def _typed(value: object, hint: object) -> object:
    if isinstance(value, list) and hint is not None and (
            typing.get_origin(hint) is tuple or hint is tuple
            or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))):
        return tuple(value)
    return value


def _twins(spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> list[str]:
    return unfinished_twins(spec, ctx.con, ctx.stored)


class _Twinned(Protocol):
    """What finding a job's twins reads of its spec."""

    @property
    def kind(self) -> str:
        ...

    @property
    def config_type(self) -> type:
        ...

    def upgrade(self, stored: JsonObject) -> JsonObject: ...


def unfinished_twins(spec: _Twinned, con: duckdb.DuckDBPyConnection,
                     stored: Mapping[str, object]) -> list[str]:
    """Unfinished jobs with the same identity, newest first."""
    names = identity_fields(spec.config_type)
    mine = {k: stored.get(k) for k in names}
    return [row.job_id for row in jobs_store.list_jobs(con, kind=spec.kind,
                                                       status=jobs_store.UNFINISHED)
            if {k: spec.upgrade(renamed_fields(row.config)).get(k) for k in names} == mine]


def _client(spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> StructuredCaller | None:
    """Return the model client, checked and with the cache attached."""
    settings = spec.model_settings(ctx.config)
    if settings is None:
        return None
    models = ctx.env.models
    client = models.build(settings)
    cache = str(getattr(ctx.config, "cache", "off"))
    check_cache_mode(cache)
    if cache != "replay" and not getattr(ctx.config, "provider_batch_file", None):
        models.check_reachable(client)
    models.attach_cache(ctx.con, client, cache)
    return client


def _record(spec: JobSpec[C, B, R, S], ctx: JobContext[C], twins: Sequence[str]) -> None:
    """Write a new job's rows in one transaction; mark a resumed one running."""
    if ctx.resumed:
        jobs_store.mark_running(ctx.con, ctx.job_id)
        return
    if twins:
        jobs_store.supersede_jobs(ctx.con, list(twins))
    outcome = spec.start(ctx)
    seed = getattr(ctx.config, "seed", None)

    def record() -> object:
        jobs_store.create_job(ctx.con, ctx.job_id, spec.kind, ctx.stored,
                              seed=seed if isinstance(seed, int) else None, parent_id=ctx.parent_id)
        if ctx.env.on_record is not None:
            ctx.env.on_record(ctx.con, ctx.job_id)
        return outcome.then() if outcome.then is not None else None

    _write(ctx, dataclasses.replace(outcome, then=record))


def _write(ctx: JobContext[C], outcome: BatchOutcome) -> object:
    if ctx.client is None:
        with transaction(ctx.con):
            for table, rows in outcome.rows.items():
                insert_rows(ctx.con, table, rows)
            jobs_store.touch_job(ctx.con, ctx.job_id)
            return outcome.then() if outcome.then is not None else None
    stale = [r.call_id for r in records_of(outcome.calls) if r.call_id in ctx.spilled_ids] \
        if ctx.spilled_ids else []
    done = commit_batch(ctx.con, ctx.ref, ctx.client, outcome.rows, list(outcome.calls),
                        then=outcome.then, replacing=stale)
    if ctx.spill is not None:
        ctx.spill.committed(r.call_id for r in records_of(outcome.calls))
    return done


@contextmanager
def _spilling(ctx: JobContext[C]) -> Iterator[None]:
    """Spill every final attempt as it happens, so no billed attempt is lost."""
    client = ctx.client
    spill_to = getattr(client, "spill_to", None)
    if client is None or spill_to is None or ctx.env.client is not None:
        yield
        return
    path = call_spill.spill_path(ctx.db, ctx.job_id)
    ctx.spilled_ids = frozenset(commit_spilled(ctx.con, client,
                                               call_spill.read_job(ctx.db, ctx.job_id)))
    if ctx.resumed:
        ctx.spilled_ids |= not_kept_call_ids(ctx.con, ctx.job_id)
    call_spill.remove_workers(ctx.db, ctx.job_id)
    ref = ctx.ref
    spill = call_spill.CallSpill(path, tags={"job_kind": ref.kind, "job_id": ref.job_id,
                                             "run_id": ref.run_id})
    spill.clear()
    ctx.spill = spill
    spill_to(spill)
    stopping = True
    try:
        yield
        stopping = False
    finally:
        spill_to(None)
        ctx.spill = None
        spill.close()
        try:
            commit_spilled(ctx.con, client, call_spill.read_job(ctx.db, ctx.job_id))
        except duckdb.Error:
            if not stopping:
                raise
            # stopping already: this error is the one to tell
        else:
            call_spill.remove_job(ctx.db, ctx.job_id)


def _drive(spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> tuple[int, int]:
    """Plan, ask, commit, check, batch after batch; returns the asked and kept counts."""
    asker = ctx.asker = spec.asker(ctx)
    after_commit = getattr(asker, "committed", None)
    plan = spec.plan(ctx)
    batches = ctx.executor.batches(spec, ctx, asker, plan)
    with _closing(batches, plan):
        return _drive_batches(spec, ctx, batches, after_commit)


@contextmanager
def _closing(*generators: Iterator[object]) -> Iterator[None]:
    """Close the plan however the job ends, so no cursor or database stays open."""
    failing = True
    try:
        yield
        failing = False
    finally:
        for generator in generators:
            close = getattr(generator, "close", None)
            try:
                if close is not None:
                    close()
            except Exception:
                if not failing:
                    raise


def _drive_batches(spec: JobSpec[C, B, R, S], ctx: JobContext[C],
                   batches: Iterator[tuple[B, R]],
                   after_commit: Callable[[], Coroutine[object, None, object]] | None) -> tuple[int, int]:
    asked = kept = 0
    share = float(getattr(ctx.config, "max_failed_share", DEFAULT_MAX_FAILED_SHARE))
    for number, (batch, result) in enumerate(batches, 1):
        outcome = spec.commit(ctx, batch, result)
        _write(ctx, outcome)
        if after_commit is not None:
            ctx.run(after_commit())
        asked, kept = asked + outcome.asked, kept + outcome.kept
        ctx.asked = asked
        ctx.report(*(outcome.progress or (spec.kind, ctx.done_before + asked, ctx.total)))
        reason = batch_failure(outcome.label or f"batch {number}", outcome.asked, outcome.errors,
                               records_of(outcome.calls), share)
        if reason is not None:
            raise ModelRejected(f"{spec.noun} {ctx.job_id} stopped: {reason}; resume with "
                                f"{spec.resume_hint(ctx.job_id, ctx.db)}")
    return asked, kept


def _conclude(spec: JobSpec[C, B, R, S], ctx: JobContext[C], asked: int, kept: int) -> str:
    """Mark the job finished, partial or failed from what it kept, and return that status.

    A fresh job that kept none of ``asked`` is marked failed and raises with its most common error
    and how to resume it.
    """
    if asked and not kept and not ctx.done_before:
        error = call_log.most_common_job_error(ctx.con, spec.kind, ctx.job_id)
        jobs_store.finish_job(ctx.con, ctx.job_id, "failed",
                              f"kept none of {asked} {spec.unit}: {error}")
        raise PersonahubError(f"{spec.noun} {ctx.job_id}: {spec.nothing_kept(ctx, asked)} "
                              f"(most often: {error}); resume with "
                              f"{spec.resume_hint(ctx.job_id, ctx.db)}")
    status = spec.end_status(ctx, asked, kept)
    jobs_store.finish_job(ctx.con, ctx.job_id, status)
    ctx.executor.finish(ctx)
    return status


@contextmanager
def _guard(spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> Iterator[None]:
    """Ctrl-C or SIGTERM: interrupted, resumable; any other error: failed."""
    hint = spec.resume_hint(ctx.job_id, ctx.db)
    try:
        with interrupts_from_queries():
            yield
    except AwaitingResults as exc:
        jobs_store.finish_job(ctx.con, ctx.job_id, jobs_store.AWAITING, str(exc))
        raise
    except KeyboardInterrupt as exc:
        how = signal_name(exc)
        jobs_store.finish_job(ctx.con, ctx.job_id, "interrupted", f"interrupted by {how}")
        raise Stopped(f"{spec.noun} {ctx.job_id} interrupted by {how}{spec.stop_note(ctx)}; "
                      f"resume with {hint}", exc) from None
    except BaseException as exc:
        if is_disk_full(exc):
            inner = exc if isinstance(exc, DiskFull) else None
            reason = inner.reason if inner is not None else what_filled(exc)
            unmarked = list(inner.unmarked) if inner is not None else []
            if not mark(ctx.con, ctx.job_id, reason):
                unmarked.append(ctx.job_id)
            raise DiskFull(spec.noun, ctx.job_id, reason, hint, unmarked) from None
        jobs_store.finish_job(ctx.con, ctx.job_id, "failed", f"{type(exc).__name__}: {exc}")
        # still a ResumableStop: experiments check its type
        if isinstance(exc, ResumableStop) and hint not in str(exc):
            raise ResumableStop(f"{spec.noun} {ctx.job_id} stopped: {exc}; resume with "
                                f"{hint}") from None
        if isinstance(exc, PersonahubError):
            raise
        raise PersonahubError(f"{spec.noun} {ctx.job_id} {spec.failure_text(ctx, exc)}; "
                              f"resume with {hint}") from exc


def iter_batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """Cut the items into batches of a size."""
    return (items[start:start + size] for start in range(0, len(items), size))
