"""A finished completion body as the OpenAI API streams it: computed whole, then sent as server-sent
events in OpenAI's chunk shapes, so streaming clients see the same text a plain call returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

#: characters per content delta (a few tokens), so a client sees many deltas
PIECE_CHARS = 16


def wants_stream(request: Mapping[str, object]) -> bool:
    return request.get("stream") is True


def completion_chunks(body: Mapping[str, Any], *, include_usage: bool = False,
                      piece_chars: int = PIECE_CHARS) -> Iterator[dict[str, object]]:
    """Return the chunk objects that stream a completion body."""
    head = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"], "system_fingerprint": body.get("system_fingerprint")}

    def chunk(index: int, delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        extra = {"usage": None} if include_usage else {}
        return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], **extra}

    for choice in body["choices"]:
        index, message = choice["index"], choice["message"]
        calls = message.get("tool_calls") or []
        content = message.get("content")
        if calls:
            yield chunk(index, {"role": "assistant", "content": content or None, "refusal": None})
            for position, call in enumerate(calls):
                function = call["function"]
                yield chunk(index, {"tool_calls": [{
                    "index": position, "id": call["id"], "type": "function",
                    "function": {"name": function["name"], "arguments": ""}}]})
                for piece in _pieces(function["arguments"], piece_chars):
                    yield chunk(index, {"tool_calls": [{"index": position,
                                                        "function": {"arguments": piece}}]})
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in _pieces(content or "", piece_chars):
                yield chunk(index, {"content": piece})
        yield chunk(index, {}, choice["finish_reason"])
    if include_usage:
        yield {**head, "choices": [], "usage": body.get("usage")}


def sse_events(body: Mapping[str, object], *, include_usage: bool = False) -> Iterator[bytes]:
    """Return the stream of a body as server-sent event lines, DONE last."""
    for item in completion_chunks(body, include_usage=include_usage):
        yield b"data: " + json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n\n"
    yield b"data: [DONE]\n\n"


def include_usage(request: Mapping[str, object]) -> bool:
    """Whether the request's stream options ask for a usage chunk."""
    options = request.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start:start + size]
