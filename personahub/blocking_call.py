"""Run a blocking job from any context: a script, a worker thread, or a running event loop.

Each job owns an event loop, and a second loop cannot run in a thread that has one (Jupyter),
so there the job runs in a worker thread. A notebook's stop button interrupts the waiting
thread, which passes the interrupt to the worker, waits for the job to mark itself interrupted,
and raises its Stopped. A second interrupt stops the waiting.
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
    """A daemon thread running a job once, keeping its result or exception."""

    def __init__(self, job: Callable[[], object], on_finish: Callable[[], None] | None = None) -> None:
        super().__init__(name="personahub-job", daemon=True)
        self.job = job
        self.on_finish = on_finish
        self.value: object = None
        self.error: BaseException | None = None
        # not join: a join interrupted by Ctrl-C marks the thread stopped while it still runs
        # (CPython bpo-45274), and a second join returns at once
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
    """Raise KeyboardInterrupt in the worker's thread at its next Python instruction."""
    if worker.ident is None or worker.finished.is_set():
        return
    interrupt_thread(worker.ident)


def interrupt_thread(ident: int, kind: type[KeyboardInterrupt] = KeyboardInterrupt) -> None:
    """Raise an interrupt in a thread and wake its job loops, so a run waiting on the network
    sees it now.

    Args:
        ident: the thread's ident.
        kind: KeyboardInterrupt, or Terminated for SIGTERM.
    """
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(kind))
    wake(ident)


def _stopped(worker: _Worker, cause: KeyboardInterrupt) -> KeyboardInterrupt:
    """Choose what to raise after an interrupted worker ended: the job's Stopped, else the interrupt."""
    return worker.error if isinstance(worker.error, KeyboardInterrupt) else cause


def call_blocking(job: Callable[[], T]) -> T:
    """Run a job here, or in a waited-for worker thread when this thread runs an event loop."""
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
    """Run a job in a worker thread, leaving the caller's loop free; cancelling interrupts it."""
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
