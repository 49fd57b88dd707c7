"""Rate and concurrency limits around the layer below.

The rate limit is one token bucket shared by every endpoint (``--rps``); the concurrency limit
(``agents.limits.ConcurrencyLimit``) is skipped for endpoints that answer in process. The time
spent waiting for either goes into the attempt's ``queue_ms``, not its latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from personahub.agents.contracts import CallRequest, ModelEndpoint, StructuredResult
from personahub.agents.limits import ConcurrencyLimit
from personahub.agents.llm_settings import LLMConfigError


class RateLimiter:
    """Token bucket: ``rate`` requests per second on average, bursts of at most ``burst``.

    Each caller reserves a token (the balance may go negative) and sleeps until its token is
    due, so waiting callers are served in arrival order without a lock held across awaits.
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
        """Take one token; the seconds to wait before using it (0 when one was available)."""
        with self._lock:
            now = time.monotonic()
            if self._stamp is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        """Wait for a token."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


class Limited:
    """At most ``concurrency`` calls in flight (None: no limit) and at most ``rps`` a second."""

    def __init__(self, inner: ModelEndpoint, *, concurrency: int | None,
                 rps: float | None = None) -> None:
        self.inner = inner
        self.concurrency = concurrency
        self.limiter = RateLimiter(rps) if rps else None
        self._slots: ConcurrencyLimit | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @property
    def label(self) -> str:
        """The label of the layer below."""
        return self.inner.label

    @property
    def slots(self) -> ConcurrencyLimit | None:
        """The concurrency limit of the current event loop (None before the first call)."""
        return self._slots

    def _limit(self) -> ConcurrencyLimit:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            # a limit belongs to one event loop; each run may bring its own loop
            assert self.concurrency is not None
            self._slots, self._slots_loop = ConcurrencyLimit(self.concurrency), loop
        return self._slots

    def lower_on_timeout(self) -> int | None:
        """Halve the limit to the calls in flight after a timeout (the server queues what it
        cannot serve); the new limit, or None when nothing was lowered."""
        if self._slots is None or self._slots.active <= 1:
            return None
        return self._slots.lower()

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """The call once a slot and a rate token are held; waiting goes into ``queue_ms``."""
        waited = time.perf_counter()
        if self.concurrency is None:
            if self.limiter is not None:
                await self.limiter.acquire()
            queue_ms = (time.perf_counter() - waited) * 1000
            result = await self.inner.call(request)
        else:
            async with self._limit():
                if self.limiter is not None:  # the token is taken just before the request goes out
                    await self.limiter.acquire()
                queue_ms = (time.perf_counter() - waited) * 1000
                result = await self.inner.call(request)
        result.records[-1].queue_ms = queue_ms
        return result
