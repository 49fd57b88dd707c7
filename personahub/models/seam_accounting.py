"""Accounting: running totals of every attempt, the liveness a watchdog reads, and the record sink.

This layer only counts records, which come back with each result, so two jobs sharing a client
never see each other's. A call that raised still counts, from the records its exception carries."""

from __future__ import annotations

from typing import Any

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import (
    CallRequest,
    CallStats,
    ModelEndpoint,
    StructuredResult,
    carried_records,
)
from personahub.models.liveness import Liveness

__all__ = ["Accounted", "CallStats"]


class Accounted:
    """Counts every finished call's attempts, including those of a call that raised."""

    def __init__(self, inner: ModelEndpoint, *, liveness: Liveness | None = None,
                 spill: SinkSlot | None = None) -> None:
        self.inner = inner
        self.stats = CallStats()
        self.liveness = liveness if liveness is not None else Liveness(float("inf"))
        self.spill = spill if spill is not None else SinkSlot()

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """Return the result of the layer below, counted."""
        self.liveness.started()
        try:
            result = await self.inner.call(request)
        except BaseException as exc:
            records = carried_records(exc)
            self.liveness.finished()
            self.stats.add(records)
            sink = self.spill.sink
            if sink is not None:
                sink.done(records)
            raise
        self.liveness.finished()
        self.stats.add(result.records)
        sink = self.spill.sink
        if sink is not None:
            sink.done(result.records)
        return result
