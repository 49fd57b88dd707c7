"""How a JSON schema is asked of a server: the one place that knows the structured-output modes.

Modes: ``json_schema``, ``json_object`` with a schema, ``tools`` and ``prompt``. ``auto`` steps
down per endpoint when a server refuses or ignores a mode; schema keywords refused by name are
stripped from then on, and what was sent is recorded."""

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
# Answers with no JSON at all, in a row and before any valid one, after which ``auto`` decides the
# server ignores the mode (one may be the model's fault).
IGNORED_FORMAT_LIMIT = 2
# Words in a refusal's message that say which part of the request the server objects to.
_MODE_WORDS: dict[str, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema", "response format"),
    "json_object": ("response_format", "json_object", "response format"),
    "tools": ("tool",),
    "prompt": (),
}
REFUSAL_STATUSES = frozenset({400, 422, 500})
# The line that introduces the schema in ``prompt`` mode; the loopback server looks for the fenced
# JSON block after it.
SCHEMA_PROMPT_LEAD = "Reply with only one JSON object that matches this JSON schema:"


# JSON Schema keywords a server may refuse by name, quoted as OpenAI words it ("'maxLength' is not
# permitted"); only keywords a schema works without
SCHEMA_KEYWORDS: tuple[str, ...] = (
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "default",
    "minProperties", "maxProperties", "patternProperties", "propertyNames", "examples",
    "discriminator")
_KEYWORD = re.compile(r"""['"`](""" + "|".join(SCHEMA_KEYWORDS) + r""")['"`]""")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_WITHOUT = " without "  # joins a mode and the keywords it was sent without


def check_setting(value: str) -> StructuredSetting:
    """``value`` if it names a structured-output setting, else a one-line error."""
    from personahub.core.errors import UsageError

    if value not in STRUCTURED_SETTINGS:
        raise UsageError(f"--structured {value!r}: use one of {', '.join(STRUCTURED_SETTINGS)}")
    return value  # type: ignore[return-value]


NO_KEYWORDS: frozenset[str] = frozenset()


@lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel], stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, Any]:
    """The class's JSON schema without the ``stripped`` keywords (cached: building it costs)."""
    built = schema.model_json_schema()
    return strip_keywords(built, stripped) if stripped else built


def strip_keywords(node: object, keywords: frozenset[str], *, describe: bool = True) -> Any:
    """A JSON schema without ``keywords`` (property names kept); a stripped bound goes into the
    description when ``describe``."""
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
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
    """The JSON Schema keywords a refusal's message names."""
    if status not in REFUSAL_STATUSES:
        return NO_KEYWORDS
    return frozenset(_KEYWORD.findall(text))


def sent_mode(mode: StructuredMode, stripped: frozenset[str]) -> str:
    """What ``llm_calls.structured_mode`` records: the mode, and the keywords it went without."""
    return f"{mode}{_WITHOUT}{', '.join(sorted(stripped))}" if stripped else mode


def mode_of(recorded: str) -> StructuredMode:
    """The mode of a recorded ``structured_mode``."""
    return recorded.split(_WITHOUT, 1)[0]  # type: ignore[return-value]


def stripped_of(recorded: str) -> frozenset[str]:
    """The keywords a recorded ``structured_mode`` was sent without."""
    _, _, keywords = recorded.partition(_WITHOUT)
    return frozenset(k.strip() for k in keywords.split(",") if k.strip())


@lru_cache(maxsize=512)
def response_format(schema: type[BaseModel], mode: StructuredMode,
                    stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, Any] | None:
    """The ``response_format`` body value for ``mode`` (None when the mode sends none)."""
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema_json(schema, stripped)}}
    if mode == "json_object":
        return {"type": "json_object", "schema": grammar_safe(schema_json(schema, stripped))}
    return None


# llama-cpp-python writes ``maxLength: N`` as N nested grammar groups; llama.cpp's parser fails at
# ~1,500 (369 parsed) and the server then segfaults. So this mode caps string bounds; a lower bound
# only ends the string sooner.
GRAMMAR_SAFE_MAX_LENGTH = 360


