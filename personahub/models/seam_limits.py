"""Rate and concurrency limits around the layer below.

The rate limit is one token bucket shared by every endpoint; the concurrency limit, fixed or
adaptive, is skipped for endpoints that answer in process. Waiting for either counts as queue time,
not latency.
"""

from __future__ import annotations

import asyncio
import threading
import time

from pydantic import BaseModel

from personahub.core.contracts import CallRequest, ModelEndpoint, StructuredResult
from personahub.models.adaptive_limit import AUTO_CEILING, AdaptiveLimit, Concurrency, overload_reason
from personahub.models.concurrency_limit import ConcurrencyLimit
from personahub.models.settings import LLMConfigError

# an answer's fixed costs in output tokens when an adaptive limit compares latencies (a short answer
# is not a slow one)
FIXED_TOKENS = 32


class RateLimiter:
    """Token bucket: a rate per second on average, bursts of a bound. Callers reserve a token (the balance
    may go negative) and sleep until it is due, so waiters are served in order without a lock.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise LLMConfigError(f"rate limit needs rate > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp: float | None = None
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; returns the seconds to wait before using it."""
        with self._lock:
            now = time.monotonic()
            if self._stamp is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


class Limited:
    """At most some calls in flight (None: no limit; auto: up to a ceiling) and some a second."""

    def __init__(self, inner: ModelEndpoint, *, concurrency: Concurrency | None,
                 rps: float | None = None, ceiling: int = AUTO_CEILING) -> None:
        self.inner = inner
        self.concurrency = concurrency
        self.ceiling = ceiling
        self.limiter = RateLimiter(rps) if rps else None
        self._slots: ConcurrencyLimit | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def slots(self) -> ConcurrencyLimit | None:
        """The concurrency limit of the current event loop (None before the first call)."""
        return self._slots

    def _limit(self) -> ConcurrencyLimit:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            # a limit belongs to one event loop; each run may bring its own
            assert self.concurrency is not None
            slots: ConcurrencyLimit
            if self.concurrency == "auto":
                slots = AdaptiveLimit(ceiling=self.ceiling)
                if isinstance(self._slots, AdaptiveLimit):  # go on from what was learned
                    slots.carry_from(self._slots)
            else:
                slots = ConcurrencyLimit(self.concurrency)
            self._slots, self._slots_loop = slots, loop
        return self._slots

    def lower_on_timeout(self) -> int | None:
        """Halve the limit to the calls in flight after a timeout; returns the new limit, or None."""
        if self._slots is None or self._slots.active <= 1 or isinstance(self._slots, AdaptiveLimit):
            return None
        return self._slots.lower()

    def report(self) -> dict[str, object]:
        """Return the concurrency setting and the limit it came to."""
        slots = self._slots
        if isinstance(slots, AdaptiveLimit):
            return slots.report()
        if self.concurrency == "auto":  # no call was made
            return {"setting": "auto", "start": None, "ceiling": self.ceiling, "final": None,
                    "peak": None, "cuts": {}}
        final = slots.limit if slots is not None else self.concurrency
        return {"setting": self.concurrency, "final": final, "peak": self.concurrency}

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        """Make the call once a slot and a rate token are held; waiting counts as queue time."""
        waited = time.perf_counter()
        if self.concurrency is None:
            if self.limiter is not None:
                await self.limiter.acquire()
            queue_ms = (time.perf_counter() - waited) * 1000
            result = await self.inner.call(request)
        else:
            slots = self._limit()
            async with slots:
                epoch = slots.epoch if isinstance(slots, AdaptiveLimit) else 0
                if self.limiter is not None:  # the token is taken just before the request goes out
                    await self.limiter.acquire()
                queue_ms = (time.perf_counter() - waited) * 1000
                result = await self.inner.call(request)
                if isinstance(slots, AdaptiveLimit):
                    _tell(slots, request, result, epoch)
                elif result.failure is None:
                    slots.grow_back()
        result.records[-1].queue_ms = queue_ms
        return result


def _tell(slots: AdaptiveLimit, request: CallRequest, result: StructuredResult[BaseModel],
          epoch: int) -> None:
    """How the call went, for an adaptive limit: overload, or latency per output token."""
    if result.failure is not None:
        reason = overload_reason(result.failure)
        if reason is not None:
            slots.overloaded(reason, epoch)
        return
    record = result.records[-1]
    if record.tokens_out is None:  # an impossible usage figure: no pace to learn from
        return
    slots.succeeded(request.purpose, record.latency_ms / 1000 / (record.tokens_out + FIXED_TOKENS),
                    epoch)
