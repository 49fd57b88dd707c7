"""``personas dedup`` on the job kernel: the embedding stage keeps each batch's vectors with its
call records, so an interrupted job resumes from them and ends as the uninterrupted one; record
and replay, ``--rps``, job tags, and the one-line errors. Model embeddings come from the loopback
server's ``/embeddings`` (no network)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from personahub.models import seam_limits
from personahub.models.fake_server.server import ServerOptions, running_server
from personahub.pipelines import dedup as dedup_spec
from tests._planted import planted_corpus
from tests.cli_helpers import invoke, one_line_error, usage_error

MODEL = "openai:emb"
EMBEDDERS = ["hash", MODEL]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server() as server:
        yield server.base_url


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch, server_url: str) -> str:
    """``openai:<model>`` embedders reach the loopback server (a placeholder key, no network)."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-placeholder")
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    return server_url


def hub(db: Path) -> Path:
    """A hub with near-duplicates for both stages (edit_block: left to the embeddings)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    corpus = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7)
    people = db.parent / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in corpus.texts))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return db


def dedup(db: Path, *extra: object, embedder: str = "hash") -> object:
    return invoke("personas", "dedup", "--db", db, "--embedder", embedder, "--batch-size", 10, *extra)


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


FLAGS = "SELECT text, is_duplicate, dup_stage FROM personas ORDER BY ALL"
VECTORS = "SELECT persona_id, model, dim, vector FROM persona_embeddings ORDER BY persona_id"


def interrupt_at_commit(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Ctrl-C inside the kernel's commit of the ``number``-th batch of vectors (earlier ones
    are written; this one's transaction is rolled back)."""
    seen: list[int] = []
    real = dedup_spec.write_vectors

    def counting(*args: object) -> int:
        seen.append(1)
        if len(seen) == number:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dedup_spec, "write_vectors", counting)


def uncached_calls(db: Path) -> int:
    return rows(db, "SELECT count(*) FROM llm_calls WHERE NOT cached")[0][0]


# the fast subset keeps two of the four (each embedder once, each way of resuming once)
@pytest.mark.parametrize(("embedder", "by_id"), [
    pytest.param(EMBEDDERS[0], False, id="hash-same command"),
    pytest.param(EMBEDDERS[0], True, id="hash---resume JOB_ID", marks=pytest.mark.slow),
    pytest.param(EMBEDDERS[1], False, id="openai-same command", marks=pytest.mark.slow),
    pytest.param(EMBEDDERS[1], True, id="openai---resume JOB_ID")])
@pytest.mark.slow
def test_resumed_after_first_batch_equals_uninterrupted(tmp_path, monkeypatch, openai_env,
                                                        embedder, by_id):
    whole = hub(tmp_path / "whole" / "hub.duckdb")
    assert dedup(whole, embedder=embedder).exit_code == 0
    assert rows(whole, "SELECT count(*) FROM personas WHERE dup_stage = 'embedding'")[0][0] > 0

    cut = hub(tmp_path / "cut" / "hub.duckdb")
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, 2)
        stopped = dedup(cut, embedder=embedder)
    assert stopped.exit_code == 130 and "interrupted" in stopped.stderr
    assert len(rows(cut, VECTORS)) == 10  # the first batch only, whole
    assert rows(cut, FLAGS) != rows(whole, FLAGS)  # stage 2 had not marked yet
    assert rows(cut, "SELECT status FROM dedup_jobs JOIN jobs USING (job_id)") == [("interrupted",)]

    if by_id:
        resumed = invoke("personas", "dedup", "--db", cut, "--batch-size", 10, "--resume",
                         rows(cut, "SELECT job_id FROM dedup_jobs")[0][0])
    else:
        resumed = dedup(cut, embedder=embedder)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming dedup job" in resumed.stderr
    assert rows(cut, FLAGS) == rows(whole, FLAGS)
    assert rows(cut, VECTORS) == rows(whole, VECTORS)
    assert rows(cut, "SELECT status FROM dedup_jobs "
                     "JOIN jobs USING (job_id)") == [("finished",)]  # the same job went on
    kept = "SELECT count(*) FROM llm_calls WHERE NOT cached AND status = 'ok'"
    assert rows(cut, kept) == rows(whole, kept)  # nothing kept was embedded twice
    # the interrupted batch's request was answered (and billed) before its commit: counted
    discarded = rows(cut, "SELECT count(*) FROM llm_calls WHERE status = 'discarded'")[0][0]
    assert discarded == (1 if embedder == MODEL else 0)


