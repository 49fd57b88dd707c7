"""Retry what can succeed on retry; step the structured mode down on a refusal; stop fast.

Policy from ``agents.llm.failures``: transient failures (429, 5xx gateways, timeouts, dropped
connections) are retried with jittered exponential backoff, honouring ``Retry-After``; a refusal
that names schema keywords strips them for that endpoint (``ModeBook.strip``) and asks again at
once; one that names the structured mode moves the endpoint to the next mode (``ModeBook``) and
asks again at once; any other rejection ends the call, and ``FailFast`` stops the job when an endpoint's first
attempts all fail for one reason. A call whose only endpoints are unreachable raises
``LLMUnavailable``. Every attempt's record comes back with the result (or with the exception).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from personahub.agents.llm.failures import FailFast
from personahub.agents.llm.settings import LLMUnavailable
from personahub.agents.llm.structured import ModeBook, mode_of, names_mode, refused_keywords, stripped_of
from personahub.core.contracts import (
    CallRecord,
    CallRequest,
    Failure,
    ModelEndpoint,
    StructuredResult,
    carry_records,
)


class Retrying:
    """Asks the layer below again while the failure allows it (see the module doc)."""

    def __init__(self, inner: ModelEndpoint, *, max_retries: int, backoff_s: float,
                 modes: ModeBook, fail_fast: FailFast,
                 on_timeout: Callable[[], int | None] | None = None) -> None:
        self.inner, self.modes, self.fail_fast = inner, modes, fail_fast
        self.max_retries, self.backoff_s, self.on_timeout = max_retries, backoff_s, on_timeout

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The first answer, or the last failure once retrying cannot help."""
        records: list[CallRecord] = []
        transient = 0
        while True:
            result = await self.inner.call(request)
            records.extend(result.records)
            failure, record = result.failure, result.last
            if failure is None:
                if record.endpoint is not None:
                    self.fail_fast.succeeded(record.endpoint)  # it answered: it takes the request
                result.records = records
                return result
            try:
                transient = await self._after_failure(failure, record, transient)
            except Exception as exc:
                carry_records(exc, records)
                raise
            if transient < 0:
                return StructuredResult(None, records, None, result.cache_entries, failure)
            request = replace(request, attempt=request.attempt + len(result.records),
                              after=record.endpoint)

    def _refused_keywords(self, failure: Failure, record: CallRecord) -> frozenset[str]:
        """The schema keywords the failure refuses that the call still sent (now stripped for
        its endpoint), or none."""
        sent, index = record.structured_mode, record.endpoint
        if failure.retryable or sent is None or index is None or mode_of(sent) == "prompt":
            return frozenset()
        refused = refused_keywords(failure.status, failure.body)
        return refused if self.modes.strip(index, refused, stripped_of(sent)) else frozenset()

    def _refused_mode(self, failure: Failure, record: CallRecord) -> bool:
        """True when the failure refuses the structured mode and ``auto`` has another to try."""
        sent, index = record.structured_mode, record.endpoint
        if failure.retryable or sent is None or index is None:
            return False
        mode = mode_of(sent)
        return (names_mode(mode, failure.status, failure.body)
                and self.modes.step_down(index, mode) is not None)

    async def _after_failure(self, failure: Failure, record: CallRecord, transient: int) -> int:
        """The transient-failure count to go on with (after any backoff), or -1 to give up."""
        keywords = self._refused_keywords(failure, record)
        if keywords:  # ask again without them, at once
            record.error = (f"schema keywords {', '.join(sorted(keywords))} refused (stripped for "
                            f"this endpoint): {failure.description}")[:400]
            return transient
        if self._refused_mode(failure, record):  # ask again in the endpoint's new mode, at once
            record.error = f"{record.structured_mode} refused: {failure.description}"[:400]
            return transient
        if not failure.retryable:
            if record.endpoint is not None:
                self.fail_fast.failed(record.endpoint, failure, record.model,
                                      record.structured_mode or "", self.modes.setting)
            return -1
        transient += 1
        if failure.description == "timeout" and self.on_timeout is not None:
            lowered = self.on_timeout()
            if lowered is not None:
                record.error = f"timeout (concurrency lowered to {lowered})"
        if transient > self.max_retries:
            if failure.unreachable and not failure.other_endpoint_up:
                raise LLMUnavailable(f"model endpoint {record.model} is unreachable "
                                     f"({failure.description}); check --llm / PERSONAHUB_LLM")
            return -1
        if not (failure.unreachable and failure.other_endpoint_up):  # else: fail over at once
            await asyncio.sleep(self._delay(failure, transient))
        return transient

    def _delay(self, failure: Failure, transient: int) -> float:
        """Jittered exponential backoff, or longer when the server says when (``Retry-After``)."""
        delay = self.backoff_s * 2 ** (transient - 1) * (0.5 + random.random())
        if failure.retry_after_s is not None:
            delay = max(delay, failure.retry_after_s)
        return delay
