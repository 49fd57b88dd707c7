"""Accounting: running totals of every attempt (what progress displays show).

Records and cache entries come back with each result. Until every job loop takes them from
results (issue 10's job kernel), this layer also keeps them in a buffer that
``LLMClient.drain_records`` hands over — a transitional second path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from personahub.agents.contracts import (
    CallRecord,
    CallRequest,
    ModelEndpoint,
    StructuredResult,
    carried_records,
)


@dataclass
class CallStats:
    """Running totals of the attempts a client made (what progress displays show)."""

    attempts: int = 0
    ok: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, records: Sequence[CallRecord]) -> None:
        """Count ``records`` (a finished call's attempts)."""
        for record in records:
            self.attempts += 1
            self.tokens_in += record.tokens_in
            self.tokens_out += record.tokens_out
        if records:
            if records[-1].status == "ok":
                self.ok += 1
            else:
                self.failed += 1

    def rate(self) -> float:
        """Attempts per second since the client was made."""
        return self.attempts / max(1e-9, time.monotonic() - self.started)


class Accounted:
    """Counts every finished call's attempts, including those of a call that raised."""

    def __init__(self, inner: ModelEndpoint) -> None:
        self.inner = inner
        self.stats = CallStats()
        self._records: list[CallRecord] = []

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    def _keep(self, records: list[CallRecord]) -> None:
        self._records.extend(records)
        self.stats.add(records)

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The result of the layer below, counted."""
        try:
            result = await self.inner.call(request)
        except Exception as exc:
            self._keep(carried_records(exc))
            raise
        self._keep(result.records)
        return result

    def drain_records(self) -> list[CallRecord]:
        """Transitional: hand over (and forget) the records kept since the last drain."""
        records, self._records = self._records, []
        return records
