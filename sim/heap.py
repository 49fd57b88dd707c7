"""Garbage-collector policy for a run: quiet while the society is built, frozen between steps.

A large society is millions of long-lived objects, and Python's collector makes full passes over
them that free nothing: at 100,000 agents a large share of a run's CPU (bench_scale.py). So the
collector is paused during setup, and after setup and every step ``gc.freeze()`` moves what is
alive out of its sight; it then sees only the step's short-lived objects. At the end everything
is unfrozen, so what became garbage is reclaimed.
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
        """Freeze everything alive now, then let the collector run again."""
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
