"""Every pipeline through the loopback server in every dialect; a rejecting server; Retry-After."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import personahub.models.seam_retry as retry_module
from personahub.agents.prompts.agent import agent_messages
from personahub.cli.app import app
from personahub.core.contracts import carried_records
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.dialects import DIALECTS
from personahub.models.fake_server.server import ServerOptions, running_server
from personahub.models.settings import EndpointFailing
from personahub.models.structured import mode_of
from personahub.tasks.npc_dialogue import NpcDialogue

runner = CliRunner()
# what --structured auto settles on, per dialect
SETTLED = {"openai": "json_schema", "openai-strict": "json_schema", "vllm": "json_schema",
           "vllm-legacy": "json_schema",
           "ollama": "json_schema", "llama-cpp-python": "json_object", "tools-only": "tools"}


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_dialect_is_named() -> None:
    assert set(SETTLED) == set(DIALECTS)


# one dialect in the fast subset (test_server_dialects covers each dialect's wire format there)
@pytest.mark.parametrize("dialect", [d if d == "openai" else pytest.param(d, marks=pytest.mark.slow)
                                     for d in DIALECTS])
def test_every_pipeline_in_every_dialect(dialect: str, scenario_file, persona_file,
                                         tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Tide tables for the estuary and the ferry's spring-tide timetable.\n\n"
                      "How our bakery feeds its rye sourdough starter twice a day.\n")
    with running_server(ServerOptions(dialect=dialect)) as srv:
        spec = f"{srv.base_url}?model=m"
        code, out = invoke("run", scenario_file(n_personas=6, steps=2), "--db", db, "--llm", spec)
        assert code == 0, out
        code, out = invoke("personas", "from-text", corpus, "--db", db, "--llm", spec,
                           "--relations", "read,write")
        assert code == 0, out
        code, out = invoke("personas", "expand", "--db", db, "--llm", spec, "--hops", "1",
                           "--limit", "4")
        assert code == 0, out
        code, out = invoke("synthesize", "math_problem", "--n", "3", "--db", db, "--llm", spec)
        assert code == 0, out
        run_id = query(db, "SELECT run_id FROM runs")[0][0]
        code, out = invoke("export", "--db", db, "--run", run_id, "--out", tmp_path / "run.jsonl")
        assert code == 0, out
    calls = query(db, "SELECT status, error, structured_mode, max_tokens FROM llm_calls")
    ok = [c for c in calls if c[0] == "ok"]
    # openai-strict refuses schema keywords until each command's client has stripped them: those
    # refusals are negotiation, recorded with their reason, not failed answers
    asked = [c for c in calls if not (c[1] or "").startswith("schema keywords")]
    assert len(ok) / len(asked) > 0.8
    assert {mode_of(c[2]) for c in ok} == {SETTLED[dialect]}  # strict: keywords stripped too
    assert all(c[1] for c in calls if c[0] != "ok")  # every failure says why
    assert all(c[3] for c in calls)  # no call without max_tokens
    modes = json.loads(query(db, "SELECT config FROM runs "
                                 "JOIN jobs ON job_id = run_id")[0][0])["structured_modes"]
    assert {mode_of(m) for m in modes.values()} == {SETTLED[dialect]}
    assert query(db, "SELECT count(*) FROM emissions")[0][0] > 0
    assert query(db, "SELECT count(*) FROM synth_items")[0][0] > 0


@pytest.mark.slow
def test_a_server_that_rejects_everything_stops_the_run_resumable(scenario_file,
                                                                   tmp_path: Path) -> None:
    db = tmp_path / "run.duckdb"
    scenario = scenario_file(n_personas=6, steps=2)
    with running_server(ServerOptions(error_rate=1.0, error_statuses=(400,))) as bad:
        code, out = invoke("run", scenario, "--db", db, "--llm", f"{bad.base_url}?model=m",
                           "--concurrency", "1")
        requests = bad.stats.requests
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1, out
    assert "rejected the first 3 requests" in lines[0] and "HTTP 400" in lines[0]
    status, = query(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id")[0]
    assert status == "failed"
    # a request the server rejected as malformed is never sent again
    assert requests == 3
    assert query(db, "SELECT count(*) FROM llm_calls")[0][0] in (0, 3)
    assert query(db, "SELECT count(*) FROM emissions")[0][0] == 0
    run_id = query(db, "SELECT run_id FROM runs")[0][0]
    with running_server(ServerOptions()) as good:
        code, out = invoke("run", "--resume", run_id, "--db", db, "--llm", f"{good.base_url}?model=m")
    assert code == 0, out
    assert query(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id")[0][0] == "finished"


def test_refused_format_with_a_pinned_mode_names_the_fix(scenario_file, tmp_path: Path) -> None:
    db = tmp_path / "run.duckdb"
    with running_server(ServerOptions(dialect="llama-cpp-python")) as srv:
        code, out = invoke("run", scenario_file(n_personas=6, steps=1), "--db", db, "--llm",
                           f"{srv.base_url}?model=m", "--structured", "json_schema",
                           "--concurrency", "1")
    assert code == 1
    assert "try --structured json_object" in out and "HTTP 500" in out


def test_retry_after_is_honoured(monkeypatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args, **kwargs):
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(retry_module.asyncio, "sleep", sleep)
    with running_server(ServerOptions(error_rate=1.0, error_statuses=(429,), retry_after_s=7)) as srv:
        client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=m", max_retries=2,
                                       backoff_s=0.01))
        with pytest.raises(EndpointFailing, match="HTTP 429") as raised:  # the retries spent
            asyncio.run(client.structured(
                NpcDialogue, agent_messages(persona="A ferry pilot", kind="npc_dialogue"),
                purpose="npc_dialogue"))
        requests = srv.stats.requests
    records = carried_records(raised.value)
    assert requests == 3 and [r.status for r in records] == ["error"] * 3
    assert waits == [7.0, 7.0]
