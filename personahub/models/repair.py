"""Validate a structured answer, repairing it locally before any model call is spent on it.

json-repair and pydantic's lax validation mend the usual slips. An answer cut at the token limit is
never repaired (that would pass half an answer as whole); one only past a bound is clipped at a word
boundary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from personahub.models.bounds import clip

T = TypeVar("T", bound=BaseModel)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Checked(Generic[T]):
    """The outcome of checking one answer: a value, or the reason there is none."""

    value: T | None
    error: str | None = None
    repaired: bool = False
    has_json: bool = True  # False when the text holds no JSON object at all


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {"msg": str(exc)}
    where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
    return f"{where}: {first.get('msg')}"[:300]


def _candidate(text: str) -> str | None:
    """Return the part of the text holding the JSON object: a fenced block's, or the outermost braces'. None
    when that object never closes: taking text up to the last brace once turned an answer cut after two of
    four turns into a valid two-turn answer.
    """
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    end = _closing_brace(text, start) if start >= 0 else None
    return None if end is None else text[start:end + 1]


def _closing_brace(text: str, start: int) -> int | None:
    """Return the index of the brace closing the one at start (braces in strings not counted), or None. Square
    brackets are json-repair's to mend.
    """
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _repaired_object(text: str) -> object:
    import json_repair

    candidate = _candidate(text)
    return None if candidate is None else json_repair.loads(candidate)


_TOO_LONG = ("string_too_long", "too_long")


def _clipped(schema: type[T], data: object, exc: ValidationError) -> T | None:
    """Return the data, valid once its over-long strings and lists are cut to their bounds, else None."""
    for _ in range(4):  # a list cut may leave errors inside the items it keeps: a few rounds
        errors = exc.errors()
        if not errors or any(e["type"] not in _TOO_LONG for e in errors):
            return None
        for error in errors:
            _clip_at(data, list(error["loc"]), int(error.get("ctx", {}).get("max_length", 0)))
        try:
            return schema.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _clip_at(data: Any, loc: list[Any], bound: int) -> None:
    """Cut the string or list at a location to its bound."""
    *path, last = loc or [None]
    for step in path:
        data = data[step]
    value = data[last]
    data[last] = clip(value, bound) if isinstance(value, str) else value[:bound]


def check_answer(schema: type[T], raw: str, *, truncated: bool = False) -> Checked[T]:
    """Validate a raw answer against a schema; on failure try a local repair."""
    if truncated:
        return Checked(None, "answer cut off at max_tokens (finish_reason=length)",
                       has_json="{" in raw)
    try:
        return Checked(schema.model_validate_json(raw))
    except ValidationError as exc:
        first = _first_error(exc)
        if all(e["type"] in _TOO_LONG for e in exc.errors()):
            try:
                value = _clipped(schema, json.loads(raw), exc)
            except (ValueError, LookupError, TypeError):
                value = None
            if value is not None:
                return Checked(value, repaired=True)
    if "{" not in raw:
        return Checked(None, f"no JSON object in the answer ({first})", has_json=False)
    try:
        data = _repaired_object(raw)
    except Exception:  # noqa: BLE001 - json-repair gives up in its own ways: keep the first error
        return Checked(None, first)
    if not isinstance(data, dict) or not data:
        return Checked(None, first)
    try:
        return Checked(schema.model_validate(data), repaired=True)
    except ValidationError as exc:
        clipped = _clipped(schema, data, exc)
        return Checked(clipped, repaired=True) if clipped is not None else Checked(None,
                                                                                  _first_error(exc))
