"""The loopback server's dialects: what each accepts and refuses, and how, driven over HTTP."""

import json
import socket

import httpx
import openai
import pytest

from personahub.core.errors import PersonahubError
from personahub.models.fake_server import server as server_module
from personahub.models.fake_server.server import ServerOptions
from personahub.models.prompt_schema import render_schema_block
from personahub.models.structured import strip_keywords
from personahub.tasks.tool_spec import ToolSpec

_HTTP = httpx.Client(timeout=10)
SCHEMA = ToolSpec.model_json_schema()
USER = {"role": "user", "content": "## Persona\nA potter\n## Task\nGo"}
TOOL = {"type": "function", "function": {"name": "ToolSpec", "parameters": SCHEMA}}
OTHER_TOOL = {"type": "function", "function": {"name": "Other", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}
NAMED = {"type": "function", "function": {"name": "ToolSpec"}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "ToolSpec", "schema": SCHEMA}}
JSON_OBJECT = {"type": "json_object"}
JSON_OBJECT_SCHEMA = {"type": "json_object", "schema": SCHEMA}
DIALECTS = ["openai", "openai-strict", "vllm", "vllm-legacy", "llama-cpp-python", "ollama",
            "tools-only"]
OPENAI_ERROR = {"message", "type", "param", "code"}


def chat(url: str, **body) -> httpx.Response:
    body.setdefault("model", "offline")
    body.setdefault("messages", [USER])
    return _HTTP.post(f"{url}/chat/completions", json=body)


def post_raw(url: str, content: bytes) -> httpx.Response:
    return _HTTP.post(f"{url}/chat/completions", content=content,
                      headers={"Content-Type": "application/json"})