@pytest.mark.slow
def test_rerun_embeds_nothing_again(tmp_path, openai_env):
    db = hub(tmp_path / "hub.duckdb")
    assert dedup(db, embedder=MODEL).exit_code == 0
    calls = uncached_calls(db)
    again = dedup(db, embedder=MODEL)
    assert again.exit_code == 0 and "total marked 0" in again.stdout
    assert uncached_calls(db) == calls
    assert rows(db, "SELECT status FROM dedup_jobs "
                    "JOIN jobs USING (job_id)") == [("finished",), ("finished",)]


def test_calls_name_their_job_model_and_purpose(tmp_path, openai_env):
    db = hub(tmp_path / "hub.duckdb")
    assert dedup(db, embedder=MODEL).exit_code == 0
    (job_id,) = rows(db, "SELECT job_id FROM dedup_jobs")[0]
    calls = rows(db, "SELECT job_kind, job_id, model_name, purpose, status FROM llm_calls")
    assert len(calls) == 6  # ceil(56 stage-1 survivors / batch of 10), one request each
    assert set(calls) == {("dedup", job_id, "emb", "embed", "ok")}
    assert rows(db, "SELECT DISTINCT job_id, model FROM persona_embeddings") == [(job_id, MODEL)]


@pytest.mark.slow
def test_cache_record_then_replay_gives_the_same_flags(tmp_path, monkeypatch, openai_env):
    recorded = hub(tmp_path / "rec" / "hub.duckdb")
    assert dedup(recorded, "--cache", "record", embedder=MODEL).exit_code == 0
    assert rows(recorded, "SELECT count(*) FROM llm_cache")[0][0] == len(rows(recorded, VECTORS))

    replayed = hub(tmp_path / "rep" / "hub.duckdb")
    con = duckdb.connect(str(replayed))
    con.execute(f"ATTACH '{recorded}' AS rec (READ_ONLY)")
    con.execute("INSERT INTO llm_cache SELECT * FROM rec.llm_cache")
    con.close()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")  # no model
    result = dedup(replayed, "--cache", "replay", "--batch-size", 7, embedder=MODEL)
    assert result.exit_code == 0, result.output
    assert rows(replayed, FLAGS) == rows(recorded, FLAGS)
    assert rows(replayed, VECTORS) == rows(recorded, VECTORS)
    assert {cached for (cached,) in rows(replayed, "SELECT cached FROM llm_calls")} == {True}


def test_replay_without_recorded_answers_is_one_error(tmp_path, openai_env):
    db = hub(tmp_path / "hub.duckdb")
    line = one_line_error(dedup(db, "--cache", "replay", embedder=MODEL))
    assert "--cache replay" in line and "record them first" in line
    assert rows(db, "SELECT count(*) FROM dedup_jobs") == [(0,)]


def test_rps_reaches_the_rate_limiter(tmp_path, monkeypatch, openai_env):
    limits: list[float] = []
    acquired: list[int] = []

    class Recording(seam_limits.RateLimiter):
        def __init__(self, rate: float, burst: float = 1.0) -> None:
            super().__init__(rate, burst)
            limits.append(rate)

        async def acquire(self) -> None:
            acquired.append(1)
            await super().acquire()

    monkeypatch.setattr(seam_limits, "RateLimiter", Recording)
    db = hub(tmp_path / "hub.duckdb")
    assert dedup(db, "--rps", 500, embedder=MODEL).exit_code == 0
    assert limits == [500.0]
    assert len(acquired) == uncached_calls(db) > 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_one_error_line(tmp_path, monkeypatch, openai_env):
    db = hub(tmp_path / "hub.duckdb")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    line = one_line_error(dedup(db, embedder=MODEL))
    assert "unreachable" in line and "OPENAI_BASE_URL" in line
    assert rows(db, "SELECT count(*) FROM persona_embeddings") == [(0,)]
    assert rows(db, "SELECT count(*) FROM personas WHERE is_duplicate") == [(0,)]


def test_refused_embeddings_fail_the_job_without_half_written_vectors(tmp_path, monkeypatch,
                                                                     openai_env):
    db = hub(tmp_path / "hub.duckdb")
    with running_server(ServerOptions(error_rate=1.0, error_statuses=(400,))) as refusing:
        monkeypatch.setenv("OPENAI_BASE_URL", refusing.base_url)
        result = dedup(db, embedder=MODEL)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "embedding failed" in errors[0] and "HTTP 400" in errors[0]
    assert rows(db, "SELECT count(*) FROM persona_embeddings") == [(0,)]
    assert rows(db, "SELECT status FROM dedup_jobs JOIN jobs USING (job_id)") == [("failed",)]
    # the refused request is accounted: one call record (400 is not retried), tagged with the job
    assert rows(db, "SELECT job_kind, purpose, status FROM llm_calls") == [
        ("dedup", "embed", "error")]


