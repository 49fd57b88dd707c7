"""Round-robin over endpoints, with failover: a retry goes to the next endpoint, and one that refuses
connections is skipped for a cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from pydantic import BaseModel

from personahub.core.contracts import CallRequest, ModelEndpoint, StructuredResult
from personahub.models.failures import FailFast

DEAD_ENDPOINT_COOLDOWN_S = 5.0


class Failover:
    """Sends each call to the next endpoint in turn (after the failed one for a retry)."""

    def __init__(self, endpoints: Sequence[ModelEndpoint],
                 cooldown_s: float = DEAD_ENDPOINT_COOLDOWN_S,
                 fail_fast: FailFast | None = None) -> None:
        if not endpoints:
            raise ValueError("failover needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.cooldown_s = cooldown_s
        self.fail_fast = fail_fast
        self._next = 0
        self._down_until = [0.0] * len(self.endpoints)

    @property
    def label(self) -> str:
        return ",".join(e.label for e in self.endpoints)

    def mark_down(self, index: int, seconds: float | None = None) -> None:
        """Skip an endpoint for some seconds (it refused a connection)."""
        self._down_until[index] = time.monotonic() + (self.cooldown_s if seconds is None else seconds)

    def healthy_other(self, index: int) -> bool:
        """Return True when another endpoint is not marked down."""
        now = time.monotonic()
        return any(i != index and until <= now for i, until in enumerate(self._down_until))

    def pick(self, after: int | None = None) -> int:
        """Return the next endpoint in round-robin, skipping dead ones."""
        n = len(self.endpoints)
        if after is None:
            start, self._next = self._next, self._next + 1
        else:
            start = after + 1
        if n > 1:
            now = time.monotonic()
            for offset in range(n):
                index = (start + offset) % n
                if self._down_until[index] <= now:
                    return index
        return start % n  # all down (or only one): try it anyway

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        """Make the call on the picked endpoint; an unreachable one is marked down. Nothing is sent once the
        job is stopped.
        """
        if self.fail_fast is not None:
            self.fail_fast.check()
        index = self.pick(request.after)
        result = await self.endpoints[index].call(request)
        failure = result.failure
        if failure is None:
            self._down_until[index] = 0.0
        elif failure.unreachable:
            if len(self.endpoints) > 1:
                self.mark_down(index)
            result.failure = replace(failure, other_endpoint_up=self.healthy_other(index))
        return result
