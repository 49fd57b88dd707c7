"""The seam's batch side (`personahub/models/provider_batch.py`) against the loopback server's Batch API.

A batch sends the very bodies an online call posts, and each result line becomes the result an
online call gives (validated, repaired, recorded with the batch id). Failed, expired and
cancelled requests come back as failures that go out again, in a follow-up batch or online; a
refusal teaches the endpoint its structured mode; a resumed job polls the batch it created. All
of it through the openai SDK's own `files` and `batches` resources; tests poll, never time.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personahub.core.commit import JobRef, call_rows
from personahub.core.failures import endpoint_error
from personahub.core.provider_batch_records import AWAITING_RESULTS, BatchHandle, load_handles, save_handle
from personahub.core.store import connect, insert_rows, transaction
from personahub.models import provider_batch as batching
from personahub.models.client import LLMClient, LLMSettings, make_client
from personahub.models.fake_server import server as loopback
from personahub.models.provider_batch import (
    BatchApiError,
    BatchCall,
    BatchSession,
    Collected,
    batch_call,
    batch_endpoint,
    collect,
    finish_online,
    import_results,
    mode_known,
    write_batch_file,
)
from personahub.models.provider_batch_lines import BatchFileError, read_results, read_results_file
from personahub.models.settings import LLMConfigError
from personahub.tasks.tool_spec import ToolSpec

POLL = {"poll_s": 0.01, "max_poll_s": 0.05}


class Note(BaseModel):
    """A small schema of strings and a list (bounded by the seam like any other)."""

    title: str
    tags: list[str] = Field(default_factory=list)


def conversations(n: int) -> list[list[Any]]:
    return [[SystemMessage("You write short notes."),
             HumanMessage(f"## Persona\nA ferry pilot from Cork, number {i}\n## Task\nA note.")]
            for i in range(n)]


def client_for(srv: Any, **settings: Any) -> LLMClient:
    settings.setdefault("structured", "json_schema")
    return make_client(LLMSettings(spec=f"{srv.base_url}?model=offline", **settings))


def calls_for(client: LLMClient, schema: type[BaseModel], n: int) -> list[BatchCall[Any]]:
    return [batch_call(client, schema, messages, key=f"item-{i}", purpose="note")
            for i, messages in enumerate(conversations(n))]


async def online(client: LLMClient, schema: type[BaseModel], n: int) -> list[Any]:
    return [await client.structured(schema, messages, purpose="note")
            for messages in conversations(n)]


async def run_rounds(client: LLMClient, calls: list[BatchCall[Any]], session: BatchSession,
                     job: str = "job-1") -> list[tuple[BatchHandle, Collected]]:
    """Send ``calls`` as batches until none is left to send again (a job's loop, in short)."""
    rounds, pending = [], list(calls)
    while pending:
        handle = await session.submit(f"{job}:round-{len(rounds) + 1}", pending)
        handle = await session.wait(handle)
        collected = collect(client, pending, await session.results(handle), handle)
        rounds.append((handle, collected))
        pending = collected.resend
        assert len(rounds) < 8, "a batch loop that does not end"
    return rounds


# -- the request lines --------------------------------------------------------------------------

@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every chat body the loopback server answers (online or as a batch line), in order."""
    seen: list[dict[str, Any]] = []
    prepare = loopback._prepare_chat

    def recording(srv: Any, request: dict[str, Any]) -> Any:
        seen.append(json.loads(json.dumps(request)))
        return prepare(srv, request)

    monkeypatch.setattr(loopback, "_prepare_chat", recording)
    return seen


@pytest.mark.parametrize(("dialect", "structured"), [
    ("openai", "json_schema"), ("openai", "tools"), ("openai", "prompt"),
    ("llama-cpp-python", "json_object"), ("openai-strict", "auto")])
async def test_a_batch_line_is_the_body_an_online_call_posts(server, received, dialect,
                                                             structured) -> None:
    srv = server(dialect=dialect)
    client = client_for(srv, structured=structured, temperature=0.3, max_tokens=300)
    [messages] = conversations(1)
    answer = await client.structured(Note, messages, purpose="note")
    assert answer.value is not None
    posted = received[-1]  # the last online attempt (openai-strict refused the first)
    [call] = [batch_call(client, Note, messages, key="k", purpose="note")]
    lines, mode = batching.request_lines(client, [call])
    assert lines == [{"custom_id": "k#1", "method": "POST", "url": "/v1/chat/completions",
                      "body": posted}]
    assert mode == answer.last.structured_mode
    if dialect == "openai-strict":  # the batch goes without the keywords the endpoint refused
        assert "maxLength" not in json.dumps(posted) and "without" in mode
    handle = await BatchSession(client, **POLL).submit("job:1", [call])
    await BatchSession(client, **POLL).wait(handle)
    assert received[-1] == posted  # and the server got exactly that


# -- answers -------------------------------------------------------------------------------------

async def test_a_batch_gives_the_online_answers_with_no_online_call(server) -> None:
    srv = server(batch_delay_s=0.05)
    client = client_for(srv)
    expected = await online(client, ToolSpec, 12)
    online_requests = srv.stats.requests
    calls = calls_for(client, ToolSpec, 12)
    saved: list[BatchHandle] = []
    [(handle, collected)] = await run_rounds(client, calls,
                                             BatchSession(client, on_handle=saved.append, **POLL))
    assert srv.stats.requests == online_requests  # not one online call
    assert srv.stats.batches_created == 1 and srv.stats.batch_lines == 12
    assert collected.outcomes == {"ok": 12} and not collected.resend
    assert [c.result.value for c in calls] == [e.value for e in expected]
    assert [c.result.raw for c in calls] == [e.raw for e in expected]
    for call, answer in zip(calls, expected, strict=True):
        [record] = call.result.records
        assert (record.status, record.provider_batch_id, record.custom_id, record.attempt) == (
            "ok", handle.batch_id, f"{call.key}#1", 1)
        assert (record.tokens_in, record.tokens_out, record.structured_mode,
                record.finish_reason) == (answer.last.tokens_in, answer.last.tokens_out,
                                          answer.last.structured_mode, "stop")
    assert handle.status == "completed" and handle.output_file_id
    assert saved[0].status == "pending" and saved[0].batch_id is None  # stored before upload
    assert [h.batch_id for h in saved[2:]] == [handle.batch_id] * len(saved[2:])
    assert client.stats.ok == 24  # online and batch calls alike


async def test_failed_requests_come_back_as_failures_and_go_out_again(server) -> None:
    srv = server(batch_error_rate=0.05, fault_seed=3)
    client = client_for(srv)
    expected = await online(client, Note, 60)
    calls = calls_for(client, Note, 60)
    rounds = await run_rounds(client, calls, BatchSession(client, **POLL))
    assert len(rounds) >= 2 and srv.stats.batch_line_errors >= 1
    assert [c.result.value for c in calls] == [e.value for e in expected]  # each item, once
    errors = [r for c in calls for r in c.result.records if r.status == "error"]
    assert len(errors) == srv.stats.batch_line_errors
    assert all(endpoint_error(r.error) and r.error.startswith("HTTP 500") for r in errors)
    assert sum(n for (_, got) in rounds for reason, n in got.outcomes.items()
               if reason.startswith("resent")) == len(errors)
    assert all(r.provider_batch_id == handle.batch_id for (handle, _) in rounds
               for c in calls for r in c.result.records if r.custom_id in handle.custom_ids)


async def test_resends_stop_at_the_clients_retry_budget(server) -> None:
    srv = server(batch_error_rate=1.0)
    client = client_for(srv, max_retries=1)
    calls = calls_for(client, Note, 3)
    rounds = await run_rounds(client, calls, BatchSession(client, **POLL))
    assert [dict(got.outcomes) for _, got in rounds] == [{"resent: HTTP 500": 3}, {"failed": 3}]
    for call in calls:
        assert call.result.value is None and call.result.failure is not None
        assert [(r.attempt, r.status, r.custom_id) for r in call.result.records] == [
            (1, "error", f"{call.key}#1"), (2, "error", f"{call.key}#2")]
    assert client.stats.failed == 3


async def test_an_expired_batch_sends_what_it_did_not_run_again(server) -> None:
    srv = server(batch_expire=(1,), batch_delay_s=0.02)
    client = client_for(srv)
    expected = await online(client, Note, 6)
    calls = calls_for(client, Note, 6)
    (first, got), (second, _) = await run_rounds(client, calls, BatchSession(client, **POLL))
    assert first.status == "expired" and second.status == "completed"
    assert got.outcomes == {"ok": 3, "resent: batch batch_expired": 3}
    assert [c.result.value for c in calls] == [e.value for e in expected]
    assert srv.stats.batches_created == 2


async def test_a_failed_batch_is_sent_again_whole(server) -> None:
    srv = server(batch_fail=(1,))
    client = client_for(srv)
    calls = calls_for(client, Note, 3)
    (first, got), (second, _) = await run_rounds(client, calls, BatchSession(client, **POLL))
    assert first.status == "failed" and "injected" in first.errors[0]
    assert got.outcomes == {"resent: batch failed": 3} and second.status == "completed"
    assert all(c.result.value is not None and c.result.records[0].error.startswith(
        "batch failed: batch_failed: injected") for c in calls)


async def test_a_cancelled_batch_goes_on_online(server) -> None:
    srv = server(batch_delay_s=3600)  # the batch would run for an hour
    client = client_for(srv)
    expected = await online(client, Note, 4)
    calls = calls_for(client, Note, 4)
    session = BatchSession(client, **POLL)
    handle = await session.submit("job:1", calls)
    handle = await session.wait(await session.cancel(handle))
    assert handle.status == "cancelled"
    got = collect(client, calls, await session.results(handle), handle)
    assert got.outcomes["resent: batch batch_cancelled"] == len(got.resend) >= 3
    requests = srv.stats.requests
    for call in got.resend:
        await finish_online(client, call)
    assert srv.stats.requests == requests + len(got.resend)
    assert [c.result.value for c in calls] == [e.value for e in expected]
    for call in got.resend:
        batch_attempt, online_attempt = call.result.records
        assert (batch_attempt.status, batch_attempt.provider_batch_id) == ("error", handle.batch_id)
        assert (online_attempt.status, online_attempt.provider_batch_id, online_attempt.attempt) == (
            "ok", None, 2)


async def test_a_weak_answer_gets_its_second_chance_in_the_next_batch(server) -> None:
    srv = server(malformed_rate=1.0, stubborn=True)  # repairs broken too
    client = client_for(srv)
    [expected] = await online(client, Note, 1)
    [call] = calls_for(client, Note, 1)
    rounds = await run_rounds(client, [call], BatchSession(client, **POLL))
    assert [dict(got.outcomes) for _, got in rounds] == [{"second chance": 1}, {"invalid": 1}]
    assert call.result.value is None and expected.value is None
    assert [(r.status, r.error) for r in call.result.records] == [
        (r.status, r.error) for r in expected.records]
    assert [r.custom_id for r in call.result.records] == ["item-0#1", "item-0#2"]


async def test_a_refused_mode_is_learned_from_the_batch_and_sent_again(server) -> None:
    srv = server(dialect="llama-cpp-python")  # refuses json_schema (a 500 naming it)
    client = client_for(srv, structured="auto")
    assert not mode_known(client)
    calls = calls_for(client, Note, 3)
    rounds = await run_rounds(client, calls, BatchSession(client, **POLL))
    assert [dict(got.outcomes) for _, got in rounds] == [
        {"resent: structured mode refused": 3}, {"ok": 3}]
    assert client.modes.mode(0) == "json_object" and mode_known(client)
    for call in calls:
        refused, answered = call.result.records
        assert refused.error.startswith("json_schema refused: HTTP 500")
        assert answered.structured_mode == "json_object" and call.resends == 0
        assert call.result.value is not None


# -- resume: the batch a job created is polled, never created again --------------------------

async def test_a_resumed_job_polls_the_batch_it_created(server, tmp_path) -> None:
    srv = server(batch_delay_s=0.05)
    client = client_for(srv)
    expected = await online(client, Note, 5)
    con = connect(tmp_path / "batches.duckdb")
    saved: list[BatchHandle] = []

    def keep(handle: BatchHandle) -> None:
        saved.append(handle)
        save_handle(con, handle)

    calls = calls_for(client, Note, 5)
    await BatchSession(client, on_handle=keep, **POLL).submit("synth-1:round-1", calls,
                                                               job_kind="synthesis",
                                                               job_id="synth-1")
    # the process dies here; a new one finds the handle and polls it
    [stored] = load_handles(con, "synthesis", "synth-1").values()
    assert stored.batch_id == saved[-1].batch_id and stored.custom_ids == tuple(
        c.custom_id for c in calls)
    again = make_client(LLMSettings(spec=f"{srv.base_url}?model=offline",
                                    structured="json_schema"))
    resumed_calls = calls_for(again, Note, 5)
    session = BatchSession(again, on_handle=lambda h: save_handle(con, h), **POLL)
    handle = await session.wait(await session.resume(stored, resumed_calls))
    collect(again, resumed_calls, await session.results(handle), handle)
    assert [c.result.value for c in resumed_calls] == [e.value for e in expected]
    assert srv.stats.batches_created == 1
    # a crash after the upload, with the create sent but its answer lost: found by its key
    uploaded = next(h for h in saved if h.input_file_id and h.batch_id is None)
    assert (await session.resume(uploaded)).batch_id == handle.batch_id
    assert srv.stats.batches_created == 1
    # a crash before the upload: the calls are uploaded and created now (once)
    fresh = BatchHandle(key="synth-1:round-2", endpoint=0, model=stored.model,
                        custom_ids=stored.custom_ids)
    made = await session.resume(fresh, resumed_calls)
    assert made.batch_id not in (None, handle.batch_id) and srv.stats.batches_created == 2
    assert load_handles(con, "synthesis", "synth-1")[stored.key].status == "completed"
    con.close()


# -- offline batch files -------------------------------------------------------------------------

async def test_a_batch_file_and_its_imported_results_equal_the_batch_api(server,
                                                                        tmp_path) -> None:
    srv = server()
    client = client_for(srv)
    expected = await online(client, Note, 4)
    calls = calls_for(client, Note, 4)
    requests = tmp_path / "requests.jsonl"
    handle = write_batch_file(requests, client, calls, key="job:1", job_kind="synthesis",
                              job_id="job")
    assert (handle.status, handle.batch_id) == (AWAITING_RESULTS, "file:requests.jsonl")
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == [c.custom_id for c in calls]
    # another runner answers the file: here the loopback server's Batch API
    sdk = openai.OpenAI(base_url=srv.base_url, api_key="x")
    uploaded = sdk.files.create(file=requests.open("rb"), purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h")
    while batch.status != "completed":
        batch = sdk.batches.retrieve(batch.id)
    results = tmp_path / "results.jsonl"
    results.write_bytes(sdk.files.content(batch.output_file_id).content)
    done, got = import_results(client, calls, results, handle)
    assert done.status == "completed" and got.outcomes == {"ok": 4}
    assert [c.result.value for c in calls] == [e.value for e in expected]
    assert {r.provider_batch_id for c in calls for r in c.result.records} == {"file:requests.jsonl"}


def test_vllm_error_lines_are_failures(server) -> None:
    srv = server()
    client = client_for(srv)
    calls = calls_for(client, Note, 2)
    handle = BatchHandle(key="k", endpoint=0, model="m", custom_ids=tuple(
        c.custom_id for c in calls), structured_mode="json_schema", batch_id="file:out.jsonl")
    # vLLM's run_batch: the error in ``error``, the body null; a refusal is not sent again
    lines = [{"id": "vllm-1", "custom_id": calls[0].custom_id,
              "response": {"status_code": 400, "request_id": "r", "body": None},
              "error": {"error": {"message": "bad request: too long", "code": 400}}},
             {"id": "vllm-2", "custom_id": calls[1].custom_id,
              "response": {"status_code": 400, "request_id": "r", "body": None},
              "error": "Request must not be sent in stream mode"}]
    got = collect(client, calls, read_results("\n".join(map(json.dumps, lines)), "out"), handle)
    assert got.outcomes == {"failed": 2}
    assert [c.result.failure.description for c in calls] == [
        "HTTP 400: bad request: too long", "HTTP 400: Request must not be sent in stream mode"]


def test_a_results_file_that_is_not_one_is_named_by_line(tmp_path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"custom_id": "a", "response": null, "error": null}\nnot json\n')
    with pytest.raises(BatchFileError, match=r"results.jsonl:2: not a JSON line"):
        read_results_file(path)
    path.write_text('{"id": "x"}\n')
    with pytest.raises(BatchFileError, match=r"results.jsonl:1: .*no custom_id"):
        read_results_file(path)
    with pytest.raises(BatchFileError, match="cannot read"):
        read_results_file(tmp_path / "missing.jsonl")


# -- what cannot batch -----------------------------------------------------------------------

def test_the_offline_engine_has_no_batch_api() -> None:
    with pytest.raises(LLMConfigError, match="no Batch API"):
        batch_endpoint(make_client(LLMSettings()))


async def test_an_unreachable_batch_api_is_one_line(server) -> None:
    srv = server()
    client = client_for(srv)
    srv.stop()
    calls = calls_for(client, Note, 1)
    with pytest.raises(BatchApiError, match="cannot upload the batch file"):
        await BatchSession(client, **POLL).submit("job:1", calls)


# -- stored, written, priced ---------------------------------------------------------------------

def test_a_handle_round_trips_through_provider_batches(tmp_path) -> None:
    con = connect(tmp_path / "h.duckdb")
    handle = BatchHandle(key="j:1", endpoint=1, model="m@http://h/v1", custom_ids=("a#1", "b#1"),
                         structured_mode="json_schema", job_kind="synthesis", job_id="j")
    save_handle(con, handle)
    later = handle.updated(batch_id="batch_1", input_file_id="file-1", status="expired",
                           completed=1, failed=1, created_at=1_700_000_000.0,
                           finished_at=1_700_000_060.0, errors=("line 2: x: y",))
    save_handle(con, later)
    assert load_handles(con, "synthesis", "j") == {"j:1": later}
    assert load_handles(con, "run", "j") == {}
    con.close()


def test_batch_attempts_are_written_and_priced_at_the_batch_price(server, tmp_path) -> None:
    from personahub.analysis.views import install_views

    con = connect(tmp_path / "cost.duckdb")
    client = client_for(server())
    online_record = batching.CallRequest(Note, [], "note", 100).record(
        model="gpt-x@http://h/v1", status="ok", tokens_in=1_000_000, tokens_out=1_000_000)
    batched = batching.CallRequest(Note, [], "note", 100).record(
        model="gpt-x@http://h/v1", status="ok", tokens_in=1_000_000, tokens_out=1_000_000,
        provider_batch_id="batch_1", custom_id="a#1")
    with transaction(con):
        insert_rows(con, "prices", [{"model": "gpt-x", "price_in": 2.0, "price_out": 8.0}])
        insert_rows(con, "prices", [{"model": "gpt-y", "price_in": 2.0, "price_out": 8.0,
                                     "provider_batch_price_in": 0.2, "provider_batch_price_out": 0.8}])
        for job, model in (("half", "gpt-x"), ("listed", "gpt-y")):
            records = [online_record, batched]
            rows = call_rows(client, records, JobRef("synthesis", job, job))
            for row in rows:
                row["llm"], row["model_name"] = f"{model}@http://h/v1", model
                row["call_id"] = f"{job}-{row['call_id']}"
            insert_rows(con, "llm_calls", rows)
    install_views(con)
    cost = {r[0]: r[1:] for r in con.execute(
        "SELECT run_id, cost_usd, provider_batch_calls, provider_batch_cost_usd FROM v_run_cost").fetchall()}
    assert cost["half"] == (pytest.approx(10.0 + 5.0), 1, pytest.approx(5.0))
    assert cost["listed"] == (pytest.approx(10.0 + 1.0), 1, pytest.approx(1.0))
    assert con.execute("SELECT count(*) FROM llm_calls WHERE provider_batch_id = 'batch_1' AND "
                       "custom_id = 'a#1'").fetchone() == (2,)
    con.close()
