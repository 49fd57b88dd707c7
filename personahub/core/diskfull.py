"""A full disk stops a job as an interruption: one line, resumable.

It is not the job's fault: once space is back the job goes on from its last commit. DuckDB reports it
in an IO or transaction error, or invalidates the instance on a failed checkpoint; the job is then
marked through a fresh connection, or stays running, which a resume takes too.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import duckdb

from personahub.core import jobs_store
from personahub.core.errors import PersonahubError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_TEXTS = ("no space left on device", "disk quota exceeded")
_FILE = re.compile(r'Could not (?:write|open|create|truncate|sync)[^"]*"([^"]+)"', re.I)


def is_disk_full(exc: BaseException | None) -> bool:
    """Return True when the error, or one it was raised from or during, says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        text = str(exc).lower()
        if any(t in text for t in _TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def what_filled(exc: BaseException) -> str:
    """Return the file that could not be written, when the error names it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE and current.filename:
            return f"could not write {current.filename}"
        found = _FILE.search(str(current))
        if found:
            return f"could not write {found.group(1)}"
        current = current.__cause__ or current.__context__
    return "a write failed"


def full_disk_text(exc: BaseException) -> str:
    """Return the line a command stopped by a full disk outside any job's batches prints."""
    return (f"the disk is full ({what_filled(exc)}: no space left on device); free space, then run "
            "the command again")


class DiskFull(PersonahubError):
    """A job (and the jobs it ran in) stopped by a full disk; its text is the line to print."""

    def __init__(self, noun: str, job_id: str, reason: str, hint: str,
                 unmarked: list[str]) -> None:
        self.noun, self.job_id, self.reason, self.hint = noun, job_id, reason, hint
        self.unmarked = unmarked  # jobs its connection could not mark interrupted
        super().__init__(noun, job_id)

    def __str__(self) -> str:
        left = ("; it stays marked running until space is back" if self.unmarked else "")
        return (f"{self.noun} {self.job_id} interrupted: the disk is full ({self.reason}: no "
                f"space left on device){left}; free space, then resume with {self.hint}")


def mark(con: duckdb.DuckDBPyConnection, job_id: str, reason: str) -> bool:
    """Mark a job interrupted by a full disk; False when the database cannot be written now."""
    try:
        jobs_store.finish_job(con, job_id, "interrupted", f"disk full: {reason}")
    except duckdb.Error:
        return False
    return True


def mark_unmarked(db: Path, stop: DiskFull) -> None:
    """Mark the jobs their own connection could not, through a fresh one. Call it once that connection is
    closed: DuckDB keeps one instance per file and process.
    """
    if not stop.unmarked:
        return
    try:
        con = duckdb.connect(str(db))
    except duckdb.Error:
        return
    try:
        stop.unmarked = [j for j in stop.unmarked if not mark(con, j, stop.reason)]
    finally:
        try:
            con.close()
        except duckdb.Error:
            pass
