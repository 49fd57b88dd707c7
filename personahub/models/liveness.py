"""Is the seam still getting answers? What a watchdog needs to stop a stalled job in one line.

Every call's budget (``models.seam_retry``) bounds how long the call can take, so while calls
are in flight some call completes (with a value, without one, or with an exception) at least
every ``LLMSettings.stall_bound_s`` seconds: a call's budget plus slack for a concurrency slot
to come free, and with ``--rps`` for a rate token. When none has for that long, something below
the budget is stuck (a server that holds connections open, a lost wake-up, a blocked loop) and
the job is better stopped, resumably, than left showing "0 calls" forever.

``Liveness`` counts calls entering and leaving the top of the stack (a counter and a clock read
each way) and the clock restarts when calls start after an idle spell: time the job spends
between batches, committing or computing, is not a stall. Two ways to use it:

- ``stalled()``: the one-line reason, or None (for a loop that polls, e.g. a progress hook);
- ``guarded(awaitable)`` / ``async with watchdog()``: runs the work and raises ``Stalled`` (a
  resumable stop) when the bound passes with no call completed. One timer per bound, re-armed
  only when it fires, so calls pay nothing for it.
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
    """Calls in flight at the top of the stack and when one last completed (module doc)."""

    __slots__ = ("bound_s", "completed", "in_flight", "server", "_since")

    def __init__(self, bound_s: float, server: str = "--llm") -> None:
        self.bound_s = bound_s
        self.server = server  # what the stop line tells the user to check
        self.in_flight = 0
        self.completed = 0
        self._since = time.monotonic()  # the last completion, or the start after an idle spell

    def started(self) -> None:
        """A call entered the seam."""
        if self.in_flight == 0:
            self._since = time.monotonic()
        self.in_flight += 1

    def finished(self) -> None:
        """A call left the seam (any outcome)."""
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
        """Run the body; cancel it and raise ``Stalled`` once ``stalled()`` says so."""
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
        """``await work`` under ``watchdog()``: ``loop.run_until_complete(liveness.guarded(step))``."""
        async with self.watchdog():
            return await work
