"""Run a blocking job from any context: a script, a worker thread, or a running event loop.

Each job owns an event loop for its model calls. Inside a running loop, as in Jupyter, a second
loop in the same thread fails ("Cannot run the event loop while another loop is running"), so
there the job runs in a worker thread, and the ``_async`` forms always do, leaving the caller's
loop free.

A notebook's stop button (SIGINT) raises ``KeyboardInterrupt`` in the waiting thread, not in the
worker. The waiter passes it on: it raises ``KeyboardInterrupt`` in the worker and wakes the
worker's event loop (so a job waiting on the network sees it at once), waits for the job to mark
itself ``interrupted`` as after Ctrl-C in a command, and raises the job's ``Stopped`` (its id and
how to resume). A second interrupt stops the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from personahub.core.loop import wake

T = TypeVar("T")


def loop_is_running() -> bool:
    """Whether this thread is inside a running event loop (a notebook cell, a coroutine)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Worker(threading.Thread):
    """A daemon thread running ``job`` once, keeping its result or the exception it raised."""

    def __init__(self, job: Callable[[], Any], on_finish: Callable[[], None] | None = None) -> None:
        super().__init__(name="personahub-job", daemon=True)
        self.job = job
        self.on_finish = on_finish  # called last, once the result is kept
        self.value: Any = None
        self.error: BaseException | None = None
        # waited on instead of ``join``: a join interrupted by Ctrl-C marks the thread stopped
        # while it still runs (CPython's bpo-45274 handling), and a second join returns at once
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self.value = self.job()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
        finally:
            self.finished.set()
            if self.on_finish is not None:
                self.on_finish()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def interrupt(worker: _Worker) -> None:
    """Raise ``KeyboardInterrupt`` in ``worker``'s thread (at its next Python instruction)."""
    if worker.ident is None or worker.finished.is_set():
        return
    interrupt_thread(worker.ident)


def interrupt_thread(ident: int, kind: type[KeyboardInterrupt] = KeyboardInterrupt) -> None:
    """Raise ``kind`` (``KeyboardInterrupt`` or ``Terminated``) in thread ``ident`` at its next
    Python instruction, and wake its job loops so a run waiting on the network sees it now.

    Args:
        ident: the thread's ``threading.get_ident()``.
        kind: the interrupt's class (SIGTERM's ``Terminated`` says so in the job's mark).
    """
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(kind))
    wake(ident)


def _stopped(worker: _Worker, cause: KeyboardInterrupt) -> KeyboardInterrupt:
    """What to raise once an interrupted worker has ended: the job's own ``Stopped`` line when
    it marked itself, else the caller's interrupt."""
    return worker.error if isinstance(worker.error, KeyboardInterrupt) else cause


def call_blocking(job: Callable[[], T]) -> T:
    """``job()`` here, or in a worker thread (waited for) when this thread runs an event loop."""
    if not loop_is_running():
        return job()
    worker = _Worker(job)
    worker.start()
    try:
        worker.finished.wait()
    except KeyboardInterrupt as exc:
        interrupt(worker)
        worker.finished.wait()
        raise _stopped(worker, exc) from None
    return worker.result()


async def call_in_thread(job: Callable[[], T]) -> T:
    """Await ``job()`` run in a worker thread, so the caller's loop keeps serving meanwhile; a
    cancelled or interrupted await interrupts the job (marked ``interrupted``, resumable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def wake_caller() -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop closed meanwhile
            loop.call_soon_threadsafe(finish)

    worker = _Worker(job, on_finish=wake_caller)
    worker.start()
    try:
        await asyncio.shield(done)
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        interrupt(worker)
        await asyncio.to_thread(worker.finished.wait)
        if isinstance(exc, KeyboardInterrupt):
            raise _stopped(worker, exc) from None
        raise
    return worker.result()
