"""Credentials stay with their endpoint; query values are redacted; other parameters forwarded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from personahub.agents.prompts.agent import agent_messages
from personahub.models.client import LLMClient, LLMConfigError, LLMSettings, redact_spec
from personahub.tasks.instruction import Instruction
from personahub.tasks.max_tokens import kind_max_tokens
from tests.http_stub import serving

SECRET = "sk-test-very-secret-value"


class _Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"headers": dict(self.headers), "path": self.path, "body": body})
        answer = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                 "role": "assistant",
                                 "content": json.dumps({"instruction": "How do tides work here?"})}}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 5,
                                       "total_tokens": 10}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def capture() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with serving(type("Handler", (_Capture,), {"seen": seen})) as url:
        yield url, seen


def call(spec: str) -> None:
    client = LLMClient(LLMSettings(spec=spec, structured="json_schema"))
    result = asyncio.run(client.structured(
        Instruction, agent_messages(persona="A ferry pilot", kind="instruction"), purpose="instruction",
        max_tokens=kind_max_tokens("instruction")))
    assert result.value is not None


def auth(seen: list[dict[str, Any]]) -> str:
    headers = {k.lower(): v for k, v in seen[-1]["headers"].items()}
    return headers.get("authorization", "")


def test_openai_key_is_not_sent_to_another_endpoint(capture, monkeypatch) -> None:
    url, seen = capture
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    call(f"{url}?model=m")
    assert SECRET not in auth(seen)
    assert SECRET not in json.dumps(seen)


def test_openai_key_goes_to_the_base_url_it_was_set_with(capture, monkeypatch) -> None:
    url, seen = capture
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    call(f"{url}?model=m")
    assert auth(seen) == f"Bearer {SECRET}"


def test_named_key_variable_is_sent(capture, monkeypatch) -> None:
    url, seen = capture
    monkeypatch.setenv("MY_SERVER_API_KEY", "local-key-123")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    call(f"{url}?model=m&api_key_env=MY_SERVER_API_KEY")
    assert auth(seen) == "Bearer local-key-123"


def test_unset_key_variable_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delenv("NOPE_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="api_key_env=NOPE_API_KEY names a variable that is not set"):
        LLMClient(LLMSettings(spec="http://127.0.0.1:9/v1?model=m&api_key_env=NOPE_API_KEY"))


@pytest.mark.parametrize("name", ["HOME", "PATH", "AWS_SECRET_ACCESS_KEY", "MY_KEY", "api_key",
                                  "X_API_KEY_EXTRA", "PERSONAHUB_KEY_"])
def test_only_key_variables_may_be_named(capture, monkeypatch, name) -> None:
    """api_key_env names a variable set for a key (``*_API_KEY``, ``PERSONAHUB_KEY_*``): any
    other variable would go out as a Bearer token. Refused before any request is made."""
    url, seen = capture
    monkeypatch.setenv(name, "not-a-key")
    with pytest.raises(LLMConfigError, match=f"api_key_env={name} is not a key variable"):
        LLMClient(LLMSettings(spec=f"{url}?model=m&api_key_env={name}"))
    assert not seen


@pytest.mark.parametrize("name", ["MY_SERVER_API_KEY", "together_api_key", "PERSONAHUB_KEY_VLLM"])
def test_key_variables_by_their_names_are_sent(capture, monkeypatch, name) -> None:
    url, seen = capture
    monkeypatch.setenv(name, "the-key")
    call(f"{url}?model=m&api_key_env={name}")
    assert auth(seen) == "Bearer the-key"


def test_no_key_over_plain_http_to_a_remote_host(monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVER_API_KEY", "k")
    with pytest.raises(LLMConfigError, match="refusing to send an API key over plain http"):
        LLMClient(LLMSettings(spec="http://models.example.org/v1?model=m&api_key_env=MY_SERVER_API_KEY"))
    # explicit consent, or https, is accepted
    LLMClient(LLMSettings(spec="http://models.example.org/v1?model=m&api_key_env=MY_SERVER_API_KEY"
                               "&allow_http_key=1"))
    LLMClient(LLMSettings(spec="https://models.example.org/v1?model=m&api_key_env=MY_SERVER_API_KEY"))


def test_other_query_parameters_are_forwarded_and_redacted(capture) -> None:
    url, seen = capture
    call(f"{url}?model=m&api-version=2024-06-01&sig=abc123")
    path = seen[-1]["path"]
    assert "api-version=2024-06-01" in path and "sig=abc123" in path
    assert "model=" not in path  # personahub's own parameters stay here
    redacted = redact_spec(f"{url}?model=m&api-version=2024-06-01&sig=abc123&api_key=zzz")
    assert "model=m" in redacted
    assert "abc123" not in redacted and "zzz" not in redacted and "2024-06-01" not in redacted


def test_every_request_carries_max_tokens(capture) -> None:
    url, seen = capture
    call(f"{url}?model=m")
    body = seen[-1]["body"]
    assert body["max_tokens"] == 256  # the instruction kind's default
    assert "max_completion_tokens" not in body


PASSWORD = "hunter2-not-to-be-echoed"


@pytest.mark.parametrize("url", [
    f"http://user:{PASSWORD}@127.0.0.1:{{port}}/v1?model=m",
    f"http://:{PASSWORD}@127.0.0.1:{{port}}/v1",
    f"http://127.0.0.1:9/v1,http://u:{PASSWORD}@127.0.0.1:{{port}}/v1",  # any URL of a list
])
def test_credentials_in_the_url_are_refused_up_front(capture, url) -> None:
    """``user:pw@`` in a --llm URL passed, then every call failed ("Cannot combine
    AUTHORIZATION header with AUTH argument"). ``doctor`` as a user runs it: exit 2, one line
    that says where a key belongs, no password in it, and no request reaches the server."""
    from tests.cli_helpers import invoke, usage_error

    base, seen = capture
    port = base.split(":")[2].split("/")[0]
    result = invoke("doctor", "--llm", url.format(port=port), "--budget", "1")
    line = usage_error(result)
    assert "credentials in the URL" in line and "api_key_env=NAME" in line
    assert PASSWORD not in result.output
    assert not seen


def test_credentials_in_openai_base_url_are_refused(monkeypatch) -> None:
    """``OPENAI_BASE_URL`` (for ``openai:MODEL``) is an endpoint URL too."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://u:{PASSWORD}@api.example.test/v1")
    with pytest.raises(LLMConfigError, match="OPENAI_BASE_URL https://\\*\\*\\*@api.example.test") as info:
        LLMClient(LLMSettings(spec="openai:gpt-4o-mini"))
    assert PASSWORD not in str(info.value)
