"""Every job kind against a broken endpoint exits non-zero in one line, marked ``failed``, with
the resume command; weak answers are retried once, recorded, and counted (issue 26 item 4).

The loopback server (``personahub serve``) runs with ``--error-rate 1.0`` (429/503, which the
seam retries with backoff before the policy stops the job) or ``--malformed-rate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.cli_helpers import invoke


def one_line_error(result: Any) -> str:
    """The one ``error:`` line a stopped job printed last (exit 1; the banner, the job's start
    and its progress lines come before it)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def _status(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _offline_synthesis(db: Path) -> str:
    done = invoke("synthesize", "instruction", "--n", "6", "--db", db)
    assert done.exit_code == 0, done.output
    return str(_status(db, "SELECT job_id FROM synth_jobs")[0][0])


def _offline_run(db: Path, scenario: Path) -> str:
    done = invoke("run", scenario, "--db", db, "--steps", "1")
    assert done.exit_code == 0, done.output
    return str(_status(db, "SELECT run_id FROM runs")[0][0])


def test_synthesize_every_call_failing_exits_1_and_is_failed(server, tmp_path):
    srv = server(error_rate=1.0)
    db = tmp_path / "s.duckdb"
    line = one_line_error(invoke("synthesize", "instruction", "--n", "6", "--db", db,
                                 "--llm", srv.base_url))
    assert "synthesize --resume synth-" in line and ("HTTP 503" in line or "HTTP 429" in line)
    assert _status(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == [("failed",)]
    # every attempt is a row, each with its reason
    rows = _status(db, "SELECT status, error FROM llm_calls")
    assert rows and all(status == "error" and error.startswith("HTTP ") for status, error in rows)


def test_from_text_every_call_failing_exits_1_and_is_failed(server, tmp_path):
    srv = server(error_rate=1.0)
    db = tmp_path / "t.duckdb"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"A note number {i} about the harbour and its boats." for i in range(3)))
    line = one_line_error(invoke("personas", "from-text", corpus, "--db", db, "--relations", "read",
                                 "--llm", srv.base_url))
    assert "personas from-text --resume corpus.txt" in line
    assert _status(db, "SELECT status FROM text_jobs JOIN jobs USING (job_id)") == [("failed",)]


def test_expand_every_call_failing_exits_1_and_is_failed(server, persona_file, tmp_path):
    srv = server(error_rate=1.0)
    db = tmp_path / "e.duckdb"
    assert invoke("personas", "import", persona_file(6), "--db", db).exit_code == 0
    line = one_line_error(invoke("personas", "expand", "--db", db, "--hops", "1", "--fanout", "1",
                                 "--link-candidates", "0", "--llm", srv.base_url))
    assert "personas expand --resume exp" in line or "personas expand --resume" in line
    assert _status(db, "SELECT status FROM expansions JOIN jobs ON job_id = expansion_id") == [("failed",)]


def test_judge_every_call_failing_exits_1(server, tmp_path):
    db = tmp_path / "j.duckdb"
    job = _offline_synthesis(db)
    srv = server(error_rate=1.0)
    line = one_line_error(invoke("judge", "--db", db, "--job", job, "--llm", srv.base_url))
    assert "every model call failed" in line and "re-run the same command" in line


def test_interview_every_call_failing_exits_1(server, scenario_file, tmp_path):
    db = tmp_path / "i.duckdb"
    run_id = _offline_run(db, scenario_file(n_personas=6))
    srv = server(error_rate=1.0)
    result = invoke("interview", "--db", db, "--run", run_id, "--carve", "hop=0", "--limit", "3",
                    "--llm", srv.base_url, "What do you remember?")
    assert result.exit_code == 1
    assert "every one of its 3 answers failed" in result.stderr


