"""Garbage-collector policy for a run: paused while the society is built, frozen between steps.

A large society is millions of long-lived objects; the collector's full passes over them took a
large share of a run's CPU at 100,000 agents (bench_scale.py). Freezing after each step leaves it
only the step's short-lived objects; everything is unfrozen at the end.
"""

from __future__ import annotations

import gc
from types import TracebackType

# after a freeze every object looks young, so full passes would come every 10 middle ones;
# a step's survivors die with the step, so look far less often
FULL_PASS_EVERY = 100


class RunHeap:
    """Context manager: collector paused on entry; settle() freezes and resumes it."""

    _was_enabled: bool
    _thresholds: tuple[int, int, int]

    def __init__(self) -> None:
        self._frozen = False

    def __enter__(self) -> RunHeap:
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
