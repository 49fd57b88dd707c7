"""The jobs this process is running, and the jobs a database says are running that no process runs.

DuckDB lets one process at a time open a file read-write: a second process is refused and told
the holder's PID. So a process that holds the file read-write knows that every job the file says
is ``running`` is either one of its own or one whose process is gone (``kill -9``, a crash, a
power cut, a disk too full to mark it). The job kernel registers each job it runs here from
before its ``running`` row is written until its end is; ``core/store.py`` ``connect`` marks the
others ``interrupted`` when it opens a file to write, so no job stays ``running`` without a
process and each can be resumed like any interrupted one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import duckdb

from personahub.core import jobs_store

#: the error a job found running with no process is marked with
PROCESS_GONE: Final = ("its process ended without marking it (killed, crashed or out of disk "
                       "space)")

_LIVE: set[str] = set()
_GUARD = threading.Lock()


@contextmanager
def running_here(job_id: str) -> Iterator[None]:
    """Hold a job as this process's while it runs (enter before its row says running)."""
    with _GUARD:
        _LIVE.add(job_id)
    try:
        yield
    finally:
        with _GUARD:
            _LIVE.discard(job_id)


def _mine() -> frozenset[str]:
    with _GUARD:
        return frozenset(_LIVE)


def interrupt_orphans(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mark interrupted every running job this process does not run; returns their ids.

    Call it only on a connection that opened the file read-write (so no other process holds it).
    The running jobs are read before this process's are: a job registers before its row says
    running and leaves after its end is written, so a job seen running and not registered has
    no process. A database that cannot be read or written now is left as it is.
    """
    try:
        running = jobs_store.running_job_ids(con)
        gone = [job_id for job_id in running if job_id not in _mine()]
        if gone:
            jobs_store.interrupt_running(con, gone, PROCESS_GONE)
    except duckdb.Error:
        return []
    return gone
