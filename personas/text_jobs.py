"""The text_jobs record: one text-to-persona job per corpus; a re-run continues it with its first
configuration.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import duckdb

from personahub.core.jobs_store import create_job, find_job, finish_job, mark_running
from personahub.core.store import transaction

JOB_KIND: Final = "text_to_persona"


@dataclass(frozen=True)
class TextJob:
    """One stored text-to-persona job."""

    job_id: str
    corpus: str
    config: dict[str, object]
    status: str


def new_text_job_id() -> str:
    """Return a sortable, unique id: text- + UTC time + random suffix."""
    return "text-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _job(con: duckdb.DuckDBPyConnection, job_id: str, corpus: str) -> TextJob | None:
    row = find_job(con, job_id)
    return None if row is None else TextJob(job_id, corpus, row.config, row.status)


def find_text_job(con: duckdb.DuckDBPyConnection, corpus: str) -> TextJob | None:
    """Return the job over a corpus, if one was started."""
    rows = con.execute("SELECT job_id FROM text_jobs WHERE corpus = ?", [corpus]).fetchall()
    return _job(con, rows[0][0], corpus) if rows else None


def text_job_by_id(con: duckdb.DuckDBPyConnection, job_id: str) -> TextJob | None:
    """Return a text-to-persona job by id, if there is one."""
    rows = con.execute("SELECT corpus FROM text_jobs WHERE job_id = ?", [job_id]).fetchall()
    return _job(con, job_id, rows[0][0]) if rows else None


def start_text_job(con: duckdb.DuckDBPyConnection, corpus: str, config: Mapping[str, Any]) -> str:
    """Record the job over a corpus, or mark the earlier one running again; return its id."""
    with transaction(con):
        known = con.execute("SELECT job_id FROM text_jobs WHERE corpus = ?", [corpus]).fetchall()
        if known:
            mark_running(con, known[0][0])
            return str(known[0][0])
        job_id = new_text_job_id()
        seed = config.get("seed")
        create_job(con, job_id, JOB_KIND, config, seed=None if seed is None else int(seed))
        con.execute("INSERT INTO text_jobs (job_id, corpus) VALUES (?, ?)", [job_id, corpus])
    return job_id


def finish_text_job(con: duckdb.DuckDBPyConnection, job_id: str, status: str,
                    error: str | None = None) -> None:
    """Mark the text job finished, interrupted or failed."""
    finish_job(con, job_id, status, error)