def choice(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def error_of(response: httpx.Response, dialect: str) -> dict:
    """The error object of a refusal, after checking the dialect's body shape."""
    body = response.json()
    if dialect == "vllm-legacy":
        assert set(body) == {"object", *OPENAI_ERROR} and body["object"] == "error"
        assert body["code"] == response.status_code
        return body
    assert set(body) == {"error"} and set(body["error"]) == OPENAI_ERROR
    if dialect == "vllm":
        assert body["error"]["code"] == response.status_code
    return body["error"]


# -- what each dialect accepts ---------------------------------------------------------------

ACCEPTS = {  # dialect -> statuses for json_schema, json_object, json_object+schema, named tool
    "openai": (200, 200, 200, 200),
    "openai-strict": (400, 200, 200, 400),  # ToolSpec's schema has minLength, unsupported there
    "vllm": (200, 200, 200, 200),
    "vllm-legacy": (200, 200, 200, 200),
    "llama-cpp-python": (500, 200, 200, 200),
    "ollama": (200, 200, 200, 200),
    "tools-only": (400, 400, 400, 200),
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_what_each_dialect_accepts(server, dialect):
    srv = server(dialect=dialect)
    statuses = (chat(srv.base_url, response_format=JSON_SCHEMA).status_code,
                chat(srv.base_url, response_format=JSON_OBJECT).status_code,
                chat(srv.base_url, response_format=JSON_OBJECT_SCHEMA).status_code,
                chat(srv.base_url, tools=[TOOL], tool_choice=NAMED).status_code)
    assert statuses == ACCEPTS[dialect]
    assert srv.stats.refused == sum(s != 200 for s in statuses)
    assert chat(srv.base_url, response_format={"type": "text"}).status_code == 200


@pytest.mark.parametrize("dialect", ["openai", "vllm", "ollama"])
def test_json_schema_answers_fit_the_schema(server, dialect):
    content = choice(chat(server(dialect=dialect).base_url, response_format=JSON_SCHEMA))
    assert content["finish_reason"] == "stop"
    assert ToolSpec.model_validate_json(content["message"]["content"])


# -- llama-cpp-python ------------------------------------------------------------------------

def test_llama_cpp_refuses_json_schema_with_a_500_validation_message(server):
    srv = server(dialect="llama-cpp-python")
    response = chat(srv.base_url, response_format=JSON_SCHEMA)
    assert response.status_code == 500
    error = error_of(response, "llama-cpp-python")
    assert error["type"] == "internal_server_error" and error["param"] is None
    assert error["code"] is None
    assert error["message"].startswith("1 validation error:\n  {'type': 'literal_error', "
                                       "'loc': ('body', 'response_format', 'type')")
    assert "Input should be 'text' or 'json_object'" in error["message"]


def test_llama_cpp_json_object_schema_is_enforced_and_plain_json_object_is_an_object(server):
    srv = server(dialect="llama-cpp-python")
    enforced = choice(chat(srv.base_url, response_format=JSON_OBJECT_SCHEMA))
    assert ToolSpec.model_validate_json(enforced["message"]["content"])
    plain = choice(chat(srv.base_url, response_format=JSON_OBJECT))
    assert isinstance(json.loads(plain["message"]["content"]), dict)


def test_llama_cpp_tools_only_with_a_named_tool_choice(server):
    srv = server(dialect="llama-cpp-python")
    named = choice(chat(srv.base_url, tools=[OTHER_TOOL, TOOL], tool_choice=NAMED))
    message = named["message"]
    assert named["finish_reason"] == "tool_calls" and message["content"] is None
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "ToolSpec" and call["id"].startswith("call__0_ToolSpec_")
    assert message["function_call"] == call["function"]
    assert ToolSpec.model_validate_json(call["function"]["arguments"])
    for tool_choice in ("required", "auto", None):  # tools ignored: the model writes text
        text = choice(chat(srv.base_url, tools=[TOOL], tool_choice=tool_choice))
        assert "tool_calls" not in text["message"] and text["finish_reason"] == "stop"
    missing = chat(srv.base_url, tools=[OTHER_TOOL], tool_choice=NAMED)
    assert missing.status_code == 500
    assert error_of(missing, "llama-cpp-python")["message"] == (
        "Tool choice 'ToolSpec' not found in tools.")


def test_llama_cpp_cut_tool_call_still_says_tool_calls(server):
    srv = server(dialect="llama-cpp-python")
    cut = choice(chat(srv.base_url, tools=[TOOL], tool_choice=NAMED, max_tokens=4))
    assert cut["finish_reason"] == "tool_calls"
    arguments = cut["message"]["tool_calls"][0]["function"]["arguments"]
    assert len(arguments) <= 16
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)
    assert srv.stats.truncated == 1


def test_llama_cpp_ignores_max_completion_tokens_and_stops_at_the_context(server):
    srv = server(dialect="llama-cpp-python", context_tokens=30)
    # no max_tokens: generation runs to the end of the 30-token context
    to_context = choice(chat(srv.base_url, response_format=JSON_OBJECT_SCHEMA,
                             max_completion_tokens=1))
    assert to_context["finish_reason"] == "length"
    prompt = chat(srv.base_url, response_format=JSON_OBJECT_SCHEMA).json()["usage"]["prompt_tokens"]
    assert len(to_context["message"]["content"]) <= 4 * (30 - prompt)
    too_long = chat(srv.base_url, messages=[{"role": "user", "content": "word " * 40}],
                    max_tokens=8)
    assert too_long.status_code == 400
    error = error_of(too_long, "llama-cpp-python")
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error", "messages", "context_length_exceeded")
    assert "maximum context length is 30 tokens" in error["message"]


def test_llama_cpp_malformed_bodies_are_500s_as_in_the_real_server(server):
    srv = server(dialect="llama-cpp-python")
    not_json = post_raw(srv.base_url, b"{nope")
    assert (not_json.status_code, not_json.text) == (500, "Internal Server Error")
    assert not_json.headers["content-type"].startswith("text/plain")
    array = post_raw(srv.base_url, b"[1, 2]")
    assert array.status_code == 500
    assert "model_attributes_type" in error_of(array, "llama-cpp-python")["message"]


# -- vllm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["vllm", "vllm-legacy"])
def test_vllm_tool_choices_and_refusals(server, dialect):
    srv = server(dialect=dialect)
    named = choice(chat(srv.base_url, tools=[OTHER_TOOL, TOOL], tool_choice=NAMED))
    assert named["finish_reason"] == "stop" and named["message"]["content"] == ""
    assert named["message"]["tool_calls"][0]["function"]["name"] == "ToolSpec"
    for tool_choice in ("required", None):  # None: "auto" (the server runs with a tool parser)
        assert choice(chat(srv.base_url, tools=[TOOL], tool_choice=tool_choice))[
            "finish_reason"] == "tool_calls"
    no_tools = chat(srv.base_url, tool_choice=NAMED)
    assert no_tools.status_code == 400
    error = error_of(no_tools, dialect)
    assert error["type"] == "BadRequestError"
    assert error["message"] == "When using `tool_choice`, `tools` must be set."
    unnamed = chat(srv.base_url, response_format={"type": "json_schema",
                                                  "json_schema": {"schema": SCHEMA}})
    assert unnamed.status_code == 400
    assert error_of(unnamed, dialect)["type"] == "Bad Request"
    assert srv.stats.refused == 2


def test_vllm_max_completion_tokens_wins_and_must_be_positive(server):
    srv = server(dialect="vllm")
    cut = choice(chat(srv.base_url, response_format=JSON_SCHEMA, max_tokens=500,
                      max_completion_tokens=3))
    assert cut["finish_reason"] == "length" and len(cut["message"]["content"]) <= 12
    zero = chat(srv.base_url, max_tokens=0)
    assert zero.status_code == 400
    assert error_of(zero, "vllm")["message"] == "max_tokens must be at least 1, got 0."


# -- ollama ----------------------------------------------------------------------------------

def test_ollama_formats_tools_and_limits(server):
    srv = server(dialect="ollama")
    # json_object is plain JSON mode: the schema key is ignored (so the prompt's schema is used)
    prompt_schema = [{"role": "system", "content": render_schema_block(SCHEMA)}, USER]
    mode = choice(chat(srv.base_url, messages=prompt_schema,
                       response_format={"type": "json_object", "schema": {"type": "array"}}))
    assert ToolSpec.model_validate_json(mode["message"]["content"])
    # tool_choice is not read: the model calls a tool it likes (here the first)
    called = choice(chat(srv.base_url, tools=[OTHER_TOOL, TOOL], tool_choice=NAMED))
    assert called["finish_reason"] == "tool_calls" and called["message"]["content"] == ""
    assert called["message"]["tool_calls"][0]["function"]["name"] == "Other"
    # only max_tokens counts; a cut tool call is no tool call
    uncut = choice(chat(srv.base_url, response_format=JSON_SCHEMA, max_completion_tokens=2))
    assert uncut["finish_reason"] == "stop"
    cut = choice(chat(srv.base_url, tools=[TOOL], max_tokens=3))
    assert cut["finish_reason"] == "length" and "tool_calls" not in cut["message"]
    assert len(cut["message"]["content"]) <= 12
    empty = chat(srv.base_url, messages=[])
    assert empty.status_code == 400
    error = error_of(empty, "ollama")
    assert error == {"message": "[] is too short - 'messages'", "type": "invalid_request_error",
                     "param": None, "code": None}


# -- tools-only ------------------------------------------------------------------------------

def test_tools_only_names_response_format_in_its_400(server):
    srv = server(dialect="tools-only")
    response = chat(srv.base_url, response_format=JSON_SCHEMA)
    assert response.status_code == 400
    error = error_of(response, "tools-only")
    assert error["param"] == "response_format" and "response_format" in error["message"]
    call = choice(chat(srv.base_url, tools=[TOOL], tool_choice=NAMED))
    assert ToolSpec.model_validate_json(call["message"]["tool_calls"][0]["function"]["arguments"])


# -- every dialect ---------------------------------------------------------------------------

LIMITED = {  # a request each dialect answers, and its token limit parameter
    "openai": {"response_format": JSON_SCHEMA},
    "openai-strict": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "ToolSpec", "schema": strip_keywords(SCHEMA, frozenset({"minLength"}))}}},
    "vllm": {"response_format": JSON_SCHEMA},
    "vllm-legacy": {"response_format": JSON_SCHEMA},
    "llama-cpp-python": {"response_format": JSON_OBJECT_SCHEMA},
    "ollama": {"response_format": JSON_SCHEMA},
    "tools-only": {"tools": [TOOL], "tool_choice": NAMED},
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_small_max_tokens_cuts_the_answer_with_finish_reason_length(server, dialect):
    srv = server(dialect=dialect)
    response = chat(srv.base_url, max_tokens=5, **LIMITED[dialect])
    cut = choice(response)
    assert cut["finish_reason"] == "length"
    message = cut["message"]
    text = message["tool_calls"][0]["function"]["arguments"] if message.get(
        "tool_calls") else message["content"]
    assert 0 < len(text) <= 20
    assert response.json()["usage"]["completion_tokens"] == 5
    assert srv.stats.truncated == 1
    whole = choice(chat(srv.base_url, max_tokens=4000, **LIMITED[dialect]))
    assert whole["finish_reason"] in ("stop", "tool_calls")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_malformed_bodies_get_an_error_not_a_dropped_connection(server, dialect):
    srv = server(dialect=dialect)
    for content in (b"{nope", b"[1, 2]", b"42", b""):
        response = post_raw(srv.base_url, content)
        if dialect == "llama-cpp-python":
            assert response.status_code == 500
            continue
        assert response.status_code == 400
        assert error_of(response, dialect)["message"]
    assert srv.stats.bad_bodies == 4
    assert srv.stats.answered == 0


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):  # the server closes the connection after answering
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", [b"abc", b"-5"])
def test_bad_content_length_is_a_400_and_the_connection_closes(server, length):
    srv = server(dialect="vllm")
    port = int(srv.base_url.rsplit(":", 1)[1].split("/")[0])
    answer = _raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: " + length
                           + b"\r\n\r\n{}")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == 400


