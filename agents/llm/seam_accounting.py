"""Accounting: running totals of every attempt (what progress displays show).

Records and cache entries come back with each result and nowhere else: this layer only counts
them, so two jobs sharing a client never see each other's records. A call that ends in an
exception still counts, from the records the exception carries (``contracts.carry_records``).
"""

from __future__ import annotations

from typing import Any

from personahub.core.contracts import (
    CallRequest,
    CallStats,
    ModelEndpoint,
    StructuredResult,
    carried_records,
)

__all__ = ["Accounted", "CallStats"]


class Accounted:
    """Counts every finished call's attempts, including those of a call that raised."""

    def __init__(self, inner: ModelEndpoint) -> None:
        self.inner = inner
        self.stats = CallStats()

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The result of the layer below, counted."""
        try:
            result = await self.inner.call(request)
        except Exception as exc:
            self.stats.add(carried_records(exc))
            raise
        self.stats.add(result.records)
        return result
