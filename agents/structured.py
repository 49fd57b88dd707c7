"""How a JSON schema is asked of a server: the one place that knows the structured-output modes.

OpenAI-compatible servers differ in what they accept for structured output:

- ``json_schema`` — ``response_format={"type": "json_schema", ...}`` (OpenAI, vLLM, Ollama, llama.cpp
  ``llama-server``);
- ``json_object`` — ``response_format={"type": "json_object", "schema": ...}`` (llama-cpp-python
  turns the schema into a grammar; servers that ignore ``schema`` still return JSON);
- ``tools`` — one function tool with the schema as its parameters, and ``tool_choice`` naming it;
- ``prompt`` — no format parameter: the schema is written into the prompt and the answer is parsed
  locally (any chat server).

``auto`` starts with ``json_schema`` and steps down ``AUTO_ORDER`` on an endpoint when the server
refuses the mode (an HTTP 400/422/500 whose message names it) or when its answers ignore the
format (no JSON at all); the mode learned is kept per endpoint for the client's life (one run).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from personahub.agents.prompt_schema import render_schema_block
from pydantic import BaseModel

StructuredMode = Literal["json_schema", "json_object", "tools", "prompt"]
StructuredSetting = Literal["auto", "json_schema", "json_object", "tools", "prompt"]
STRUCTURED_SETTINGS: tuple[str, ...] = ("auto", "json_schema", "json_object", "tools", "prompt")
AUTO_ORDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "tools", "prompt")
# Answers with no JSON at all, in a row and before any valid one, after which ``auto`` decides
# that the server ignores the mode (one such answer may be the model's fault, not the server's).
IGNORED_FORMAT_LIMIT = 2
# Words in a refusal's message that say which part of the request the server objects to.
_MODE_WORDS: dict[str, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema", "response format"),
    "json_object": ("response_format", "json_object", "response format"),
    "tools": ("tool",),
    "prompt": (),
}
REFUSAL_STATUSES = frozenset({400, 422, 500})
# The line that introduces the schema in ``prompt`` mode; the loopback server finds the fenced
# JSON block after it (agents/prompt_schema.py holds the convention).
SCHEMA_PROMPT_LEAD = "Reply with only one JSON object that matches this JSON schema:"


def check_setting(value: str) -> StructuredSetting:
    """``value`` if it names a structured-output setting, else a one-line error."""
    from personahub.personas.errors import PersonahubError

    if value not in STRUCTURED_SETTINGS:
        raise PersonahubError(f"--structured {value!r}: use one of {', '.join(STRUCTURED_SETTINGS)}")
    return value  # type: ignore[return-value]


@lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel]) -> dict[str, Any]:
    """The class's JSON schema (cached per class: building it costs on every call)."""
    return schema.model_json_schema()


@lru_cache(maxsize=512)
def response_format(schema: type[BaseModel], mode: StructuredMode) -> dict[str, Any] | None:
    """The ``response_format`` body value for ``mode`` (None when the mode sends none)."""
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema_json(schema)}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema_json(schema)}
    return None


@lru_cache(maxsize=256)
def openai_tools(schema: type[BaseModel]) -> list[dict[str, Any]]:
    """``schema`` as a one-tool list for tool calling (cached; read, never changed)."""
    return [convert_to_openai_tool(schema)]


def tool_choice(schema: type[BaseModel]) -> dict[str, Any]:
    """``tool_choice`` forcing the one tool."""
    return {"type": "function", "function": {"name": openai_tools(schema)[0]["function"]["name"]}}


@lru_cache(maxsize=256)
def schema_instruction(schema: type[BaseModel]) -> str:
    """The text ``prompt`` mode adds to the last user message (``agents.prompt_schema``'s form)."""
    return render_schema_block(schema_json(schema), intro=SCHEMA_PROMPT_LEAD)


def prepare_messages(mode: StructuredMode, schema: type[BaseModel],
                     messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The conversation as sent in ``mode``: ``prompt`` appends the schema to the last user turn."""
    if mode != "prompt":
        return list(messages)
    out = list(messages)
    instruction = schema_instruction(schema)
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

    With a fixed setting every endpoint uses it; with ``auto`` each starts at ``json_schema`` and
    ``step_down`` moves it along ``AUTO_ORDER``. Thread-safe: calls in flight that were all
    refused at once move an endpoint down one mode, not one mode each.
    """

    def __init__(self, setting: StructuredSetting, endpoints: int) -> None:
        self.setting = setting
        first: StructuredMode = AUTO_ORDER[0] if setting == "auto" else setting
        self._modes: list[StructuredMode] = [first] * max(1, endpoints)
        self._ignored = [0] * max(1, endpoints)
        self._settled = [setting != "auto"] * max(1, endpoints)
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

    def step_down(self, endpoint: int, refused: StructuredMode) -> StructuredMode | None:
        """``refused`` failed on ``endpoint``: the mode to use now, or None when none is left.

        A call refused in a mode the endpoint already left just retries in the current one.
        """
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
