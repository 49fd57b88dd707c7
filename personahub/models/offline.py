"""The offline engine: a seeded, deterministic stand-in that fills any JSON schema, so every pipeline
runs and is tested without a model. It is not a language model and says so. Answers depend only on
the seed, messages and schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeGuard

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from personahub.core.text_measures import approx_tokens
from personahub.models.bounds import clip, without_bound
from personahub.models.field_writers import FieldWriters
from personahub.models.message_dicts import to_openai_dicts
from personahub.models.offline_text import TextMaker, read_context
from personahub.models.structured import strip_keywords

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.runnables import Runnable

OFFLINE_MODEL_NAME = "offline"


@dataclass(frozen=True)
class EngineReply:
    """What the engine answered: text or tool calls, and approximate token counts."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0


_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _node(value: object) -> Mapping[str, object]:
    """Read a schema node as a mapping; a node of another type is not one, and fails as it always did."""
    if not isinstance(value, Mapping):
        raise AttributeError(f"a schema node is an object, not {type(value).__name__}")
    return value


def _resolve(schema: Mapping[str, object], defs: Mapping[str, object]) -> Mapping[str, object]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Mapping[str, object] = defs
        for part in ref[2:].split("/"):
            node = _node(node.get(part, {}))
        return _resolve(node, defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if options:
            choices = [_node(o) for o in _items(options)]
            non_null = [o for o in choices if o.get("type") != "null"] or choices
            merged = {k: v for k, v in schema.items() if k != combinator}
            merged.update(_resolve(non_null[0], defs))
            return merged
    return schema


def _items(value: object) -> list[object]:
    """Return the members of a schema's list (the options of a union, an enum's values)."""
    if not isinstance(value, Iterable):
        raise TypeError(f"a schema list is an array, not {type(value).__name__}")
    return list(value)


def _int(schema: Mapping[str, object], key: str, default: int) -> int:
    """Read a whole-number keyword of a schema (a float is truncated, as int() does)."""
    return _whole(schema.get(key, default), key)


def _whole(value: object, what: str) -> int:
    """Read a number as int() does; another value fails as int() would."""
    if not isinstance(value, int | float | str):
        raise TypeError(f"{what} is a number, not {type(value).__name__}")
    return int(value)


def _float(schema: Mapping[str, object], key: str, default: float) -> float:
    """Read a number keyword of a schema."""
    value = schema.get(key, default)
    if not isinstance(value, int | float | str):
        raise TypeError(f"schema keyword {key} is a number, not {type(value).__name__}")
    return float(value)


def resolve_node(schema: Mapping[str, object], root: Mapping[str, object]) -> Mapping[str, Any]:
    """Return the schema with refs and unions resolved to the first non-null option."""
    return _resolve(schema, root)


class SchemaFiller:
    """Fills a JSON schema with values written by a text maker."""

    def __init__(self, maker: TextMaker, root: Mapping[str, object]) -> None:
        self.maker = maker
        self.root = root

    def fill(
        self, schema: Mapping[str, object], name: str = "",
        siblings: Mapping[str, object] | None = None
    ) -> object:
        """Return a value for a schema; the field name steers what is written."""
        schema = _resolve(schema, self.root)
        rng = self.maker.rng
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return rng.choice(_items(schema["enum"]))
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        if kind == "object":
            out: dict[str, object] = {}
            properties = _node(schema.get("properties") or {})
            outer, self.maker.fields = self.maker.fields, frozenset(properties)
            try:
                for prop, sub in properties.items():
                    out[prop] = self.fill(_node(sub), prop, out)
            finally:
                self.maker.fields = outer
            return out
        if kind == "array":
            low = _int(schema, "minItems", 1)
            high = _int(schema, "maxItems", max(low, 3))
            count = rng.randint(low, max(low, min(high, low + 2)))
            items = _node(schema.get("items") or {"type": "string"})
            return [self.fill(items, name.rstrip("s"), {}) for _ in range(count)]
        if kind == "integer":
            low = _int(schema, "minimum", 1)
            high = _int(schema, "maximum", low + 9)
            if high < low and "minimum" not in schema:
                low = high
            return rng.randint(low, high)
        if kind == "number":
            floor = _float(schema, "minimum", 0.0)
            ceiling = _float(schema, "maximum", floor + 10.0)
            return round(rng.uniform(floor, ceiling), 2)
        if kind == "boolean":
            return rng.random() < 0.5
        text = self.maker.string_for(name or "text", siblings or {})
        if schema.get("pattern") == _IDENTIFIER and not text.isidentifier():
            text = self.maker.argument_name()
        if not schema.get("maxLength"):
            return text
        return clip(text, _int(schema, "maxLength", 0), _int(schema, "minLength", 0))


@dataclass(frozen=True)
class EngineRequest:
    """What a request asks besides its messages: a JSON schema, tools, or neither."""

    json_schema: Mapping[str, object] | None = None
    tools: Sequence[Mapping[str, object]] | None = None
    tool_choice: object = None
    key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # repr, not sorted json.dumps: as deterministic and far cheaper. Bounds only clip what is written,
        # so they are left out.
        tools = [_unbounded_tool(t) for t in self.tools] if self.tools else self.tools
        extra = repr([_unbounded(self.json_schema), tools, self.tool_choice])
        object.__setattr__(self, "key", b"\x1d" + extra.encode("utf-8", "surrogatepass"))


def _digest(seed: int, messages: Sequence[Mapping[str, object]], key: bytes, sample: int = 0) -> int:
    # sample 0 hashes as it always did, so seeded runs keep their answers
    parts = [repr(seed).encode() if not sample else repr((seed, sample)).encode()]
    for message in messages:
        parts.append(b"\x1e" + str(message.get("role")).encode() + b"\x1f")
        parts.append(str(message.get("content")).encode("utf-8", "surrogatepass"))
    parts.append(key)
    return int.from_bytes(hashlib.blake2b(b"".join(parts), digest_size=8).digest(), "big")


_BOUNDS = frozenset({"maxLength", "maxItems"})


def _unbounded(schema: object) -> object:
    """Return a schema without its bounds (what seeds an answer)."""
    return _unshaped(strip_keywords(schema, _BOUNDS, describe=False)) if schema else schema


def _unshaped(node: object) -> object:
    if isinstance(node, dict):
        return {key: without_bound(value) if key == "pattern" and isinstance(value, str)
                else _unshaped(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unshaped(item) for item in node]
    return node


def _unbounded_tool(tool: object) -> object:
    if not isinstance(tool, Mapping):
        return tool
    function = tool.get("function", tool)
    if not isinstance(function, Mapping) or "parameters" not in function:
        return tool
    unbounded = {**function, "parameters": _unbounded(function["parameters"])}
    return {**tool, "function": unbounded} if "function" in tool else unbounded


_JSON = json.JSONEncoder(ensure_ascii=False)


class OfflineEngine:
    """Answers chat requests deterministically."""

    def __init__(self, seed: int = 0, writers: FieldWriters | None = None) -> None:
        self.seed = seed
        self.writers = writers  # output kinds' writers for their own field names

    def respond(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        json_schema: Mapping[str, object] | None = None,
        tools: Sequence[Mapping[str, object]] | None = None,
        tool_choice: object = None,
    ) -> EngineReply:
        return self.answer(messages, EngineRequest(json_schema, tools, tool_choice))

    def answer(self, messages: Sequence[Mapping[str, object]], request: EngineRequest,
               sample: int = 0) -> EngineReply:
        """Return the answer to a prepared request; a sample above 0 asks another."""
        rng = random.Random(_digest(self.seed, messages, request.key, sample))
        maker = TextMaker(read_context(list(messages)), rng, self.writers)
        prompt_text = " ".join(str(m.get("content") or "") for m in messages)
        tokens_in = approx_tokens(prompt_text)
        if request.tools:
            tool = pick_tool(request.tools, request.tool_choice)
            params = tool.get("parameters") or {"type": "object", "properties": {}}
            args = SchemaFiller(maker, params).fill(params)
            call_id = f"call_{rng.getrandbits(48):012x}"
            arguments = json.dumps(args)
            return EngineReply(
                content="",
                tool_calls=[{"id": call_id, "name": tool["name"], "args": args}],
                tokens_in=tokens_in,
                tokens_out=approx_tokens(arguments),
            )
        if request.json_schema is not None:
            schema = request.json_schema
            content = _JSON.encode(SchemaFiller(maker, schema).fill(schema))
        else:
            content = maker.sentence()
        return EngineReply(content=content, tokens_in=tokens_in, tokens_out=approx_tokens(content))


def pick_tool(tools: Sequence[Mapping[str, object]], tool_choice: object) -> Mapping[str, Any]:
    specs = [_node(t.get("function", t)) for t in tools]
    wanted = None
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required", "none"):
        wanted = tool_choice
    elif isinstance(tool_choice, Mapping):
        wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    for spec in specs:
        if wanted is None or spec.get("name") == wanted:
            return spec
    return specs[0]


def response_format_schema(response_format: object) -> dict[str, object] | None:
    """Return the JSON schema inside an OpenAI response format, if any."""
    if response_format is None:
        return None
    if _is_model_class(response_format):
        return response_format.model_json_schema()
    if isinstance(response_format, Mapping):
        if response_format.get("type") == "json_schema":
            return dict((response_format.get("json_schema") or {}).get("schema") or {})
        if response_format.get("type") == "json_object":
            return {"type": "object", "properties": {"text": {"type": "string"}}}
    return None


def _request_of(kwargs: Mapping[str, object]) -> EngineRequest:
    response_format = kwargs.get("response_format")
    tools, tool_choice = kwargs.get("tools"), kwargs.get("tool_choice")
    if _is_model_class(response_format) and tools is None and tool_choice is None:
        return _model_request(response_format)
    listed = None if tools is None else [_node(t) for t in _items(tools)]
    return EngineRequest(response_format_schema(response_format), listed, tool_choice)


def _is_model_class(value: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(value, type) and issubclass(value, BaseModel)


@lru_cache(maxsize=256)
def _model_request(schema: type[BaseModel]) -> EngineRequest:
    """Return the request for a pydantic response format, built once per class."""
    return EngineRequest(schema.model_json_schema())


class OfflineChatModel(BaseChatModel):
    """LangChain chat model backed by the offline engine; a latency setting simulates a slow model."""

    seed: int = 0
    latency_s: float = 0.0
    model_name: str = OFFLINE_MODEL_NAME
    writers: FieldWriters | None = None  # output kinds' writers for their own field names

    @property
    def _llm_type(self) -> str:
        return OFFLINE_MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, object]:
        return {"model_name": self.model_name, "seed": self.seed}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    async def answer_async(self, messages: list[BaseMessage], **kwargs: object) -> AIMessage:
        """Return the answer message, without LangChain's callbacks."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._reply_message(messages, kwargs)

    def _answer(self, messages: list[BaseMessage], **kwargs: object) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply_message(messages, kwargs))])

    def _reply_message(self, messages: list[BaseMessage], kwargs: Mapping[str, object]) -> AIMessage:
        reply = OfflineEngine(self.seed, self.writers).answer(to_openai_dicts(messages), _request_of(kwargs),
                                                _whole(kwargs.get("sample") or 0, "sample"))
        usage = {
            "input_tokens": reply.tokens_in,
            "output_tokens": reply.tokens_out,
            "total_tokens": reply.tokens_in + reply.tokens_out,
        }
        return AIMessage(
            content=reply.content,
            tool_calls=[{**call, "type": "tool_call"} for call in reply.tool_calls],
            usage_metadata=usage,
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: object,
    ) -> ChatResult:
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._answer(messages, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: object,
    ) -> ChatResult:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._answer(messages, **kwargs)
