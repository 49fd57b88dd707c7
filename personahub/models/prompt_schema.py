"""How a prompt carries a JSON schema when the request has none (the client's prompt mode).

The schema is a fenced JSON block after a line naming "JSON schema", written here and read back
tolerantly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

SCHEMA_MARKER = "JSON schema"

_MARKER = re.compile(r"json[\s_-]*schema", re.IGNORECASE)
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_SCHEMA_KEYS = ("properties", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf")
_DECODER = json.JSONDecoder()


def render_schema_block(schema: Mapping[str, object],
                        intro: str = "Answer with one JSON object that fits this JSON schema:") -> str:
    """Render the prompt text that carries a schema (the intro must keep the words "JSON schema")."""
    if not _MARKER.search(intro):
        raise ValueError(f"the intro must name {SCHEMA_MARKER!r}: {intro!r}")
    text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))  # compact: fewer tokens
    return f"{intro}\n```json\n{text}\n```"


def message_text(content: object) -> str:
    """Return a message's text: the string itself, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(str(part.get("text") or "") for part in content
                         if isinstance(part, Mapping) and part.get("type") == "text")
    return ""


def find_prompt_schema(messages: Sequence[Mapping[str, object]]) -> dict[str, object] | None:
    """Find the JSON schema the messages carry, or None (do not mutate it)."""
    for text in _search_order(messages):
        schema = schema_in_text(text)
        if schema is not None:
            return schema
    return None


def _search_order(messages: Sequence[Mapping[str, object]]) -> list[str]:
    """Message texts in search order: last user, systems, then the rest."""
    indexed = list(enumerate(messages))
    users = [i for i, m in indexed if m.get("role") == "user"]
    first = users[-1:]
    systems = [i for i, m in reversed(indexed) if m.get("role") in ("system", "developer")]
    rest = [i for i, _ in reversed(indexed) if i not in first and i not in systems]
    return [message_text(messages[i].get("content")) for i in first + systems + rest]


@lru_cache(maxsize=1024)
def schema_in_text(text: str) -> dict[str, object] | None:
    """Return the schema one message text carries, or None (cached: prompts repeat)."""
    if "{" not in text:
        return None
    marker = _MARKER.search(text)
    after = marker.end() if marker else None
    fences = [(m.start(), m.group(1)) for m in _FENCE.finditer(text)]
    ordered = ([body for start, body in fences if start >= after] if after is not None else [])
    ordered += [body for start, body in fences if after is None or start < after]
    for body in ordered:
        schema = _first_schema(body, whole=True)
        if schema is not None:
            return schema
    if after is not None:
        return _first_schema(text[after:], whole=False)
    return None


def _first_schema(text: str, *, whole: bool) -> dict[str, object] | None:
    """Return the first JSON object in a text that looks like a schema."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        schema = _as_schema(value)
        if schema is not None:
            return schema
        if whole and value is not None:
            return None
        start = text.find("{", start + 1)
    return None


def _as_schema(value: object) -> dict[str, object] | None:
    if not isinstance(value, dict):
        return None
    for wrapper in ("json_schema", "schema"):
        inner = value.get(wrapper)
        if isinstance(inner, dict) and not _looks_like_schema(value):
            return _as_schema(inner)
    return value if _looks_like_schema(value) else None


def _looks_like_schema(value: Mapping[str, object]) -> bool:
    return any(key in value for key in _SCHEMA_KEYS) or value.get("type") in ("object", "array")
