"""The job kernel every model-calling command runs on (runs, synthesis, expansion, text-to-persona).

A job is opened (new, or an existing one whose stored configuration is read before anything is
built from it: the model client is made with the job's seed and generation settings), runs its
batches on one event loop it owns (``JobLoop``), commits each batch's rows together with the
model-call records and newly recorded cache answers that the batch's results carry, in one
transaction (``personas.jobs.commit_batch``), and finishes with a status.

What each job keeps stays in its own documented tables (``runs``, ``synth_jobs``, ``expansions``,
``text_jobs``); the kernel gives them one way to tag ``llm_calls`` (``job_kind``, ``job_id``,
``model_name``), one cache switch (``--cache off|record|replay``), one progress-hook signature
and one batch commit.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from personahub.agents.llm.cache import CACHE_MODES, ResponseCache
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError
from personahub.core.job_records import (  # noqa: F401 - the kernel's public names, in one place
    JobKind,
    JobRef,
    ProgressHook,
    cache_rows_of,
    call_rows,
    commit_batch,
    records_of,
)
from personahub.core.jobs_store import most_common_job_error  # noqa: F401 - as above
from personahub.core.loop import close_quietly, new_run_loop, steady_gc_start, steady_gc_stop
from personahub.core.store import connect, database_path, scalar

T = TypeVar("T")


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
        others = [r[0] for r in con.execute(
            "SELECT DISTINCT model FROM llm_cache ORDER BY 1 LIMIT 4").fetchall()]
        if others:  # answers of another model: the --llm is what differs
            raise PersonahubError(
                f"--cache replay: {db} holds no recorded answer of model {model!r}, only of "
                f"{', '.join(repr(m) for m in others)}; use the same --llm they were recorded with "
                "(or record this one with --cache record)")
        raise PersonahubError(f"--cache replay: {db} holds no recorded answer of model {model!r}; "
                              "record them first with --cache record (same --llm)")


def attach_cache(con: duckdb.DuckDBPyConnection, client: StructuredCaller, mode: str) -> None:
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
        steady_gc_start()  # see agents.run_loop
        self._steady = True

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one batch (or setup) coroutine to completion on the job's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            close_quietly(self.loop)
        finally:
            if self._steady:
                self._steady = False
                steady_gc_stop()


@contextmanager
def job_loop() -> Iterator[JobLoop]:
    """``with job_loop() as loop: loop.run(batch())`` — one loop for the whole job."""
    owned = JobLoop()
    try:
        yield owned
    finally:
        owned.close()
