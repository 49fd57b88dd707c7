"""What a job writes, shared by every model-calling job (runs, synthesis, expansion, text-to-persona,
the dedup embedding stage): which job a model call belongs to, the one batch commit (a batch's rows
with its call records and newly recorded cache answers in one transaction), the one progress-hook
signature, and the ``text_jobs`` record. The event loop and the cache switch are in ``sim.jobs``;
this half imports nothing above ``personas`` but the seam's contracts (``agents.contracts``, which
import nothing of the project): the clients it is handed and the results it writes are typed there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import duckdb

from personahub.core.contracts import CallRecord, CarriesCalls, ServesModels
from personahub.core.store import insert_rows, record_rows, transaction

T = TypeVar("T")
JobKind = Literal["run", "synthesis", "expansion", "text_to_persona", "dedup", "interview",
                  "judge"]
# One progress signature for every job: (phase, done, total or None when unknown).
ProgressHook = Callable[[str, int, "int | None"], None]
# Tables whose batch rows may repeat after a retried batch (their keys are stable ids).
IDEMPOTENT_TABLES = frozenset({"synth_items", "rejected", "text_done", "llm_cache", "judgments"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class JobRef:
    """Which job a call belongs to. ``run_id`` is what ``llm_calls.run_id`` held before the
    kernel (a run id, a synthesis job id, or NULL) and is kept as is for old queries."""

    kind: JobKind
    job_id: str
    run_id: str | None = None


def model_names(client: ServesModels) -> dict[int, str]:
    """The served model's name per endpoint index (no URL, no credentials: nothing to parse)."""
    return {i: e.model_name or e.label for i, e in enumerate(client.endpoints)}


def call_rows(client: ServesModels, records: Iterable[CallRecord],
              job: JobRef | None) -> list[dict[str, Any]]:
    """``llm_calls`` rows for ``records``, tagged with the job and the model name.

    A record answered from the cache has no endpoint; its ``model`` is then the cache's model
    name already. ``job=None`` writes untagged rows (calls outside any job, as in tests).
    """
    records = list(records)
    names = model_names(client) if records else {}  # a batch without calls asks nothing of it
    rows = record_rows(records, run_id=job.run_id if job else None,
                       job_kind=job.kind if job else None, job_id=job.job_id if job else None)
    for row in rows:
        endpoint = row.get("endpoint")
        row["model_name"] = names.get(endpoint, row.get("model")) if endpoint is not None \
            else row.get("model")
    return rows


def records_of(results: Iterable[CarriesCalls]) -> list[CallRecord]:
    """The call records the batch's results carry, in the results' order."""
    return [record for result in results for record in result.records]


def cache_rows_of(results: Iterable[CarriesCalls]) -> list[dict[str, Any]]:
    """``llm_cache`` rows of the answers the batch's results recorded (none without a cache)."""
    return record_rows(entry for result in results for entry in result.cache_entries)


def commit_batch(con: duckdb.DuckDBPyConnection, job: JobRef | None, client: ServesModels,
                 rows: Mapping[str, Sequence[Mapping[str, Any]]], results: Sequence[CarriesCalls],
                 *, then: Callable[[], T] | None = None) -> T | None:
    """Write a batch's rows (by table, in order) with the call records and new cache answers its
    ``results`` carry, in one transaction; ``then`` runs inside it last (writes that are not
    plain rows, such as persona upserts) and what it returns is returned.

    Records and cache entries come from the batch's own results, never from the client: two
    jobs sharing one client write only their own calls."""
    calls = call_rows(client, records_of(results), job)
    cached = cache_rows_of(results)
    with transaction(con):
        for table, table_rows in rows.items():
            insert_rows(con, table, table_rows, ignore_conflicts=table in IDEMPOTENT_TABLES)
        insert_rows(con, "llm_calls", calls)
        insert_rows(con, "llm_cache", cached, ignore_conflicts=True)
        return then() if then is not None else None


# --- text-to-persona jobs (the one job kind that had no table of its own) -------------------

def text_job_config(con: duckdb.DuckDBPyConnection, corpus: str) -> dict[str, Any] | None:
    """The stored configuration of the text-to-persona job over ``corpus``, if one was started."""
    rows = con.execute("SELECT config FROM text_jobs WHERE corpus = ?", [corpus]).fetchall()
    return json.loads(rows[0][0]) if rows and rows[0][0] else None


def start_text_job(con: duckdb.DuckDBPyConnection, corpus: str, config: Mapping[str, Any]) -> None:
    """Record (or mark running again) the text-to-persona job over ``corpus``."""
    with transaction(con):
        con.execute("INSERT INTO text_jobs (corpus, config, status, started_at) VALUES (?, ?, "
                    "'running', ?) ON CONFLICT (corpus) DO UPDATE SET status = 'running', "
                    "error = NULL, finished_at = NULL", [corpus, json.dumps(dict(config)), _now()])


def finish_text_job(con: duckdb.DuckDBPyConnection, corpus: str, status: str,
                    error: str | None = None) -> None:
    """Mark the text-to-persona job over ``corpus`` finished / interrupted / failed."""
    with transaction(con):
        con.execute("UPDATE text_jobs SET status = ?, error = ?, finished_at = ? WHERE corpus = ?",
                    [status, error, _now(), corpus])


def most_common_job_error(con: duckdb.DuckDBPyConnection, kind: str, job_id: str) -> str:
    """The most frequent error of a job's failed attempts, for the one line that stops it."""
    rows = con.execute("SELECT error, count(*) AS n FROM llm_calls WHERE job_kind = ? AND job_id = ? "
                       "AND status <> 'ok' AND error IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 "
                       "LIMIT 1", [kind, job_id]).fetchall()
    return " ".join(str(rows[0][0]).split())[:160] if rows else "no model call answered"
