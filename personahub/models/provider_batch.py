"""Structured calls sent as a provider batch (the OpenAI Batch API) or as a batch file.

Each line is the body an online call would post, and each result becomes what the online stack
would return. Every batch state is stored before going on, so a crash loses no batch id and a resume
never creates a batch twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel

from personahub.core.contracts import CallRecord, CallRequest, Failure, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.provider_batch_records import AWAITING_RESULTS, BatchHandle
from personahub.models.attempts import cached_prompt_tokens, usage
from personahub.models.bounds import unbounded
from personahub.models.failures import RETRYABLE_STATUSES, classify
from personahub.models.provider_batch_lines import (
    CHAT_URL,
    RequestLine,
    ResultLine,
    by_custom_id,
    read_results,
    read_results_file,
    request_line,
    to_jsonl,
    write_jsonl,
)
from personahub.models.seam_validate import Progress
from personahub.models.settings import LLMConfigError
from personahub.models.structured import (
    answer_text,
    mode_of,
    names_mode,
    refused_keywords,
    stripped_of,
)

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage
    from openai import AsyncOpenAI
    from openai.types import Batch

    from personahub.models.client import LLMClient

T = TypeVar("T", bound=BaseModel)
X = TypeVar("X")  # what one Batch API request returns
KEY_FIELD = "personahub_key"
#: line errors of requests a batch never ran: sent again like any transient failure
NOT_RUN = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})
API_TRIES = 4  # attempts at one Batch API request that fails transiently
POLL_FAILURES = 10  # transient poll failures in a row after which waiting stops
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
RequestLines = Callable[[Sequence[Any]], tuple[list[RequestLine], str]]


class BatchApiError(PersonahubError):
    """The endpoint's Batch API refused or failed a request."""


class BatchApi(Protocol):
    """What an endpoint offers a batch: body builder, answer reader, SDK client."""

    label: str

    async def openai_client(self) -> AsyncOpenAI: ...


@runtime_checkable
class BatchWire(BatchApi, Protocol):
    """What a chat endpoint offers a batch: its body builder, its answer reader, its SDK client."""

    index: int

    def request_body(self, request: CallRequest) -> tuple[dict[str, object], str]: ...

    def answer_message(self, body: dict[str, object]) -> AIMessage: ...


