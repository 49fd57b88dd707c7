"""``personas dedup --provider-batch``: a model embedder's ``/v1/embeddings`` requests go as
provider batches through the loopback server's Batch API, driven by the openai SDK.

A batched dedup job marks and stores what the online job does, with zero online requests and
every call record carrying its batch id; failed and expired lines are sent again and accounted;
a job killed while its batch runs polls that batch on resume (no second create); a batch file
brought back with ``personahub provider-batch import`` equals the batched job. Tests poll; none times
anything.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests._planted import planted_corpus
from tests.cli_helpers import invoke, kill_when
from tests.pipeline_helpers import rows
from tests.pipelines.test_synthesis_batch import results_by_server

MODEL = "openai:emb"
FLAGS = "SELECT text, is_duplicate, duplicate_of, dup_stage FROM personas ORDER BY ALL"
VECTORS = "SELECT persona_id, model, vector FROM persona_embeddings ORDER BY ALL"
FAST = ("--provider-batch-poll", "0.02")


def hub(db: Path) -> Path:
    """70 personas with near-duplicates for both stages (60 survive stage 1)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    people = db.with_suffix(".jsonl")
    texts = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7).texts
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return db


def dedup(db: Path, *extra: object) -> Any:
    return invoke("personas", "dedup", "--db", db, "--embedder", MODEL, *extra)


@pytest.fixture
def reach(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point ``openai:<model>`` embedders at a loopback server (a placeholder key)."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-placeholder")

    def to(srv: Any) -> Any:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        return srv

    return to


@pytest.fixture
def online(server: Any, reach: Any, tmp_path: Path) -> Path:
    """The online job's database (stage 2 in batches of 10 personas)."""
    db = hub(tmp_path / "online" / "hub.duckdb")
    srv = reach(server())
    assert dedup(db, "--batch-size", 10).exit_code == 0
    assert srv.stats.requests > 0 and srv.stats.batches_created == 0
    assert rows(db, "SELECT count(*) FROM personas WHERE dup_stage = 'embedding'")[0][0] > 0
    return db


def test_a_batched_dedup_marks_what_the_online_one_marks_with_no_online_call(
        server: Any, reach: Any, online: Path, tmp_path: Path) -> None:
    srv = reach(server(batch_delay_s=0.05))
    db = hub(tmp_path / "batch" / "hub.duckdb")
    result = dedup(db, "--batch-size", 10, "--provider-batch", *FAST)
    assert result.exit_code == 0, result.output
    assert rows(db, FLAGS) == rows(online, FLAGS)
    assert rows(db, VECTORS) == rows(online, VECTORS)
    assert srv.stats.requests == 0  # every vector came from a batch line
    assert srv.stats.batches_created == 6  # one per transaction of 10 (60 survivors)
    [(calls, batched, ids)] = rows(db, "SELECT count(*), count(provider_batch_id), count(DISTINCT "
                                       "custom_id) FROM llm_calls WHERE job_kind = 'dedup'")
    assert calls == batched == ids == srv.stats.batch_lines == 6
    assert "batches: 6 created, 0 picked up again; requests: ok=6" in result.stdout
    assert rows(db, "SELECT DISTINCT status, input_file_id FROM provider_batches") == [
        ("completed", None)]  # committed: the provider files are gone


@pytest.mark.slow
def test_failed_and_expired_lines_are_sent_again_and_accounted(
        server: Any, reach: Any, online: Path, tmp_path: Path) -> None:
    srv = reach(server(batch_error_rate=0.3, batch_expire_rate=0.3, fault_seed=4))
    db = hub(tmp_path / "faults" / "hub.duckdb")
    result = dedup(db, "--batch-size", 10, "--provider-batch", *FAST)
    assert result.exit_code == 0, result.output
    assert rows(db, FLAGS) == rows(online, FLAGS)
    assert rows(db, VECTORS) == rows(online, VECTORS)  # every vector once
    [(ok, failed)] = rows(db, "SELECT count(*) FILTER (status = 'ok'), count(*) FILTER "
                              "(status = 'error') FROM llm_calls")
    assert ok == 6 and failed > 0  # each failed or expired line is a call record
    assert srv.stats.batches_created == 6 + failed  # one request a batch: each resend its own
    assert "resent:" in result.stdout and srv.stats.requests == 0


