"""The event loop model calls run on, tuned for many calls in flight: default-executor work runs inline
(at 64 calls thread hops cost more than the work), young collections stop re-scanning every live
request (bench_concurrency), and stalled calls become a resumable stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Never, Protocol, TypeVar

T = TypeVar("T")
_BLOCKING = (socket.getaddrinfo, socket.getnameinfo)


class InlineExecutor(ThreadPoolExecutor):
    """Runs submitted work at once in the caller's thread, except name resolution."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Return a finished future holding the call's result (a thread's, for DNS)."""
        if fn in _BLOCKING:
            return super().submit(fn, *args, **kwargs)
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


YOUNG_GC_THRESHOLD = 10_000
_steady_depth = 0
_saved_threshold: tuple[int, ...] = ()


def steady_gc_start() -> None:
    """Freeze the heap built so far and collect the young generation less often (re-entrant)."""
    global _steady_depth, _saved_threshold
    _steady_depth += 1
    if _steady_depth == 1:
        _saved_threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(YOUNG_GC_THRESHOLD, _saved_threshold[0]), *_saved_threshold[1:])


def steady_gc_stop() -> None:
    global _steady_depth
    _steady_depth = max(0, _steady_depth - 1)
    if _steady_depth == 0 and _saved_threshold:
        gc.set_threshold(*_saved_threshold)
        gc.unfreeze()


class Watchdog(Protocol):
    """What stops work whose model calls stopped completing."""

    async def guarded(self, work: Coroutine[object, Never, T]) -> T:
        """Await work, raising a resumable stop when no call completes for too long."""
        ...


class RunLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose default-executor work runs at once: a concurrent future costs a
    self-pipe write and three loop turns per call.
    """

    watched: Watchdog | None = None

    def run_until_complete(self, future: Any) -> Any:
        if self.watched is not None and asyncio.iscoroutine(future):
            future = self.watched.guarded(future)
        return super().run_until_complete(future)

    def run_in_executor(  # type: ignore[override]  # typeshed's variadic generics, same call
            self, executor: Executor | None, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if executor is not None or func in _BLOCKING:
            return super().run_in_executor(executor, func, *args)
        self._check_closed()  # type: ignore[attr-defined]  # as the base method does
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


_LOOPS: dict[int, weakref.WeakSet[asyncio.AbstractEventLoop]] = {}


def new_run_loop() -> asyncio.AbstractEventLoop:
    loop = RunLoop()
    loop.set_default_executor(InlineExecutor(max_workers=4, thread_name_prefix="personahub-dns"))
    _LOOPS.setdefault(threading.get_ident(), weakref.WeakSet()).add(loop)
    return loop


def wake(thread_id: int) -> None:
    """Wake a thread's job loops from another thread, so an interrupt sent to it is raised now."""
    for loop in list(_LOOPS.get(thread_id, ())):
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: None)


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return
    if "was destroyed but it is pending" in str(context.get("message", "")):
        return
    loop.default_exception_handler(context)


def close_quietly(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed():
        return
    loop.set_exception_handler(_quiet)
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def run(coro: Coroutine[object, Never, T]) -> T:
    """asyncio.run on a run loop, closed quietly after an interrupt."""
    steady_gc_start()
    try:
        with asyncio.Runner(loop_factory=new_run_loop) as runner:
            try:
                return runner.run(coro)
            except KeyboardInterrupt:
                runner.get_loop().set_exception_handler(_quiet)
                raise
    finally:
        steady_gc_stop()


class JobLoop:
    """The one event loop a job's batches run on."""

    def __init__(self) -> None:
        self.loop = new_run_loop()
        steady_gc_start()
        self._steady = True

    def run(self, coro: Coroutine[object, Never, T]) -> T:
        return self.loop.run_until_complete(coro)

    def watch(self, watchdog: Watchdog | None) -> None:
        """Run every coroutine from now on under a watchdog, so calls that never complete stop the job."""
        if isinstance(self.loop, RunLoop):
            self.loop.watched = watchdog

    def close(self) -> None:
        try:
            close_quietly(self.loop)
        finally:
            if self._steady:
                self._steady = False
                steady_gc_stop()


@contextmanager
def job_loop() -> Iterator[JobLoop]:
    owned = JobLoop()
    try:
        yield owned
    finally:
        owned.close()
