"""A concurrency limit that can be lowered while calls wait on it, and grows back.

On a timeout it drops to half the calls in flight (a server answering one at a time queues the rest),
then grows back by one per limit's worth of answers. asyncio's semaphore cannot be resized, hence
this class.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ConcurrencyLimit:
    """At most some holders at once, served in arrival order; the limit can be lowered."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.ceiling = limit  # what growing back returns to
        self.active = 0
        self._answers = 0  # since the limit last changed
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed over as the caller was cancelled
            elif future in self._waiters:  # a release may have taken it already
                self._waiters.remove(future)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self.active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.active < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.active += 1
                future.set_result(None)

    def lower(self) -> int:
        """Halve the limit to the calls in flight (at least 1); returns the new limit."""
        self.limit = max(1, min(self.limit, self.active) // 2)
        self._answers = 0
        return self.limit

    def grow_back(self) -> None:
        """Count an answered call: a lowered limit grows by one per limit's worth of answers."""
        if self.limit >= self.ceiling:
            return
        self._answers += 1
        if self._answers >= self.limit:
            self._answers = 0
            self.limit += 1
            self._wake()
