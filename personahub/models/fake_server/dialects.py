"""How the loopback server answers as particular OpenAI-compatible servers, each as read in its source,
so fast tests reach every path of a client's structured-output negotiation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypeGuard

from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

DIALECTS: tuple[str, ...] = ("openai", "openai-strict", "vllm", "vllm-legacy", "llama-cpp-python",
                             "ollama", "tools-only")
# the schema keywords OpenAI documents for strict structured outputs
STRICT_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
    "$ref", "$defs", "definitions", "description", "title", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems"})
_FORMAT_TYPES = ("text", "json_object", "json_schema")
LLAMA_CPP_N_CTX = 2048
MAX_CHOICES = 128
_NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


@dataclass(frozen=True)
class Refusal:
    """An error answer: status and body (a dict is sent as JSON, a string as plain text)."""

    status: int
    body: dict[str, object] | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """How to answer an accepted request (None for tools or the token limit means none).

    The tools are the request's as sent: the server's bounds check refuses a value that is no list
    of tool objects before they are used.
    """

    json_schema: Mapping[str, object] | None = None
    wants_json: bool = False
    prompt_schema: bool = True
    tools: object = None
    tool_choice: object = None
    max_tokens: int | None = None


class FormatParts(TypedDict, total=False):
    """The part of a plan a response format decides."""

    json_schema: Mapping[str, object]
    wants_json: bool
    prompt_schema: bool


class ToolParts(TypedDict, total=False):
    """The part of a plan the tools and the tool choice decide."""

    tools: object
    tool_choice: object


@dataclass(frozen=True)
class Shaped:
    """A finished assistant message and its finish reason."""

    message: dict[str, object]
    finish_reason: str


class Dialect:
    """The lenient openai dialect; the others override parts of it."""

    name = "openai"
    #: whether answers report cached prompt tokens
    reports_cached_tokens = True

    def error(self, status: int, message: str, *, param: str | None = None,
              code: str | None = None) -> Refusal:
        kinds = {400: "invalid_request_error", 403: "invalid_request_error",
                 404: "invalid_request_error", 413: "invalid_request_error",
                 415: "invalid_request_error", 429: "rate_limit_exceeded", 503: "server_error"}
        return Refusal(status, {"error": {"message": message, "type": kinds.get(status, "server_error"),
                                          "param": param, "code": code}})

    def bad_body(self, problem: str, *, parsed: bool, value: object = None) -> Refusal:
        return self.error(400, f"We could not parse the JSON body of your request. ({problem})")

    def messages_problem(self, messages: object) -> Refusal | None:
        """Why the messages cannot be answered, if they cannot."""
        if messages is None:
            return self.error(400, "Missing required parameter: 'messages'.", param="messages")
        if not isinstance(messages, list):
            return self.error(400, "Invalid type for 'messages': expected an array.",
                              param="messages")
        if not messages:
            return self.error(400, "[] is too short - 'messages'", param="messages")
        return None

    def plan(self, request: dict[str, object], prompt_tokens: int) -> Plan | Refusal:
        """How to answer a request, or why it is refused."""
        problem = self.messages_problem(request.get("messages"))
        if problem is not None:
            return problem
        limit = self.max_tokens(request)
        if isinstance(limit, Refusal):
            return limit
        formats = self.response_format(request.get("response_format"))
        if isinstance(formats, Refusal):
            return formats
        tools = self.tools(request)
        if isinstance(tools, Refusal):
            return tools
        return Plan(**formats, **tools, max_tokens=limit)

    def max_tokens(self, request: Mapping[str, object]) -> int | None | Refusal:
        for key in ("max_completion_tokens", "max_tokens"):
            value = request.get(key)
            if value is None:
                continue
            if not _is_int(value) or value < 1:
                code = "integer_below_min_value" if _is_int(value) else "invalid_type"
                return self.error(400, f"Invalid '{key}': expected an integer >= 1, got {value!r}.",
                                  param=key, code=code)
            return int(value)
        return None

    def response_format(self, response_format: object) -> FormatParts | Refusal:
        if response_format is None:
            return {}
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind not in _FORMAT_TYPES or not isinstance(response_format, Mapping):
            return self.error(400, f"Invalid value for 'response_format.type': {kind!r}; supported "
                              "values are 'text', 'json_object' and 'json_schema'.",
                              param="response_format", code="invalid_value")
        return _format_plan(str(kind), _schema_of(response_format))

    def tools(self, request: Mapping[str, object]) -> ToolParts | Refusal:
        tools, choice = request.get("tools"), request.get("tool_choice")
        if not tools or choice == "none":
            return {}
        return {"tools": tools, "tool_choice": choice}

    def choices(self, request: Mapping[str, object]) -> int | Refusal:
        value = request.get("n")
        if value is None:
            return 1
        if not _is_int(value) or not 1 <= value <= MAX_CHOICES:
            return self.error(400, f"Invalid 'n': expected an integer from 1 to {MAX_CHOICES}, "
                              f"got {value!r}.", param="n", code="invalid_value")
        return int(value)

    def model_not_found(self, model: object) -> Refusal:
        return self.error(404, f"The model `{model}` does not exist or you do not have access "
                          "to it.", param="model", code="model_not_found")

    def text_answer(self, content: str, cut: bool) -> Shaped:
        return Shaped({"role": "assistant", "content": content}, "length" if cut else "stop")

    def tool_answer(self, plan: Plan, calls: list[dict[str, object]], cut: bool) -> Shaped:
        """Return a tool-call answer; each call's arguments are a string."""
        message: dict[str, object] = {"role": "assistant", "content": None,
                                      "tool_calls": _wire_calls(calls)}
        return Shaped(message, "length" if cut else "tool_calls")


