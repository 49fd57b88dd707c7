"""tool_spec: a function interface in Persona Hub's tool shape, data only and never executed.

Two schemas: ToolSpec is what models are asked for, in a shape a small model can fill, bounded
for the call's budget; ReleasedToolSpec is what Persona Hub released, where input_args, return
and depend may be any JSON value. Validation, import and export accept the released shapes.
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personahub.models.bounds import SHORT
from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, Criterion, EmissionSpec, SynthesisSpec, Task
from personahub.tasks.validators import IDENTIFIER, args_issue, has_letters

_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# JSON schema types for the type names tools write ("int", "List[str]", "string", ...).
_JSON_TYPES = {"str": "string", "string": "string", "text": "string", "int": "integer",
               "integer": "integer", "float": "number", "number": "number", "double": "number",
               "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
               "tuple": "array", "dict": "object", "object": "object"}
JsonValue = str | list[object] | dict[str, object]
JsonTypeName = Literal["string", "integer", "number", "boolean", "array", "object"]
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_TOOL_ARGS = 4  # input_args entries a tool may list (maxItems)
MAX_TOOL_DEPENDS = 3  # depend entries (maxItems)
_RELEASED_KEYS = ("name", "description", "function_name", "input_args", "return", "depend")


class _ToolIdentity(BaseModel):
    """The fields both tool schemas share: what the tool is called and what it does."""

    model_config = ConfigDict(populate_by_name=True)

    name: Annotated[str, SHORT] = Field(min_length=2)
    description: str = Field(min_length=8)
    # the pattern is in the JSON schema so that grammar-constrained servers (llama.cpp) keep to it
    function_name: Annotated[str, SHORT] = Field(description="a valid Python identifier",
                                                 pattern=IDENTIFIER_PATTERN)

    @field_validator("function_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        value = value.strip()
        if not IDENTIFIER.fullmatch(value):
            raise ValueError(f"function_name {value!r} is not a valid identifier")
        return value


class ToolArg(BaseModel):
    """One argument of a tool: ``{name, type, description}`` as in Persona Hub's release."""

    name: Annotated[str, SHORT] = Field(min_length=1, pattern=IDENTIFIER_PATTERN,
                                        description="the argument's name, a Python identifier")
    type: JsonTypeName = Field(description="its JSON type")
    description: Annotated[str, SHORT] = Field(min_length=2, description="what the argument is")


class ToolReturn(BaseModel):
    """What a tool returns: ``{type, description}``."""

    type: JsonTypeName = Field(description="the JSON type of the result")
    description: str = Field(min_length=2, description="what the result holds")


class ToolSpec(_ToolIdentity):
    """A function interface in Persona Hub's tool shape (data only: never executed)."""

    input_args: list[ToolArg] = Field(max_length=MAX_TOOL_ARGS,
                                      description="the function's arguments")
    return_: ToolReturn = Field(alias="return", description="what the function returns")
    depend: list[Annotated[str, SHORT]] = Field(max_length=MAX_TOOL_DEPENDS,
                              description="names of libraries or APIs it would depend on")


class ReleasedToolSpec(_ToolIdentity):
    """Persona Hub's released tool shape: ``input_args``, ``return``, ``depend`` are JSON values.

    In the release ``input_args`` is a list or an object in most rows, ``depend`` often a list,
    ``return`` sometimes an object; they are kept as they are, value for value.
    """

    input_args: JsonValue = Field(description="argument names: text, a list or an object")
    return_: JsonValue = Field(alias="return", description="what the function returns")
    depend: JsonValue = Field(description="libraries or APIs it would depend on")


def released_tool(text: str) -> dict[str, object] | None:
    """Return a Persona Hub synthesized text as tool content, or None when it is not a released tool."""
    try:
        value: object = json.loads(text)
        if isinstance(value, str):
            value = json.loads(value)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or set(value) != set(_RELEASED_KEYS):
        return None
    try:
        ReleasedToolSpec.model_validate(value)
    except ValidationError:
        return None
    return value


def check_tool_spec(content: Content) -> QualityIssue | None:
    """Check a tool spec: identifier function name (not a keyword), name, description, typed args."""
    function = str(content.get("function_name") or "").strip()
    if not IDENTIFIER.fullmatch(function):
        return QualityIssue("bad_identifier", f"function_name {function!r} is not a Python identifier")
    if keyword.iskeyword(function):
        return QualityIssue("keyword_identifier", f"function_name {function!r} is a Python keyword")
    if not has_letters(content.get("name")):
        return QualityIssue("no_name", "the tool has no name")
    if not has_letters(content.get("description")):
        return QualityIssue("no_description", "the tool has no description")
    problem = args_issue(content.get("input_args"))
    if problem:
        return QualityIssue("bad_args", problem)
    return None


def _text_params(text: str) -> dict[str, object]:
    """Free-text arguments ("city, date" or "year: int") as string parameters."""
    params: dict[str, object] = {}
    for chunk in text.split(","):
        match = _ARG.search(chunk.split(":")[0])
        if match and match.group(0) not in params:
            params[match.group(0)] = {"type": "string", "description": chunk.strip()}
    return params


