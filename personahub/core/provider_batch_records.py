"""What a job keeps of its provider batches, so a resume polls and never resubmits.

A handle is one submission's state, keyed deterministically so a resumed job asks for the same key
again; the job saves it after each change that must survive a crash. Plain data and SQL, no SDK.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from personahub.core.errors import PersonahubError

#: the Batch API's terminal statuses
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
#: a batch file written for another runner (--provider-batch-file), waiting for its results
AWAITING_RESULTS = "awaiting_results"


@dataclass(frozen=True)
class BatchHandle:
    """One batch of a job, as stored."""

    key: str
    endpoint: int
    model: str
    custom_ids: tuple[str, ...]
    window: str = "24h"
    structured_mode: str | None = None
    job_kind: str | None = None
    job_id: str | None = None
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str = "pending"  # pending: not created yet
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    created_at: float | None = None  # epoch seconds
    finished_at: float | None = None  # epoch seconds
    errors: tuple[str, ...] = field(default=())  # a failed batch's validation errors

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def from_file(self) -> bool:
        return (self.batch_id or "").startswith("file:")

    @property
    def files_deleted(self) -> bool:
        """True once the files were deleted after the commit: nothing is left to collect."""
        return self.done and self.input_file_id is None and not self.from_file

    def updated(self, **changes: Any) -> BatchHandle:
        return replace(self, **changes)


def _stamp(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.UTC).replace(
        tzinfo=None)


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    return float(value.replace(tzinfo=dt.UTC).timestamp())


_COLUMNS = ("batch_key", "job_kind", "job_id", "endpoint", "model", "structured_mode", "batch_id",
            "input_file_id",
            "output_file_id", "error_file_id", "status", "completion_window", "requests",
            "completed", "failed", "custom_ids", "errors", "created_at", "finished_at",
            "updated_at")


def save_handle(con: duckdb.DuckDBPyConnection, handle: BatchHandle) -> None:
    """Insert or update a handle's row (one statement: durable when it returns)."""
    row = (handle.key, handle.job_kind, handle.job_id, handle.endpoint, handle.model,
           handle.structured_mode, handle.batch_id, handle.input_file_id, handle.output_file_id,
           handle.error_file_id,
           handle.status, handle.window, len(handle.custom_ids), handle.completed, handle.failed,
           json.dumps(list(handle.custom_ids)), json.dumps(list(handle.errors)),
           _stamp(handle.created_at), _stamp(handle.finished_at),
           dt.datetime.now(dt.UTC).replace(tzinfo=None))
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
    con.execute(f"INSERT INTO provider_batches ({', '.join(_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (batch_key) DO UPDATE SET "
                f"{updates}", row)


def load_handles(con: duckdb.DuckDBPyConnection, job_kind: str | None,
                 job_id: str) -> dict[str, BatchHandle]:
    rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM provider_batches WHERE job_id = ? AND "
                       "job_kind IS NOT DISTINCT FROM ? ORDER BY created_at NULLS LAST, batch_key",
                       [job_id, job_kind]).fetchall()
    return {row[0]: _handle(dict(zip(_COLUMNS, row, strict=True))) for row in rows}


def _handle(row: Mapping[str, Any]) -> BatchHandle:
    return BatchHandle(
        key=row["batch_key"], endpoint=int(row["endpoint"] or 0), model=row["model"] or "",
        custom_ids=tuple(json.loads(row["custom_ids"] or "[]")),
        window=row["completion_window"] or "24h", structured_mode=row["structured_mode"],
        job_kind=row["job_kind"],
        job_id=row["job_id"], input_file_id=row["input_file_id"], batch_id=row["batch_id"],
        status=row["status"] or "pending", output_file_id=row["output_file_id"],
        error_file_id=row["error_file_id"], completed=int(row["completed"] or 0),
        failed=int(row["failed"] or 0), created_at=_epoch(row["created_at"]),
        finished_at=_epoch(row["finished_at"]), errors=tuple(json.loads(row["errors"] or "[]")))


def attach_results(con: duckdb.DuckDBPyConnection, job_kind: str | None, job_id: str,
                   custom_ids: list[str], output: str) -> BatchHandle:
    """Mark the job's batch file these requests answer as completed; one line when the job has no waiting
    batch file or the results answer none of its requests.
    """
    waiting = [h for h in load_handles(con, job_kind, job_id).values()
               if h.status == AWAITING_RESULTS]
    if not waiting:
        raise PersonahubError(f"provider-batch import: job {job_id} has no batch file awaiting results")
    given = set(custom_ids)
    matched = [h for h in waiting if given & set(h.custom_ids)]
    if not matched:
        raise PersonahubError(f"provider-batch import: none of the {len(given)} results answers a "
                              f"request of job {job_id}'s batch file "
                              f"{waiting[-1].batch_id} (another job's results?)")
    handle = matched[-1]
    answered = len(given & set(handle.custom_ids))
    handle = handle.updated(status="completed", output_file_id=output,
                            completed=answered, failed=len(handle.custom_ids) - answered,
                            finished_at=dt.datetime.now(dt.UTC).timestamp())
    save_handle(con, handle)
    return handle


def open_batches(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[Any, ...]]:
    """Return a job's batches that have not ended (id, status, lines done, lines), oldest first."""
    return [tuple(row) for row in con.execute(
        "SELECT coalesce(batch_id, batch_key), status, completed + failed, requests "
        "FROM provider_batches WHERE job_id = ? AND status NOT IN ('completed', 'failed', "
        "'expired', 'cancelled') ORDER BY created_at NULLS LAST, batch_key",
        [job_id]).fetchall()]
