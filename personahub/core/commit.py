"""The one batch commit every job writes through: a batch's rows, call records and new cache answers in
one transaction, plus the tag that says which job a call belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import duckdb

from personahub.core.call_spill import SpilledCall
from personahub.core.contracts import SENT, CallRecord, CarriesCalls, ServesModels, token_count
from personahub.core.jobs_store import touch_job
from personahub.core.store import insert_rows, record_rows, transaction

T = TypeVar("T")
JobKind = str
# phase, done, total (None when unknown)
ProgressHook = Callable[[str, int, "int | None"], None]
# tables whose rows may repeat after a retried batch (their keys are stable ids)
IDEMPOTENT_TABLES = frozenset({"synth_items", "rejected", "text_done", "llm_cache", "judgments"})
_TOKEN_COLUMNS = ("tokens_in", "tokens_out", "cached_prompt_tokens")


@dataclass(frozen=True)
class JobRef:
    """Which job a call belongs to; the run id only for calls that are part of a scenario run."""

    kind: JobKind
    job_id: str
    run_id: str | None = None


def model_names(client: ServesModels) -> dict[int, str]:
    return {i: e.model_name or e.label for i, e in enumerate(client.endpoints)}


def call_rows(client: ServesModels, records: Iterable[CallRecord],
              job: JobRef | None) -> list[dict[str, object]]:
    """Call-log rows for records, tagged with the job and model. An impossible token figure is stored as
    NULL, never refused.
    """
    records = list(records)
    names = model_names(client) if records else {}
    rows = record_rows(records, run_id=job.run_id if job else None,
                       job_kind=job.kind if job else None, job_id=job.job_id if job else None)
    for row in rows:
        for name in _TOKEN_COLUMNS:
            row[name] = token_count(row.get(name))
        endpoint = row.get("endpoint")
        label = row.pop("model")  # the record's engine label
        row["llm"] = label
        row["model_name"] = names.get(endpoint, label) if isinstance(endpoint, int) else label
    return rows


def records_of(results: Iterable[CarriesCalls]) -> list[CallRecord]:
    return [record for result in results for record in result.records]


def cache_rows_of(results: Iterable[CarriesCalls]) -> list[dict[str, object]]:
    """Cache rows of the answers the batch's results recorded."""
    return record_rows(entry for result in results for entry in result.cache_entries)


def commit_batch(con: duckdb.DuckDBPyConnection, job: JobRef | None, client: ServesModels,
                 rows: Mapping[str, Sequence[Mapping[str, object]]], results: Sequence[CarriesCalls],
                 *, then: Callable[[], T] | None = None,
                 replacing: Sequence[str] = ()) -> T | None:
    """Write a batch's rows, call records and new cache answers in one transaction; a final callback runs
    inside it and its value is returned. Records come from the results, never the client, so two jobs
    sharing a client write only their own calls.
    """
    with transaction(con):
        for table, table_rows in rows.items():
            insert_rows(con, table, table_rows, ignore_conflicts=table in IDEMPOTENT_TABLES)
        if replacing:
            con.execute("DELETE FROM llm_calls WHERE call_id IN (SELECT unnest(?::VARCHAR[]))",
                        [list(replacing)])
        write_calls(con, client, results, job)
        if job is not None:
            touch_job(con, job.job_id)
        return then() if then is not None else None


def write_calls(con: duckdb.DuckDBPyConnection, client: ServesModels,
                results: Iterable[CarriesCalls], job: JobRef | None) -> None:
    """Write the call records and cache answers the results carry, in the caller's transaction."""
    insert_rows(con, "llm_calls", call_rows(client, records_of(results), job))
    insert_rows(con, "llm_cache", cache_rows_of(results), ignore_conflicts=True)


def not_kept_call_ids(con: duckdb.DuckDBPyConnection, job_id: str) -> frozenset[str]:
    """Call ids of the job's rows that are not kept answers: the only ones a spill can have written early."""
    return frozenset(row[0] for row in con.execute(
        "SELECT call_id FROM llm_calls WHERE job_id = ? AND status <> 'ok'", [job_id]).fetchall())


#: the status of an answer the job never committed: billed and counted, not kept
DISCARDED = "discarded"


def commit_spilled(con: duckdb.DuckDBPyConnection, client: ServesModels,
                   spilled: Sequence[SpilledCall]) -> list[str]:
    """Write the spilled attempts no batch committed; returns their call ids. A successful one is written
    discarded (a resume asks it again); one only sent is written sent, its tokens unknown.
    """
    if not spilled:
        return []
    ids = list({s.record.call_id for s in spilled})
    # a semi-join: a Ray job's worker spills can be as long as the call log
    known = {row[0] for row in con.execute(
        "SELECT call_id FROM llm_calls WHERE call_id IN (SELECT unnest(?::VARCHAR[]))",
        [ids]).fetchall()}
    chosen: dict[str, SpilledCall] = {}  # the first final line of each attempt, else sent
    for item in spilled:
        call_id = item.record.call_id
        if call_id in known:
            continue
        have = chosen.get(call_id)
        if have is None or (have.record.status == SENT and item.record.status != SENT):
            chosen[call_id] = item
    rows: list[dict[str, object]] = []
    for item in chosen.values():
        tags = item.tags
        run_id = tags.get("run_id")
        job = JobRef(str(tags.get("job_kind")), str(tags.get("job_id")),
                     run_id if isinstance(run_id, str) else None)
        row = call_rows(client, [item.record], job)[0]
        if row.get("status") == "ok":
            row["status"] = DISCARDED
        rows.append(row)
    if rows:
        with transaction(con):
            insert_rows(con, "llm_calls", rows)
    return list(chosen)  # the rows' call ids, in order