def test_a_body_shorter_than_its_content_length_is_a_400(server, monkeypatch):
    monkeypatch.setattr(server_module, "_BODY_TIMEOUT_S", 0.2)
    srv = server()
    port = int(srv.base_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100"
                     b"\r\n\r\n{\"messages\": []")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert srv.stats.bad_bodies == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_prompt_mode_answers_the_schema_written_in_the_prompt(server, dialect):
    srv = server(dialect=dialect)
    in_system = [{"role": "system", "content": "You write tools.\n" + render_schema_block(SCHEMA)},
                 USER]
    answer = choice(chat(srv.base_url, messages=in_system))
    assert ToolSpec.model_validate_json(answer["message"]["content"])
    in_user = [{"role": "user", "content": USER["content"] + "\n\n" + render_schema_block(SCHEMA)}]
    answer = choice(chat(srv.base_url, messages=in_user))
    assert ToolSpec.model_validate_json(answer["message"]["content"])
    plain = choice(chat(srv.base_url))  # no schema anywhere: text, as before
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain["message"]["content"])


@pytest.mark.parametrize("dialect", ["openai", "vllm", "llama-cpp-python"])
def test_plain_json_object_uses_the_prompt_schema_or_any_object(server, dialect):
    srv = server(dialect=dialect)
    prompted = [{"role": "system", "content": render_schema_block(SCHEMA)}, USER]
    answer = choice(chat(srv.base_url, messages=prompted, response_format=JSON_OBJECT))
    assert ToolSpec.model_validate_json(answer["message"]["content"])
    anything = choice(chat(srv.base_url, response_format=JSON_OBJECT))
    assert isinstance(json.loads(anything["message"]["content"]), dict)


