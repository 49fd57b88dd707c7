"""``personahub run --executor ray``: a run's model calls answered by a pool of Ray actors.

The seam is the model caller, not the agent graph. ``RayCaller`` is a
``contracts.StructuredCaller``: the society, the agent graph, survey questions and persona
expansion call ``structured(...)`` on it exactly as on a local client, and it sends the calls,
micro-batched, to actors (``_CallActor``) that each hold a model client built on the worker from
the driver client's ``LLMSettings``. Why there: every model call of a step goes through that one
method, including calls other parts of the step add later (a decision call in the agent graph,
reflections in memory, interviews), so they all run on the actors without their code knowing.
The alternative, shipping ``AgentInput`` chunks and running ``run_agents`` on the actors, would
move only the calls the agent graph makes today and duplicate the step's gather logic.

The step itself does not change: the gather (every active agent's calls on the frozen snapshot,
and survey answers) awaits the actors' answers on the driver's event loop, and the apply phase
runs on the driver in agent-id order, so a seeded run's tables equal a local run's. Each answer
comes back as its validated value's fields (rebuilt on the driver with the caller's own schema:
survey schemas are pydantic classes made at run time, and the driver's class is the one the step
reads), its call records and its cache entries; an exception a call raised (``LLMUnavailable``,
``ModelRejected``, ...) comes back too and is raised on the driver, its attempts counted.

Failures: actors restart (``max_restarts``) and a batch in flight on a killed actor is asked
again (``max_task_retries``); its calls were never returned, so nothing is counted twice. An
actor that cannot come back fails the step's calls: the run stops after its last committed step
and ``--resume`` continues it (on Ray or locally), as after any failed step.

No secret travels through Ray: ``executor_ray.check_ray_client`` refuses a spec that carries one;
keys are read on the worker from its environment. Structured-output modes learned on the
workers are not reported back: ``runs.config.structured_modes`` holds the driver's.

``--cache record|replay``: workers have no database, so the cache stays on the driver. With a
cache, ``structured`` runs on the driver client itself, whose cache layer keys, looks up and
stores every attempt exactly as in a local run; its misses go to the actors (``_Misses``), which
answer them with the layers below their client's cache (retries, limits, endpoints). Validation
and repair run on the driver then; an actor still learns the modes its endpoints ignore.

The executor seam (``ray_executor.py``) lends the same pool to any job spec whose batches depend
on the commit of the batch before (``personas expand``): one pool for the whole job, a round
trip per set of calls.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel

from personahub.core.call_spill import WorkerSpill
from personahub.core.contracts import (
    CallRequest,
    CallStats,
    Endpoint,
    StructuredCaller,
    StructuredResult,
    carried_records,
    carry_records,
)
from personahub.core.errors import PersonahubError
from personahub.core.optional import ray
from personahub.executors.ray_batches import check_ray_client, ray_session
from personahub.models.client import LLMSettings, make_client
from personahub.models.repair import check_answer
from personahub.models.structured import mode_of

T = TypeVar("T", bound=BaseModel)
MAX_BATCH = 64  # calls per actor task: large enough to amortise a task, small enough to spread
ACTOR_RESTARTS = 3  # restarts of a dead actor (and retries of the batch it held) before failing
ACTOR_PREFIX = "personahub-run-"  # actors are named ACTOR_PREFIX + <run id>-<n> (tests find them)

# schema, messages, purpose, persona_id, step, check, sample, max_tokens and, for a call asked
# of another client of the job (``RayCaller.alongside``), that client's settings (None: the pool's)
Call = tuple[type[BaseModel], list[Any], str, str | None, int | None, Any, int, int | None,
             LLMSettings | None]


def _portable_error(exc: Exception) -> Exception:
    """``exc`` if it pickles, else a ``PersonahubError`` with its text; its attempts kept."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may fail to pickle
        plain = PersonahubError(f"{type(exc).__name__}: {exc}")
        carry_records(plain, carried_records(exc))
        return plain


