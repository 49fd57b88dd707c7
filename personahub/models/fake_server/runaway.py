"""The loopback server's runaway fault: an answer whose last string never ends.

As a small model under a grammar does, the last string repeats until the token limit unless the
schema bounds it; tokens are counted as the bounds assume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from personahub.models.bounds import CHARS_PER_TOKEN, JSON_CHARS_PER_TOKEN, estimate_tokens, json_chars
from personahub.models.offline import resolve_node

NO_LIMIT_TOKENS = 4096  # what a request without max_tokens runs to (a server's context)
_MARK = "@@personahub-runaway@@"
#: where a value sits in a JSON document: object keys and array indices, outermost first
JsonPath = list[str | int]


@dataclass(frozen=True)
class Runaway:
    """A runaway answer: its JSON text, whether it was cut at the limit, and its tokens."""

    text: str
    cut: bool
    tokens: int


def _last_string(value: object, schema: object,
                 root: Mapping[str, object]) -> tuple[JsonPath, Mapping[str, object]] | None:
    """Return the path to the last free string in a value (document order) and its schema node."""
    node = resolve_node(_node(schema), root) if schema else {}
    if isinstance(value, str):  # a choice (enum, const) cannot run on: the grammar ends it
        return None if "enum" in node or "const" in node else ([], node)
    found = None
    if isinstance(value, dict):
        props = _node(node.get("properties") or {})
        for key, item in value.items():
            inner = _last_string(item, props.get(key), root)
            if inner is not None:
                found = ([key, *inner[0]], inner[1])
    elif isinstance(value, list):
        items = node.get("items") if isinstance(node.get("items"), Mapping) else None
        for index, item in enumerate(value):
            inner = _last_string(item, items, root)
            if inner is not None:
                found = ([index, *inner[0]], inner[1])
    return found


def _node(schema: object) -> Mapping[str, object]:
    """Read a schema node as a mapping; another value is no node and fails as reading it would."""
    if not isinstance(schema, Mapping):
        raise AttributeError(f"a schema node is an object, not {type(schema).__name__}")
    return schema


def _child(value: object, step: str | int) -> object:
    """Return the member of an object or array at one step of a path."""
    if isinstance(value, dict):
        return value[step]
    if isinstance(value, list) and isinstance(step, int):
        return value[step]
    raise TypeError(f"no member {step!r} in a JSON {type(value).__name__}")


def _set(value: object, path: JsonPath, new: object) -> None:
    for step in path[:-1]:
        value = _child(value, step)
    last = path[-1]
    if isinstance(value, dict):
        value[last] = new
    elif isinstance(value, list) and isinstance(last, int):
        value[last] = new
    else:
        raise TypeError(f"no member {last!r} in a JSON {type(value).__name__}")


def run_away(value: object, schema: Mapping[str, object] | None,
             limit: int | None) -> Runaway | None:
    """Return the value with its last string run away under a token limit; None when it has no string."""
    limit = limit or NO_LIMIT_TOKENS
    root = schema or {}
    found = _last_string(value, schema, root)
    if found is None:
        return None
    path, node = found
    value = json.loads(json.dumps(value))
    found_text = _get(value, path)  # a string: the path leads to one
    original = found_text if isinstance(found_text, str) and found_text else "and so on"
    bound = node.get("maxLength")
    if isinstance(bound, int):  # the grammar ends the string at the bound, the JSON closes
        _set(value, path, _repeat(original, bound))
        tokens = estimate_tokens(value)
        if tokens <= limit:
            return Runaway(json.dumps(value, ensure_ascii=False), False, tokens)
    return _cut(value, path, original, limit)


def _get(value: object, path: JsonPath) -> object:
    for step in path:
        value = _child(value, step)
    return value


def _repeat(text: str, length: int) -> str:
    return ((text + " ") * (length // (len(text) + 1) + 1))[:length]


def _cut(value: object, path: JsonPath, original: str, limit: int) -> Runaway:
    """Return the answer cut where its repeating string reaches the limit: JSON left open."""
    _set(value, path, "")
    content, structure = json_chars(value)
    length = max(0, math.ceil((limit - structure / JSON_CHARS_PER_TOKEN) * CHARS_PER_TOKEN
                              - content))
    _set(value, path, _MARK)
    text = json.dumps(value, ensure_ascii=False)
    start = text.index(json.dumps(_MARK))
    repeated = json.dumps(_repeat(original, length), ensure_ascii=False)[1:-1]
    return Runaway(text[:start + 1] + repeated, True, limit)
