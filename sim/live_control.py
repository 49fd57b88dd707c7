"""Control a live run: pause, single steps, resume, and events typed in by hand.

The runner consults the shared LiveControl before each step, so a step is never changed half-way;
an injected event is recorded in the next step's transaction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: Longest text an injected event may have.
MAX_EVENT_CHARS = 2000
#: How long a paused runner sleeps between looks at its interrupts (seconds), so Ctrl-C works.
_SLICE_S = 0.2


class LiveControlError(ValueError):
    """A live-control request that cannot be applied (the message says why, for the page)."""


@dataclass(frozen=True)
class Injected:
    """An event typed into the page: its text and who injected it."""

    text: str
    source: str = "view"


class LiveControl:
    """What the page asked of the run, consulted by the runner between steps (thread-safe)."""

    def __init__(self, *, paused: bool = False, source: str = "view") -> None:
        self._cond = threading.Condition()
        self._paused = paused
        self._grants = 0  # single steps granted while paused
        self._queue: list[Injected] = []
        self._source = source
        self._waiting: int | None = None  # the step the runner waits to open
        self._committed = 0
        self._over = False

    def __deepcopy__(self, memo: dict[int, object]) -> LiveControl:
        return self  # a stored config is copied: the control stays one object

    def __str__(self) -> str:
        return self._source

    def pause(self) -> None:
        """Stop before the next step."""
        with self._cond:
            self._check_open()
            self._paused, self._grants = True, 0
            self._cond.notify_all()

    def resume(self) -> None:
        """Run on without stopping."""
        with self._cond:
            self._check_open()
            self._paused, self._grants = False, 0
            self._cond.notify_all()

    def step(self) -> None:
        """Run exactly one more step, then stay paused."""
        with self._cond:
            self._check_open()
            if not self._paused:
                self._paused, self._grants = True, 0
            self._grants += 1
            self._cond.notify_all()

    def inject(self, text: str) -> int:
        """Queue an event for the start of the next step; returns how many are queued."""
        if not isinstance(text, str) or not text.strip():
            raise LiveControlError("an event needs non-empty text")
        if len(text) > MAX_EVENT_CHARS:
            raise LiveControlError(f"an event's text is at most {MAX_EVENT_CHARS} characters "
                                f"(got {len(text)})")
        with self._cond:
            self._check_open()
            self._queue.append(Injected(text.strip(), self._source))
            self._cond.notify_all()
            return len(self._queue)

    def status(self) -> dict[str, object]:
        """Return what the page shows: paused or not, the step waited for, events queued, over."""
        with self._cond:
            return {"paused": self._paused, "waiting_before": self._waiting,
                    "committed": self._committed, "steps_granted": self._grants,
                    "queued": [i.text for i in self._queue], "over": self._over}

    def _check_open(self) -> None:
        if self._over:
            raise LiveControlError("the run is over: nothing left to steer")

    def barrier(self, step: int) -> list[Injected]:
        """Before a step opens: wait while paused (unless a step was granted), then take the queued events."""
        with self._cond:
            self._committed = step - 1
            self._waiting = step
            self._cond.notify_all()
            try:
                while self._paused and self._grants == 0:
                    self._cond.wait(_SLICE_S)  # short slices: an interrupt gets through
            finally:
                self._waiting = None
            if self._paused:
                self._grants -= 1
            taken, self._queue = self._queue, []
            self._cond.notify_all()
            return taken

    def finish(self, committed: int | None = None) -> None:
        """End the run: requests are refused from now on."""
        with self._cond:
            self._over = True
            if committed is not None:
                self._committed = committed
            self._cond.notify_all()

    def wait_for(self, step: int, timeout: float) -> bool:
        """Block until the runner waits before a step or the run is over; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting == step or self._over, timeout)
