"""LangChain messages as OpenAI role/content dicts: the form the offline engine and the cache hash."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage


def to_openai_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, object]]:
    """Return LangChain messages as role/content dicts, in order."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    return [{"role": roles.get(m.type, m.type), "content": m.content} for m in messages]
