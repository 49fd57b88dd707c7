"""The ``dedup_jobs`` record: a dedup job's stored configuration, its finished stages, its status.

A dedup job is resumed by its id (``personas dedup --resume JOB_ID``) or by running the same
command again (an unfinished job with the same configuration goes on). A stage recorded as done
is not run again (its marks are in ``personas``); the embedding stage's finished batches are in
``persona_embeddings``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import duckdb

from personahub.core.store import transaction

JOB_KIND: Final = "dedup"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class DedupJob:
    """One stored dedup job."""

    job_id: str
    config: dict[str, Any]
    status: str
    stages: dict[str, dict[str, Any]]  # stage name -> {"input": n, "marked": m}


def _job(row: tuple[Any, ...]) -> DedupJob:
    job_id, config, status, stages = row
    return DedupJob(job_id, json.loads(config) if config else {}, status,
                    json.loads(stages) if stages else {})


_COLUMNS = "SELECT job_id, config, status, stages FROM dedup_jobs"


def find_dedup_job(con: duckdb.DuckDBPyConnection, job_id: str) -> DedupJob | None:
    """The dedup job ``job_id``, if there is one."""
    rows = con.execute(f"{_COLUMNS} WHERE job_id = ?", [job_id]).fetchall()
    return _job(rows[0]) if rows else None


def find_unfinished_dedup(con: duckdb.DuckDBPyConnection,
                          config: Mapping[str, Any]) -> DedupJob | None:
    """The latest unfinished dedup job started with exactly ``config`` (what a re-run resumes)."""
    rows = con.execute(f"{_COLUMNS} WHERE status <> 'finished' ORDER BY started_at DESC").fetchall()
    return next((job for job in map(_job, rows) if job.config == dict(config)), None)


def start_dedup_job(con: duckdb.DuckDBPyConnection, config: Mapping[str, Any],
                    job_id: str | None = None) -> str:
    """Record a new dedup job (or mark ``job_id`` running again); its id."""
    with transaction(con):
        if job_id is None:
            job_id = f"dedup-{uuid.uuid4().hex[:12]}"
            con.execute("INSERT INTO dedup_jobs (job_id, config, status, stages, started_at) "
                        "VALUES (?, ?, 'running', '{}', ?)", [job_id, json.dumps(dict(config)), _now()])
        else:
            con.execute("UPDATE dedup_jobs SET status = 'running', error = NULL, finished_at = NULL "
                        "WHERE job_id = ?", [job_id])
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
    with transaction(con):
        con.execute("UPDATE dedup_jobs SET status = ?, error = ?, finished_at = ? WHERE job_id = ?",
                    [status, error, _now(), job_id])