def test_an_embedding_server_that_keeps_failing_stops_the_job_naming_the_embedder(
        tmp_path, monkeypatch, openai_env):
    db = hub(tmp_path / "hub.duckdb")
    monkeypatch.setattr("personahub.models.seam_retry.BACKOFF_CAP_S", 0.02)
    with running_server(ServerOptions(error_rate=1.0, error_statuses=(503,))) as failing:
        monkeypatch.setenv("OPENAI_BASE_URL", failing.base_url)
        result = dedup(db, embedder=MODEL)
    assert result.exit_code == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "kept failing" in line and "check the --embedder (OPENAI_BASE_URL) server" in line
    assert "--llm" not in line and "--resume" in line
    assert rows(db, "SELECT count(*) FROM persona_embeddings") == [(0,)]
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE status = 'error'")[0][0] > 0


def test_cache_and_rps_need_a_model_embedder(tmp_path):
    db = hub(tmp_path / "hub.duckdb")
    # flags that do not combine: a usage error, exit 2
    assert "calls no model" in usage_error(dedup(db, "--cache", "record"))
    assert "--rps" in usage_error(dedup(db, "--rps", 5))


@pytest.mark.slow
def test_resume_refuses_what_the_job_fixes(tmp_path, monkeypatch):
    db = hub(tmp_path / "hub.duckdb")
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, 2)
        assert dedup(db).exit_code == 130
    (job_id,) = rows(db, "SELECT job_id FROM dedup_jobs")[0]
    changed = invoke("personas", "dedup", "--db", db, "--resume", job_id, "--embed-threshold", 0.8)
    assert "leave out --embed-threshold" in usage_error(changed)
    unknown = invoke("personas", "dedup", "--db", db, "--resume", "dedup-nope")
    assert "no such dedup job" in one_line_error(unknown)
    assert invoke("personas", "dedup", "--db", db, "--resume", job_id).exit_code == 0
    again = invoke("personas", "dedup", "--db", db, "--resume", job_id)
    assert "finished" in one_line_error(again)


@pytest.mark.slow
def test_none_embedder_is_a_job_of_stage_one_alone(tmp_path):
    db = hub(tmp_path / "hub.duckdb")
    result = invoke("personas", "dedup", "--db", db, "--embedder", "none")
    assert result.exit_code == 0 and "embedding" not in result.stdout
    (stages,) = rows(db, "SELECT stages FROM dedup_jobs JOIN jobs USING (job_id) "
                         "WHERE status = 'finished'")[0]
    assert list(json.loads(stages)) == ["minhash"]
    assert rows(db, "SELECT count(*) FROM persona_embeddings") == [(0,)]


def test_a_spilled_stage_gives_a_passed_in_connection_its_own_memory_limit_back(
        tmp_path, monkeypatch):
    """Stage 1 spilled past --memory-mb holds DuckDB to a quarter of it; a caller's connection gets
    its own limit back after the job (on main it kept the quarter, 64 MiB)."""
    from personahub import runtime
    from personahub.core.store import connect
    from personahub.persona_jobs import dedup_config

    db = hub(tmp_path / "hub.duckdb")
    monkeypatch.setattr(dedup_spec, "spill_workers", lambda: 1)  # in this process, no pool
    # a hub this small fits any memory: the stage spills as a large one would
    monkeypatch.setattr(dedup_spec.SpillPlan, "fits_in_memory", staticmethod(lambda *_: False))
    spilled = []

    def spilling(*args, **kwargs):
        spilled.append(True)
        return real_spill(*args, **kwargs)

    real_spill = dedup_spec.spilled_minhash
    monkeypatch.setattr(dedup_spec, "spilled_minhash", spilling)
    con = connect(db)
    try:
        con.execute("SET memory_limit = '300MiB'")
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        result = runtime.run(dedup_spec.DEDUP, dedup_config(db=db, embedder=None, memory_mb=1),
                             db, con=con)
        assert result.status == "finished" and spilled
        assert con.execute("SELECT count(*) FROM personas WHERE dup_stage = 'minhash'"
                           ).fetchall()[0][0] > 0
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit
    finally:
        con.close()
