"""``synthesize --provider-batch`` against the loopback server's Batch API.

A batched job writes the items an online job with the same seed writes, with zero online
calls; its llm_calls rows carry their batch ids; failed and expired requests go out again and
are counted; a job killed while its batch runs is resumed by polling that batch (the server
sees one create); ``--provider-batch-file`` and ``provider-batch import`` give the same items.
Tests poll; none times anything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from personahub import executors, runtime
from personahub.core.errors import AwaitingResults, UsageError
from personahub.models.settings import LLMConfigError
from personahub.pipelines.synthesize import SYNTHESIS, SynthConfig
from tests.cli_helpers import cli, env, kill_when
from tests.pipeline_helpers import rows

ROOT = Path(__file__).resolve().parents[2]
FAST = {"provider_batch_poll_s": 0.02}


def config(url: str, **changes: Any) -> SynthConfig:
    values: dict[str, Any] = {"task": "math_problem", "n": 24, "solve": True, "seed": 3,
                              "llm": f"{url}?model=offline", "structured": "json_schema",
                              **FAST}
    values.update(changes)
    return SynthConfig(**values)


def items(db: Path, job_id: str) -> list[tuple[Any, ...]]:
    """What a job made, without its ids and times."""
    return rows(db, "SELECT persona_id, content::VARCHAR, solution::VARCHAR, is_duplicate "
                    "FROM synth_items WHERE job_id = ? ORDER BY persona_id", [job_id])


@pytest.fixture
def online_items(server: Any, tmp_path: Path) -> list[tuple[Any, ...]]:
    """The items of the online job with the same seed (its own server)."""
    srv = server()
    db = tmp_path / "online.duckdb"
    result = runtime.run(SYNTHESIS, config(srv.base_url), db)
    assert srv.stats.batches_created == 0 and srv.stats.requests > 0
    return items(db, result.job_id)


@pytest.mark.slow
def test_a_batched_job_writes_the_online_items_with_no_online_call(
        server: Any, tmp_path: Path, online_items: list[tuple[Any, ...]]) -> None:
    srv = server(batch_delay_s=0.05)
    db = tmp_path / "batch.duckdb"
    phases: list[str] = []
    result = runtime.run(SYNTHESIS, config(srv.base_url, provider_batch=True, batch_size=10), db,
                         progress=lambda phase, done, total: phases.append(phase))
    assert result.status == "finished"
    assert items(db, result.job_id) == online_items
    assert srv.stats.requests == 0  # no online call: every answer came from a batch line
    # 24 asks in batches of 10 (3), then their 24 solve calls (3)
    assert srv.stats.batches_created == 6
    calls = rows(db, "SELECT count(*), count(provider_batch_id), count(DISTINCT provider_batch_id), "
                     "count(DISTINCT custom_id) FROM llm_calls WHERE job_id = ?", [result.job_id])
    assert calls == [(48, 48, 6, 48)]
    stored = rows(db, "SELECT status, requests FROM provider_batches WHERE job_id = ? ORDER BY 1",
                  [result.job_id])
    assert sorted(n for _, n in stored) == [4, 4, 10, 10, 10, 10]
    assert {status for status, _ in stored} == {"completed"}
    assert any(p.startswith("batch ") and "in_progress" in p for p in phases)
    assert "batches: 6 created" in (result.summary.batches or "")


@pytest.mark.slow
def test_failed_and_expired_requests_go_out_again_and_are_counted(
        server: Any, tmp_path: Path, online_items: list[tuple[Any, ...]]) -> None:
    srv = server(batch_error_rate=0.05, batch_expire=(1,), fault_seed=11)
    db = tmp_path / "faults.duckdb"
    result = runtime.run(SYNTHESIS, config(srv.base_url, provider_batch=True, batch_size=12), db)
    assert items(db, result.job_id) == online_items  # every item once, as online
    expired = 6  # the first batch (12 requests) ran half
    failed = rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'error' "
                      "AND provider_batch_id IS NOT NULL", [result.job_id])[0][0]
    assert failed == srv.stats.batch_line_errors + expired > expired
    outcomes = result.summary.batches or ""
    assert f"resent: batch batch_expired={expired}" in outcomes
    assert "resent: HTTP 500=" in outcomes
    assert srv.stats.requests == 0


@pytest.mark.slow
def test_batch_fallback_online_sends_the_failures_online(
        server: Any, tmp_path: Path, online_items: list[tuple[Any, ...]]) -> None:
    srv = server(batch_error_rate=0.2, fault_seed=11)
    db = tmp_path / "fallback.duckdb"
    result = runtime.run(SYNTHESIS, config(srv.base_url, provider_batch=True,
                                           provider_batch_fallback="online"), db)
    assert items(db, result.job_id) == online_items
    online = rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND provider_batch_id IS NULL",
                  [result.job_id])[0][0]
    assert online == srv.stats.requests == srv.stats.batch_line_errors > 0


def test_an_unknown_structured_mode_is_learned_by_one_online_call(
        server: Any, tmp_path: Path) -> None:
    srv = server()
    result = runtime.run(SYNTHESIS, config(srv.base_url, structured="auto", provider_batch=True,
                                           solve=False, n=6), tmp_path / "auto.duckdb")
    assert result.summary.written == 6
    assert srv.stats.requests == 1 and srv.stats.batch_lines == 5


def test_batch_settings_that_cannot_work_are_one_line(server: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the batch rule, not whether Ray is installed here (a fresh venv has no [ray])
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    with pytest.raises(UsageError, match="--provider-batch runs on the local executor"):
        SynthConfig(task="math_problem", provider_batch=True, executor="ray")
    with pytest.raises(UsageError, match="--provider-batch-window"):
        SynthConfig(task="math_problem", provider_batch=True, provider_batch_window="tomorrow")
    with pytest.raises(LLMConfigError, match="--provider-batch-fallback"):
        SynthConfig(task="math_problem", provider_batch=True, provider_batch_fallback="later")
    with pytest.raises(LLMConfigError, match="no Batch API"):
        runtime.run(SYNTHESIS, SynthConfig(task="math_problem", n=2, provider_batch=True),
                    tmp_path / "offline.duckdb")


# -- a kill while a batch runs --------------------------------------------------------------

@pytest.mark.slow
def test_a_kill_during_a_batch_then_resume_polls_the_same_batch(
        server: Any, tmp_path: Path, online_items: list[tuple[Any, ...]]) -> None:
    srv = server(batch_delay_s=3.0)
    db = tmp_path / "killed.duckdb"
    url = f"{srv.base_url}?model=offline"
    code = kill_when(["synthesize", "math_problem", "--n", "24", "--solve", "--seed", "3",
                      "--llm", url, "--structured", "json_schema", "--provider-batch",
                      "--provider-batch-poll", "0.05", "--db", str(db)],
                     lambda: srv.stats.batches_created >= 1, "the job never created its batch")
    assert code == -signal.SIGKILL
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs")
    assert status == "running"  # killed: nothing marked it
    result = runtime.run(SYNTHESIS, {"llm": url, "provider_batch": True, **FAST}, db, resume=job_id)
    assert result.status == "finished"
    assert items(db, job_id) == online_items
    # the asks' batch was created once (polled after the kill), then the solve batch
    assert srv.stats.batches_created == 2
    assert srv.stats.requests == 0
    assert "1 picked up again" in (result.summary.batches or "")


# -- batch files ----------------------------------------------------------------------------

def results_by_server(server_handle: Any, requests: Path, out: Path,
                      endpoint: str = "/v1/chat/completions") -> None:
    """Run a batch file through the loopback server's Batch API with the openai SDK, and
    write its output and error lines as one results file (as vLLM run-batch writes one)."""
    import openai

    sdk = openai.OpenAI(base_url=server_handle.base_url, api_key="unused")
    uploaded = sdk.files.create(file=(requests.name, requests.read_bytes()), purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint=endpoint,  # type: ignore[arg-type]
                               completion_window="24h")
    deadline = time.monotonic() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
        batch = sdk.batches.retrieve(batch.id)
    lines = b""
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            lines += sdk.files.content(file_id).content
    out.write_bytes(lines)


@pytest.mark.slow
def test_a_batch_file_then_import_equals_the_batch_api(
        server: Any, tmp_path: Path, online_items: list[tuple[Any, ...]]) -> None:
    srv = server()
    db = tmp_path / "file.duckdb"
    requests = tmp_path / "requests.jsonl"
    url = f"{srv.base_url}?model=offline"
    with pytest.raises(AwaitingResults, match="batch import"):
        runtime.run(SYNTHESIS, config(srv.base_url, provider_batch_file=str(requests)), db)
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs")
    assert status == "awaiting_results"
    first = [json.loads(line) for line in requests.read_text().splitlines()]
    assert len(first) == 24 and {line["url"] for line in first} == {"/v1/chat/completions"}
    assert srv.stats.requests == 0
    rounds = 0
    while status == "awaiting_results":  # the asks' file, then the solve calls' file
        rounds += 1
        assert rounds <= 3
        results = tmp_path / f"results-{rounds}.jsonl"
        results_by_server(srv, requests, results)
        done = subprocess.run(cli("provider-batch", "import", str(results), "--job", job_id, "--db",
                                  str(db), "--llm", url),
                              cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        [(status,)] = rows(db, "SELECT status FROM jobs")
    assert rounds == 2 and status == "finished"
    assert items(db, job_id) == online_items
    assert srv.stats.requests == 0
    batch_ids = rows(db, "SELECT DISTINCT provider_batch_id FROM llm_calls WHERE job_id = ?", [job_id])
    assert sorted(b for (b,) in batch_ids) == ["file:requests.jsonl"]


@pytest.mark.slow
def test_importing_results_of_another_job_is_one_line(server: Any, tmp_path: Path) -> None:
    srv = server()
    db = tmp_path / "file.duckdb"
    requests = tmp_path / "requests.jsonl"
    with pytest.raises(AwaitingResults):
        runtime.run(SYNTHESIS, config(srv.base_url, provider_batch_file=str(requests), n=3), db)
    [(job_id,)] = rows(db, "SELECT job_id FROM jobs")
    stranger = tmp_path / "stranger.jsonl"
    stranger.write_text(json.dumps({"custom_id": "nobody#1", "response": {
        "status_code": 200, "body": {}}, "error": None}) + "\n")
    done = subprocess.run(cli("provider-batch", "import", str(stranger), "--job", job_id, "--db",
                              str(db)), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "none of the 1 results answers a request" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert rows(db, "SELECT status FROM jobs") == [("awaiting_results",)]


@pytest.mark.slow
def test_synthesize_batch_file_exits_0_saying_what_to_do_next(server: Any,
                                                              tmp_path: Path) -> None:
    srv = server()
    db, requests = tmp_path / "cli.duckdb", tmp_path / "out.jsonl"
    done = subprocess.run(cli("synthesize", "math_problem", "--n", "3", "--db", str(db), "--llm",
                              f"{srv.base_url}?model=offline", "--structured", "json_schema",
                              "--provider-batch-file", str(requests)),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs")
    assert status == "awaiting_results"
    assert f"personahub provider-batch import results.jsonl --job {job_id}" in " ".join(
        done.stderr.split())
    assert len(requests.read_text().splitlines()) == 3
    assert srv.stats.requests == 0
