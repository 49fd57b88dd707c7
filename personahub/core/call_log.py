"""Reads of the call log: what job summaries, stop messages and run figures say of the model calls.
A run id argument names a run or another job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cached_calls", "call_counts", "calls_by_step", "calls_since", "committed_requests",
           "failed_call_groups", "job_calls", "last_attempt_counts", "last_errors",
           "most_common_error_in", "most_common_job_error", "prefix_reused",
           "prompt_tokens_per_action", "run_call_totals", "unknown_usage", "unknown_usage_note"]

#: the run a call counts under, else its job
_OWNER = "coalesce(run_id, job_id)"


def call_counts(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None,
                job_id: str | None = None) -> dict[str, int]:
    """Call-log rows by status, of a run or job, or of one job."""
    column, value = ("job_id", job_id) if job_id is not None else (_OWNER, run_id)
    rows = con.execute(f"SELECT status, count(*) FROM llm_calls WHERE {column} = ? "
                       "GROUP BY 1 ORDER BY 1", [value]).fetchall()
    return {str(status): int(n) for status, n in rows}


def unknown_usage(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None,
                  job_id: str | None = None) -> int:
    """Rows whose token counts are unknown (out at a kill, or impossible): billed, but in no token sum."""
    column, value = ("job_id", job_id) if job_id is not None else (_OWNER, run_id)
    return int(con.execute(f"SELECT count(*) FROM llm_calls WHERE {column} = ? AND "
                           "(tokens_in IS NULL OR tokens_out IS NULL)", [value]).fetchall()[0][0])


def unknown_usage_note(count: int) -> str:
    """Return what a summary's model-calls line adds for attempts of unknown tokens."""
    return f" ({count} with unknown token usage: not in the token counts)" if count else ""


def committed_requests(con: duckdb.DuckDBPyConnection, job_id: str) -> set[tuple[str, str]]:
    """Return the provider batch id and custom id of the job's committed provider batch requests:
    what a resume never collects again."""
    return {(b, c) for b, c in con.execute(
        "SELECT provider_batch_id, custom_id FROM llm_calls WHERE job_id = ? "
        "AND provider_batch_id IS NOT NULL "
        "AND custom_id IS NOT NULL", [job_id]).fetchall()}


def most_common_job_error(con: duckdb.DuckDBPyConnection, kind: str, job_id: str) -> str:
    rows = con.execute("SELECT error, count(*) AS n FROM llm_calls WHERE job_kind = ? AND job_id = ? "
                       "AND status <> 'ok' AND error IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 "
                       "LIMIT 1", [kind, job_id]).fetchall()
    return " ".join(str(rows[0][0]).split())[:160] if rows else "no model call answered"


def prefix_reused(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, int] | None:
    """Return the cached and prompt tokens over the run's attempts whose server reported prefix-cache
    reuse, or None."""
    cached, prompt = con.execute(
        f"SELECT sum(cached_prompt_tokens), sum(tokens_in) FROM llm_calls WHERE {_OWNER} = ? AND "
        "cached_prompt_tokens IS NOT NULL AND coalesce(job_kind, 'run') IN ('run', 'expansion')",
        [run_id]).fetchall()[0]
    return None if prompt is None else (int(cached), int(prompt))


def prompt_tokens_per_action(con: duckdb.DuckDBPyConnection, run_id: str) -> float | None:
    """Mean prompt tokens of the run's answered actions and survey questions (None if unknown). Offline
    runs count 4 characters a token, as the offline engine does.
    """
    mean = con.execute(f"SELECT avg(tokens_in) FROM llm_calls WHERE {_OWNER} = ? AND status = 'ok' "
                       "AND step IS NOT NULL", [run_id]).fetchall()[0][0]
    return None if mean is None else float(mean)


def most_common_error_in(con: duckdb.DuckDBPyConnection, run_id: str, *,
                         purpose: str | None = None) -> str:
    """Return the most frequent error of a run's failed model calls (of one purpose, when given)."""
    rows = con.execute(f"SELECT error, count(*) AS n FROM llm_calls WHERE {_OWNER} = ? AND status <> 'ok' "
                       "AND error IS NOT NULL AND (? IS NULL OR purpose = ?) "
                       "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1",
                       [run_id, purpose, purpose]).fetchall()
    return str(rows[0][0])[:160] if rows else "no model call succeeded"


