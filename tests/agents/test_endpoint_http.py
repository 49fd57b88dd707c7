"""``generate``: the chat model's answer without a callback run when nothing listens, through
``ainvoke`` when something does (tracing, a handler from the environment, a parent run)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

from personahub.models import endpoint_http
from personahub.models.endpoint_http import generate
from personahub.models.openai_wire import pass_through_clients

_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "system_fingerprint": "fp-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"a\": 1}"},
                 "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
MESSAGES = [SystemMessage("You are a baker."), HumanMessage("Write one line.")]
KWARGS = {"extra_body": {"max_tokens": 9, "response_format": {"type": "json_object"}}}


def _model() -> tuple[ChatOpenAI, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_COMPLETION)

    root = AsyncOpenAI(api_key="sk-test", base_url="http://example.test/v1", max_retries=0,
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    return ChatOpenAI(model="m", api_key="sk-test", max_retries=0, **pass_through_clients(root)), seen


class Listening(AsyncCallbackHandler):
    """Counts the chat model runs it is told about."""

    def __init__(self) -> None:
        self.starts = 0
        self.ends = 0

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1

    async def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.ends += 1


def test_the_direct_answer_is_the_message_ainvoke_returns() -> None:
    """Same request on the wire, same content, usage and response metadata (finish reason,
    model, token usage, fingerprint), whichever way the model is asked."""
    async def both() -> tuple[Any, Any, list[httpx.Request], list[httpx.Request]]:
        invoked, invoked_seen = _model()
        direct, direct_seen = _model()
        return (await invoked.ainvoke(MESSAGES, **KWARGS),
                await generate(direct, MESSAGES, KWARGS, callbacks=False),
                invoked_seen, direct_seen)

    want, have, want_seen, have_seen = asyncio.run(both())
    assert have_seen[0].content == want_seen[0].content
    assert have.content == want.content == '{"a": 1}'
    assert have.usage_metadata == want.usage_metadata and have.usage_metadata["total_tokens"] == 5
    assert have.response_metadata == want.response_metadata
    assert have.response_metadata["finish_reason"] == "length"
    assert have.response_metadata["system_fingerprint"] == "fp-1"


def test_with_callbacks_configured_the_call_is_a_langchain_run() -> None:
    handler = Listening()

    async def ask() -> Any:
        model, _ = _model()
        model.callbacks = [handler]
        return await generate(model, MESSAGES, KWARGS, callbacks=True)

    assert asyncio.run(ask()).content == '{"a": 1}'
    assert (handler.starts, handler.ends) == (1, 1)


def test_inside_a_run_with_callbacks_the_call_joins_that_run() -> None:
    """A traced LangGraph node (any runnable given callbacks) still sees its model calls."""
    handler = Listening()

    async def node(_: Any) -> Any:
        model, _ = _model()
        return await generate(model, MESSAGES, KWARGS, callbacks=False)

    async def ask() -> Any:
        return await RunnableLambda(node).ainvoke(None, config={"callbacks": [handler]})

    assert asyncio.run(ask()).content == '{"a": 1}'
    assert (handler.starts, handler.ends) == (1, 1)


def test_nothing_listening_opens_no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without callbacks the model's callback machinery is not entered at all."""
    entered: list[str] = []

    async def ainvoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        entered.append("ainvoke")
        raise AssertionError("ainvoke called")

    monkeypatch.setattr(ChatOpenAI, "ainvoke", ainvoke)

    async def ask() -> Any:
        model, seen = _model()
        message = await generate(model, MESSAGES, KWARGS, callbacks=False)
        return message, seen

    message, seen = asyncio.run(ask())
    assert message.content == '{"a": 1}' and len(seen) == 1 and entered == []


def test_a_handler_registered_through_the_environment_counts_as_callbacks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Integrations (LangSmith tracing among them) register a handler that an environment
    variable switches on; an endpoint then asks through ``ainvoke``."""
    from contextvars import ContextVar

    from langchain_core.tracers.context import register_configure_hook

    assert not endpoint_http._callbacks_configured()
    hook: ContextVar[Listening | None] = ContextVar("personahub_test_hook", default=None)
    register_configure_hook(hook, inheritable=True, handle_class=Listening,
                            env_var="PERSONAHUB_TEST_CALLBACK_HOOK")
    monkeypatch.setenv("PERSONAHUB_TEST_CALLBACK_HOOK", "true")
    assert endpoint_http._callbacks_configured()
    monkeypatch.delenv("PERSONAHUB_TEST_CALLBACK_HOOK")
    assert not endpoint_http._callbacks_configured()