class _CallActor:
    """One Ray worker: a model client answering batches of calls concurrently on the actor's
    event loop (the client's ``--concurrency`` and ``--rps`` bound them, per worker)."""

    def __init__(self, settings: LLMSettings, spill: WorkerSpill | None = None) -> None:
        self.client = make_client(settings)
        self.settings = settings
        # the job's other clients (``RayCaller.alongside``), built here on their first call
        self.others: dict[str, Any] = {}
        # every attempt into the job's worker folder as soon as it is final (core.call_spill):
        # a driver killed mid-step ends this actor, and its answered attempts are billed
        self.spill = spill.open() if spill is not None else None
        self.client.spill_to(self.spill)
        # as the client's own validating layer: a worker learns the modes its endpoints ignore
        self.negotiates = not all(e.capabilities.native_schemas for e in self.client.endpoints)

    async def answer(self, calls: Sequence[Call | CallRequest]) -> list[tuple[Any, ...]]:
        """Per call: ``("ok", value fields or None, result without its value)`` or
        ``("raised", exception)``, in the order asked. A ``CallRequest`` is one attempt the
        driver's cache missed, answered by the layers below the cache (no value: the driver
        validates it)."""
        return list(await asyncio.gather(*[
            self._attempt(call) if isinstance(call, CallRequest) else self._one(*call)
            for call in calls]))

    async def _attempt(self, request: CallRequest) -> tuple[Any, ...]:
        try:
            result = await self.client.uncached.call(request)
        except Exception as exc:  # noqa: BLE001 - raised again on the driver
            self._spilled(carried_records(exc))
            return ("raised", _portable_error(exc))
        # below the cache no layer ends the call here: its last attempt is final for this worker
        # (the driver's validating layer may judge it yet; the driver's spill is read first)
        self._spilled(result.records)
        record = result.records[-1] if result.records else None
        if (self.negotiates and result.failure is None and result.raw is not None
                and record is not None and record.endpoint is not None and record.structured_mode):
            has_json = check_answer(request.schema, result.raw, truncated=result.truncated).has_json
            self.client.modes.answered(record.endpoint, mode_of(record.structured_mode), has_json)
        return ("ok", None, result)

    def _client_for(self, settings: LLMSettings | None) -> Any:
        """The client answering a call: the pool's, or another client of the job built on this
        worker from ``settings`` (once), spilling into the same folder."""
        if settings is None or settings == self.settings:
            return self.client
        key = repr(settings)
        if key not in self.others:
            client = make_client(settings)
            client.spill_to(self.spill)
            self.others[key] = client
        return self.others[key]

    def _spilled(self, records: Sequence[Any]) -> None:
        if self.spill is not None:
            self.spill.done(records)

    async def _one(self, schema: type[BaseModel], messages: list[Any], purpose: str,
                   persona_id: str | None, step: int | None,
                   check: Callable[[Any], str | None] | None = None,
                   sample: int = 0, max_tokens: int | None = None,
                   settings: LLMSettings | None = None) -> tuple[Any, ...]:
        try:
            client = self._client_for(settings)
            result = await client.structured(schema, messages, purpose=purpose,
                                             persona_id=persona_id, step=step, check=check,
                                             sample=sample, max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - raised again on the driver
            return ("raised", _portable_error(exc))
        fields = None if result.value is None else result.value.model_dump(by_alias=True)
        bare: StructuredResult[Any] = StructuredResult(None, list(result.records), result.raw,
                                                       list(result.cache_entries), result.failure)
        return ("ok", fields, bare)


class RayCaller:
    """A ``StructuredCaller`` whose ``structured`` calls run on Ray actors.

    Calls made in the same turn of the driver's event loop are gathered and split into batches
    (at most ``MAX_BATCH``, spread over the workers), each sent to the actor with the fewest
    calls outstanding. Everything else (label, endpoints, totals) is the driver client's:
    the run log names call records' models by its endpoints, and progress reads its totals.
    """

    def __init__(self, inner: StructuredCaller, actors: Sequence[Any], run_id: str = "",
                 lost: str | None = None, target: LLMSettings | None = None) -> None:
        self.inner = inner
        # the settings the actors build this caller's client from (None: the pool's own client)
        self.target = target
        self._alongside: dict[int, RayCaller] = {}
        self.run_id = run_id
        # what a lost worker's error tells the user to do (default: resume the run)
        self.lost = lost or (f"run {run_id} stopped after its last committed step: resume with "
                             f"personahub run --resume {run_id}")
        self.actors = list(actors)
        self._outstanding = [0] * len(self.actors)
        self._pending: list[tuple[Call | CallRequest, asyncio.Future[tuple[Any, ...]]]] = []
        self.cached = False  # see use_cache
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    # -- what the run asks of its client, answered by the driver's -----------------------------
    @property
    def settings(self) -> Any:
        """The driver client's settings (what the workers were built from)."""
        return getattr(self.inner, "settings", None)

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def is_offline(self) -> bool:
        return self.inner.is_offline

    @property
    def cache_model(self) -> str:
        return self.inner.cache_model

    @property
    def stats(self) -> CallStats:
        return self.inner.stats

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self.inner.endpoints

    def structured_modes(self) -> dict[str, str]:
        return self.inner.structured_modes()

    def concurrency_report(self) -> dict[str, Any]:
        """The driver's (each worker has its own limit, ``auto`` or fixed)."""
        return {**self.inner.concurrency_report(), "per_worker": True}

    def use_cache(self, cache: Any) -> None:
        """Answer from (and record into) ``cache`` on the driver: the driver client's own cache
        layer keys, looks up and stores every attempt as a local run does, and only its misses
        go to the actors (``_Misses``), so the cache never leaves the database's process."""
        route = getattr(self.inner, "answer_misses_with", None)
        if route is None:
            raise PersonahubError("--executor ray with --cache: the model client must be built "
                                  "from --llm")
        self.inner.use_cache(cache)
        route(_Misses(self) if cache is not None else None)
        self.cached = cache is not None

    # -- the calls ------------------------------------------------------------------------------
    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]:
        """Ask on an actor; the result is the one a local client would have returned. With a
        cache, the driver client answers (its cache layer sends the misses to the actors)."""
        if self.cached:
            return await self.inner.structured(schema, messages, purpose=purpose,
                                               persona_id=persona_id, step=step, check=check,
                                               sample=sample, max_tokens=max_tokens)
        answer = await self.ask((schema, list(messages), purpose, persona_id, step, check, sample,
                                 max_tokens, self.target))
        if answer[0] == "raised":
            error: Exception = answer[1]
            self.stats.add(carried_records(error))
            raise error
        _, fields, bare = answer
        self.stats.add(bare.records)
        value = None if fields is None else schema.model_validate(fields)
        return StructuredResult(value, bare.records, bare.raw, bare.cache_entries, bare.failure)

    def alongside(self, client: StructuredCaller) -> RayCaller:
        """A caller for another model client of the same job (an evaluation's other solvers,
        scored models and judge) whose calls run on this pool's actors: each actor builds that
        client from ``client``'s settings on its first call, so one pool serves every client
        (a second pool would wait for the CPUs this one holds). Label, endpoints and totals are
        ``client``'s, as for the pool's own; no cache (the job has none on Ray).

        Args:
            client: a driver-side client built from ``LLMSettings`` (no secret in its spec).

        Returns:
            The caller, one per client for the pool's life.
        """
        if client is self.inner:
            return self
        if id(client) not in self._alongside:
            other = RayCaller(client, self.actors, self.run_id, self.lost,
                              target=check_ray_client(client))
            other._outstanding = self._outstanding  # one count per actor, whoever asks
            self._alongside[id(client)] = other
        return self._alongside[id(client)]

    async def ask(self, call: Call | CallRequest) -> tuple[Any, ...]:
        """An actor's answer to ``call``, sent with the calls asked in the same turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        self._pending.append((call, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Send what this turn of the loop asked, in batches spread over the actors."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        size = max(1, min(MAX_BATCH, math.ceil(len(pending) / len(self.actors))))
        for lo in range(0, len(pending), size):
            batch = pending[lo : lo + size]
            index = min(range(len(self.actors)), key=lambda i: (self._outstanding[i], i))
            task = asyncio.get_running_loop().create_task(self._send(index, batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, index: int,
                    batch: list[tuple[Call | CallRequest, asyncio.Future[tuple[Any, ...]]]]) -> None:
        self._outstanding[index] += len(batch)
        try:
            answers = await self.actors[index].answer.remote([call for call, _ in batch])
        except Exception as exc:  # noqa: BLE001 - a lost actor fails these calls, not the loop
            failure = PersonahubError(
                f"Ray worker {index + 1} was lost with {len(batch)} model calls in flight "
                f"({type(exc).__name__}); {self.lost}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        finally:
            self._outstanding[index] -= len(batch)
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # a cancelled caller (interrupt) no longer waits
                future.set_result(answer)


class _Misses:
    """The layer a cached Ray run puts under the driver client's cache: each attempt the cache
    does not answer goes to an actor's layers below its (absent) cache, micro-batched with the
    others; the driver's cache layer then stores what comes back, as a local run's does."""

    def __init__(self, caller: RayCaller) -> None:
        self.caller = caller

    @property
    def label(self) -> str:
        return self.caller.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        answer = await self.caller.ask(request)
        if answer[0] == "raised":
            raise answer[1]
        result: StructuredResult[Any] = answer[2]
        return result


@contextmanager
def ray_caller(client: StructuredCaller, *, address: str | None, workers: int | None,
               run_id: str, lost: str | None = None,
               spill: WorkerSpill | None = None) -> Iterator[RayCaller]:
    """A ``RayCaller`` over ``workers`` actors (None: one per cluster CPU) built from
    ``client``'s settings, on the Ray at ``address`` (see ``executor_ray.ray_session``);
    the actors are ended when the job is. ``lost`` says how to go on when a worker is lost;
    ``spill``: where each actor spills its attempts (``core.call_spill.WorkerSpill``)."""
    settings = check_ray_client(client)
    with ray_session(address):
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        size = workers or int(cpus)
        actor_class = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS,
                                 num_cpus=min(1.0, cpus / size))(_CallActor)
        tag = f"{ACTOR_PREFIX}{run_id}-{uuid.uuid4().hex[:6]}"
        actors = [actor_class.options(name=f"{tag}-{n}").remote(settings, spill)
                  for n in range(1, size + 1)]
        caller = RayCaller(client, actors, run_id, lost)
        try:
            if getattr(client, "cache", None) is not None:  # attached before the pool started
                caller.use_cache(client.cache)  # type: ignore[attr-defined]
            yield caller
        finally:
            if caller.cached:  # the driver client answers from its own endpoints again
                client.answer_misses_with(None)  # type: ignore[attr-defined]
            for actor in actors:
                ray.kill(actor, no_restart=True)


def check_run_client(client: StructuredCaller) -> None:
    """Refuse, before the run is recorded, a client the workers cannot rebuild."""
    check_ray_client(client)
