"""A run's model calls answered by a pool of Ray actors (``--executor ray``).

The seam is the model caller, not the agent graph: every model call of a step goes through
RayCaller.structured, so calls added later (decisions, reflections, interviews) run on the
actors without their code knowing (shipping agent inputs instead would move only today's
agent-graph calls and duplicate the gather). The step is unchanged: the gather awaits the actors on the
driver's loop and the apply phase runs on the driver in agent-id order, so a seeded run's tables
equal a local run's. Answers come back as field values and are rebuilt with the driver's schema
class, since survey schemas are made at run time.

Actors restart and re-ask a lost batch, whose calls were never returned, so nothing counts
twice; an actor that cannot come back fails the step, and ``--resume`` continues the run. No
secret travels through Ray: keys are read from the worker's environment. Workers have no
database, so with ``--cache`` the driver client's cache answers and only its misses go to the
actors. Structured-output modes learned on workers are not reported back; the run records the
driver's.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from personahub.core.call_spill import WorkerSpill
from personahub.core.contracts import (
    CallRecord,
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
from personahub.models.cache import ResponseCache
from personahub.models.client import LLMClient, LLMSettings, make_client
from personahub.models.repair import check_answer
from personahub.models.structured import mode_of

T = TypeVar("T", bound=BaseModel)
MAX_BATCH = 64  # large enough to amortise a task, small enough to spread over the workers
ACTOR_RESTARTS = 3  # restarts of a dead actor, and retries of its batch, before failing
ACTOR_PREFIX = "personahub-run-"  # named so that tests can find the actors

# schema, messages, purpose, persona_id, step, check, sample, max_tokens, and the settings of
# the job's client it is asked of (None: the pool's)
Call = tuple[type[BaseModel], list[Any], str, str | None, int | None,
             Callable[[Any], str | None] | None, int, int | None, LLMSettings | None]
#: an actor's answer to one call: ("ok", the value's fields or None, the result without its
#: value) or ("raised", the exception, made to pickle)
Answer = (tuple[Literal["ok"], dict[str, object] | None, StructuredResult[BaseModel]]
          | tuple[Literal["raised"], Exception])


def _portable_error(exc: Exception) -> Exception:
    """Return the exception if it pickles, else a PersonahubError with its text and attempts."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may fail to pickle
        plain = PersonahubError(f"{type(exc).__name__}: {exc}")
        carry_records(plain, carried_records(exc))
        return plain


