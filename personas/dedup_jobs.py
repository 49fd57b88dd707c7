"""The ``dedup_jobs`` record: a dedup job's finished stages (its lifecycle and stored
configuration are in ``jobs``: ``core.jobs_store``).

A dedup job is resumed by its id (``personas dedup --resume JOB_ID``) or by running the same
command again (an unfinished job with the same configuration goes on). A stage recorded as done
is not run again (its marks are in ``personas``); the embedding stage's finished batches are in
``persona_embeddings``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import duckdb

from personahub.core.jobs_store import JobRow, create_job, find_job, finish_job, list_jobs, mark_running
from personahub.core.store import transaction

JOB_KIND: Final = "dedup"


@dataclass(frozen=True)
class DedupJob:
    """One stored dedup job."""

    job_id: str
    config: dict[str, Any]
    status: str
    stages: dict[str, dict[str, Any]]  # stage name -> {"input": n, "marked": m}


def _job(con: duckdb.DuckDBPyConnection, row: JobRow) -> DedupJob | None:
    stages = con.execute("SELECT stages FROM dedup_jobs WHERE job_id = ?", [row.job_id]).fetchall()
    if not stages:
        return None
    return DedupJob(row.job_id, row.config, row.status,
                    json.loads(stages[0][0]) if stages[0][0] else {})


def find_dedup_job(con: duckdb.DuckDBPyConnection, job_id: str) -> DedupJob | None:
    """The dedup job ``job_id``, if there is one."""
    row = find_job(con, job_id)
    return _job(con, row) if row is not None and row.kind == JOB_KIND else None


def find_unfinished_dedup(con: duckdb.DuckDBPyConnection,
                          config: Mapping[str, Any]) -> DedupJob | None:
    """The latest unfinished dedup job started with exactly ``config`` (what a re-run resumes)."""
    rows = [r for r in list_jobs(con, kind=JOB_KIND) if r.status != "finished"]
    return next((job for job in (_job(con, r) for r in rows if r.config == dict(config))
                 if job is not None), None)


def start_dedup_job(con: duckdb.DuckDBPyConnection, config: Mapping[str, Any],
                    job_id: str | None = None) -> str:
    """Record a new dedup job (or mark ``job_id`` running again); its id."""
    with transaction(con):
        if job_id is None:
            job_id = f"dedup-{uuid.uuid4().hex[:12]}"
            create_job(con, job_id, JOB_KIND, config)
            con.execute("INSERT INTO dedup_jobs (job_id, stages) VALUES (?, '{}')", [job_id])
        else:
            mark_running(con, job_id)
    return job_id


def record_stage(con: duckdb.DuckDBPyConnection, job_id: str, stage: str, input_rows: int,
                 marked: int, skipped_language: int | None = None) -> None:
    """Note ``stage`` as done (call inside the transaction that writes its marks);
    ``skipped_language``: the texts the embedding stage left unjudged for their script."""
    counts = {"input": input_rows, "marked": marked}
    if skipped_language is not None:
        counts["skipped_language"] = skipped_language
    con.execute("UPDATE dedup_jobs SET stages = json_merge_patch(coalesce(stages, '{}'), ?) "
                "WHERE job_id = ?", [json.dumps({stage: counts}), job_id])


def finish_dedup_job(con: duckdb.DuckDBPyConnection, job_id: str, status: str,
                     error: str | None = None) -> None:
    """Mark the job finished / interrupted / failed."""
    finish_job(con, job_id, status, error)
