"""Retry what can succeed on retry, within the call's budget; step the structured mode down on a
refusal; stop fast.

The budget also runs from the last answer of any call: otherwise, with calls queued behind a
concurrency of 1, a dead server would let each call spend its budget in turn. A fault that outlasts
the budget stops the job, resumably.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace

from pydantic import BaseModel

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import (
    CallRecord,
    CallRequest,
    Failure,
    ModelEndpoint,
    StructuredResult,
    carry_records,
)
from personahub.models.failures import FailFast
from personahub.models.settings import (
    CALL_BUDGET_SLACK_S,
    CALL_BUDGET_TIMEOUTS,
    EndpointFailing,
    LLMUnavailable,
)
from personahub.models.structured import ModeBook, mode_of, names_mode, refused_keywords, stripped_of

BACKOFF_CAP_S = 2.0  # one backoff at most (before jitter), unless the server says longer


class Retrying:
    """Asks the layer below again while the failure and the budget allow it."""

    def __init__(self, inner: ModelEndpoint, *, max_retries: int, backoff_s: float,
                 modes: ModeBook, fail_fast: FailFast,
                 on_timeout: Callable[[], int | None] | None = None,
                 budget_s: float = math.inf, attempt_s: float = 0.0,
                 spill: SinkSlot | None = None, server: str = "--llm") -> None:
        self.inner, self.modes, self.fail_fast = inner, modes, fail_fast
        self.server = server  # what the stop line tells the user to check
        self.max_retries, self.backoff_s, self.on_timeout = max_retries, backoff_s, on_timeout
        self.budget_s, self.attempt_s = budget_s, attempt_s
        self.spill = spill if spill is not None else SinkSlot()
        self._answered_at = -math.inf  # monotonic time of the last answer
        self._failing_since: float | None = None  # the first failed attempt's start since then

    @property
    def label(self) -> str:
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        """Return the first answer, or the last failure once retrying cannot help."""
        records: list[CallRecord] = []
        transient = 0
        started = time.monotonic()
        while True:
            try:
                result = await self.inner.call(request)
            except Exception as exc:  # (fail fast, a cache miss) the earlier attempts go with it
                carry_records(exc, records)
                raise
            records.extend(result.records)
            failure, record = result.failure, result.last
            if failure is None:
                self._answered_at, self._failing_since = time.monotonic(), None
                if record.endpoint is not None:
                    self.fail_fast.succeeded(record.endpoint)
                result.records = records
                return result
            try:
                spent = time.monotonic() - started - sum(r.queue_ms for r in records) / 1000
                transient = await self._after_failure(failure, record, transient, spent,
                                                      result.records)
            except Exception as exc:
                carry_records(exc, records)
                raise
            if transient < 0:
                return StructuredResult(None, records, None, result.cache_entries, failure)
            request = replace(request, attempt=request.attempt + len(result.records),
                              after=record.endpoint,
                              stragglers=request.stragglers + int(failure.straggler))

    def _refused_keywords(self, failure: Failure, record: CallRecord) -> frozenset[str]:
        """Return the refused schema keywords the call still sent (now stripped), or none."""
        sent, index = record.structured_mode, record.endpoint
        if failure.retryable or sent is None or index is None or mode_of(sent) == "prompt":
            return frozenset()
        refused = refused_keywords(failure.status, failure.body)
        return refused if self.modes.strip(index, refused, stripped_of(sent)) else frozenset()

    def _refused_mode(self, failure: Failure, record: CallRecord) -> bool:
        """Return True when the failure refuses the structured mode and auto has another to try."""
        sent, index = record.structured_mode, record.endpoint
        if failure.retryable or sent is None or index is None:
            return False
        mode = mode_of(sent)
        return (names_mode(mode, failure.status, failure.body)
                and self.modes.step_down(index, mode) is not None)

    async def _after_failure(self, failure: Failure, record: CallRecord, transient: int,
                             spent: float, attempt: list[CallRecord]) -> int:
        """Return the transient-failure count to go on with (after any backoff), or -1 to give up."""
        keywords = self._refused_keywords(failure, record)
        if keywords:  # ask again without them, at once
            record.error = (f"schema keywords {', '.join(sorted(keywords))} refused (stripped for "
                            f"this endpoint): {failure.description}")[:400]
            self._decided(attempt)
            return transient
        if self._refused_mode(failure, record):  # ask again in the endpoint's new mode, at once
            record.error = f"{record.structured_mode} refused: {failure.description}"[:400]
            self._decided(attempt)
            return transient
        if not failure.retryable:
            self._decided(attempt)
            if record.endpoint is not None:
                self.fail_fast.failed(record.endpoint, failure, record.model,
                                      record.structured_mode or "", self.modes.setting)
            return -1
        transient += 1
        self._lower_on_timeout(failure, record)
        self._decided(attempt)
        failover = failure.unreachable and failure.other_endpoint_up  # another endpoint, at once
        delay = 0.0 if failover or failure.straggler else self._delay(failure, transient)
        outage = self._outage_s(record)
        if (transient > self.max_retries
                or max(spent, outage) + delay + self.attempt_s > self.budget_s):
            if failure.unreachable and not failure.other_endpoint_up:
                raise LLMUnavailable(f"model endpoint {record.model} is unreachable "
                                     f"({failure.description}); check --llm / PERSONAHUB_LLM")
            raise EndpointFailing(self._spent(failure, record, transient, spent, delay)
                                  if transient > self.max_retries or spent >= outage
                                  else self._unanswered(failure, record, outage, delay))
        if delay:
            await asyncio.sleep(delay)
        return transient

    def _lower_on_timeout(self, failure: Failure, record: CallRecord) -> None:
        """Lower the adaptive concurrency on a timeout, and say so in its record."""
        if failure.description == "timeout" and self.on_timeout is not None:
            lowered = self.on_timeout()
            if lowered is not None:
                record.error = f"timeout (concurrency lowered to {lowered})"

    def _outage_s(self, record: CallRecord) -> float:
        """Seconds since the first failed attempt of any call after the last answer."""
        now = time.monotonic()
        sent = max(now - (record.latency_ms or 0.0) / 1000, self._answered_at)
        if self._failing_since is None or sent < self._failing_since:
            self._failing_since = sent
        return now - self._failing_since

    def _unanswered(self, failure: Failure, record: CallRecord, outage: float,
                    delay: float) -> str:
        """Return the line that stops the job when no call was answered for the budget."""
        return (f"model endpoint {record.model} kept failing: no call was answered in "
                f"{outage + delay:.0f} s, the last attempt: {failure.description[:160]}; another "
                f"attempt could end past the {self.budget_s:.0f} s retry budget "
                f"({CALL_BUDGET_TIMEOUTS} x --timeout + {CALL_BUDGET_SLACK_S:g} s); check the "
                f"{self.server} server")

    def _decided(self, attempt: list[CallRecord]) -> None:
        sink = self.spill.sink
        if sink is not None:
            sink.early(attempt)

    def _spent(self, failure: Failure, record: CallRecord, transient: int, spent: float,
               delay: float) -> str:
        """Return the line that stops the job when a call's budget is spent."""
        why = (f"all {self.max_retries} retries failed" if transient > self.max_retries
               else f"another attempt could end past the call's {self.budget_s:.0f} s retry budget "
                    f"({CALL_BUDGET_TIMEOUTS} x --timeout + {CALL_BUDGET_SLACK_S:g} s)")
        attempts = "1 attempt" if transient == 1 else f"{transient} attempts"
        return (f"model endpoint {record.model} kept failing: one call made {attempts} in "
                f"{spent + delay:.0f} s, the last: {failure.description[:160]}; {why}; check the "
                f"{self.server} server")

    def _delay(self, failure: Failure, transient: int) -> float:
        """Jittered exponential backoff, or longer when the server says (Retry-After)."""
        delay = min(BACKOFF_CAP_S, self.backoff_s * 2 ** (transient - 1)) * (0.5 + random.random())
        if failure.retry_after_s is not None:
            delay = max(delay, failure.retry_after_s)
        return delay
