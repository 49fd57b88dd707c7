"""Validate each answer against its schema and the job's check; give a weak answer one more try.

The failure policy's quality half (its endpoint half is ``models.failures``): an answer that
is not valid JSON for the schema after a local repair (``models.repair``), was cut off at
``max_tokens``, or that the job's ``check`` (quality gate, validator) rejects, earns exactly one
more attempt, a *fresh sample* (``CallRequest.sample``): not a cache hit, not the same request.
An invalid answer's second attempt is the repair prompt (the answer shown back with what is
wrong with it: another request); a cut-off or rejected answer's is the original request with
``sample`` + 1, sampled again (showing a runaway back would only make the prompt longer). The
offline engine answers a fresh sample deterministically from (seed, prompt, sample). After the
second failure the call ends: every attempt is a record with its reason, and the job counts the
item as failed and goes on.
With ``--structured auto``, answers with no JSON at all tell ``ModeBook`` that the server ignores
the mode: the endpoint steps down and the call is asked again in the next mode (that re-ask is
the endpoint's, and spends no second chance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import (
    CacheEntry,
    CallRecord,
    CallRequest,
    ModelEndpoint,
    StructuredResult,
    carry_records,
)
from personahub.models.repair import check_answer
from personahub.models.structured import ModeBook, mode_of

# how the repair prompt opens and ends (``models.fake_server.server`` knows a repair turn by them)
REPAIR_OPENING = "That answer is not valid for the schema"
REPAIR_CLOSING = "Reply again with only valid JSON for the schema."


@dataclass
class Progress:
    """What one call has spent so far: its attempts, cache entries and second chances (a
    batched call carries one from batch to batch, ``models.provider_batch``)."""

    records: list[CallRecord]
    entries: list[CacheEntry]
    raw: str | None = None
    retried: bool = False  # the one fresh sample is spent

    def result(self, value: Any = None, failure: Any = None) -> StructuredResult[Any]:
        return StructuredResult(value, self.records, self.raw, self.entries, failure)


class Validated:
    """Returns a validated value, or None once the second chance is spent; ``modes`` is None
    when no endpoint negotiates a structured mode (all take the schema natively). A value the
    job's check rejects twice is returned all the same (its last record says why): the job
    records the rejected item with its reason."""

    def __init__(self, inner: ModelEndpoint, *, modes: ModeBook | None,
                 spill: SinkSlot | None = None) -> None:
        self.inner, self.modes = inner, modes
        self.spill = spill if spill is not None else SinkSlot()

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The validated answer of ``request`` (see the module doc for the second chances)."""
        return await self.resume(request, request, Progress([], []))

    async def resume(self, request: CallRequest, asked: CallRequest,
                     done: Progress) -> StructuredResult[Any]:
        """Go on with a call of ``request`` that has spent ``done`` and asks ``asked`` next
        (``call`` starts one; a batched call left pending goes on online from here)."""
        while True:
            try:
                result = await self.inner.call(asked)
            except Exception as exc:
                carry_records(exc, done.records)
                raise
            done.records.extend(result.records)
            done.entries.extend(result.cache_entries)
            if result.failure is not None or result.raw is None:
                return done.result(failure=result.failure)
            value, again = self.judge(request, asked, result, done)
            if again is None:
                return done.result(value)
            sink = self.spill.sink
            if sink is not None:  # judged: the answer's record is final before it is asked again
                sink.early(result.records)
            asked = replace(again, attempt=asked.attempt + len(result.records))

    def judge(self, request: CallRequest, asked: CallRequest, result: StructuredResult[Any],
              done: Progress) -> tuple[Any, CallRequest | None]:
        """(value, None) when the call ends here, else (None, the request to ask next):
        ``asked`` again in another mode, or the one fresh sample built on the original
        ``request``. ``result`` is the answer to ``asked``; ``done`` is updated."""
        done.raw = result.raw
        record, raw = result.last, result.raw or ""
        checked = check_answer(request.schema, raw, truncated=result.truncated)
        switched = None
        if (self.modes is not None and not record.cached and record.endpoint is not None
                and record.structured_mode):
            switched = self.modes.answered(record.endpoint, mode_of(record.structured_mode),
                                           checked.has_json)
        if checked.value is not None:
            rejected = request.check(checked.value) if request.check is not None else None
            record.status, record.repaired = "ok", checked.repaired
            if rejected is None:
                return checked.value, None
            record.status, record.error = "invalid", f"rejected: {rejected}"[:400]
            if done.retried:
                return checked.value, None
            done.retried = True
            return None, replace(request, sample=request.sample + 1)
        record.status, record.error = "invalid", checked.error
        if switched is not None:  # the server ignores this mode: ask again in the next one
            record.error = f"{record.structured_mode} ignored by the server: {checked.error}"[:400]
            return None, asked
        if done.retried:
            return None, None
        done.retried = True
        if result.truncated:
            return None, replace(request, sample=request.sample + 1)
        return None, self._repair_request(request, raw, record.error)

    @staticmethod
    def _repair_request(request: CallRequest, raw: str, error: str | None) -> CallRequest:
        """The second attempt at an invalid answer: the answer shown back with what is wrong
        with it (another request already, so its ``sample`` stays: the offline engine answers
        it as it always did)."""
        messages = [*request.messages, AIMessage(raw[:4000]),
                    HumanMessage(f"{REPAIR_OPENING} ({error}). {REPAIR_CLOSING}")]
        return replace(request, messages=messages)
