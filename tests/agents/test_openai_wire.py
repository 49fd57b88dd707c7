"""The pass-through completions resource sends exactly what the SDK's own ``create`` sends."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI
from openai._base_client import make_request_options
from openai._models import FinalRequestOptions
from openai._types import NotGiven
from openai.types.chat import ChatCompletion

from personahub.core.loop import InlineExecutor, close_quietly, new_run_loop
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.openai_wire import (
    PassThroughCompletions,
    PassThroughOpenAI,
    is_plain,
    merging_urls_once,
    pass_through_clients,
    post_options,
)
from personahub.tasks import emission_task

_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"a\": 1}"},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def _capture(client_class: type[AsyncOpenAI] = AsyncOpenAI,
             ) -> tuple[AsyncOpenAI, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_COMPLETION)

    http = merging_urls_once(httpx.AsyncClient)(transport=httpx.MockTransport(handler)) \
        if client_class is PassThroughOpenAI else httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client_class(api_key="sk-test", base_url="http://example.test/v1", max_retries=0,
                        http_client=http), seen


PAYLOADS: list[dict[str, Any]] = [
    {"model": "m", "messages": [{"role": "system", "content": "You are a baker."},
                                {"role": "user", "content": "Write one line."}], "stream": False},
    {"model": "m", "temperature": 0.3, "seed": 7, "max_tokens": 50,
     "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None,
                  "tool_calls": [{"id": "c1", "type": "function",
                                  "function": {"name": "f", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                 "parameters": {"type": "object", "properties": {
                                                     "x": {"type": "integer"}}}}}],
     "tool_choice": {"type": "function", "function": {"name": "f"}}},
    # not plain (content parts): must go through the SDK's own create
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("extra", [{}, {"extra_body": {"response_format": {"type": "json_object"}},
                                       "extra_headers": {"X-Trace": "1"}, "timeout": 5.0}])
@pytest.mark.parametrize("client_class", [AsyncOpenAI, PassThroughOpenAI])
def test_same_request_on_the_wire(payload: dict[str, Any], extra: dict[str, Any],
                                  client_class: type[AsyncOpenAI]) -> None:
    async def both() -> tuple[httpx.Request, httpx.Request, Any, Any]:
        sdk, sdk_seen = _capture()
        ours, ours_seen = _capture(client_class)
        expected = await sdk.chat.completions.create(**payload, **extra)
        for _ in range(2):  # the second request reads what the first one cached
            got = await PassThroughCompletions(ours).create(**payload, **extra)
        return sdk_seen[0], ours_seen[-1], expected, got

    want, have, expected, got = asyncio.run(both())
    assert have.url == want.url and have.method == want.method
    assert json.loads(have.content) == json.loads(want.content)
    ignore = {"x-stainless-retry-count", "x-stainless-read-timeout"}
    assert {k: v for k, v in have.headers.items() if k not in ignore} == \
        {k: v for k, v in want.headers.items() if k not in ignore}
    assert isinstance(got, dict) == is_plain(payload)
    if isinstance(got, dict):  # the pass-through answers with the JSON itself
        assert got == _COMPLETION
        assert ChatCompletion.model_validate(got).model_dump() == expected.model_dump()
    else:
        assert got.model_dump() == expected.model_dump()


def test_chat_openai_reads_the_json_answer_as_it_reads_the_typed_one() -> None:
    """ChatOpenAI builds the same message from the pass-through's dict as from the SDK's
    ChatCompletion: content, token usage and response metadata."""
    messages = [SystemMessage("You are a baker."), HumanMessage("Write one line.")]

    async def both() -> tuple[Any, Any]:
        sdk, _ = _capture()
        ours, _ = _capture()
        plain = ChatOpenAI(model="m", api_key="sk-test", root_async_client=sdk,
                           async_client=sdk.chat.completions, max_retries=0)
        fast = ChatOpenAI(model="m", api_key="sk-test", max_retries=0, **pass_through_clients(ours))
        return await plain.ainvoke(messages), await fast.ainvoke(messages)

    want, have = asyncio.run(both())
    assert have.content == want.content == '{"a": 1}'
    assert have.usage_metadata == want.usage_metadata and have.usage_metadata["total_tokens"] == 5
    assert _metadata(have) == _metadata(want)
    assert have.response_metadata["finish_reason"] == "stop"


def _metadata(message: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Response metadata and token usage, less the fields the server did not send (the typed
    model fills them with None; the JSON leaves them out, or '' for the fingerprint)."""
    meta = dict(message.response_metadata)
    usage = {k: v for k, v in meta.pop("token_usage").items() if v is not None}
    assert meta.pop("system_fingerprint") in ("", None)
    return meta, usage


