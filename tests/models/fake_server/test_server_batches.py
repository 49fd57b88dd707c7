"""`personahub serve` speaks the Batch API, driven here by the openai SDK's own batch client.

Files are uploaded, listed, read and deleted; batches are created, polled to their end,
cancelled and listed; every line is answered as the same body is answered online. The faults
(`--batch-delay`, `--batch-error-rate`, `--batch-fail`, `--batch-expire`) are deterministic.
Tests poll until a batch ends: nothing here depends on how long anything takes.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from personahub.core.errors import PersonahubError
from personahub.models.fake_server.server import ServerOptions
from personahub.tasks.tool_spec import ToolSpec

_HTTP = httpx.Client(timeout=30)
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def sdk(srv: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="not-needed", max_retries=0)


def bodies(n: int, **fields: Any) -> list[dict[str, Any]]:
    """``n`` chat bodies asking for a ToolSpec in json_schema mode (distinct prompts)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "ToolSpec",
                                                  "schema": ToolSpec.model_json_schema()}}
    return [{"model": "offline", "max_tokens": 400, "response_format": fmt,
             "messages": [{"role": "system", "content": "You design tools."},
                          {"role": "user", "content": f"## Persona\nA potter, number {i}\n"
                                                      "## Task\nDesign one tool."}], **fields}
            for i in range(n)]


def batch_file(items: list[dict[str, Any]], url: str = "/v1/chat/completions") -> bytes:
    return "".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url,
                               "body": body}) + "\n" for i, body in enumerate(items)).encode()


def run(client: openai.OpenAI, data: bytes, *, endpoint: str = "/v1/chat/completions") -> Any:
    """Upload ``data``, create a batch of it and poll it to a terminal status."""
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,  # type: ignore[arg-type]
                                  completion_window="24h")
    assert batch.status == "validating"
    return finish(client, batch.id)


def finish(client: openai.OpenAI, batch_id: str) -> Any:
    batch = client.batches.retrieve(batch_id)
    while batch.status not in TERMINAL:
        time.sleep(0.01)
        batch = client.batches.retrieve(batch_id)
    return batch


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def same_answer(batch_body: dict[str, Any], online: dict[str, Any]) -> None:
    """Equal but for what names one response (its id and time) and the emulated prefix cache's
    reuse (it remembers the prompts asked before, online or in a batch)."""
    for body in (batch_body, online):
        body.pop("id"), body.pop("created"), body["usage"].pop("prompt_tokens_details", None)
    assert batch_body == online


# -- files -------------------------------------------------------------------------------------

def test_files_upload_read_list_and_delete(server) -> None:
    srv = server()
    client = sdk(srv)
    data = batch_file(bodies(3)) + "é\r\n".encode()  # bytes come back exactly as sent
    uploaded = client.files.create(file=("mine.jsonl", data), purpose="batch")
    assert (uploaded.purpose, uploaded.bytes, uploaded.filename) == ("batch", len(data),
                                                                      "mine.jsonl")
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert client.files.content(uploaded.id).content == data
    assert [f.id for f in client.files.list().data] == [uploaded.id]
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    assert srv.stats.files_uploaded == 1


