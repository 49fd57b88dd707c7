"""Ctrl-C and SIGTERM end a command the same way: the job is marked ``interrupted``, one line.

Python turns SIGINT into ``KeyboardInterrupt``; SIGTERM would kill the process on the spot and
leave a run or synthesis job ``running`` forever. ``sigterm_as_interrupt`` makes SIGTERM raise
``Terminated``, a ``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` that marks a job
runs for both. A job that has been marked raises ``Stopped`` with the line to print (its id and
how to resume); the CLI prints it and exits 130 (Ctrl-C) or 143 (SIGTERM), as shells do.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt."""


class Stopped(KeyboardInterrupt):
    """An interrupt after which the job was marked ``interrupted``; ``str()`` is the line."""

    def __init__(self, message: str, cause: KeyboardInterrupt) -> None:
        super().__init__(message)
        self.terminated = isinstance(cause, Terminated) or getattr(cause, "terminated", False)


def signal_name(exc: BaseException) -> str:
    """How the interrupt came: ``SIGTERM`` or ``Ctrl-C``."""
    terminated = isinstance(exc, Terminated) or getattr(exc, "terminated", False)
    return "SIGTERM" if terminated else "Ctrl-C"


def exit_code(exc: BaseException) -> int:
    """128 + the signal number: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if signal_name(exc) == "SIGTERM" else 130


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
