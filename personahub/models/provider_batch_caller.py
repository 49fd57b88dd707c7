"""A structured caller that sends a job's calls as provider batches.

It queues the asker's calls and sends them in rounds once every coroutine waits, so the asker
cannot tell a batch from an online call. A call's custom id is a digest of what it asks, so a kill
and a resume collect from the stored batch instead of creating a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from personahub.core.contracts import StructuredResult
from personahub.core.errors import AwaitingResults, PersonahubError, StillAwaiting
from personahub.core.provider_batch_records import AWAITING_RESULTS, BatchHandle
from personahub.models.provider_batch import (
    BatchCall,
    BatchSession,
    Collected,
    batch_call,
    collect,
    finish_online,
    mode_known,
)
from personahub.models.provider_batch_lines import ResultLine, read_results_file
from personahub.models.settings import LLMConfigError

if TYPE_CHECKING:
    from personahub.models.client import LLMClient

T = TypeVar("T", bound=BaseModel)
FALLBACKS = ("batch", "online")
#: event-loop turns with no new call after which the asker is taken to wait on the queue
SETTLE_TURNS = 4
#: then one short wait for calls a framework's own threads still carry
SETTLE_S = 0.02
#: an imported results file: the handle's output file id is its path
LOCAL_PREFIX = "local:"
MAX_ROUNDS = 64  # rounds of one asker run at most (more is a bug)


def check_fallback(value: str) -> None:
    """Refuse an unknown batch fallback in one line."""
    if value not in FALLBACKS:
        raise LLMConfigError(f"--provider-batch-fallback {value!r}: choose one of {', '.join(FALLBACKS)}")


def call_key(schema: type[BaseModel], messages: Sequence[object], *, purpose: str,
             persona_id: str | None, step: int | None, sample: int) -> str:
    text = json.dumps([purpose, persona_id, step, sample, schema.__name__,
                       [[getattr(m, "type", type(m).__name__), getattr(m, "content", str(m))]
                        for m in messages]], default=str, ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


@dataclass
class BatchBook:
    """A job's batches as a resume finds them: a request in a stored batch and not committed is collected
    from it, never sent again.
    """

    handles: dict[str, BatchHandle] = field(default_factory=dict)
    committed: set[tuple[str, str]] = field(default_factory=set)
    used: set[tuple[str, str]] = field(default_factory=set)

    def add(self, handle: BatchHandle) -> None:
        self.handles[handle.key] = handle

    def spent(self, handle: BatchHandle) -> bool:
        """Return True for an ended batch, files still there, whose every request was collected or
        committed."""
        if not handle.done or handle.files_deleted or handle.from_file or handle.batch_id is None:
            return False
        return all((handle.key, c) in self.used or (handle.batch_id, c) in self.committed
                   for c in handle.custom_ids)

    def holding(self, custom_id: str) -> BatchHandle | None:
        """Return the newest stored batch holding an answer neither committed nor collected."""
        for handle in reversed(list(self.handles.values())):
            if custom_id not in handle.custom_ids or (handle.key, custom_id) in self.used:
                continue
            if handle.files_deleted:
                continue
            if handle.batch_id is not None and (handle.batch_id, custom_id) in self.committed:
                continue
            return handle
        return None


@dataclass
class _Queued:
    call: BatchCall[Any]
    future: asyncio.Future[StructuredResult[Any]]


@dataclass
class BatchTally:
    """What the batches of a job did in this run."""

    created: int = 0
    polled: int = 0  # stored batches picked up again after a stop
    online: int = 0  # calls answered online
    deleted: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class BatchingCaller:
    """The job's client with its calls sent as batches."""

    def __init__(self, client: LLMClient, book: BatchBook, *, job_kind: str, job_id: str,
                 size: int = 1000, window: str = "24h", fallback: str = "batch",
                 batch_file: str | None = None, poll_s: float = 5.0, max_poll_s: float = 60.0,
                 on_handle: Callable[[BatchHandle], None] | None = None,
                 on_status: Callable[[str], None] | None = None, prefix: str = "") -> None:
        check_fallback(fallback)
        if size < 1:
            raise LLMConfigError(f"--batch-size must be >= 1, got {size}")
        self.client, self.book = client, book
        self.job_kind, self.job_id = job_kind, job_id
        self.size, self.fallback, self.batch_file = size, fallback, batch_file
        self.on_handle, self.on_status = on_handle, on_status
        # keeps apart the ids of clients that share a batch book
        self.prefix = prefix
        self.session = BatchSession(client, window=window, poll_s=poll_s, max_poll_s=max_poll_s,
                                    on_handle=self._keep)
        self.tally = BatchTally()
        self._queue: list[_Queued] = []
        self._arrived: asyncio.Event | None = None
        self._keys: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _keep(self, handle: BatchHandle) -> None:
        self.book.add(handle)
        if self.on_handle is not None:
            self.on_handle(handle)

    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]:
        key = self.prefix + call_key(schema, messages, purpose=purpose, persona_id=persona_id,
                                     step=step, sample=sample)
        self._keys[key] += 1  # the same call twice in one job: a suffix keeps the ids apart
        if self._keys[key] > 1:
            key = f"{key}~{self._keys[key]}"
        call = batch_call(self.client, schema, messages, key=key, purpose=purpose,
                          persona_id=persona_id, step=step, check=check, sample=sample,
                          max_tokens=max_tokens)
        future: asyncio.Future[StructuredResult[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(call, future))
        if self._arrived is not None:
            self._arrived.set()
        return await future

    async def drive(self, work: asyncio.Future[Any]) -> None:
        """Send what the asker's task queues, round after round, until it ends."""
        self._arrived = asyncio.Event()
        rounds = 0
        try:
            while not work.done():
                await self._settle(work)
                if work.done():
                    break
                if not self._queue:
                    self._arrived.clear()
                    waiter = asyncio.ensure_future(self._arrived.wait())
                    await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                rounds += 1
                if rounds > MAX_ROUNDS:
                    raise PersonahubError(f"batch: {MAX_ROUNDS} rounds and the job's calls "
                                          "still ask for more")
                queued, self._queue = self._queue, []
                await self._round(queued)
        except BaseException:
            for item in self._queue:
                item.future.cancel()
            work.cancel()
            raise
        finally:
            self._arrived = None

    async def _settle(self, work: asyncio.Future[Any]) -> None:
        while not work.done():
            quiet, seen = 0, -1
            while not work.done() and quiet < SETTLE_TURNS:
                await asyncio.sleep(0)
                quiet = quiet + 1 if len(self._queue) == seen else 0
                seen = len(self._queue)
            await asyncio.sleep(SETTLE_S)
            if len(self._queue) == seen:
                return

    async def _round(self, queued: list[_Queued]) -> None:
        """One round: the queued calls until each has its result."""
        pending = list(queued)
        if pending and not mode_known(self.client):
            first = pending.pop(0)
            self.tally.online += 1
            first.future.set_result(await finish_online(self.client, first.call))
            if not mode_known(self.client) and pending:
                raise LLMConfigError(
                    "--provider-batch: the endpoint's structured mode is still unknown after one online "
                    "call; give --structured (json_schema, tools, json_object or prompt) or run "
                    "`personahub doctor --llm ...` first")
        while pending:
            by_handle, fresh = self._group(pending)
            jobs = [self._finish_stored(handle, items) for handle, items in by_handle]
            if fresh and self.batch_file is not None:
                self._write_file([q.call for q in fresh])
            jobs += [self._submit(chunk) for chunk in _chunks(fresh, self.size)]
            done = await asyncio.gather(*jobs)
            pending = [item for again in done for item in again]

    def _group(self, pending: Sequence[_Queued]
               ) -> tuple[list[tuple[BatchHandle, list[_Queued]]], list[_Queued]]:
        """Return the calls a stored batch still holds an answer for, and the rest."""
        stored: dict[str, list[_Queued]] = {}
        fresh = []
        for item in pending:
            handle = self.book.holding(item.call.custom_id)
            if handle is None:
                fresh.append(item)
            else:
                stored.setdefault(handle.key, []).append(item)
        return [(self.book.handles[key], items) for key, items in stored.items()], fresh

    def _write_file(self, calls: list[BatchCall[Any]]) -> None:
        """Write the round's requests into the batch file."""
        assert self.batch_file is not None
        self._keep(self.session.write_file(self.batch_file, f"{self.job_id}:{uuid.uuid4().hex[:12]}",
                                           calls, job_kind=self.job_kind, job_id=self.job_id))
        self.tally.created += 1
        raise written_for_import(len(calls), self.batch_file, self.job_id)

    async def _submit(self, chunk: list[_Queued]) -> list[_Queued]:
        key = f"{self.job_id}:{uuid.uuid4().hex[:12]}"
        handle = await self.session.submit(key, [q.call for q in chunk],
                                           job_kind=self.job_kind, job_id=self.job_id)
        self.tally.created += 1
        return await self._await(handle, chunk)

    async def _finish_stored(self, handle: BatchHandle, items: list[_Queued]) -> list[_Queued]:
        if handle.status == AWAITING_RESULTS:
            raise still_awaiting(handle, self.job_id)
        self.tally.polled += 1
        handle = await self.session.resume(handle, [q.call for q in items])
        return await self._await(handle, items)

    async def _await(self, handle: BatchHandle, items: list[_Queued]) -> list[_Queued]:
        """Wait for the batch and apply its results; returns the calls to send again."""
        if not handle.done:
            self._status(handle)
            handle = await self.session.wait(handle, on_status=self._status)
        self._status(handle)
        results = await self._results(handle)
        calls = [q.call for q in items]
        self.book.used.update((handle.key, call.custom_id) for call in calls)
        collected = collect(self.client, calls, results, handle)
        return await self._apply(collected, items)

    async def _results(self, handle: BatchHandle) -> list[ResultLine]:
        if handle.output_file_id and handle.output_file_id.startswith(LOCAL_PREFIX):
            return read_results_file(handle.output_file_id[len(LOCAL_PREFIX):])
        return await self.session.results(handle)

    async def _apply(self, collected: Collected, items: list[_Queued]) -> list[_Queued]:
        self.tally.outcomes.update(collected.outcomes)
        by_call = {id(q.call): q for q in items}
        for call in collected.finished:
            assert call.result is not None
            by_call[id(call)].future.set_result(call.result)
        again = [by_call[id(call)] for call in collected.resend]
        if self.fallback == "online":
            for item in again:
                self.tally.online += 1
                item.future.set_result(await finish_online(self.client, item.call))
            return []
        return again

    async def forget_spent(self) -> None:
        await forget_spent(self.session, self.book, self._keep, self.tally)

    def _status(self, handle: BatchHandle) -> None:
        if self.on_status is not None:
            self.on_status(status_text(handle))


async def forget_spent(session: BatchSession, book: BatchBook,
                       keep: Callable[[BatchHandle], None], tally: BatchTally) -> None:
    """Delete the provider files of spent batches, once this run's collection is committed. A failed
    delete is retried after the next commit.
    """
    for handle in [h for h in book.handles.values() if book.spent(h)]:
        try:
            await session.forget(handle)
        except Exception:  # noqa: BLE001, S112 - the files stay; tried after the next commit
            continue
        keep(handle.updated(input_file_id=None, output_file_id=None, error_file_id=None))
        tally.deleted += 1


def written_for_import(n: int, path: str, job_id: str) -> AwaitingResults:
    """Return what a job that wrote its batch file stops with: where to run it, how to import."""
    return AwaitingResults(
        f"{n} requests written to {path} (OpenAI batch format); run them (e.g. `vllm run-batch "
        f"-i {path} -o results.jsonl --model ...`), then: personahub provider-batch import results.jsonl "
        f"--job {job_id}")


def still_awaiting(handle: BatchHandle, job_id: str) -> StillAwaiting:
    """Return what a job whose batch file has no results yet stops with."""
    return StillAwaiting(f"batch file {handle.batch_id} is still waiting for its results: "
                         f"personahub provider-batch import RESULTS.jsonl --job {job_id}")


def status_text(handle: BatchHandle) -> str:
    return (f"batch {handle.batch_id or handle.key} {handle.status} "
            f"{handle.completed + handle.failed}/{len(handle.custom_ids)}")


def _chunks(items: Sequence[_Queued], size: int) -> Iterable[list[_Queued]]:
    return (list(items[i:i + size]) for i in range(0, len(items), size))
