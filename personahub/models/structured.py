"""How a JSON schema is asked of a server: the one place that knows the structured-output modes.

Auto mode steps down per endpoint when a server refuses or ignores a mode, and strips refused
keywords.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from personahub.models.bounds import with_bound
from personahub.models.prompt_schema import render_schema_block

StructuredMode = Literal["json_schema", "json_object", "tools", "prompt"]
StructuredSetting = Literal["auto", "json_schema", "json_object", "tools", "prompt"]
STRUCTURED_SETTINGS: tuple[str, ...] = ("auto", "json_schema", "json_object", "tools", "prompt")
AUTO_ORDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "tools", "prompt")
# no-JSON answers in a row, before any valid one, after which auto decides the server ignores the mode
IGNORED_FORMAT_LIMIT = 2
# words in a refusal saying which part of the request the server objects to
_MODE_WORDS: dict[str, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema", "response format"),
    "json_object": ("response_format", "json_object", "response format"),
    "tools": ("tool",),
    "prompt": (),
}
REFUSAL_STATUSES = frozenset({400, 422, 500})
# the loopback server looks for the JSON after this line
SCHEMA_PROMPT_LEAD = "Reply with only one JSON object that matches this JSON schema:"


# keywords a server may refuse by name ("'maxLength' is not permitted") and a schema works without
SCHEMA_KEYWORDS: tuple[str, ...] = (
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "default",
    "minProperties", "maxProperties", "patternProperties", "propertyNames", "examples",
    "discriminator")
_KEYWORD = re.compile(r"""['"`](""" + "|".join(SCHEMA_KEYWORDS) + r""")['"`]""")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_WITHOUT = " without "


def check_setting(value: str) -> StructuredSetting:
    from personahub.core.errors import UsageError

    if value not in STRUCTURED_SETTINGS:
        raise UsageError(f"--structured {value!r}: use one of {', '.join(STRUCTURED_SETTINGS)}")
    return value  # type: ignore[return-value]


NO_KEYWORDS: frozenset[str] = frozenset()


@lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel], stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, object]:
    """Return the class's JSON schema without stripped keywords (cached)."""
    built = schema.model_json_schema()
    return _strip_node(built, stripped, describe=True) if stripped else built


def strip_keywords(node: object, keywords: frozenset[str], *, describe: bool = True) -> object:
    """Return a JSON schema without some keywords."""
    if not isinstance(node, Mapping):
        return node
    return _strip_node(node, keywords, describe=describe)


def _strip_node(node: Mapping[str, object], keywords: frozenset[str], *,
                describe: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if key in keywords:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: strip_keywords(sub, keywords, describe=describe)
                        for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strip_keywords(sub, keywords, describe=describe) for sub in value]
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = strip_keywords(value, keywords, describe=describe)
        else:
            out[key] = value
    limits = [f"at most {node[k]} {unit}" for k, unit in (("maxLength", "characters"),
                                                          ("maxItems", "items"))
              if describe and k in keywords and isinstance(node.get(k), int)]
    if limits:
        said = str(node.get("description") or "").strip()
        out["description"] = f"{said} ({', '.join(limits)})" if said else ", ".join(limits)
    return out


def refused_keywords(status: int | None, text: str) -> frozenset[str]:
    if status not in REFUSAL_STATUSES:
        return NO_KEYWORDS
    return frozenset(_KEYWORD.findall(text))


def sent_mode(mode: StructuredMode, stripped: frozenset[str]) -> str:
    """Return the recorded structured mode: the mode and the keywords it went without."""
    return f"{mode}{_WITHOUT}{', '.join(sorted(stripped))}" if stripped else mode


def mode_of(recorded: str) -> StructuredMode:
    return recorded.split(_WITHOUT, 1)[0]  # type: ignore[return-value]


def stripped_of(recorded: str) -> frozenset[str]:
    _, _, keywords = recorded.partition(_WITHOUT)
    return frozenset(k.strip() for k in keywords.split(",") if k.strip())


@lru_cache(maxsize=512)
def response_format(schema: type[BaseModel], mode: StructuredMode,
                    stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, object] | None:
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema_json(schema, stripped)}}
    if mode == "json_object":
        return {"type": "json_object", "schema": grammar_safe(schema_json(schema, stripped))}
    return None


# llama-cpp-python writes a maxLength of N as N nested grammar groups; llama.cpp's parser fails at
# about 1,500 and the server segfaults, so this mode caps string bounds.
GRAMMAR_SAFE_MAX_LENGTH = 360