def _json_type(name: object) -> str | None:
    """Return the JSON schema type a written type name means ("List[str]" -> array), or None."""
    return _JSON_TYPES.get(str(name).split("[")[0].strip().lower())


def _param(spec: object) -> dict[str, object]:
    """One argument's JSON schema from a released tool's type name, description or object."""
    if isinstance(spec, dict):
        param: dict[str, object] = {"type": _json_type(spec.get("type", "")) or "string"}
        if spec.get("description") is not None:
            param["description"] = str(spec["description"])
        return param
    text = spec if isinstance(spec, str) else json.dumps(spec, ensure_ascii=False)
    named = _json_type(text)
    return {"type": named} if named else {"type": "string", "description": text}


def _structured_params(args: dict[str, object] | list[object]) -> dict[str, object]:
    """Released input_args, in any of the release's shapes, as parameters."""
    params: dict[str, object] = {}
    if isinstance(args, dict):
        fields = args.get("properties", args)
        pairs = list(fields.items()) if isinstance(fields, dict) else []
    else:
        pairs = [(a.get("name"), a) if isinstance(a, dict) else (a, None) for a in args]
    for name, spec in pairs:
        if isinstance(name, str) and name.strip() and name not in params:
            params[name] = _param(spec) if spec is not None else {"type": "string"}
    return params


def _shown(value: object) -> str:
    """Return a released value as text: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tool_to_openai_function(tool: _ToolIdentity | Content) -> dict[str, object]:
    """Persona Hub's tool shape as an OpenAI function-calling tool (a description, not code).

    Every argument becomes a required parameter; the return is described in words.
    """
    data = tool.model_dump(by_alias=True) if isinstance(tool, _ToolIdentity) else dict(tool)
    args = data.get("input_args", "")
    params = _structured_params(args) if isinstance(args, dict | list) \
        else _text_params(str(args))
    description = str(data.get("description", ""))
    returns = data.get("return")
    if isinstance(returns, dict) and set(returns) == {"type", "description"}:
        description += f" Returns ({returns['type']}): {returns['description']}"
    elif returns:
        description += f" Returns: {_shown(returns)}"
    return {
        "type": "function",
        "function": {
            "name": data["function_name"],
            "description": description.strip(),
            "parameters": {"type": "object", "properties": params, "required": list(params)},
        },
    }


def tool_text(content: Content) -> str:
    """Return a tool as one readable line: name, description, signature, return and dependencies."""
    args = content.get("input_args")
    if isinstance(args, list) and all(isinstance(a, dict) for a in args):
        signature = ", ".join(f"{a.get('name')}: {a.get('type')}" for a in args)
    else:
        signature = _shown(args or "")
    returns = content.get("return")
    if isinstance(returns, dict) and set(returns) <= {"type", "description"}:
        shown_return = f"{returns.get('type')}: {returns.get('description')}"
    else:
        shown_return = _shown(returns or "")
    depend = content.get("depend")
    depends = ", ".join(map(str, depend)) if isinstance(depend, list) else _shown(depend or "")
    text = (f"{content.get('name', '')}: {content.get('description', '')} "
            f"{content.get('function_name', '')}({signature}) -> {shown_return}.")
    return f"{text} Depends on: {depends}." if depends else text


class ToolTask(Task):
    """Runs store a tool as one readable line; jobs and exports use its JSON."""

    def emission_text(self, content: Content) -> str:
        return tool_text(content)

    def chat_tools(self, content: Content) -> list[dict[str, object]] | None:
        return [tool_to_openai_function(content)]

    def personahub_text(self, content: Content, text: str) -> str:
        # JSON text inside a JSON string, as in Persona Hub's tool files
        return json.dumps(json.dumps(dict(content), ensure_ascii=False, indent=0),
                          ensure_ascii=False)


TASK = ToolTask(
    name="tool_spec",
    schema=ToolSpec,
    check=check_tool_spec,
    describe=lambda content: json.dumps(content, ensure_ascii=False),
    description="tool development",
    emission=EmissionSpec(
        max_tokens=400,
        prompt="Describe one software tool this person would find useful: name, description, "
               "function_name (a Python identifier), input_args (each a name, a JSON type and a "
               "description), return (a JSON type and a description), depend (library or API "
               "names). No code."),
    synthesis=SynthesisSpec(
        summary="a tool interface (Persona Hub tool shape; never executed)", max_tokens=450,
        instruction="Design one tool (a function interface) that this persona would need, in the "
                    "form name, description, function_name (a valid Python identifier), "
                    "input_args (each with a name, a JSON type and a description), return (a "
                    "JSON type and a description), depend (names of libraries or APIs). Describe "
                    "the interface only; do not write an implementation."),
    offline_writers={"name": "title", "description": "description",
                     "function_name": "identifier", "depend": "dependencies"},
    chat_request="Design one tool (a function interface) you would need: name, description, "
                 "function_name, input_args, return, depend, as JSON.",
    judge_criteria=(
        Criterion("coherent", "The name, description, function name, arguments and return value "
                              "describe one coherent capability."),
        Criterion("arguments_sufficient", "The input arguments are enough to do what the "
                                          "description promises."),
    ),
)