class VllmDialect(Dialect):
    """vLLM's OpenAI server with auto tool choice and a tool-call parser.

    Its JSON schema format needs a name. Tool choice defaults to auto with tools; a choice without tools,
    or naming a missing tool, is refused. A named tool call has empty content and ends with stop. Since
    v0.10.1 errors are 400 with the status as the code.
    """

    name = "vllm"

    def error(self, status: int, message: str, *, param: str | None = None,
              code: str | None = None, kind: str | None = None) -> Refusal:
        kinds = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
                 503: "ServiceUnavailableError"}
        kind = kind or kinds.get(status, "InternalServerError")
        return Refusal(status, {"error": {"message": message, "type": kind, "param": param,
                                          "code": status}})

    def model_not_found(self, model: object) -> Refusal:
        return self.error(404, f"The model `{model}` does not exist.", param="model")

    def invalid(self, *errors: dict[str, object]) -> Refusal:
        """Return a FastAPI validation error as vLLM answers it."""
        listed = list(errors)
        return self.error(400, f"{validation_text(listed)} {listed}", kind="Bad Request")

    def bad_body(self, problem: str, *, parsed: bool, value: object = None) -> Refusal:
        if parsed:
            return self.invalid({"type": "model_attributes_type", "loc": ("body",),
                                 "msg": _NOT_AN_OBJECT, "input": value})
        return self.invalid({"type": "json_invalid", "loc": ("body", 0),
                             "msg": "JSON decode error", "input": {}, "ctx": {"error": problem}})

    def max_tokens(self, request: Mapping[str, object]) -> int | None | Refusal:
        for key in ("max_completion_tokens", "max_tokens"):
            value = request.get(key)
            if value is None:
                continue
            if not _is_int(value):
                return self.invalid({"type": "int_type", "loc": ("body", key),
                                     "msg": "Input should be a valid integer", "input": value})
            if value < 1:
                return self.error(400, f"max_tokens must be at least 1, got {value}.")
            return int(value)
        return None

    def response_format(self, response_format: object) -> FormatParts | Refusal:
        if response_format is None:
            return {}
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind == "structural_tag":
            return {}
        where = ("body", "response_format", "ResponseFormat")
        if kind not in _FORMAT_TYPES or not isinstance(response_format, Mapping):
            return self.invalid({"type": "literal_error", "loc": (*where, "type"),
                                 "msg": "Input should be 'text', 'json_object' or 'json_schema'",
                                 "input": kind})
        spec = response_format.get("json_schema")
        if kind == "json_schema" and not (isinstance(spec, Mapping) and isinstance(spec.get("name"), str)):
            return self.invalid({"type": "missing", "loc": (*where, "json_schema", "name"),
                                 "msg": "Field required", "input": spec})
        return _format_plan(str(kind), _schema_of(response_format))

    def tools(self, request: Mapping[str, object]) -> ToolParts | Refusal:
        tools, choice = request.get("tools"), request.get("tool_choice")
        if choice is None and tools:
            choice = "auto"
        if choice is None or choice == "none":
            return {}
        if tools is None:
            return self.error(400, "When using `tool_choice`, `tools` must be set.")
        if not isinstance(tools, list) or not all(
                isinstance(t, Mapping) and isinstance(t.get("function") or {}, Mapping)
                for t in tools):  # FastAPI's validation of ChatCompletionToolsParam
            return self.invalid({"type": "model_type", "loc": ("body", "tools"),
                                 "msg": "Input should be a list of tool objects", "input": tools})
        if isinstance(choice, Mapping):
            function = choice.get("function") or {}
            name = function.get("name") if isinstance(function, Mapping) else None
            if not any((t.get("function") or {}).get("name") == name for t in tools):
                return self.error(400, "The tool specified in `tool_choice` does not match any "
                                  "of the specified `tools`")
        elif choice not in ("auto", "required"):
            return self.error(400, f"Invalid value for `tool_choice`: {choice}! Only named tools, "
                              '"none", "auto" or "required" are supported.')
        if choice == "required" and not tools:
            return {}
        return {"tools": tools, "tool_choice": choice}

    def tool_answer(self, plan: Plan, calls: list[dict[str, object]], cut: bool) -> Shaped:
        message: dict[str, object] = {"role": "assistant", "content": "",
                                      "tool_calls": _wire_calls(calls)}
        named = isinstance(plan.tool_choice, Mapping)
        return Shaped(message, "length" if cut else "stop" if named else "tool_calls")