def test_openai_strict_names_the_first_unsupported_keyword_as_openai_does(server):
    srv = server(dialect="openai-strict")
    refused = chat(srv.base_url, response_format=JSON_SCHEMA)
    message = error_of(refused, "openai-strict")["message"]
    assert refused.status_code == 400 and "'minLength' is not permitted" in message
    assert message.startswith("Invalid schema for response_format 'ToolSpec': In context=(")
    tool = chat(srv.base_url, tools=[TOOL], tool_choice=NAMED)
    assert "Invalid schema for function 'ToolSpec'" in error_of(tool, "openai-strict")["message"]
    supported = strip_keywords(SCHEMA, frozenset({"minLength"}))
    assert choice(chat(srv.base_url, tools=[{**TOOL, "function": {
        "name": "ToolSpec", "parameters": supported}}], tool_choice=NAMED))



@pytest.mark.parametrize("tools", [True, 1, "x", {"function": {}}])
def test_openai_strict_refuses_tools_that_are_not_a_list_without_a_server_error(server, tools):
    """A ``tools`` value that is no list gets the base dialect's 4xx, not a 500 (the strict
    dialect's schema check once iterated it)."""
    srv = server(dialect="openai-strict")
    answer = chat(srv.base_url, tools=tools, tool_choice="auto")
    assert 400 <= answer.status_code < 500, answer.text[:300]

