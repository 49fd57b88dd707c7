"""Is the seam still getting answers? What a watchdog needs to stop a stalled job in one line.

Call budgets mean some call completes within the stall bound while calls are in flight; when none
does, something is stuck and the job is better stopped, resumably, than showing "0 calls" for ever.
Time between batches is not a stall.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from personahub.models.settings import Stalled

T = TypeVar("T")


class Liveness:
    """Calls in flight at the top of the stack and when one last completed."""

    __slots__ = ("bound_s", "completed", "in_flight", "server", "_since")

    def __init__(self, bound_s: float, server: str = "--llm") -> None:
        self.bound_s = bound_s
        self.server = server  # what the stop line tells the user to check
        self.in_flight = 0
        self.completed = 0
        self._since = time.monotonic()  # the last completion, or the start after an idle spell

    def started(self) -> None:
        if self.in_flight == 0:
            self._since = time.monotonic()
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self.completed += 1
        self._since = time.monotonic()

    def quiet_s(self) -> float:
        """Seconds since a call last completed while calls were in flight (0 when none is)."""
        return time.monotonic() - self._since if self.in_flight > 0 else 0.0

    def stalled(self) -> str | None:
        """Why the job is stalled (one line), or None while calls complete within the bound."""
        quiet = self.quiet_s()
        if self.in_flight == 0 or quiet < self.bound_s:
            return None
        return (f"no model call completed in {quiet:.0f} s with {self.in_flight} in flight (the "
                f"bound is {self.bound_s:.0f} s, from --timeout): the model endpoint stopped "
                f"answering; check the {self.server} server")

    @asynccontextmanager
    async def watchdog(self) -> AsyncIterator[None]:
        """Run the body; cancel it and raise once the job is stalled."""
        task = asyncio.current_task()
        assert task is not None, "watchdog() runs inside a task"
        reason: list[str] = []

        async def watch() -> None:
            while True:
                await asyncio.sleep(max(0.05, self.bound_s - self.quiet_s()))
                why = self.stalled()
                if why is not None:
                    reason.append(why)
                    task.cancel()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            yield
        except asyncio.CancelledError:
            if reason and task.uncancel() == 0:
                raise Stalled(reason[0]) from None
            raise
        finally:
            watcher.cancel()

    async def guarded(self, work: Awaitable[T]) -> T:
        """Await work under the watchdog."""
        async with self.watchdog():
            return await work
