"""What a server reports is data, and a billed attempt is on record.

A server answering impossible usage (``completion_tokens`` 10**15, ``prompt_tokens`` -100) once
stopped a job for good: the figure did not fit ``llm_calls``, and the resume read it back from
the spill. Now such a figure is stored as NULL and counted (the summary, ``v_run_usage``,
``v_run_cost``), and the job goes on. And an HTTP attempt is in the call spill as ``sent``
before its request goes out, so the requests in flight at a kill reach ``llm_calls``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import duckdb
import pytest

from personahub.core import call_spill
from personahub.core.contracts import CallRecord
from tests.cli_helpers import invoke, kill_when


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_impossible_usage_is_stored_as_unknown_and_the_job_goes_on(server, tmp_path: Path) -> None:
    srv = server(bad_usage_rate=1.0)
    db = tmp_path / "u.duckdb"
    result = invoke("synthesize", "instruction", "--n", "2", "--llm", srv.base_url, "--db", db,
                    "--structured", "json_schema", "--preview", "0")
    assert result.exit_code == 0, result.output
    assert srv.stats.bad_usage >= 2
    calls = rows(db, "SELECT status, tokens_in, tokens_out FROM llm_calls")
    assert len(calls) == srv.stats.answered + srv.stats.malformed  # every attempt recorded
    assert {(t_in, t_out) for _, t_in, t_out in calls} == {(None, None)}
    assert f"({len(calls)} with unknown token usage" in result.output
    job = rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")[0][0]
    assert rows(db, "SELECT calls, unknown_usage, tokens_out FROM v_run_usage WHERE run_id = ?",
                [job]) == [(len(calls), len(calls), 0)]
    assert rows(db, "SELECT unknown_usage_calls FROM v_run_cost WHERE run_id = ?", [job]) == \
        [(len(calls),)]
    assert rows(db, "SELECT data_type FROM duckdb_columns() WHERE table_name = 'llm_calls' AND "
                    "column_name IN ('tokens_in', 'tokens_out') ") == [("BIGINT",), ("BIGINT",)]
    assert not list(tmp_path.glob("*.calls.jsonl"))  # the spill is gone: all committed
    again = invoke("synthesize", "--resume", job, "--llm", srv.base_url, "--db", db, "--preview", "0")
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_requests_in_flight_at_a_kill_are_billed_attempts_and_a_resume_asks_again(
        server, tmp_path: Path) -> None:
    """``kill -9`` with 4 requests held by the server (``--concurrency 4``): the spill holds
    them as ``sent``; the resume writes them to ``llm_calls`` once, as ``sent`` with unknown
    tokens, and asks them again as new attempts. The spill also holds an answer written
    before token figures were checked (usage 10**15 and -100, what stopped such a resume for
    good): it is committed with NULL tokens, and the resume finishes."""
    held = server(hang_rate=1.0, hang_s=3600.0)
    db = tmp_path / "k.duckdb"
    code = kill_when(["synthesize", "instruction", "--n", "8", "--concurrency", "4",
                      "--structured", "json_schema", "--timeout", "3600", "--llm", held.base_url,
                      "--db", str(db)],
                     lambda: held.stats.hangs >= 4, "the server never held 4 requests")
    assert code == -signal.SIGKILL
    job = rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")[0][0]
    spill = call_spill.spill_path(db, job)
    spilled = call_spill.read(spill)
    assert [s.record.status for s in spilled] == ["sent"] * 4
    assert all(s.record.tokens_in is None and s.record.tokens_out is None for s in spilled)
    assert rows(db, "SELECT count(*) FROM llm_calls") == [(0,)]  # killed before any commit
    old = CallRecord(purpose="synth:instruction", model="old", attempt=1, status="ok",
                     latency_ms=5.0, tokens_in=-100, tokens_out=10**15, cached_prompt_tokens=-1)
    with call_spill.CallSpill(spill, tags=dict(spilled[0].tags)) as writer:
        writer.done([old])

    healthy = server()
    result = invoke("synthesize", "--resume", job, "--llm", healthy.base_url, "--db", db,
                    "--preview", "0")
    assert result.exit_code == 0, result.output
    sent = {s.record.call_id for s in spilled}
    assert rows(db, "SELECT call_id, tokens_in, tokens_out FROM llm_calls WHERE status = 'sent' "
                    "ORDER BY call_id") == sorted((i, None, None) for i in sent)
    assert rows(db, "SELECT status, tokens_in, tokens_out, cached_prompt_tokens FROM llm_calls "
                    "WHERE call_id = ?", [old.call_id]) == [("discarded", None, None, None)]
    others = rows(db, "SELECT count(*) FROM llm_calls WHERE call_id NOT IN (SELECT unnest(?))",
                  [[*sent, old.call_id]])[0][0]
    assert others == healthy.stats.answered + healthy.stats.malformed  # asked again, new attempts
    assert rows(db, "SELECT count(*) FROM synth_items WHERE job_id = ?", [job]) == [(8,)]
    assert rows(db, "SELECT sent, unknown_usage FROM v_run_usage WHERE run_id = ?", [job]) == \
        [(4, 5)]
    assert "(5 with unknown token usage" in result.output
    assert not spill.exists()