@dataclass
class BatchCall(Generic[T]):
    """One structured call travelling by batch, from the caller's ask to its result."""

    key: str
    schema: type[T]
    request: CallRequest
    asked: CallRequest
    progress: Progress = field(default_factory=lambda: Progress([], []))
    resends: int = 0
    result: StructuredResult[T] | None = None

    @property
    def custom_id(self) -> str:
        return f"{self.key}#{self.asked.attempt}"

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class Collected(Generic[T]):
    """What one batch's results did: calls that ended, calls to send again, each line's outcome."""

    finished: list[BatchCall[T]] = field(default_factory=list)
    resend: list[BatchCall[T]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def batch_call(client: LLMClient, schema: type[T], messages: list[Any], *, key: str,
               purpose: str, persona_id: str | None = None, step: int | None = None,
               check: Callable[[T], str | None] | None = None,
               sample: int = 0, max_tokens: int | None = None) -> BatchCall[T]:
    """Return a call to send by batch; the key must be unique within the job and stable across a resume."""
    request = client.request_for(schema, messages, purpose=purpose, persona_id=persona_id,
                                 step=step, check=check, sample=sample, max_tokens=max_tokens)
    return BatchCall(key, schema, request, request)


def batch_endpoint(client: LLMClient, index: int = 0) -> BatchWire:
    """Return the client's endpoint if it can take batches, else a one-line error."""
    endpoints = client.endpoints
    if not 0 <= index < len(endpoints):
        raise LLMConfigError(f"--provider-batch: endpoint {index} does not exist ({len(endpoints)} given)")
    endpoint = endpoints[index]
    if not isinstance(endpoint, BatchWire):
        raise LLMConfigError(f"--provider-batch: {endpoint.label} answers in process and has no Batch "
                             "API; give an OpenAI-compatible --llm")
    return endpoint


def mode_known(client: LLMClient, index: int = 0) -> bool:
    return not client.modes.adaptive or client.modes.settled(index)


def request_lines(client: LLMClient, calls: Sequence[BatchCall[T]],
                  endpoint: int = 0) -> tuple[list[RequestLine], str]:
    """Return the batch file's lines for the calls, as online calls would post them now, and their mode."""
    wire = batch_endpoint(client, endpoint)
    if not calls:
        raise PersonahubError("batch: no calls to send (a batch holds at least one request)")
    lines, modes = [], set()
    for call in calls:
        body, mode = wire.request_body(call.asked)
        modes.add(mode)
        lines.append(request_line(call.custom_id, body))
    if len({line["custom_id"] for line in lines}) < len(lines):
        raise PersonahubError("batch: two calls share a custom_id (their keys must differ)")
    return lines, modes.pop() if len(modes) == 1 else ", ".join(sorted(modes))


def line_failure(line: ResultLine | None, handle: BatchHandle | None = None) -> Failure:
    """Decide what a failed or missing result line means for what happens next."""
    if line is None:
        if handle is not None and handle.status == "failed":
            why = handle.errors[0] if handle.errors else "no reason given"
            return Failure(f"batch failed: {why}"[:400], True)
        return Failure("batch: no result for this request", True)
    code = line.error_code
    if line.status is None:
        return Failure(f"batch {code or 'error'}: {line.message()}"[:400],
                       code in NOT_RUN or code is None)
    message = line.message()
    return Failure(f"HTTP {line.status}: {message}"[:400],
                   line.status in RETRYABLE_STATUSES or line.status >= 500, line.status, message)


def collect(client: LLMClient, calls: Sequence[BatchCall[T]], results: Sequence[ResultLine],
            handle: BatchHandle) -> Collected[T]:
    """Apply one batch's results to the calls it carried. Calls with no result line go out again; a refusal
    naming the mode or keywords moves the endpoint on without spending a retry.
    """
    wire = batch_endpoint(client, handle.endpoint)
    found = by_custom_id(results)
    sent = set(handle.custom_ids)
    mode = handle.structured_mode or client.modes.mode(handle.endpoint)
    latency = (1000 * (handle.finished_at - handle.created_at)
               if handle.finished_at is not None and handle.created_at is not None else 0.0)
    out: Collected[T] = Collected()
    for call in calls:
        if call.done or call.custom_id not in sent:
            continue
        record = call.asked.record(model=wire.label, endpoint=handle.endpoint,
                                   structured_mode=mode,
                                   provider_batch_id=handle.batch_id,
                                   custom_id=call.custom_id, latency_ms=latency,
                                   started_at=handle.created_at or time.time())
        line = found.get(call.custom_id)
        if line is None or not line.answered:
            _failed(client, call, record, line_failure(line, handle), out)
            continue
        message = _answer(wire, line)
        if message is None:
            _failed(client, call, record,
                    Failure("HTTP 200: the body is not a chat.completion", True, 200), out)
            continue
        record.tokens_in, record.tokens_out = usage(message)
        record.cached_prompt_tokens = cached_prompt_tokens(message)
        record.finish_reason = (message.response_metadata or {}).get("finish_reason")
        call.progress.records.append(record)
        result: StructuredResult[T] = StructuredResult(None, [record],
                                                       answer_text(message, mode_of(mode)))
        value, again = client.validated.judge(call.request, call.asked, result, call.progress)
        if again is None:
            _finish(client, call, value)
            out.finished.append(call)
            out.outcomes["ok" if value is not None and record.status == "ok" else "invalid"] += 1
        else:
            call.asked = replace(again, attempt=call.asked.attempt + 1)
            out.resend.append(call)
            out.outcomes["second chance"] += 1
    return out


def _answer(wire: BatchWire, line: ResultLine) -> AIMessage | None:
    try:
        return wire.answer_message(line.body)
    except Exception:  # noqa: BLE001 - a body the reader cannot take is a failed line
        return None


def _failed(client: LLMClient, call: BatchCall[T], record: CallRecord, failure: Failure,
            out: Collected[T]) -> None:
    record.status, record.error = "error", failure.description
    call.progress.records.append(record)
    reason = _learned(client, record, failure)
    if reason is None and failure.retryable and call.resends < client.settings.max_retries:
        call.resends += 1
        reason = failure.description.split(":", 1)[0]
    if reason is None:
        _finish(client, call, None, failure)
        out.finished.append(call)
        out.outcomes["failed"] += 1
        return
    call.asked = replace(call.asked, attempt=call.asked.attempt + 1)
    out.resend.append(call)
    out.outcomes[f"resent: {reason}"] += 1


def _learned(client: LLMClient, record: CallRecord, failure: Failure) -> str | None:
    """Return the reason to resend a call after a refusal taught the endpoint something, else None."""
    sent, index = record.structured_mode, record.endpoint
    if failure.status is None or sent is None or index is None:
        return None
    mode = mode_of(sent)
    refused = refused_keywords(failure.status, failure.body)
    if mode != "prompt" and client.modes.strip(index, refused, stripped_of(sent)):
        record.error = (f"schema keywords {', '.join(sorted(refused))} refused (stripped "
                        f"for this endpoint): {failure.description}")[:400]
        return "schema keywords refused"
    if names_mode(mode, failure.status, failure.body) \
            and client.modes.step_down(index, mode) is not None:
        record.error = f"{sent} refused: {failure.description}"[:400]
        return "structured mode refused"
    return None


def _finish(client: LLMClient, call: BatchCall[T], value: BaseModel | None,
            failure: Failure | None = None) -> None:
    """End a call with its value and count its attempts."""
    done = call.progress
    if value is not None:
        value = unbounded(value, call.schema)
    call.result = StructuredResult(value, done.records, done.raw, done.entries, failure)
    client.stats.add(done.records)


async def finish_online(client: LLMClient, call: BatchCall[T]) -> StructuredResult[T]:
    """Go on online with a call a batch left pending."""
    result = await client.validated.resume(call.request, call.asked, call.progress)
    value = unbounded(result.value, call.schema) if result.value is not None else None
    call.result = StructuredResult(value, result.records, result.raw, result.cache_entries,
                                   result.failure)
    client.stats.add(result.records)
    return call.result


def give_up(client: LLMClient, call: BatchCall[T], reason: str) -> StructuredResult[T]:
    """End a pending call without sending it again."""
    _finish(client, call, None, Failure(reason, False))
    assert call.result is not None
    return call.result


def write_batch_file(path: str | Path, client: LLMClient, calls: Sequence[BatchCall[T]], *,
                     key: str, endpoint: int = 0, job_kind: str | None = None,
                     job_id: str | None = None) -> BatchHandle:
    """Write the calls as a batch input file for another runner."""
    return BatchSession(client, endpoint=endpoint).write_file(path, key, calls, job_kind=job_kind,
                                                              job_id=job_id)


def import_results(client: LLMClient, calls: Sequence[BatchCall[T]], path: str | Path,
                   handle: BatchHandle) -> tuple[BatchHandle, Collected[T]]:
    """Read a results file for a written batch file; the handle is then completed."""
    results = read_results_file(path)
    handle = handle.updated(status="completed", finished_at=time.time(),
                            completed=sum(r.answered for r in results),
                            failed=sum(not r.answered for r in results))
    return handle, collect(client, calls, results, handle)


class BatchSession:
    """One endpoint's Batch API, through its own openai SDK client."""

    def __init__(self, client: LLMClient | None, *, endpoint: int = 0, window: str = "24h",
                 poll_s: float = 5.0, max_poll_s: float = 60.0,
                 on_handle: Callable[[BatchHandle], None] | None = None,
                 wire: BatchApi | None = None, lines: RequestLines | None = None,
                 url: str = CHAT_URL) -> None:
        if poll_s <= 0 or max_poll_s < poll_s:
            raise LLMConfigError(f"batch polling: need 0 < poll_s <= max_poll_s, got {poll_s} "
                                 f"and {max_poll_s}")
        self.client, self.index, self.window, self.url = client, endpoint, window, url
        if client is None and (wire is None or lines is None):
            raise LLMConfigError("batch: a session without a chat client needs its wire and lines")
        self.wire = wire if wire is not None else batch_endpoint(cast("LLMClient", client), endpoint)
        self.lines: RequestLines = lines if lines is not None else partial(
            request_lines, cast("LLMClient", client), endpoint=endpoint)
        self.poll_s, self.max_poll_s, self.on_handle = poll_s, max_poll_s, on_handle

    def _saved(self, handle: BatchHandle) -> BatchHandle:
        if self.on_handle is not None:
            self.on_handle(handle)
        return handle

    def write_file(self, path: str | Path, key: str, calls: Sequence[Any], *,
                   job_kind: str | None = None, job_id: str | None = None) -> BatchHandle:
        """Write the calls as a batch input file; returns the handle to store."""
        lines, mode = self.lines(calls)
        write_jsonl(path, lines)
        return BatchHandle(key=key, endpoint=self.index, model=self.wire.label,
                           custom_ids=tuple(line["custom_id"] for line in lines),
                           structured_mode=mode, job_kind=job_kind, job_id=job_id,
                           batch_id=f"file:{Path(path).name}", status=AWAITING_RESULTS,
                           created_at=time.time())

    async def submit(self, key: str, calls: Sequence[Any], *,
                     job_kind: str | None = None, job_id: str | None = None) -> BatchHandle:
        """Upload the calls and create the batch, keyed in its metadata."""
        lines, mode = self.lines(calls)
        handle = self._saved(BatchHandle(
            key=key, endpoint=self.index, model=self.wire.label,
            custom_ids=tuple(line["custom_id"] for line in lines), window=self.window,
            structured_mode=mode, job_kind=job_kind, job_id=job_id))
        return await self._start(handle, to_jsonl(lines))

    async def resume(self, handle: BatchHandle, calls: Sequence[Any] = ()) -> BatchHandle:
        """Return a stored handle, created for sure: a batch created before a crash is found by its key."""
        if handle.batch_id is not None or handle.status == AWAITING_RESULTS:
            return handle
        found = await self.find(handle.key)
        if found is not None:
            return self._saved(_from_batch(handle, found))
        data = None
        if handle.input_file_id is None:
            wanted = set(handle.custom_ids)
            mine = [c for c in calls if c.custom_id in wanted]
            if len(mine) != len(wanted):
                raise PersonahubError(f"batch {handle.key}: resuming its upload needs its "
                                      f"{len(wanted)} calls; {len(mine)} were given")
            lines, mode = self.lines(mine)
            handle, data = handle.updated(structured_mode=mode), to_jsonl(lines)
        return await self._start(handle, data)

    async def _start(self, handle: BatchHandle, data: bytes | None) -> BatchHandle:
        sdk = await self.wire.openai_client()
        if handle.input_file_id is None:
            assert data is not None
            name = f"{_SAFE.sub('_', handle.key)[:80]}.jsonl"
            uploaded = await self._api("upload the batch file", lambda: sdk.files.create(
                file=(name, data), purpose="batch"))
            handle = self._saved(handle.updated(input_file_id=uploaded.id))
        return self._saved(_from_batch(handle, await self._create(sdk, handle)))

    async def _create(self, sdk: AsyncOpenAI, handle: BatchHandle) -> Batch:
        """Create a batch; a create that failed in transit may have been made, so look first."""
        # the SDK types the window and URL as OpenAI's values; other servers take others
        batches: Any = sdk.batches
        for attempt in range(1, API_TRIES + 1):
            try:
                return await batches.create(
                    input_file_id=handle.input_file_id, endpoint=self.url,
                    completion_window=handle.window, metadata={KEY_FIELD: handle.key})
            except Exception as exc:  # noqa: BLE001 - classified below
                failure = classify(exc)
                if not failure.retryable or attempt == API_TRIES:
                    raise self._error("create the batch", failure) from None
            found = await self.find(handle.key)
            if found is not None:
                return found
            await asyncio.sleep(min(self.max_poll_s, self.poll_s * attempt))
        raise AssertionError("unreachable")

    async def find(self, key: str, pages: int = 5) -> Batch | None:
        """Find the newest recent batch created with a key, or None."""
        sdk = await self.wire.openai_client()
        page = await self._api("list batches", lambda: sdk.batches.list(limit=100))
        for _ in range(pages):
            for batch in page.data:
                if (batch.metadata or {}).get(KEY_FIELD) == key:
                    return batch
            if not page.has_next_page():
                return None
            page = await self._api("list batches", page.get_next_page)
        return None

    async def refresh(self, handle: BatchHandle) -> BatchHandle:
        sdk = await self.wire.openai_client()
        batch = await self._api("read the batch", lambda: sdk.batches.retrieve(
            cast(str, handle.batch_id)))  # None: the SDK refuses it
        updated = _from_batch(handle, batch)
        return self._saved(updated) if updated != handle else handle

    async def wait(self, handle: BatchHandle, *,
                   on_status: Callable[[BatchHandle], None] | None = None) -> BatchHandle:
        if handle.batch_id is None:
            raise PersonahubError(f"batch {handle.key} has not been created; resume it first")
        delay, failures = self.poll_s, 0
        while not handle.done:
            try:
                handle = await self.refresh(handle)
                failures = 0
            except BatchApiError as exc:
                failures += 1
                if not getattr(exc, "retryable", False) or failures >= POLL_FAILURES:
                    raise
            if on_status is not None:
                on_status(handle)
            if handle.done:
                break
            await asyncio.sleep(delay)
            delay = min(self.max_poll_s, delay * 1.5)
        return handle

    async def cancel(self, handle: BatchHandle) -> BatchHandle:
        sdk = await self.wire.openai_client()
        batch = await self._api("cancel the batch", lambda: sdk.batches.cancel(
            cast(str, handle.batch_id)))  # None: the SDK refuses it
        return self._saved(_from_batch(handle, batch))

    async def results(self, handle: BatchHandle) -> list[ResultLine]:
        """Return the result lines of a finished batch."""
        sdk = await self.wire.openai_client()
        lines: list[ResultLine] = []
        for file_id in (handle.output_file_id, handle.error_file_id):
            if file_id:
                content = await self._api("download the results", partial(sdk.files.content,
                                                                          file_id))
                lines.extend(read_results(content.content, f"{handle.batch_id} file {file_id}"))
        return lines

    async def forget(self, handle: BatchHandle) -> None:
        """Delete the batch's files at the provider once its results are committed."""
        sdk = await self.wire.openai_client()
        for file_id in (handle.input_file_id, handle.output_file_id, handle.error_file_id):
            if file_id:
                try:
                    await sdk.files.delete(file_id)
                except Exception:  # noqa: BLE001, S112 - a file already gone is what was wanted
                    continue

    async def _api(self, what: str, request: Callable[[], Awaitable[X]]) -> X:
        """One Batch API request, retried while its failure is transient."""
        for attempt in range(1, API_TRIES + 1):
            try:
                return await request()
            except Exception as exc:  # noqa: BLE001 - classified below
                failure = classify(exc)
                if not failure.retryable or attempt == API_TRIES:
                    raise self._error(what, failure) from None
            await asyncio.sleep(min(self.max_poll_s, self.poll_s * attempt))
        raise AssertionError("unreachable")

    def _error(self, what: str, failure: Failure) -> BatchApiError:
        hint = ""
        if failure.status in (404, 405):
            hint = ("; this server has no Batch API (vLLM's server has none: write the requests "
                    "with --provider-batch-file and run them with `vllm run-batch`)")
        elif failure.status in (401, 403):
            hint = "; the server refuses the credentials"
        error = BatchApiError(f"batch API at {self.wire.label}: cannot {what} "
                              f"({failure.description}){hint}")
        error.retryable = failure.retryable  # type: ignore[attr-defined]
        return error


def _from_batch(handle: BatchHandle, batch: Batch) -> BatchHandle:
    counts = batch.request_counts
    ended = next((t for t in (batch.completed_at, batch.failed_at, batch.expired_at,
                              batch.cancelled_at) if t is not None), None)
    errors = tuple(f"line {e.line}: {e.code}: {e.message}" if e.line else f"{e.code}: {e.message}"
                   for e in ((batch.errors.data or []) if batch.errors else []))
    return handle.updated(batch_id=batch.id, input_file_id=batch.input_file_id,
                          status=batch.status, output_file_id=batch.output_file_id,
                          error_file_id=batch.error_file_id,
                          completed=counts.completed if counts else 0,
                          failed=counts.failed if counts else 0,
                          created_at=float(batch.created_at),
                          finished_at=None if ended is None else float(ended), errors=errors)