@pytest.mark.parametrize("extras", [
    {}, {"extra_body": {"max_tokens": 9}}, {"extra_headers": {"X-Trace": "1"}, "timeout": 5.0},
    {"extra_query": {"api-version": "1"}, "extra_body": {"response_format": {"type": "json_object"}}}])
def test_post_options_are_what_the_sdk_constructs(extras: dict[str, Any]) -> None:
    """The copied options equal the ones ``AsyncAPIClient.post`` constructs, field for field,
    including which fields count as set; and a copy never shares what the next call changes."""
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    sdk_extras = dict(extras)
    if "security" in make_request_options.__code__.co_varnames:
        sdk_extras["security"] = {"bearer_auth": True}
    want = FinalRequestOptions.construct(method="post", url="/chat/completions", json_data=body,
                                         content=None, files=None,
                                         **make_request_options(**sdk_extras))
    have = post_options(body, **extras)

    def fields(options: FinalRequestOptions) -> dict[str, Any]:  # NotGiven() equals no other
        return {k: "NOT_GIVEN" if isinstance(v, NotGiven) else v for k, v in options.__dict__.items()}

    assert fields(have) == fields(want) and "NOT_GIVEN" in fields(have).values()
    assert have.model_fields_set == want.model_fields_set
    other = post_options({"model": "n", "messages": []}, **extras)
    assert have.json_data is body and other.json_data is not body


def test_urls_are_merged_once_per_base_url() -> None:
    """The cached URLs are the SDK's and httpx's own, follow a changed base URL, and leave
    relative URLs to the client's base URL."""
    plain = AsyncOpenAI(api_key="sk-test", base_url="http://example.test/v1")
    ours = PassThroughOpenAI(api_key="sk-test", base_url="http://example.test/v1")
    for _ in range(2):
        assert ours._prepare_url("/chat/completions") == plain._prepare_url("/chat/completions")
    ours.base_url = plain.base_url = "http://other.test/v2"  # type: ignore[assignment]
    assert str(ours._prepare_url("/chat/completions")) == "http://other.test/v2/chat/completions"
    assert ours._prepare_url("/chat/completions") == plain._prepare_url("/chat/completions")
    client = merging_urls_once(httpx.AsyncClient)(base_url="http://base.test/api")
    assert merging_urls_once(httpx.AsyncClient) is type(client)  # one class per client class
    plain = httpx.AsyncClient(base_url="http://base.test/api")
    for url in ("http://a.test/x", "http://a.test/x", "/rel", "https://b.test/y?q=1",
                "http://a.test/x#f"):
        for params in (None, {}, {"v": "1"}):  # an empty query strips the URL's: kept so
            assert client.build_request("POST", url, params=params).url == \
                plain.build_request("POST", url, params=params).url
    client.base_url = "http://moved.test/api"  # type: ignore[assignment]
    assert str(client.build_request("POST", "/rel").url) == "http://moved.test/api/rel"
    client.params = plain.params = {"k": "2"}  # type: ignore[assignment]
    assert client.build_request("POST", "http://a.test/x", params={}).url == \
        plain.build_request("POST", "http://a.test/x", params={}).url