@pytest.mark.slow
def test_failed_lines_go_online_with_the_online_fallback(
        server: Any, reach: Any, online: Path, tmp_path: Path) -> None:
    srv = reach(server(batch_error_rate=0.5, fault_seed=2))
    db = hub(tmp_path / "fallback" / "hub.duckdb")
    result = dedup(db, "--batch-size", 10, "--provider-batch", "--provider-batch-fallback", "online", *FAST)
    assert result.exit_code == 0, result.output
    assert rows(db, FLAGS) == rows(online, FLAGS)
    assert rows(db, VECTORS) == rows(online, VECTORS)
    failed = srv.stats.batch_line_errors
    assert failed > 0 and srv.stats.requests == failed  # each failed line asked once online
    assert srv.stats.batches_created == 6  # none sent again as a batch
    assert rows(db, "SELECT count(*) FILTER (provider_batch_id IS NULL AND status = 'ok'), count(*) "
                    "FILTER (provider_batch_id IS NOT NULL AND status = 'error') FROM llm_calls") == [
        (failed, failed)]
    assert f"{failed} answered online" in result.stdout


@pytest.mark.slow
def test_a_dedup_killed_during_its_batch_polls_the_same_batch_on_resume(
        server: Any, reach: Any, online: Path, tmp_path: Path) -> None:
    srv = reach(server(batch_delay_s=3.0))
    db = hub(tmp_path / "killed" / "hub.duckdb")
    # two transactions (35 + 25 survivors): killed while the second one's batch runs
    args = ["personas", "dedup", "--db", str(db), "--embedder", MODEL, "--batch-size", "35",
            "--provider-batch", *FAST]
    code = kill_when(args, lambda: srv.stats.batches_created >= 2,
                     "the dedup job never created its second batch")
    assert code == -signal.SIGKILL
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'dedup'")
    assert status == "running"  # killed: nothing marked it
    assert rows(db, "SELECT count(*) FROM persona_embeddings") == [(35,)]
    resumed = dedup(db, "--batch-size", 35, "--provider-batch", *FAST)
    assert resumed.exit_code == 0, resumed.output
    assert "1 picked up again" in resumed.stdout
    assert srv.stats.batches_created == 2  # the second was polled, never created again
    assert srv.stats.requests == 0
    assert rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'dedup'") == [
        (job_id, "finished")]
    assert rows(db, FLAGS) == rows(online, FLAGS)
    assert rows(db, VECTORS) == rows(online, VECTORS)


@pytest.mark.slow
def test_a_batch_file_then_import_equals_the_batched_job(
        server: Any, reach: Any, tmp_path: Path) -> None:
    srv = reach(server())
    batched = hub(tmp_path / "batched" / "hub.duckdb")
    assert dedup(batched, "--batch-size", 100, "--provider-batch", *FAST).exit_code == 0

    db = hub(tmp_path / "file" / "hub.duckdb")
    requests = tmp_path / "requests.jsonl"
    written = dedup(db, "--batch-size", 100, "--provider-batch-file", requests)
    assert written.exit_code == 0, written.output
    assert "personahub provider-batch import" in written.stderr
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'dedup'")
    assert status == "awaiting_results"
    [line] = [json.loads(raw) for raw in requests.read_text().splitlines()]
    survivors = rows(db, "SELECT count(*) FROM personas WHERE NOT is_duplicate")[0][0]
    assert line["url"] == "/v1/embeddings" and len(line["body"]["input"]) == survivors
    results = tmp_path / "results.jsonl"
    results_by_server(srv, requests, results, endpoint="/v1/embeddings")
    before = srv.stats.requests
    done = invoke("provider-batch", "import", results, "--job", job_id, "--db", db)
    assert done.exit_code == 0, done.output
    assert srv.stats.requests == before  # answered from the file, nothing asked online
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]
    assert rows(db, FLAGS) == rows(batched, FLAGS)
    assert rows(db, VECTORS) == rows(batched, VECTORS)
    assert rows(db, "SELECT DISTINCT provider_batch_id FROM llm_calls WHERE job_id = ?",
                [job_id]) == [("file:requests.jsonl",)]


def test_batch_options_need_a_model_embedder(tmp_path: Path) -> None:
    db = hub(tmp_path / "hub.duckdb")
    result = invoke("personas", "dedup", "--db", db, "--embedder", "hash", "--provider-batch")
    assert result.exit_code == 2 and "calls no model" in result.stderr
    assert rows(db, "SELECT count(*) FROM jobs") == [(0,)]