def grammar_safe(node: object) -> Any:
    """``node`` with every ``maxLength`` at most ``GRAMMAR_SAFE_MAX_LENGTH``, shaped patterns too."""
    if isinstance(node, list):
        return [grammar_safe(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: grammar_safe(value) for key, value in node.items()}
    if isinstance(out.get("maxLength"), int) and out["maxLength"] > GRAMMAR_SAFE_MAX_LENGTH:
        if isinstance(out.get("pattern"), str):  # a shaped string's pattern holds its bound too
            out["pattern"] = with_bound(out["pattern"], out["maxLength"] - GRAMMAR_SAFE_MAX_LENGTH)
        out["maxLength"] = GRAMMAR_SAFE_MAX_LENGTH
        low = out.get("minLength")
        if isinstance(low, int) and low > GRAMMAR_SAFE_MAX_LENGTH:
            out["minLength"] = GRAMMAR_SAFE_MAX_LENGTH
    return out


@lru_cache(maxsize=256)
def openai_tools(schema: type[BaseModel],
                 stripped: frozenset[str] = NO_KEYWORDS) -> list[dict[str, Any]]:
    """``schema`` as a one-tool list for tool calling (cached; read, never changed)."""
    tool = convert_to_openai_tool(schema)
    if stripped:
        function = tool["function"]
        tool = {**tool, "function": {**function, "parameters": strip_keywords(
            function.get("parameters", {}), stripped)}}
    return [tool]


def tool_choice(schema: type[BaseModel]) -> dict[str, Any]:
    """``tool_choice`` forcing the one tool."""
    return {"type": "function", "function": {"name": openai_tools(schema)[0]["function"]["name"]}}


@lru_cache(maxsize=256)
def schema_instruction(schema: type[BaseModel], stripped: frozenset[str] = NO_KEYWORDS) -> str:
    """The text ``prompt`` mode adds to the last user message."""
    return render_schema_block(schema_json(schema, stripped), intro=SCHEMA_PROMPT_LEAD)


def prepare_messages(mode: StructuredMode, schema: type[BaseModel],
                     messages: Sequence[BaseMessage],
                     stripped: frozenset[str] = NO_KEYWORDS) -> list[BaseMessage]:
    """The conversation as sent in ``mode``: ``prompt`` appends the schema to the last user turn."""
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
    """The JSON text of an answer: the tool call's arguments in ``tools`` mode, else the content."""
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
    """True when an HTTP error refuses ``mode`` itself (so another mode may succeed)."""
    if status not in REFUSAL_STATUSES:
        return False
    lowered = text.lower()
    return any(word in lowered for word in _MODE_WORDS[mode])


def next_mode(mode: StructuredMode) -> StructuredMode | None:
    """The mode ``auto`` tries after ``mode`` (None after the last)."""
    index = AUTO_ORDER.index(mode)
    return AUTO_ORDER[index + 1] if index + 1 < len(AUTO_ORDER) else None


class ModeBook:
    """The structured-output mode in use per endpoint, learned once and kept for the run.

    Thread-safe: calls in flight refused at once move an endpoint down one mode, not one each."""

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
        """True for ``auto``."""
        return self.setting == "auto"

    def settled(self, endpoint: int) -> bool:
        """True once ``endpoint``'s mode is known to work (or was fixed by the setting)."""
        return self._settled[endpoint]

    def mode(self, endpoint: int) -> StructuredMode:
        """The mode to ask ``endpoint`` in now."""
        return self._modes[endpoint]

    def modes(self) -> list[str]:
        """Every endpoint's current mode (for the run's config)."""
        return list(self._modes)

    def stripped(self, endpoint: int) -> frozenset[str]:
        """The schema keywords ``endpoint`` refused (left out of what is sent to it)."""
        return self._stripped[endpoint]

    def strip(self, endpoint: int, refused: frozenset[str], sent: frozenset[str]) -> bool:
        """Note that ``endpoint`` refused the keywords ``refused``; True when leaving them out too makes a
        different request (ask again at once)."""
        if not refused or refused <= sent:
            return False  # already left out when it was refused: not what the server objects to
        with self._lock:
            self._stripped[endpoint] = self._stripped[endpoint] | refused
        return True

    def step_down(self, endpoint: int, refused: StructuredMode) -> StructuredMode | None:
        """``refused`` failed on ``endpoint``: the mode to use now, or None when none is left."""
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
        """Note an answer in ``mode``; the mode to move to when the server ignores this one."""
        with self._lock:
            if self._settled[endpoint] or self._modes[endpoint] != mode:
                return None
            if has_json:
                self._settled[endpoint] = True  # this mode works here: keep it for the run
                return None
            self._ignored[endpoint] += 1
            if self._ignored[endpoint] < IGNORED_FORMAT_LIMIT:
                return None
        return self.step_down(endpoint, mode)