def test_an_upload_is_a_multipart_batch_file_from_this_origin(server) -> None:
    srv = server()
    client = sdk(srv)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    json_upload = _HTTP.post(f"{srv.base_url}/files", json={"purpose": "batch"})
    assert json_upload.status_code == 415
    no_file = _HTTP.post(f"{srv.base_url}/files", data={"purpose": "batch"},
                         files={"other": ("x", b"1")})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
    foreign = _HTTP.post(f"{srv.base_url}/files", data={"purpose": "batch"},
                         files={"file": ("x.jsonl", b"{}\n")},
                         headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert srv.stats.files_uploaded == 0


def test_an_upload_past_its_bound_is_refused_before_it_is_read(server) -> None:
    from personahub.models.fake_server.files import FILE_MAX_BYTES
    from tests.models.fake_server.test_server_guards import port_of, raw_exchange

    srv = server()
    answer = raw_exchange(port_of(srv.base_url), (
        "POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {FILE_MAX_BYTES + 1}\r\n\r\n").encode())
    assert answer.split(b" ", 2)[1] == b"413"
    assert srv.stats.out_of_bounds == 1 and srv.stats.files_uploaded == 0


# -- batches: answers --------------------------------------------------------------------------

def test_a_batch_answers_each_line_as_the_same_body_is_answered_online(server) -> None:
    srv = server(batch_delay_s=0.05)
    client = sdk(srv)
    items = bodies(6)
    tool = {"type": "function", "function": {"name": "ToolSpec",
                                             "parameters": ToolSpec.model_json_schema()}}
    items.append({**items[0], "tools": [tool], "tool_choice": "required"})
    items[0] = {**items[0], "n": 2}
    batch = run(client, batch_file(items))
    assert batch.status == "completed" and batch.error_file_id is None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (7, 7, 0)
    assert all(getattr(batch, f"{name}_at") for name in ("in_progress", "finalizing",
                                                        "completed"))
    results = {line["custom_id"]: line for line in lines_of(client, batch.output_file_id)}
    assert srv.stats.requests == 0  # a batch is no online request
    for i, body in enumerate(items):
        line = results[f"req-{i}"]
        assert line["error"] is None and line["response"]["status_code"] == 200
        online = _HTTP.post(f"{srv.base_url}/chat/completions", json=body).json()
        same_answer(line["response"]["body"], online)
    assert srv.stats.batch_lines == 7 and srv.stats.batches_created == 1


def test_an_embeddings_batch_answers_as_online(server) -> None:
    srv = server()
    client = sdk(srv)
    items = [{"model": "m", "input": [f"text {i}", "shared"], "dimensions": 16} for i in range(3)]
    batch = run(client, batch_file(items, "/v1/embeddings"), endpoint="/v1/embeddings")
    assert batch.status == "completed"
    for i, line in enumerate(lines_of(client, batch.output_file_id)):
        online = _HTTP.post(f"{srv.base_url}/embeddings", json=items[i]).json()
        assert line["response"]["body"] == online


def test_a_line_is_refused_and_bounded_as_online(server) -> None:
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for dialect, body, status, words in (
            ("llama-cpp-python", bodies(1)[0], 500, "json_schema"),  # refused as online
            ("openai", {**plain, "max_tokens": 10**9}, 400, "max_tokens"),  # past a bound
            ("openai", {**plain, "stream": True}, 400, "stream")):  # a batch does not stream
        srv = server(dialect=dialect)
        client = sdk(srv)
        batch = run(client, batch_file([body]))
        assert batch.status == "completed" and batch.output_file_id is None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (0, 1)
        [line] = lines_of(client, batch.error_file_id)
        assert line["response"]["status_code"] == status
        assert words in json.dumps(line["response"]["body"])
        if status == 500:
            online = _HTTP.post(f"{srv.base_url}/chat/completions", json=body)
            assert (online.status_code, online.json()) == (500, line["response"]["body"])


# -- faults ------------------------------------------------------------------------------------

def failed_ids(srv: Any) -> set[str]:
    client = sdk(srv)
    batch = run(client, batch_file(bodies(60)))
    assert batch.status == "completed"
    errors = lines_of(client, batch.error_file_id)
    assert all(line["response"]["status_code"] == 500 for line in errors)
    assert batch.request_counts.failed == len(errors) == srv.stats.batch_line_errors
    assert batch.request_counts.completed == len(lines_of(client, batch.output_file_id))
    return {line["custom_id"] for line in errors}


def test_per_request_failures_are_seeded(server) -> None:
    first = failed_ids(server(batch_error_rate=0.2, fault_seed=7))
    assert 4 <= len(first) <= 24
    assert failed_ids(server(batch_error_rate=0.2, fault_seed=7)) == first
    assert failed_ids(server(batch_error_rate=0.2, fault_seed=8)) != first


def test_a_malformed_file_fails_validation_with_line_numbers(server) -> None:
    srv = server()
    client = sdk(srv)
    good = json.loads(batch_file(bodies(1)).decode())
    lines = [json.dumps(good), "not json", json.dumps(good),  # the repeat: a duplicate id
             json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}),
             json.dumps({**good, "custom_id": "c", "method": "GET"})]
    batch = run(client, ("\n".join(lines) + "\n").encode())
    assert batch.status == "failed" and batch.output_file_id is None
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_url"),
        (5, "invalid_method")]


