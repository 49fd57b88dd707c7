"""Validate each answer against its schema, repair it, and learn what the server ignores.

An invalid answer is first repaired locally (``agents.repair``); if it stays invalid, the same
request is sent once more (a glitch costs one identical call and changes nothing; skipped for a
deterministic endpoint, which would answer the same), then the model gets one repair prompt.
With ``--structured auto``, answers with no JSON at all tell ``ModeBook`` that the server ignores
the mode: the endpoint steps down and the call is asked again in the next mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from personahub.agents.contracts import (
    CacheEntry,
    CallRecord,
    CallRequest,
    ModelEndpoint,
    StructuredResult,
    carry_records,
)
from personahub.agents.repair import check_answer
from personahub.agents.structured import ModeBook, mode_of


@dataclass
class _Progress:
    """What one call has spent so far: its attempts, cache entries and second chances."""

    records: list[CallRecord]
    entries: list[CacheEntry]
    raw: str | None = None
    resent: bool = False
    repaired: bool = False

    def result(self, value: Any = None, failure: Any = None) -> StructuredResult[Any]:
        return StructuredResult(value, self.records, self.raw, self.entries, failure)


class Validated:
    """Returns a validated value, or None once the second chances are spent; ``modes`` is None
    when no endpoint negotiates a structured mode (all take the schema natively)."""

    def __init__(self, inner: ModelEndpoint, *, modes: ModeBook | None,
                 resend: bool = True) -> None:
        self.inner, self.modes, self.resend = inner, modes, resend

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The validated answer of ``request`` (see the module doc for the second chances)."""
        done = _Progress([], [])
        asked = request
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
            done.raw = result.raw
            value, again = self._judge(request, asked, result, done)
            if again is None:
                return done.result(value)
            asked = replace(again, attempt=asked.attempt + len(result.records))

    def _judge(self, request: CallRequest, asked: CallRequest, result: StructuredResult[Any],
               done: _Progress) -> tuple[Any, CallRequest | None]:
        """(value, None) when the call ends here, else (None, the request to ask next):
        ``asked`` again, or a repair prompt built on the original ``request``."""
        record, raw = result.last, result.raw or ""
        checked = check_answer(request.schema, raw, truncated=result.truncated)
        switched = None
        if (self.modes is not None and not record.cached and record.endpoint is not None
                and record.structured_mode):
            switched = self.modes.answered(record.endpoint, mode_of(record.structured_mode),
                                           checked.has_json)
        if checked.value is not None:
            record.status, record.repaired = "ok", checked.repaired
            return checked.value, None
        record.status, record.error = "invalid", checked.error
        if switched is not None:  # the server ignores this mode: ask again in the next one
            record.error = f"{record.structured_mode} ignored by the server: {checked.error}"[:400]
            return None, asked
        if self.resend and not done.resent and not result.truncated:
            done.resent = True
            return None, asked
        if done.repaired:
            return None, None
        done.repaired = True
        return None, self._repair_request(request, raw, result.truncated, record.error)

    @staticmethod
    def _repair_request(request: CallRequest, raw: str, truncated: bool,
                        error: str | None) -> CallRequest:
        """The one paid repair: the answer shown back with what is wrong with it."""
        problem = ("It was cut off: give a shorter answer." if truncated
                   else f"That answer is not valid for the schema ({error}).")
        messages = [*request.messages, AIMessage(raw[:4000]),
                    HumanMessage(f"{problem} Reply again with only valid JSON for the schema.")]
        return replace(request, messages=messages)