def test_headers_are_merged_once_per_header_list() -> None:
    """The merged headers are httpx's own, follow the client's headers when they change (even in
    place), and a request's changes to its headers reach no other request."""
    plain = httpx.AsyncClient(headers={"X-Client": "1"})
    ours = merging_urls_once(httpx.AsyncClient)(headers={"X-Client": "1"})
    sent = [("Authorization", "Bearer k"), ("X-Client", "2"), ("Content-Type", "application/json")]

    def same() -> httpx.Request:
        want = plain.build_request("POST", "http://a.test/x", headers=list(sent))
        have = ours.build_request("POST", "http://a.test/x", headers=list(sent))
        assert have.headers.multi_items() == want.headers.multi_items()
        return have

    first = same()
    first.headers["X-Changed"] = "yes"
    assert "x-changed" not in same().headers
    ours.headers["X-Extra"] = plain.headers["X-Extra"] = "3"  # in place
    assert same().headers["x-extra"] == "3"
    ours.headers = plain.headers = {"X-Other": "4"}  # type: ignore[assignment]
    assert "x-extra" not in same().headers and same().headers["x-other"] == "4"
    assert len(ours.__dict__["_merged_headers"]) == 3
    for headers in (None, {"A": "1"}):  # other forms: httpx's own merge, nothing cached
        assert ours._merge_headers(headers).multi_items() == plain._merge_headers(headers).multi_items()
    assert len(ours.__dict__["_merged_headers"]) == 3


def test_only_plain_payloads_take_the_shortcut() -> None:
    assert is_plain(PAYLOADS[0]) and is_plain(PAYLOADS[1])
    assert not is_plain(PAYLOADS[2])  # content parts
    assert not is_plain({**PAYLOADS[0], "stream": True})
    assert not is_plain({**PAYLOADS[0], "response_format": {"type": "json_object"}})
    assert not is_plain({**PAYLOADS[0], "audio": {"voice": "alloy", "format": "mp3"}})


def test_chat_openai_endpoints_use_the_pass_through(server: Any) -> None:
    srv = server()
    client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=offline", seed=1))
    model = client.endpoints[0].model
    assert isinstance(model.async_client, PassThroughCompletions)  # type: ignore[attr-defined]
    messages = [SystemMessage("You are a baker from Cork."), HumanMessage("Write an instruction.")]
    loop = new_run_loop()
    try:
        result = loop.run_until_complete(client.structured(emission_task("instruction").schema, messages,
                                                           purpose="t"))
    finally:
        close_quietly(loop)  # shuts the loop's async generators down: the HTTP client is closed
    assert result.value is not None and srv.stats.answered == 1


def test_inline_executor_runs_work_in_the_calling_thread_but_not_dns() -> None:
    executor = InlineExecutor(max_workers=1)
    try:
        assert executor.submit(threading.get_ident).result() == threading.get_ident()
        failed = executor.submit(int, "x")
        assert failed.done() and isinstance(failed.exception(), ValueError)
        resolved = executor.submit(socket.getaddrinfo, "127.0.0.1", 80)
        assert resolved.result(timeout=10)[0][4][0] == "127.0.0.1"
        assert executor._threads  # name resolution went to a worker thread
    finally:
        executor.shutdown()

    async def where() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, threading.get_ident)

    loop = new_run_loop()
    try:
        assert loop.run_until_complete(where()) == threading.get_ident()
    finally:
        loop.close()


def test_the_run_loop_answers_default_executor_work_with_a_finished_asyncio_future() -> None:
    """No concurrent future, so nothing is handed back through the loop's self-pipe; errors
    reach the awaiting coroutine; name resolution still runs in a worker thread."""
    async def check() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        inline = loop.run_in_executor(None, threading.get_ident)
        assert isinstance(inline, asyncio.Future) and inline.done()
        failed = loop.run_in_executor(None, int, "x")
        with pytest.raises(ValueError):
            await failed
        resolved = await loop.getaddrinfo("127.0.0.1", 80)
        return await inline, resolved[0][4][0]

    loop = new_run_loop()
    try:
        assert loop.run_until_complete(check()) == (threading.get_ident(), "127.0.0.1")
    finally:
        loop.close()


def test_plain_http_endpoints_skip_the_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle is setup work an http:// server never needs; https keeps it."""
    import ssl

    from personahub.models import endpoint_specs

    loaded: list[int] = []

    def context() -> ssl.SSLContext:
        loaded.append(1)
        return ssl.create_default_context()

    monkeypatch.setattr(endpoint_specs, "_ssl_context", context)
    settings = LLMSettings(spec="offline")
    endpoint_specs._http_client(settings, "http://127.0.0.1:8000/v1")
    assert loaded == []
    endpoint_specs._http_client(settings, "https://api.example.test/v1")
    endpoint_specs._http_client(settings, None)  # OpenAI itself
    assert loaded == [1, 1]
