"""The job kernel every model-calling command runs on (runs, synthesis, expansion, text-to-persona).

A job is opened (new, or an existing one whose stored configuration is read before anything is
built from it: the model client is made with the job's seed and generation settings), runs its
batches on one event loop it owns, commits each batch's rows together with the batch's model-call
records and newly recorded cache answers in one transaction, and finishes with a status.

What each job keeps stays in its own documented tables (``runs``, ``synth_jobs``, ``expansions``,
``text_jobs``); the kernel gives them one way to tag ``llm_calls`` (``job_kind``, ``job_id``,
``model_name``), one cache switch (``--cache off|record|replay``), one progress-hook signature
and one batch commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
from personahub.agents.cache import CACHE_MODES, ResponseCache
from personahub.agents.run_loop import close_quietly, new_run_loop
from personahub.personas.errors import PersonahubError
from personahub.personas.store import (
    connect,
    database_path,
    insert_rows,
    record_rows,
    scalar,
    transaction,
)

T = TypeVar("T")
JobKind = Literal["run", "synthesis", "expansion", "text_to_persona"]
# One progress signature for every job: (phase, done, total or None when unknown).
ProgressHook = Callable[[str, int, "int | None"], None]
# Tables whose batch rows may repeat after a retried batch (their keys are stable ids).
IDEMPOTENT_TABLES = frozenset({"synth_items", "rejected", "text_done", "llm_cache"})


@dataclass(frozen=True)
class JobRef:
    """Which job a call belongs to. ``run_id`` is what ``llm_calls.run_id`` held before the
    kernel (a run id, a synthesis job id, or NULL) and is kept as is for old queries."""

    kind: JobKind
    job_id: str
    run_id: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def model_names(client: Any) -> dict[int, str]:
    """The served model's name per endpoint index (no URL, no credentials: nothing to parse)."""
    return {i: str(getattr(e, "model_name", "") or getattr(e, "label", ""))
            for i, e in enumerate(getattr(client, "endpoints", ()))}


def call_rows(client: Any, records: Iterable[Any], job: JobRef | None) -> list[dict[str, Any]]:
    """``llm_calls`` rows for ``records``, tagged with the job and the model name.

    A record answered from the cache has no endpoint; its ``model`` is then the cache's model
    name already. ``job=None`` writes untagged rows (calls outside any job, as in tests).
    """
    names = model_names(client)
    rows = record_rows(records, run_id=job.run_id if job else None,
                       job_kind=job.kind if job else None, job_id=job.job_id if job else None)
    for row in rows:
        endpoint = row.get("endpoint")
        row["model_name"] = names.get(endpoint, row.get("model")) if endpoint is not None \
            else row.get("model")
    return rows


def records_of(results: Iterable[Any]) -> list[Any]:
    """The call records the batch's results carry (a result of ``None`` carries none)."""
    return [record for result in results for record in (getattr(result, "records", None) or ())]


def forget_buffered_records(client: Any) -> None:
    """Drop the client's side buffer of call records: the kernel writes the records that came
    with the results, and the buffer would otherwise grow for the whole job. (The buffer is
    going away; until then this is the one place that empties it for kernel-written jobs.)"""
    drain = getattr(client, "drain_records", None)
    if drain is not None:
        drain()


def new_cache_rows(client: Any) -> list[dict[str, Any]]:
    """``llm_cache`` rows of answers recorded since the last batch (none without a cache)."""
    return getattr(client, "drain_cache_rows", list)()


def commit_batch(con: duckdb.DuckDBPyConnection, job: JobRef | None, client: Any,
                 rows: Mapping[str, Sequence[Mapping[str, Any]]], records: Sequence[Any], *,
                 then: Callable[[], T] | None = None) -> T | None:
    """Write a batch's rows (by table, in order), its call records and new cache answers in one
    transaction; ``then`` runs inside it last (writes that are not plain rows, such as persona
    upserts) and what it returns is returned."""
    calls = call_rows(client, records, job)
    cached = new_cache_rows(client)
    with transaction(con):
        for table, table_rows in rows.items():
            insert_rows(con, table, table_rows, ignore_conflicts=table in IDEMPOTENT_TABLES)
        insert_rows(con, "llm_calls", calls)
        insert_rows(con, "llm_cache", cached, ignore_conflicts=True)
        return then() if then is not None else None


def check_cache_mode(mode: str) -> None:
    """Refuse an unknown ``--cache`` value before anything is opened."""
    if mode not in CACHE_MODES:
        raise PersonahubError(f"--cache {mode!r}: use one of {', '.join(CACHE_MODES)}")


def check_replay_cache(db: str | Path, model: str) -> None:
    """Refuse a replay that has nothing recorded to replay (it would fail at its first call,
    leaving an unfinished job behind)."""
    if not Path(db).is_file():
        raise PersonahubError(f"--cache replay: {db} does not exist, so no answer is recorded; "
                              "record them first with --cache record")
    con = connect(db, read_only=True)
    try:
        _check_recorded(con, db, model)
    finally:
        con.close()


def _check_recorded(con: duckdb.DuckDBPyConnection, db: str | Path, model: str) -> None:
    try:
        recorded = scalar(con, "SELECT count(*) FROM llm_cache WHERE model = ?", [model])
    except duckdb.CatalogException:  # a database from before the cache existed
        recorded = 0
    if not recorded:
        raise PersonahubError(f"--cache replay: {db} holds no recorded answer of model {model!r}; "
                              "record them first with --cache record (same --llm)")


def attach_cache(con: duckdb.DuckDBPyConnection, client: Any, mode: str) -> None:
    """Answer the job's calls from (and record into) the ``llm_cache`` table; ``off`` does nothing.
    A replay with nothing recorded for the client's model is refused before any call."""
    check_cache_mode(mode)
    if mode == "replay":
        _check_recorded(con, database_path(con), client.cache_model)
    if mode != "off":
        client.use_cache(ResponseCache.load(con, mode, client.cache_model))  # type: ignore[arg-type]


class JobLoop:
    """The one event loop a job's batches run on, closed quietly even after an interrupt."""

    def __init__(self) -> None:
        self.loop = new_run_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one batch (or setup) coroutine to completion on the job's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        close_quietly(self.loop)


@contextmanager
def job_loop() -> Iterator[JobLoop]:
    """``with job_loop() as loop: loop.run(batch())`` — one loop for the whole job."""
    owned = JobLoop()
    try:
        yield owned
    finally:
        owned.close()


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
