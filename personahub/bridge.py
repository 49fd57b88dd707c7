"""Run a blocking job from any context: a script, a worker thread, or a running event loop.

The job functions (``api.run_simulation``, ``api.run_synthesis``, the persona
jobs) each own an event loop for their model calls (``core.loop.JobLoop``). Inside a running loop,
as in Jupyter, running a second loop in the same thread fails ("Cannot run the event loop while
another loop is running"), so there the job runs in a worker thread of its own instead, and the
``_async`` forms always do, leaving the caller's loop free while the job runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def loop_is_running() -> bool:
    """Whether this thread is inside a running event loop (a notebook cell, a coroutine)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def call_blocking(job: Callable[[], T]) -> T:
    """``job()`` here, or in a worker thread (waited for) when this thread runs an event loop."""
    if not loop_is_running():
        return job()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="personahub-job") as pool:
        return pool.submit(job).result()


async def call_in_thread(job: Callable[[], T]) -> T:
    """Await ``job()`` run in a worker thread, so the caller's loop keeps serving meanwhile."""
    return await asyncio.to_thread(job)
