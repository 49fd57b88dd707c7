"""Validate each answer against its schema and the job's check; give a weak answer one more try.

An invalid (after local repair), cut-off or rejected answer earns one more attempt: the repair prompt
for an invalid one, a fresh sample for the others. Answers with no JSON at all step an auto
endpoint's mode down without spending that chance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import (
    CacheEntry,
    CallRecord,
    CallRequest,
    Failure,
    ModelEndpoint,
    StructuredResult,
    carry_records,
)
from personahub.models.repair import check_answer
from personahub.models.structured import ModeBook, mode_of

# how the repair prompt opens and ends (the loopback server knows a repair turn by them)
REPAIR_OPENING = "That answer is not valid for the schema"
REPAIR_CLOSING = "Reply again with only valid JSON for the schema."


@dataclass
class Progress:
    """What one call has spent: attempts, cache entries and second chances (a batched call carries it from
    batch to batch).
    """

    records: list[CallRecord]
    entries: list[CacheEntry]
    raw: str | None = None
    retried: bool = False  # the one fresh sample is spent

    def result(self, value: BaseModel | None = None,
               failure: Failure | None = None) -> StructuredResult[Any]:
        return StructuredResult(value, self.records, self.raw, self.entries, failure)


class Validated:
    """Returns a validated value, or None once the second chance is spent. A value the check rejects twice
    is returned all the same, its last record saying why, so the job records the rejected item.
    """

    def __init__(self, inner: ModelEndpoint, *, modes: ModeBook | None,
                 spill: SinkSlot | None = None) -> None:
        self.inner, self.modes = inner, modes
        self.spill = spill if spill is not None else SinkSlot()

    @property
    def label(self) -> str:
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """Return the validated answer of a request."""
        return await self.resume(request, request, Progress([], []))

    async def resume(self, request: CallRequest, asked: CallRequest,
                     done: Progress) -> StructuredResult[Any]:
        """Go on with a call that has spent some attempts and asks a given request next."""
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
              done: Progress) -> tuple[BaseModel | None, CallRequest | None]:
        """Return the value when the call ends here, else the request to ask next; the progress is updated."""
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
        """Return the repair prompt: the answer shown back with what is wrong (same sample)."""
        messages = [*request.messages, AIMessage(raw[:4000]),
                    HumanMessage(f"{REPAIR_OPENING} ({error}). {REPAIR_CLOSING}")]
        return replace(request, messages=messages)