class _CallActor:
    """One Ray worker: a model client answering batches of calls concurrently, its
    concurrency and rate limits per worker."""

    def __init__(self, settings: LLMSettings, spill: WorkerSpill | None = None) -> None:
        self.client = make_client(settings)
        self.settings = settings
        # the job's other clients, built here on their first call
        self.others: dict[str, LLMClient] = {}
        # spill each final attempt to disk: if the driver dies mid-step its calls are still billed
        self.spill = spill.open() if spill is not None else None
        self.client.spill_to(self.spill)
        # a worker learns which structured-output modes its endpoints ignore
        self.negotiates = not all(e.capabilities.native_schemas for e in self.client.endpoints)

    async def answer(self, calls: Sequence[Call | CallRequest]) -> list[Answer]:
        """Per call, in order: ("ok", value fields, result) or ("raised", exception).

        A cache miss is answered below the cache, without a value: the driver validates it."""
        return list(await asyncio.gather(*[
            self._attempt(call) if isinstance(call, CallRequest) else self._one(*call)
            for call in calls]))

    async def _attempt(self, request: CallRequest) -> Answer:
        try:
            result = await self.client.uncached.call(request)
        except Exception as exc:  # noqa: BLE001 - raised again on the driver
            self._spilled(carried_records(exc))
            return ("raised", _portable_error(exc))
        # below the cache the last attempt is final here; the driver may still judge it
        self._spilled(result.records)
        record = result.records[-1] if result.records else None
        if (self.negotiates and result.failure is None and result.raw is not None
                and record is not None and record.endpoint is not None and record.structured_mode):
            has_json = check_answer(request.schema, result.raw, truncated=result.truncated).has_json
            self.client.modes.answered(record.endpoint, mode_of(record.structured_mode), has_json)
        return ("ok", None, result)

    def _client_for(self, settings: LLMSettings | None) -> LLMClient:
        """Return the pool's client, or another of the job's clients built here once from settings."""
        if settings is None or settings == self.settings:
            return self.client
        key = repr(settings)
        if key not in self.others:
            client = make_client(settings)
            client.spill_to(self.spill)
            self.others[key] = client
        return self.others[key]

    def _spilled(self, records: Sequence[CallRecord]) -> None:
        if self.spill is not None:
            self.spill.done(records)

    async def _one(self, schema: type[BaseModel], messages: list[Any], purpose: str,
                   persona_id: str | None, step: int | None,
                   check: Callable[[Any], str | None] | None = None,
                   sample: int = 0, max_tokens: int | None = None,
                   settings: LLMSettings | None = None) -> Answer:
        try:
            client = self._client_for(settings)
            result = await client.structured(schema, messages, purpose=purpose,
                                             persona_id=persona_id, step=step, check=check,
                                             sample=sample, max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - raised again on the driver
            return ("raised", _portable_error(exc))
        fields = None if result.value is None else result.value.model_dump(by_alias=True)
        bare: StructuredResult[BaseModel] = StructuredResult(
            None, list(result.records), result.raw, list(result.cache_entries), result.failure)
        return ("ok", fields, bare)


class RayCaller:
    """A model caller whose calls run on Ray actors.

    Calls made in one turn of the driver's loop are batched and sent to the least busy actors.
    Label, endpoints and totals are the driver client's, as the run log and progress read them.
    """

    def __init__(self, inner: StructuredCaller, actors: Sequence[Any], run_id: str = "",
                 lost: str | None = None, target: LLMSettings | None = None) -> None:
        self.inner = inner
        self.target = target
        self._alongside: dict[int, RayCaller] = {}
        self.run_id = run_id
        self.lost = lost or (f"run {run_id} stopped after its last committed step: resume with "
                             f"personahub run --resume {run_id}")
        self.actors = list(actors)
        self._outstanding = [0] * len(self.actors)
        self._pending: list[tuple[Call | CallRequest, asyncio.Future[Answer]]] = []
        self.cached = False
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    # -- answered by the driver's client --
    @property
    def settings(self) -> LLMSettings | None:
        """The driver client's settings, which the workers were built from."""
        settings: LLMSettings | None = getattr(self.inner, "settings", None)  # checked by check_ray_client
        return settings

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

    def concurrency_report(self) -> dict[str, object]:
        """Return the driver's report; each worker has its own limit."""
        return {**self.inner.concurrency_report(), "per_worker": True}

    def use_cache(self, cache: ResponseCache | None) -> None:
        """Answer from the cache on the driver as a local run does; only misses go to the
        actors, so the cache never leaves the database's process."""
        route = getattr(self.inner, "answer_misses_with", None)
        if route is None:
            raise PersonahubError("--executor ray with --cache: the model client must be built "
                                  "from --llm")
        self.inner.use_cache(cache)
        route(_Misses(self) if cache is not None else None)
        self.cached = cache is not None

    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]:
        """Ask on an actor; the result is what a local client would have returned."""
        if self.cached:
            return await self.inner.structured(schema, messages, purpose=purpose,
                                               persona_id=persona_id, step=step, check=check,
                                               sample=sample, max_tokens=max_tokens)
        answer = await self.ask((schema, list(messages), purpose, persona_id, step, check, sample,
                                 max_tokens, self.target))
        if answer[0] == "raised":
            error = answer[1]
            self.stats.add(carried_records(error))
            raise error
        _, fields, bare = answer
        self.stats.add(bare.records)
        value = None if fields is None else schema.model_validate(fields)
        return StructuredResult(value, bare.records, bare.raw, bare.cache_entries, bare.failure)

    def alongside(self, client: StructuredCaller) -> RayCaller:
        """Return a caller for another model client of the job, on this pool's actors.

        One pool serves every client, since a second would wait for the CPUs this one holds.

        Args:
            client: a driver-side client, no secret in its spec.

        Returns:
            The caller, one per client for the pool's life.
        """
        if client is self.inner:
            return self
        if id(client) not in self._alongside:
            other = RayCaller(client, self.actors, self.run_id, self.lost,
                              target=check_ray_client(client))
            other._outstanding = self._outstanding  # shared, so load counts every client
            self._alongside[id(client)] = other
        return self._alongside[id(client)]

    async def ask(self, call: Call | CallRequest) -> Answer:
        """Return an actor's answer, the call batched with others of the same loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
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
                    batch: list[tuple[Call | CallRequest, asyncio.Future[Answer]]]) -> None:
        self._outstanding[index] += len(batch)
        try:
            answers = await self.actors[index].answer.remote([call for call, _ in batch])
        except Exception as exc:  # noqa: BLE001 - a lost actor fails its calls, not the loop
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
            if not future.done():  # an interrupted caller no longer waits
                future.set_result(answer)


class _Misses:
    """Under the driver's cache in a cached Ray run: sends each miss to an actor, batched."""

    def __init__(self, caller: RayCaller) -> None:
        self.caller = caller

    @property
    def label(self) -> str:
        return self.caller.label

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        answer = await self.caller.ask(request)
        if answer[0] == "raised":
            raise answer[1]
        return answer[2]


@contextmanager
def ray_caller(client: StructuredCaller, *, address: str | None, workers: int | None,
               run_id: str, lost: str | None = None,
               spill: WorkerSpill | None = None) -> Iterator[RayCaller]:
    """Return a RayCaller over a pool of actors (default one per cluster CPU) built from the client's
    settings; the actors end with the job."""
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
            if caller.cached:  # give the driver client its own endpoints back
                client.answer_misses_with(None)  # type: ignore[attr-defined]
            for actor in actors:
                ray.kill(actor, no_restart=True)


def check_run_client(client: StructuredCaller) -> None:
    """Refuse, before the run is recorded, a client the workers cannot rebuild."""
    check_ray_client(client)
