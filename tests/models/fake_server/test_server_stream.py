"""The loopback server as OpenAI-compatible servers are: streams, ``n`` choices, ``/models``.

Checked through the openai SDK itself (sync and async clients), the way users' own clients
reach ``personahub serve``.
"""

import asyncio
import base64
import json

import httpx
import numpy as np
import openai
import pytest

from personahub.models.fake_server.stream import completion_chunks
from personahub.tasks.tool_spec import ToolSpec

MESSAGES = [{"role": "user", "content": "## Persona\nA potter who teaches night classes\n## Task\nGo"}]
TOOL = {"type": "function", "function": {"name": "ToolSpec",
                                         "parameters": ToolSpec.model_json_schema()}}


def sdk(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=10)


def test_sync_stream_gets_the_plain_call_text(server):
    client = sdk(server())
    plain = client.chat.completions.create(model="offline", messages=MESSAGES)
    chunks = list(client.chat.completions.create(model="offline", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert plain.choices[0].message.content and text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 3  # role, several content deltas, finish
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_async_stream_gets_the_plain_call_text_and_usage(server):
    srv = server()
    form = {"type": "json_schema", "json_schema": {"name": "ToolSpec",
                                                   "schema": ToolSpec.model_json_schema()}}

    async def both() -> tuple[str, str, object]:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        async with client:
            plain = await client.chat.completions.create(model="offline", messages=MESSAGES,
                                                         response_format=form)
            stream = await client.chat.completions.create(
                model="offline", messages=MESSAGES, response_format=form, stream=True,
                stream_options={"include_usage": True})
            parts, usage = [], None
            async for chunk in stream:
                parts.extend(c.delta.content or "" for c in chunk.choices)
                usage = chunk.usage or usage
        return plain.choices[0].message.content or "", "".join(parts), (plain.usage, usage)

    plain, streamed, (plain_usage, stream_usage) = asyncio.run(both())
    assert ToolSpec.model_validate_json(streamed) and streamed == plain
    # the same prompt again: the emulated prefix cache reuses all of it but its last token
    assert stream_usage.prompt_tokens_details.cached_tokens == plain_usage.prompt_tokens - 1
    assert stream_usage.model_dump(exclude={"prompt_tokens_details"}) == \
        plain_usage.model_dump(exclude={"prompt_tokens_details"})


def test_stream_carries_tool_calls_as_the_api_does(server):
    client = sdk(server())
    plain = client.chat.completions.create(model="offline", messages=MESSAGES, tools=[TOOL],
                                           tool_choice="required")
    chunks = list(client.chat.completions.create(model="offline", messages=MESSAGES,
                                                 tools=[TOOL], tool_choice="required",
                                                 stream=True))
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    call = plain.choices[0].message.tool_calls[0]
    assert deltas[0].id == call.id and deltas[0].function.name == "ToolSpec"
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert ToolSpec.model_validate(json.loads(call.function.arguments))


def test_stream_ends_with_done_and_keeps_the_connection(server):
    srv = server()
    with httpx.Client(timeout=10) as http:
        for _ in range(2):  # the second request reuses the connection the stream left open
            reply = http.post(f"{srv.base_url}/chat/completions",
                              json={"model": "offline", "messages": MESSAGES, "stream": True})
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = [line for line in reply.text.split("\n\n") if line]
            assert events[-1] == "data: [DONE]"
            assert all(e.startswith("data: ") for e in events)


def test_stream_faults_are_http_errors_before_the_stream(server):
    client = sdk(server(error_rate=1.0, error_statuses=(503,)))
    with pytest.raises(openai.InternalServerError):
        list(client.chat.completions.create(model="offline", messages=MESSAGES, stream=True))


def test_n_gives_distinct_deterministic_choices_the_first_as_before(server):
    client = sdk(server())
    one = client.chat.completions.create(model="offline", messages=MESSAGES)
    two = client.chat.completions.create(model="offline", messages=MESSAGES, n=2)
    again = client.chat.completions.create(model="offline", messages=MESSAGES, n=2)
    texts = [c.message.content for c in two.choices]
    assert [c.index for c in two.choices] == [0, 1]
    assert texts[0] == one.choices[0].message.content and texts[0] != texts[1]
    assert texts == [c.message.content for c in again.choices]
    streamed = ["", ""]
    for chunk in client.chat.completions.create(model="offline", messages=MESSAGES, n=2,
                                                stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == texts
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="offline", messages=MESSAGES, n=0)


def test_dialects_without_n_answer_one_choice(server):
    reply = httpx.post(f"{server(dialect='ollama').base_url}/chat/completions",
                       json={"model": "offline", "messages": MESSAGES, "n": 3}).json()
    assert len(reply["choices"]) == 1


def test_models_lists_the_configured_names_and_refuses_others(server):
    client = sdk(server(models=("qwen2.5", "org/served-model")))
    assert [m.id for m in client.models.list()] == ["qwen2.5", "org/served-model"]
    assert client.models.retrieve("org/served-model").id == "org/served-model"
    reply = client.chat.completions.create(model="qwen2.5", messages=MESSAGES)
    assert reply.model == "qwen2.5" and reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gpt-4o", input="a potter")


def test_unconfigured_server_lists_offline_and_answers_any_name(server):
    client = sdk(server())
    assert [m.id for m in client.models.list()] == ["offline"]
    assert client.chat.completions.create(model="anything", messages=MESSAGES).model == "anything"


def test_chunks_of_a_body_without_usage_request_carry_no_usage_chunk():
    body = {"id": "x", "created": 0, "model": "m", "usage": {"total_tokens": 1},
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "abc"}}]}
    chunks = list(completion_chunks(body, piece_chars=2))
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "ab", "c", None]
    assert all("usage" not in c for c in chunks)


def test_embeddings_in_base64_decode_to_the_float_vectors(server):
    client = sdk(server())
    floats = client.embeddings.create(model="offline", input=["a potter", "a nurse"])
    encoded = client.embeddings.create(model="offline", input=["a potter", "a nurse"],
                                       encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(e.embedding), "<f4") for e in encoded.data]
    assert np.allclose(decoded, [e.embedding for e in floats.data], atol=1e-6)