def grammar_safe(node: object) -> object:
    if isinstance(node, list):
        return [grammar_safe(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: grammar_safe(value) for key, value in node.items()}
    longest, pattern = out.get("maxLength"), out.get("pattern")
    if isinstance(longest, int) and longest > GRAMMAR_SAFE_MAX_LENGTH:
        if isinstance(pattern, str):
            out["pattern"] = with_bound(pattern, longest - GRAMMAR_SAFE_MAX_LENGTH)
        out["maxLength"] = GRAMMAR_SAFE_MAX_LENGTH
        low = out.get("minLength")
        if isinstance(low, int) and low > GRAMMAR_SAFE_MAX_LENGTH:
            out["minLength"] = GRAMMAR_SAFE_MAX_LENGTH
    return out


@lru_cache(maxsize=256)
def openai_tools(schema: type[BaseModel],
                 stripped: frozenset[str] = NO_KEYWORDS) -> list[dict[str, Any]]:
    tool = convert_to_openai_tool(schema)
    if stripped:
        function = tool["function"]
        tool = {**tool, "function": {**function, "parameters": strip_keywords(
            function.get("parameters", {}), stripped)}}
    return [tool]


def tool_choice(schema: type[BaseModel]) -> dict[str, object]:
    return {"type": "function", "function": {"name": openai_tools(schema)[0]["function"]["name"]}}


@lru_cache(maxsize=256)
def schema_instruction(schema: type[BaseModel], stripped: frozenset[str] = NO_KEYWORDS) -> str:
    return render_schema_block(schema_json(schema, stripped), intro=SCHEMA_PROMPT_LEAD)


def prepare_messages(mode: StructuredMode, schema: type[BaseModel],
                     messages: Sequence[BaseMessage],
                     stripped: frozenset[str] = NO_KEYWORDS) -> list[BaseMessage]:
    """Return the conversation as sent in a mode."""
    if mode != "prompt":
        return list(messages)
    out = list(messages)
    instruction = schema_instruction(schema, stripped)
    if out and isinstance(out[-1], HumanMessage) and isinstance(out[-1].content, str):
        out[-1] = HumanMessage(f"{out[-1].content}\n\n{instruction}")
    else:
        out.append(HumanMessage(instruction))
    return out


def answer_text(message: AIMessage, mode: StructuredMode) -> str:
    if mode == "tools":
        if message.tool_calls:
            return json.dumps(message.tool_calls[0]["args"])
        invalid = getattr(message, "invalid_tool_calls", None)
        if invalid:
            return str(invalid[0].get("args") or "")
    content = message.content
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def names_mode(mode: StructuredMode, status: int | None, text: str) -> bool:
    """Return True when an HTTP error refuses the mode itself."""
    if status not in REFUSAL_STATUSES:
        return False
    lowered = text.lower()
    return any(word in lowered for word in _MODE_WORDS[mode])


def next_mode(mode: StructuredMode) -> StructuredMode | None:
    index = AUTO_ORDER.index(mode)
    return AUTO_ORDER[index + 1] if index + 1 < len(AUTO_ORDER) else None


class ModeBook:
    """The structured-output mode per endpoint, learned once for the run; thread-safe, so calls refused at
    once move an endpoint down one mode, not one each.
    """

    def __init__(self, setting: StructuredSetting, endpoints: int) -> None:
        self.setting = setting
        first: StructuredMode = AUTO_ORDER[0] if setting == "auto" else setting
        self._modes: list[StructuredMode] = [first] * max(1, endpoints)
        self._ignored = [0] * max(1, endpoints)
        self._settled = [setting != "auto"] * max(1, endpoints)
        self._stripped: list[frozenset[str]] = [NO_KEYWORDS] * max(1, endpoints)
        self._lock = threading.Lock()

    @property
    def adaptive(self) -> bool:
        return self.setting == "auto"

    def settled(self, endpoint: int) -> bool:
        return self._settled[endpoint]

    def mode(self, endpoint: int) -> StructuredMode:
        return self._modes[endpoint]

    def modes(self) -> list[str]:
        return list(self._modes)

    def stripped(self, endpoint: int) -> frozenset[str]:
        return self._stripped[endpoint]

    def strip(self, endpoint: int, refused: frozenset[str], sent: frozenset[str]) -> bool:
        """Note refused keywords; True when leaving them out makes a different request."""
        if not refused or refused <= sent:
            return False
        with self._lock:
            self._stripped[endpoint] = self._stripped[endpoint] | refused
        return True

    def step_down(self, endpoint: int, refused: StructuredMode) -> StructuredMode | None:
        """Return the mode to use after a refusal, or None when none is left."""
        with self._lock:
            if not self.adaptive:
                return None
            current = self._modes[endpoint]
            if current != refused:
                return current
            following = next_mode(current)
            if following is None:
                return None
            self._modes[endpoint] = following
            self._ignored[endpoint] = 0
            return following

    def answered(self, endpoint: int, mode: StructuredMode, has_json: bool) -> StructuredMode | None:
        """Note an answer; returns the next mode when the server ignores this one."""
        with self._lock:
            if self._settled[endpoint] or self._modes[endpoint] != mode:
                return None
            if has_json:
                self._settled[endpoint] = True
                return None
            self._ignored[endpoint] += 1
            if self._ignored[endpoint] < IGNORED_FORMAT_LIMIT:
                return None
        return self.step_down(endpoint, mode)
