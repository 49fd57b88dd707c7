"""The jobs table: one row per job of every kind, and every SQL statement on it.

A kind keeps what it needs besides in its own table keyed by the job id. Functions run single
statements; a caller writing a job's row with its detail rows wraps both in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb

#: every status a job can have; awaiting_results: its requests wait in a batch file
AWAITING: Final = "awaiting_results"
STATUSES: Final = ("running", "finished", "partial", "failed", "interrupted", "superseded",
                   AWAITING)
#: statuses of a job that may go on
UNFINISHED: Final = ("running", "interrupted", "failed", AWAITING)
#: statuses of a job that is over
ENDED: Final = ("finished", "partial", "superseded")

_COLUMNS = ("job_id, kind, status, config, seed, error, started_at, updated_at, finished_at, "
            "parent_id")


def now() -> dt.datetime:
    """UTC now without tzinfo, as the timestamp columns hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class JobRow:
    """One jobs row, its config parsed."""

    job_id: str
    kind: str
    status: str
    config: dict[str, Any]
    seed: int | None
    error: str | None
    started_at: dt.datetime | None
    updated_at: dt.datetime | None
    finished_at: dt.datetime | None
    parent_id: str | None


def _row(values: Sequence[Any]) -> JobRow:
    job_id, kind, status, config, seed, error, started, updated, finished, parent = values
    return JobRow(job_id, kind, status, json.loads(config) if config else {},
                  None if seed is None else int(seed), error, started, updated, finished, parent)


def create_job(con: duckdb.DuckDBPyConnection, job_id: str, kind: str,
               config: Mapping[str, object], *, seed: int | None = None,
               parent_id: str | None = None) -> None:
    """Record a new job, running from now (in the caller's transaction)."""
    stamp = now()
    con.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, 'running', ?, ?, NULL, ?, ?, NULL, ?)",
                [job_id, kind, json.dumps(dict(config), ensure_ascii=False, default=str), seed,
                 stamp, stamp, parent_id])


def mark_running(con: duckdb.DuckDBPyConnection, job_id: str) -> None:
    """Mark a resumed job running again: no error, no end."""
    con.execute("UPDATE jobs SET status = 'running', error = NULL, finished_at = NULL, "
                "updated_at = ? WHERE job_id = ?", [now(), job_id])


def finish_job(con: duckdb.DuckDBPyConnection, job_id: str, status: str,
               error: str | None = None) -> None:
    """End a job with a status and, when it stopped, why (cut to 1,000 characters)."""
    if status not in STATUSES:
        raise ValueError(f"unknown job status {status!r}")
    stamp = now()
    con.execute("UPDATE jobs SET status = ?, error = ?, finished_at = ?, updated_at = ? "
                "WHERE job_id = ?", [status, None if error is None else error[:1000], stamp,
                                     stamp, job_id])


def touch_job(con: duckdb.DuckDBPyConnection, job_id: str) -> None:
    con.execute("UPDATE jobs SET updated_at = ? WHERE job_id = ?", [now(), job_id])


def merge_job_config(con: duckdb.DuckDBPyConnection, job_id: str, items: Mapping[str, object]) -> None:
    """Add what a job learned while running to its config."""
    con.execute("UPDATE jobs SET config = json_merge_patch(coalesce(config, '{}'), ?) "
                "WHERE job_id = ?", [json.dumps(dict(items), default=str), job_id])


def set_job_config(con: duckdb.DuckDBPyConnection, job_id: str, config: Mapping[str, object]) -> None:
    con.execute("UPDATE jobs SET config = ? WHERE job_id = ?",
                [json.dumps(dict(config), ensure_ascii=False, default=str), job_id])


def find_job(con: duckdb.DuckDBPyConnection, job_id: str) -> JobRow | None:
    """Find a job of any kind and status, or None."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", [job_id]).fetchall()
    return _row(rows[0]) if rows else None


def list_jobs(con: duckdb.DuckDBPyConnection, *, kind: str | None = None,
              status: str | Sequence[str] | None = None,
              parent_id: str | None = None) -> list[JobRow]:
    """Jobs, newest first, filtered by kind, status or parent."""
    where, params = [], []
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(statuses)
    if parent_id is not None:
        where.append("parent_id = ?")
        params.append(parent_id)
    sql = f"SELECT {_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = con.execute(sql + " ORDER BY started_at DESC NULLS LAST, job_id DESC", params).fetchall()
    return [_row(r) for r in rows]


def job_kinds(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [str(r[0]) for r in con.execute("SELECT DISTINCT kind FROM jobs ORDER BY 1").fetchall()]


def latest_job_id(con: duckdb.DuckDBPyConnection, kind: str) -> str | None:
    """Return the newest job of a kind."""
    rows = con.execute("SELECT job_id FROM jobs WHERE kind = ? ORDER BY started_at DESC NULLS LAST, "
                       "job_id DESC LIMIT 1", [kind]).fetchall()
    return str(rows[0][0]) if rows else None


def running_job_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Return the jobs whose status says running, whichever process runs them (if any)."""
    return [str(r[0]) for r in con.execute("SELECT job_id FROM jobs WHERE status = 'running' "
                                           "ORDER BY job_id").fetchall()]


def interrupt_running(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str], error: str) -> None:
    """Mark interrupted those of the jobs still running (one that ended meanwhile keeps its end)."""
    if not job_ids:
        return
    stamp = now()
    con.execute(f"UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ?, "
                f"updated_at = ? WHERE status = 'running' AND job_id IN "
                f"({', '.join('?' * len(job_ids))})", [error[:1000], stamp, stamp, *job_ids])


def supersede_jobs(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str]) -> None:
    """Mark unfinished jobs superseded (started anew): never resumed again."""
    if not job_ids:
        return
    stamp = now()
    con.execute(f"UPDATE jobs SET status = 'superseded', finished_at = ?, updated_at = ? WHERE "
                f"job_id IN ({', '.join('?' * len(job_ids))})", [stamp, stamp, *job_ids])