def test_run_every_call_failing_exits_1_and_is_failed(server, scenario_file, tmp_path):
    srv = server(error_rate=1.0)
    db = tmp_path / "r.duckdb"
    scenario = scenario_file(n_personas=6, graph="GraphGrowth(hops=0, acquaintances=2)")
    line = one_line_error(invoke("run", scenario, "--db", db, "--llm", srv.base_url))
    assert "run --resume" in line
    assert _status(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id") == [("failed",)]


@pytest.mark.parametrize("value", ["0", "1.5", "-1", "abc"])
def test_max_failed_share_out_of_range_is_a_usage_error(value, scenario_file, tmp_path):
    db = tmp_path / "u.duckdb"
    for args in (("run", scenario_file()), ("synthesize", "instruction"),
                 ("personas", "expand"), ("judge", "--job", "x")):
        result = invoke(*args, "--db", db, "--max-failed-share", value)
        assert result.exit_code == 2, (args, result.output)
        assert "--max-failed-share" in result.stderr
    assert not db.exists()


def test_weak_answers_are_retried_once_and_the_job_goes_on(server, tmp_path):
    """At a 40% malformed rate each weak answer gets one fresh sample; what still fails is a
    counted, reasoned failure, and the job finishes: no stop at 40% (< 0.8)."""
    srv = server(malformed_rate=0.4, fault_seed=7)
    db = tmp_path / "m.duckdb"
    result = invoke("synthesize", "instruction", "--n", "12", "--db", db, "--llm", srv.base_url,
                    "--structured", "json_schema")
    assert result.exit_code == 0, result.output
    calls = _status(db, "SELECT persona_id, attempt, status, error FROM llm_calls "
                        "WHERE purpose = 'synth:instruction' ORDER BY persona_id, attempt")
    by_persona: dict[str, list[tuple[int, str, str | None]]] = {}
    for persona, attempt, status, error in calls:
        by_persona.setdefault(persona, []).append((attempt, status, error))
    assert len(by_persona) == 12
    assert all(len(a) <= 2 for a in by_persona.values())  # one fresh sample at most
    retried = [a for a in by_persona.values() if len(a) == 2]
    assert retried and all(a[0][1] == "invalid" and a[0][2] for a in retried)
    assert srv.stats.malformed > 0
    assert srv.stats.malformed <= sum(1 for c in calls if c[2] == "invalid")
    kept = sum(1 for a in by_persona.values() if a[-1][1] == "ok")
    assert f"instruction: {kept} of 12 kept" in result.stdout
    status = _status(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)")[0][0]
    assert status == ("finished" if kept == 12 else "partial")


def test_quality_failures_past_the_share_stop_the_job(server, tmp_path):
    """Every answer malformed: each is retried once, then the batch passes the share and the
    job stops, resumable, with the most common error named."""
    srv = server(malformed_rate=1.0)
    db = tmp_path / "q.duckdb"
    line = one_line_error(invoke("synthesize", "instruction", "--n", "6", "--db", db, "--llm",
                                 srv.base_url, "--structured", "json_schema", "--batch-size", "6"))
    assert "6 of 6 actions failed in batch 1, over --max-failed-share 0.8" in line
    assert "resume with personahub synthesize --resume" in line
    assert _status(db, "SELECT count(*) FROM llm_calls") == [(12,)]  # two attempts each
    assert _status(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == [("failed",)]


def test_a_run_stops_for_quality_past_the_share_and_resume_keeps_the_share(server, scenario_file,
                                                                           tmp_path):
    """Malformed answers only: the default share stops the run after step 1 (every action
    failed, each after one fresh sample); ``--max-failed-share 1`` never stops for quality, is
    stored in the run's config, and a run whose every action failed still exits 1."""
    srv = server(malformed_rate=1.0)
    scenario = scenario_file(n_personas=6, graph="GraphGrowth(hops=0, acquaintances=2)", steps=2)
    db = tmp_path / "q.duckdb"
    line = one_line_error(invoke("run", scenario, "--db", db, "--llm", srv.base_url,
                                 "--structured", "json_schema"))
    assert "in step 1, over --max-failed-share 0.8" in line and "run --resume" in line
    assert _status(db, "SELECT steps_done, status FROM runs JOIN jobs ON job_id = run_id") == [(1, "failed")]
    attempts = _status(db, "SELECT max(attempt) FROM llm_calls")[0][0]
    assert attempts == 2  # one fresh sample (a repair prompt) per weak answer, no more
    lenient = tmp_path / "l.duckdb"
    line = one_line_error(invoke("run", scenario, "--db", lenient, "--llm", srv.base_url,
                                 "--structured", "json_schema", "--max-failed-share", "1"))
    assert "every one of its" in line and "run --resume" in line
    assert _status(lenient, "SELECT steps_done FROM runs") == [(2,)]  # no stop for quality
    config = _status(lenient, "SELECT config FROM runs JOIN jobs ON job_id = run_id")[0][0]
    assert json.loads(config)["max_failed_share"] == 1.0  # what --resume reads