def test_a_whole_batch_fails_and_the_next_one_runs(server) -> None:
    srv = server(batch_fail=(1,))
    client = sdk(srv)
    failed = run(client, batch_file(bodies(2)))
    assert failed.status == "failed" and failed.failed_at
    assert "injected" in failed.errors.data[0].message
    assert run(client, batch_file(bodies(2))).status == "completed"
    assert srv.stats.batches_created == 2


def test_an_expired_batch_keeps_what_it_answered(server) -> None:
    srv = server(batch_expire=(1,), batch_delay_s=0.05)
    client = sdk(srv)
    batch = run(client, batch_file(bodies(5)))
    assert batch.status == "expired" and batch.expired_at
    answered = lines_of(client, batch.output_file_id)
    expired = lines_of(client, batch.error_file_id)
    assert [line["custom_id"] for line in answered] == ["req-0", "req-1"]
    assert [line["custom_id"] for line in expired] == ["req-2", "req-3", "req-4"]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired"
               for line in expired)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 3)


def test_a_cancelled_batch_keeps_what_it_answered(server) -> None:
    srv = server(batch_delay_s=3600)  # it would run for an hour: the cancel ends it
    client = sdk(srv)
    uploaded = client.files.create(file=("in.jsonl", batch_file(bodies(4))), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h")
    assert client.batches.cancel(created.id).status == "cancelling"
    batch = finish(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at and batch.cancelling_at
    answered = lines_of(client, batch.output_file_id)
    cancelled = lines_of(client, batch.error_file_id)
    assert len(answered) + len(cancelled) == 4 and len(cancelled) >= 3
    assert all(line["error"]["code"] == "batch_cancelled" for line in cancelled)
    with pytest.raises(openai.BadRequestError, match="cancel"):
        client.batches.cancel(created.id)
    assert srv.stats.batch_cancels == 1


# -- the API's other answers -------------------------------------------------------------------

def test_creates_are_counted_and_listed(server) -> None:
    srv = server()
    client = sdk(srv)
    data = batch_file(bodies(1))
    ids = [run(client, data).id for _ in range(3)]
    assert srv.stats.batches_created == 3
    stats = _HTTP.get(srv.base_url.removesuffix("/v1") + "/personahub/stats").json()
    assert stats["batches_created"] == 3 and stats["requests"] == 0
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    assert [b.id for b in client.batches.list(limit=2, after=ids[1]).data] == [ids[0]]
    assert [b.id for b in client.batches.list(limit=1)] == ids[::-1]  # page by page


@pytest.mark.parametrize(("change", "status", "words"), [
    ({"input_file_id": "file-nope"}, 404, "No such File"),
    ({"endpoint": "/v1/responses"}, 400, "endpoint"),
    ({"completion_window": "forever"}, 400, "completion_window"),
    ({"metadata": {"k": "v" * 600}}, 400, "metadata"),
])
def test_a_bad_create_is_refused_at_once(server, change, status, words) -> None:
    srv = server()
    client = sdk(srv)
    uploaded = client.files.create(file=("in.jsonl", batch_file(bodies(1))), purpose="batch")
    request = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions",
               "completion_window": "24h", **change}
    answer = _HTTP.post(f"{srv.base_url}/batches", json=request)
    assert answer.status_code == status and words in answer.json()["error"]["message"]
    assert srv.stats.batches_created == 0
    assert _HTTP.get(f"{srv.base_url}/batches/batch_nope").status_code == 404
    assert _HTTP.get(f"{srv.base_url}/files/file-nope/content").status_code == 404


def test_batches_in_progress_are_bounded(server, monkeypatch) -> None:
    from personahub.models.fake_server import batches

    monkeypatch.setattr(batches, "MAX_RUNNING", 2)
    srv = server(batch_delay_s=3600)
    client = sdk(srv)
    uploaded = client.files.create(file=("in.jsonl", batch_file(bodies(1))), purpose="batch")
    made = [client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h") for _ in range(2)]
    with pytest.raises(openai.RateLimitError, match="in progress"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    client.batches.cancel(made[0].id)
    finish(client, made[0].id)
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                          completion_window="24h")
    assert srv.stats.batches_created == 3


@pytest.mark.parametrize("options", [{"batch_delay_s": -1}, {"batch_error_rate": 1.5},
                                     {"batch_expire": (0,)}, {"batch_fail": (True,)}])
def test_batch_options_are_checked(options) -> None:
    with pytest.raises(PersonahubError, match="batch"):
        ServerOptions(**options)
