"""Ctrl-C and SIGTERM end a command the same way: the job is marked interrupted, one line.

SIGTERM would kill the process on the spot and leave a job running for ever, so it is raised as a
KeyboardInterrupt. A signal landing during a DuckDB query comes out as DuckDB's "Query interrupted"
error, which is turned back into the interrupt, so the job is resumable rather than failed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import duckdb


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt."""


_raised: list[KeyboardInterrupt] = []  # interrupts the handlers raised, newest last


class Stopped(KeyboardInterrupt):
    """An interrupt after which the job was marked interrupted; its text is the line."""

    def __init__(self, message: str, cause: KeyboardInterrupt) -> None:
        super().__init__(message)
        self.terminated = isinstance(cause, Terminated) or getattr(cause, "terminated", False)


def signal_name(exc: BaseException) -> str:
    """How the interrupt came: SIGTERM or Ctrl-C."""
    terminated = isinstance(exc, Terminated) or getattr(exc, "terminated", False)
    return "SIGTERM" if terminated else "Ctrl-C"


def exit_code(exc: BaseException) -> int:
    """128 plus the signal number."""
    return 143 if signal_name(exc) == "SIGTERM" else 130


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _raised.append(Terminated())
    raise _raised[-1]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _raised.append(KeyboardInterrupt())
    raise _raised[-1]


def interrupt_of(exc: BaseException) -> KeyboardInterrupt | None:
    """Return the interrupt an error stands for: itself, or the signal hidden in DuckDB's interrupted-query or
    Arrow errors.
    """
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if _raised and isinstance(exc, RuntimeError | duckdb.Error):
        text = str(exc)
        if "interrupted" in text.lower() or type(_raised[-1]).__name__ in text:
            return _raised[-1]
    return None


@contextmanager
def interrupts_from_queries() -> Iterator[None]:
    """Within the block, DuckDB's interrupted query is re-raised as the signal's interrupt."""
    try:
        yield
    except (RuntimeError, duckdb.Error) as exc:
        stop = interrupt_of(exc)
        if stop is None:
            raise
        raise stop from None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises an interrupt (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _raised.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # leave a caller's own handler alone
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
