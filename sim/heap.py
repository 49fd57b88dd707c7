"""Garbage-collector policy for a run: quiet while the society is built, frozen between steps.

A large society is millions of long-lived objects (personas, graph dicts, Mesa agents, memories).
Python's cyclic collector makes a full pass over everything it tracks whenever enough objects
have survived, so its cost grows with the society while it finds nothing to free: at 100,000
agents it was a large share of a run's CPU, most of it during setup, then a pause for each of
the dozen full passes a step triggered (``bench/bench_scale.py``).

``RunHeap`` pauses the collector while the run sets up, and ``settle()`` (after setup and after
every step) moves everything alive into the permanent generation with ``gc.freeze()``: the
collector then only looks at what the current step allocates, which is where short-lived cycles
(exceptions, futures) come and go. When the run ends everything is unfrozen, so whatever became
garbage meanwhile is reclaimed by the next ordinary collection.
"""

from __future__ import annotations

import gc
from types import TracebackType

# after a freeze the collector counts nothing as long-lived, so it would make a full pass every
# 10 middle-generation passes; a step's survivors die with the step, so look far less often
FULL_PASS_EVERY = 100


class RunHeap:
    """Context manager: collector paused on entry; ``settle()`` freezes and resumes it."""

    _was_enabled: bool
    _thresholds: tuple[int, int, int]

    def __init__(self) -> None:
        self._frozen = False

    def __enter__(self) -> RunHeap:
        # the collector's settings as found on entry, to put back on exit
        self._was_enabled = gc.isenabled()
        self._thresholds = gc.get_threshold()
        gc.disable()
        return self

    def settle(self) -> None:
        """Freeze everything alive now out of the collector's sight, then let it run again."""
        gc.freeze()
        if not self._frozen:
            young, middle, old = self._thresholds
            gc.set_threshold(young, middle, max(old, FULL_PASS_EVERY))
        self._frozen = True
        if self._was_enabled:
            gc.enable()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._frozen:
            gc.unfreeze()
            gc.set_threshold(*self._thresholds)
        if self._was_enabled:
            gc.enable()
