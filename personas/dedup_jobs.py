"""The dedup_jobs record: a dedup job's finished stages, which are not run again."""

from __future__ import annotations

import json
from typing import Final

import duckdb

JOB_KIND: Final = "dedup"


def detail_row(job_id: str) -> dict[str, object]:
    """Return a new job's dedup_jobs row, with no stage done."""
    return {"job_id": job_id, "stages": "{}"}


def stages_of(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, dict[str, int]]:
    """Return the job's finished stages: name -> counts."""
    found = con.execute("SELECT stages FROM dedup_jobs WHERE job_id = ?", [job_id]).fetchall()
    return json.loads(found[0][0]) if found and found[0][0] else {}


def record_stage(con: duckdb.DuckDBPyConnection, job_id: str, stage: str, input_rows: int,
                 marked: int, skipped_language: int | None = None) -> None:
    """Note a stage as done, inside the transaction that writes its marks."""
    counts = {"input": input_rows, "marked": marked}
    if skipped_language is not None:
        counts["skipped_language"] = skipped_language
    con.execute("UPDATE dedup_jobs SET stages = json_merge_patch(coalesce(stages, '{}'), ?) "
                "WHERE job_id = ?", [json.dumps({stage: counts}), job_id])