def last_errors(con: duckdb.DuckDBPyConnection, purpose: str, persona_ids: Sequence[str], *,
                run_id: str | None = None) -> dict[str, str | None]:
    """Each persona's last failed attempt's error: how a persona that yielded nothing failed."""
    if not persona_ids:
        return {}
    marks = ", ".join("?" * len(persona_ids))
    rows = con.execute(
        "SELECT persona_id, arg_max(error, started_at) FROM llm_calls WHERE purpose = ? AND "
        f"status <> 'ok' AND (? IS NULL OR {_OWNER} = ?) AND persona_id IN ({marks}) "
        "GROUP BY persona_id", [purpose, run_id, run_id, *persona_ids]).fetchall()
    return {str(pid): (None if error is None else str(error)) for pid, error in rows}


# a call starts at attempt 1 (or at the first row of its group)
_LAST_ATTEMPTS = """
WITH calls AS (
    SELECT purpose, status, error, attempt, started_at, call_id,
           coalesce(job_id, run_id, '') AS job, coalesce(persona_id, '') AS who,
           coalesce(step, -1) AS at_step
    FROM llm_calls WHERE {where}
), numbered AS (
    SELECT *, sum(CASE WHEN attempt <= 1 THEN 1 ELSE 0 END) OVER (
        PARTITION BY job, purpose, who, at_step ORDER BY started_at, attempt, call_id
        ROWS UNBOUNDED PRECEDING) AS call_no
    FROM calls
), last AS (
    SELECT purpose, status, error, row_number() OVER (
        PARTITION BY job, purpose, who, at_step, call_no ORDER BY started_at DESC, attempt DESC,
        call_id DESC) AS back
    FROM numbered
)
SELECT purpose, status, error, count(*) FROM last WHERE back = 1 GROUP BY 1, 2, 3
"""


def last_attempt_counts(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None,
                        job_kind: str | None = None,
                        job_id: str | None = None) -> list[tuple[str, str, str | None, int]]:
    """Purpose, status, error and calls of the last attempt of each call."""
    params: list[str | None]
    if run_id is not None:
        where, params = f"{_OWNER} = ?", [run_id]
    else:
        where, params = "job_kind = ? AND job_id = ?", [job_kind, job_id]
    return [(str(p), str(s), e, int(n))
            for p, s, e, n in con.execute(_LAST_ATTEMPTS.format(where=where), params).fetchall()]


def run_call_totals(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Return a run's calls so far: attempts, failures, tokens, cached answers, and seconds from first to
    last."""
    cursor = con.execute(f"""
        SELECT count(*) AS calls,
               count(*) FILTER (WHERE status <> 'ok') AS failed_calls,
               coalesce(sum(tokens_in), 0) AS tokens_in,
               coalesce(sum(tokens_out), 0) AS tokens_out,
               count(*) FILTER (WHERE cached) AS cached,
               epoch(max(started_at)) - epoch(min(started_at)) AS span_s,
               epoch(max(started_at)) AS last_s
        FROM llm_calls WHERE {_OWNER} = ?""", [run_id])
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchall()[0], strict=True))


def calls_since(con: duckdb.DuckDBPyConnection, run_id: str, epoch_s: float) -> int:
    """Return a run's calls started after a time (epoch seconds)."""
    return int(con.execute(f"SELECT count(*) FROM llm_calls WHERE {_OWNER} = ? AND epoch(started_at) > ?",
                           [run_id, epoch_s]).fetchall()[0][0])


def calls_by_step(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[int, tuple[int, int]]:
    """Count calls and tokens in and out of a run, by step."""
    return {int(step): (int(calls), int(tokens)) for step, calls, tokens in con.execute(
        "SELECT step, count(*), coalesce(sum(tokens_in), 0) + coalesce(sum(tokens_out), 0) "
        f"FROM llm_calls WHERE {_OWNER} = ? GROUP BY step", [run_id]).fetchall() if step is not None}


def cached_calls(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Return a run's calls answered from the cache."""
    return int(con.execute("SELECT count(*) FILTER (WHERE coalesce(cached, false)) FROM llm_calls "
                           f"WHERE {_OWNER} = ?", [run_id]).fetchall()[0][0])


def failed_call_groups(con: duckdb.DuckDBPyConnection, run_id: str | None,
                       limit: int = 20) -> list[tuple[str, str, str, int]]:
    """Return a run's failed attempts by purpose, status and first error line, most first."""
    return [(str(p), str(s), str(e), int(n)) for p, s, e, n in con.execute(
        "SELECT purpose, status, split_part(coalesce(error, ''), chr(10), 1) AS e, count(*) "
        f"FROM llm_calls WHERE {_OWNER} = ? AND status <> 'ok' "
        "GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3 LIMIT ?", [run_id, limit]).fetchall()]


def job_calls(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Every column of a job's model calls, in the order they started."""
    return con.execute("SELECT * FROM llm_calls WHERE job_id = ? ORDER BY started_at",
                       [job_id]).df()