class VllmLegacyDialect(VllmDialect):
    """vLLM before v0.10.1: flat error bodies (vllm PR 22099 nested them)."""

    name = "vllm-legacy"

    def error(self, status: int, message: str, *, param: str | None = None,
              code: str | None = None, kind: str | None = None) -> Refusal:
        nested = super().error(status, message, param=param, code=code, kind=kind)
        assert isinstance(nested.body, dict)
        error = nested.body["error"]
        assert isinstance(error, dict)
        return Refusal(status, {"object": "error", **error})


# llama-cpp-python's request types, named as there: FastAPI's error locations name union members by
# type
_JsonType = None | int | str | bool | list[Any] | dict[str, object]


class ChatCompletionRequestResponseFormat(TypedDict):
    """The response format."""

    type: Literal["text", "json_object"]
    schema: NotRequired[_JsonType]


class ChatCompletionToolFunction(TypedDict):
    """A tool's function."""

    name: str
    description: NotRequired[str]
    parameters: dict[str, _JsonType]


class ChatCompletionTool(TypedDict):
    """A tool."""

    type: Literal["function"]
    function: ChatCompletionToolFunction


class ChatCompletionNamedToolChoiceFunction(TypedDict):
    """The function a named tool choice picks."""

    name: str


class ChatCompletionNamedToolChoice(TypedDict):
    """A named tool choice."""

    type: Literal["function"]
    function: ChatCompletionNamedToolChoiceFunction


