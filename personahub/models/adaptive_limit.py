"""Automatic concurrency: a limit that finds what the server can take (AIMD).

Like TCP's congestion window, it grows by one per success while latency holds, and is cut on
overload or queueing latency, once per round. Decisions count calls and never read a clock, so tests
drive it.
"""

from __future__ import annotations

from typing import Literal

from personahub.core.contracts import Failure
from personahub.models.concurrency_limit import ConcurrencyLimit

Concurrency = int | Literal["auto"]
AUTO_START = 2
AUTO_CEILING = 64
QUEUE_SAMPLES = 4  # answers in an epoch before its latency may cut the limit
OUTLIER_RATIO = 2.0  # cap on one answer's latency ratio, in units of queue_factor
# overload statuses (a refusal of the request itself is not overload)
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})


class AdaptiveLimit(ConcurrencyLimit):
    """A concurrency limit that follows the server."""

    def __init__(self, start: int = AUTO_START, ceiling: int = AUTO_CEILING, *,
                 decrease: float = 0.5, grow_factor: float = 2.0, queue_factor: float = 3.0,
                 smoothing: float = 0.25) -> None:
        if (ceiling < 1 or not 0 < decrease < 1 or not 1 < grow_factor <= queue_factor
                or not 0 < smoothing <= 1):
            raise ValueError("adaptive limit needs ceiling >= 1, 0 < decrease < 1, "
                             "1 < grow_factor <= queue_factor and 0 < smoothing <= 1")
        super().__init__(max(1, min(start, ceiling)))
        self.start, self.ceiling = self.limit, ceiling
        self.decrease, self.smoothing = decrease, smoothing
        self.grow_factor, self.queue_factor = grow_factor, queue_factor
        self.peak = self.limit
        self.epoch = 0  # bumped by every cut
        self.cuts: dict[str, int] = {}
        self._slow_start = True
        self._successes = 0
        self._saturated = False
        self._best: dict[str, float] = {}
        self._ratio: float | None = None
        self._samples = 0

    async def __aenter__(self) -> None:
        await super().__aenter__()
        if self.active >= self.limit or self._waiters:
            self._saturated = True

    def succeeded(self, purpose: str, cost: float, epoch: int) -> None:
        """Record that a call from an epoch was answered, at a cost per output token."""
        if epoch != self.epoch:
            return  # sent before the last cut: says nothing now
        best = self._best.get(purpose)
        if best is None or cost < best:
            self._best[purpose] = best = cost
        # a late straggler is not a queue
        ratio = min(OUTLIER_RATIO * self.queue_factor, cost / best if best > 0 else 1.0)
        self._ratio = ratio if self._ratio is None else self._ratio + self.smoothing * (ratio - self._ratio)
        self._samples += 1
        if self._ratio > self.queue_factor and self.limit > 1 and self._saturated \
                and self._samples >= QUEUE_SAMPLES:
            self._cut("queueing")
            return
        self._successes += 1
        if not self._saturated or self.limit >= self.ceiling or self._ratio > self.grow_factor:
            return
        if self._slow_start or self._successes >= self.limit:
            self._set(self.limit + 1)

    def overloaded(self, reason: str, epoch: int) -> None:
        """Record that a call from an epoch was refused for overload."""
        if epoch == self.epoch:
            self._cut(reason)

    def _cut(self, reason: str) -> None:
        self.cuts[reason] = self.cuts.get(reason, 0) + 1
        self._slow_start = False
        self.epoch += 1
        self._ratio, self._samples = None, 0
        self._set(max(1, int(self.limit * self.decrease)))

    def _set(self, limit: int) -> None:
        self.limit = limit
        self.peak = max(self.peak, limit)
        self._successes, self._saturated = 0, False
        self._wake()

    def carry_from(self, other: AdaptiveLimit) -> None:
        """Start from what this endpoint's limit learned on an earlier event loop."""
        self.limit, self.peak, self.cuts = other.limit, other.peak, dict(other.cuts)
        self._slow_start, self._best = other._slow_start, dict(other._best)

    def report(self) -> dict[str, object]:
        return {"setting": "auto", "start": self.start, "ceiling": self.ceiling,
                "final": self.limit, "peak": self.peak, "cuts": dict(self.cuts)}


def concurrency_bound(value: Concurrency) -> int:
    """Return the most calls in flight a setting allows."""
    return AUTO_CEILING if value == "auto" else int(value)


def overload_reason(failure: Failure) -> str | None:
    if failure.description == "timeout":
        return "timeout"
    if failure.status in OVERLOAD_STATUSES:
        return str(failure.status)
    return None