# -- faults ----------------------------------------------------------------------------------

def test_retry_after_on_429_and_503_only(server):
    srv = server(error_rate=1.0, error_statuses=(429, 503, 500), retry_after_s=7, dialect="ollama")
    seen = {}
    for _ in range(40):
        response = chat(srv.base_url)
        seen[response.status_code] = response.headers.get("retry-after")
        assert error_of(response, "ollama")["message"] == f"injected fault {response.status_code}"
    assert seen == {429: "7", 503: "7", 500: None}
    quiet = server(error_rate=1.0, fault_seed=3)
    assert "retry-after" not in chat(quiet.base_url).headers


def test_unknown_dialect_and_negative_retry_after_are_refused():
    with pytest.raises(PersonahubError, match="--dialect"):
        ServerOptions(dialect="tgi")
    with pytest.raises(PersonahubError, match="--retry-after"):
        ServerOptions(retry_after_s=-1)


# -- through the openai SDK ------------------------------------------------------------------

def test_openai_sdk_sees_each_refusal_as_its_error_class(server):
    llama = openai.OpenAI(base_url=server(dialect="llama-cpp-python").base_url, api_key="x",
                          max_retries=0)
    with pytest.raises(openai.InternalServerError, match="response_format"):
        llama.chat.completions.create(model="m", messages=[USER], response_format=JSON_SCHEMA)
    tools_only = openai.OpenAI(base_url=server(dialect="tools-only").base_url, api_key="x",
                               max_retries=0)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        tools_only.chat.completions.create(model="m", messages=[USER],
                                           response_format=JSON_OBJECT)
    reply = tools_only.chat.completions.create(model="m", messages=[USER], tools=[TOOL],
                                               tool_choice=NAMED, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"


def test_openai_sdk_retries_503s_that_carry_retry_after(server):
    # a fractional Retry-After (0.01 s) keeps the SDK from its own, longer backoff
    srv = server(error_rate=0.5, error_statuses=(503,), retry_after_s=0.01, fault_seed=1)
    client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=8)
    for _ in range(10):
        assert client.chat.completions.create(model="m", messages=[USER]).choices[0].message
    assert srv.stats.errors > 0 and srv.stats.answered == 10


@pytest.mark.parametrize("dialect", ["openai", "vllm", "ollama"])
def test_odd_request_shapes_get_an_error_not_a_dropped_connection(server, dialect):
    srv = server(dialect=dialect)
    response = chat(srv.base_url, tools=["not a tool"], tool_choice="required")
    assert response.status_code in (400, 500)
    assert error_of(response, dialect)["message"]


def test_serve_refuses_an_unknown_dialect_in_one_line():
    from typer.testing import CliRunner

    from personahub.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--port", "0", "--dialect", "tgi"])
    assert result.exit_code == 2  # a usage error
    assert result.stderr.strip().startswith("error: --dialect 'tgi': use one of openai")


def test_chunked_bodies_are_read(server):
    srv = server()
    body = json.dumps({"model": "m", "messages": [USER], "response_format": JSON_SCHEMA}).encode()
    chunks = iter([body[:10], body[10:]])  # a generator body makes httpx send it chunked
    response = _HTTP.post(f"{srv.base_url}/chat/completions", content=chunks,
                          headers={"Content-Type": "application/json"})
    assert ToolSpec.model_validate_json(choice(response)["message"]["content"])