class _LlamaCppChatRequest(BaseModel):
    """The chat request fields this emulation checks."""

    messages: list[dict[str, object]] = []
    tools: list[ChatCompletionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ChatCompletionNamedToolChoice | None = None
    max_tokens: int | None = None
    response_format: ChatCompletionRequestResponseFormat | None = None


class LlamaCppDialect(Dialect):
    """llama-cpp-python's server with a GGUF's own chat template (as SmolLM2's).

    An unknown response format type fails validation with a 500. Tools are used only when the tool
    choice names one, and that call ends with tool_calls even when cut. Only max_tokens counts, clamped
    to the context; a prompt filling the context is a 400. A non-JSON body gets a plain-text 500.
    """

    name = "llama-cpp-python"
    reports_cached_tokens = False

    def __init__(self, context_tokens: int = LLAMA_CPP_N_CTX) -> None:
        self.context_tokens = context_tokens

    def error(self, status: int, message: str, *, param: str | None = None,
              code: str | None = None) -> Refusal:
        kind = "invalid_request_error" if status == 400 else "internal_server_error"
        return Refusal(status, {"error": {"message": message, "type": kind, "param": param,
                                          "code": code}})

    def bad_body(self, problem: str, *, parsed: bool, value: object = None) -> Refusal:
        if not parsed:  # the error handler's own request.json() raises: Starlette's plain 500
            return Refusal(500, "Internal Server Error")
        return self._validation_failed([{"type": "model_attributes_type", "loc": ("body",),
                                         "msg": _NOT_AN_OBJECT, "input": value}])

    def _validation_failed(self, errors: list[dict[str, object]]) -> Refusal:
        return self.error(500, validation_text(errors))

    def plan(self, request: dict[str, object], prompt_tokens: int) -> Plan | Refusal:
        try:
            checked = _LlamaCppChatRequest.model_validate(request, from_attributes=True)
        except ValidationError as exc:
            return self._validation_failed([
                {**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])
        if prompt_tokens >= self.context_tokens:
            wanted = checked.max_tokens
            return self.error(400, (
                f"This model's maximum context length is {self.context_tokens} tokens. However, you "
                f"requested {(wanted or 0) + prompt_tokens} tokens ({prompt_tokens} in the "
                f"messages, {wanted} in the completion). Please reduce the length of the messages "
                "or completion."), param="messages", code="context_length_exceeded")
        room = self.context_tokens - prompt_tokens
        wanted = checked.max_tokens
        limit = room if wanted is None or wanted <= 0 else min(wanted, room)
        response_format = checked.response_format
        formats: FormatParts = {}
        if response_format is not None and response_format["type"] == "json_object":
            schema = response_format.get("schema")
            formats = _format_plan("json_object", schema if isinstance(schema, dict) else None)
        choice = checked.tool_choice
        if isinstance(choice, dict) and checked.tools is not None:
            name = choice["function"]["name"]
            tool = next((t for t in checked.tools if t["function"]["name"] == name), None)
            if tool is None:
                return self.error(500, f"Tool choice '{name}' not found in tools.")
            return Plan(tools=[tool], tool_choice=choice, max_tokens=limit)
        return Plan(**formats, max_tokens=limit)

    def choices(self, request: Mapping[str, object]) -> int | Refusal:
        return 1  # the server ignores n

    def tool_answer(self, plan: Plan, calls: list[dict[str, object]], cut: bool) -> Shaped:
        call = calls[0]
        function = {"name": call["name"], "arguments": call["arguments"]}
        message: dict[str, object] = {
            "role": "assistant", "content": None, "function_call": function,
            "tool_calls": [{"id": f"call__0_{call['name']}_cmpl-{str(call['id'])[5:]}",
                            "type": "function", "function": dict(function)}]}
        return Shaped(message, "tool_calls")  # also when cut: the handler hard-codes it


class OllamaDialect(Dialect):
    """Ollama's OpenAI-compatible endpoint: JSON-object format is JSON mode, other types are ignored, the
    tool choice is not read and a cut tool call stays text. Empty messages are refused; one choice.
    """

    name = "ollama"
    reports_cached_tokens = False

    def error(self, status: int, message: str, *, param: str | None = None,
              code: str | None = None) -> Refusal:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return Refusal(status, {"error": {"message": message, "type": kind, "param": None,
                                          "code": None}})

    def bad_body(self, problem: str, *, parsed: bool, value: object = None) -> Refusal:
        if parsed:
            return self.error(400, f"json: cannot unmarshal {_go_kind(value)} into Go value of "
                              "type openai.ChatCompletionRequest")
        return self.error(400, problem)

    def messages_problem(self, messages: object) -> Refusal | None:
        if messages is not None and not isinstance(messages, list):
            return self.error(400, f"json: cannot unmarshal {_go_kind(messages)} into Go struct "
                              "field ChatCompletionRequest.messages of type []openai.Message")
        return None if messages else self.error(400, "[] is too short - 'messages'")

    def max_tokens(self, request: Mapping[str, object]) -> int | None | Refusal:
        value = request.get("max_tokens")
        if value is None:
            return None
        if not _is_int(value):
            return self.error(400, f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
                              "ChatCompletionRequest.max_tokens of type int")
        return int(value) if value > 0 else None

    def response_format(self, response_format: object) -> FormatParts | Refusal:
        if response_format is None:
            return {}
        if not isinstance(response_format, Mapping):
            return self.error(400, f"json: cannot unmarshal {_go_kind(response_format)} into Go "
                              "struct field ChatCompletionRequest.response_format of type "
                              "openai.ResponseFormat")
        kind = str(response_format.get("type") or "").strip().lower()
        if kind == "json_object":
            return _format_plan("json_object", None)
        spec = response_format.get("json_schema")
        if kind == "json_schema" and isinstance(spec, Mapping):
            schema = spec.get("schema")
            return _format_plan("json_schema", schema if isinstance(schema, dict) else None)
        return {}

    def tools(self, request: Mapping[str, object]) -> ToolParts | Refusal:
        tools = request.get("tools")
        return {"tools": tools, "tool_choice": None} if tools else {}

    def choices(self, request: Mapping[str, object]) -> int | Refusal:
        return 1

    def model_not_found(self, model: object) -> Refusal:
        return self.error(404, f'model "{model}" not found, try pulling it first')

    def tool_answer(self, plan: Plan, calls: list[dict[str, object]], cut: bool) -> Shaped:
        if cut:  # the arguments never parsed: no tool call, the text stays content
            return Shaped({"role": "assistant", "content": calls[0]["arguments"]}, "length")
        wire = [{**c, "index": i} for i, c in enumerate(_wire_calls(calls))]
        return Shaped({"role": "assistant", "content": "", "tool_calls": wire}, "tool_calls")


class OpenAIStrictDialect(Dialect):
    """OpenAI strict structured outputs: a schema keyword outside the documented list is a 400 (strict
    mode's other rules are not checked).
    """

    name = "openai-strict"

    def response_format(self, response_format: object) -> FormatParts | Refusal:
        planned = super().response_format(response_format)
        if isinstance(planned, Refusal) or not isinstance(response_format, Mapping):
            return planned
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        name = spec.get("name") if isinstance(spec, Mapping) else None
        return self._check(schema, f"response_format {name!r}", "response_format") or planned

    def tools(self, request: Mapping[str, object]) -> ToolParts | Refusal:
        tools = request.get("tools")
        for tool in tools if isinstance(tools, list) else []:  # the base dialect refuses others
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping):
                refusal = self._check(function.get("parameters"),
                                      f"function {function.get('name')!r}", "tools")
                if refusal is not None:
                    return refusal
        return super().tools(request)

    def _check(self, schema: object, what: str, param: str) -> Refusal | None:
        found = _unsupported_keyword(schema, ())
        if found is None:
            return None
        context, keyword = found
        return self.error(400, f"Invalid schema for {what}: In context={context!r}, {keyword!r} "
                          "is not permitted.", param=param, code="invalid_json_schema")


def _unsupported_keyword(node: object, context: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    if not isinstance(node, Mapping):
        return None
    for key, value in node.items():
        if key not in STRICT_KEYWORDS:
            return context, key
        if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            children: list[tuple[tuple[str, ...], object]] = [
                ((*context, key, name), sub) for name, sub in value.items()]
        elif key == "anyOf" and isinstance(value, list):
            children = [((*context, key, str(i)), sub) for i, sub in enumerate(value)]
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            children = [((*context, key), value)]
        else:
            children = []
        for where, sub in children:
            found = _unsupported_keyword(sub, where)
            if found is not None:
                return found
    return None


class ToolsOnlyDialect(Dialect):
    """A made-up server for clients' fallback paths: tools, but no response format beyond text."""

    name = "tools-only"

    def response_format(self, response_format: object) -> FormatParts | Refusal:
        kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
        if response_format is None or kind == "text":
            return {}
        return self.error(400, f"response_format {kind!r} is not supported by this server "
                          "(only 'text'); use tools", param="response_format",
                          code="unsupported_parameter")


def make_dialect(name: str, *, context_tokens: int = LLAMA_CPP_N_CTX) -> Dialect:
    kinds: dict[str, type[Dialect]] = {
        "openai": Dialect, "openai-strict": OpenAIStrictDialect, "vllm": VllmDialect,
        "vllm-legacy": VllmLegacyDialect, "ollama": OllamaDialect, "tools-only": ToolsOnlyDialect}
    if name == "llama-cpp-python":
        return LlamaCppDialect(context_tokens)
    if name not in kinds:
        raise ValueError(f"unknown dialect {name!r}; choose one of {', '.join(DIALECTS)}")
    return kinds[name]()


def validation_text(errors: Sequence[Mapping[str, object]]) -> str:
    """How recent FastAPI words a validation error (minus the file and line it appends)."""
    count = len(errors)
    return f"{count} validation error{'s' if count != 1 else ''}:" + "".join(
        f"\n  {dict(e)}" for e in errors)


def _format_plan(kind: str, schema: Mapping[str, object] | None) -> FormatParts:
    if kind == "text":
        return {}
    if schema:
        return {"json_schema": schema, "wants_json": True, "prompt_schema": False}
    return {"wants_json": True}


def _schema_of(response_format: Mapping[str, object]) -> dict[str, object] | None:
    """Return the schema a JSON-schema response format carries."""
    if response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return schema if isinstance(schema, dict) else None


def _wire_calls(calls: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _go_kind(value: object) -> str:
    """How Go's encoding/json names a JSON value's kind in unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"
