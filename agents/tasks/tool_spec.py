"""Tool: a function interface in Persona Hub's tool shape, data only and never executed (emitted
as ``tool_spec`` in runs, made as ``tool`` by synthesis; exported with an OpenAI tools list)."""

from __future__ import annotations

import json
import keyword
import re
from typing import Any

from personahub.agents.tasks.base import Content, EmissionSpec, SynthesisSpec, Task
from personahub.agents.validators import IDENTIFIER, args_issue, has_letters
from personahub.personas.quality import QualityIssue
from pydantic import BaseModel, ConfigDict, Field, field_validator

_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ToolSpec(BaseModel):
    """A function interface in Persona Hub's tool shape (data only: never executed)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=2)
    description: str = Field(min_length=8)
    # the pattern is in the JSON schema so that grammar-constrained servers (llama.cpp) keep to it
    function_name: str = Field(description="a valid Python identifier",
                               pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    input_args: str = Field(description="comma-separated argument names")
    return_: str = Field(alias="return", description="what the function returns")
    depend: str = Field(description="libraries or APIs it would depend on")

    @field_validator("function_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        value = value.strip()
        if not IDENTIFIER.fullmatch(value):
            raise ValueError(f"function_name {value!r} is not a valid identifier")
        return value


def check_tool_spec(content: Content) -> QualityIssue | None:
    """A tool spec: identifier function name (not a keyword), name, description, typed args."""
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


def tool_to_openai_function(tool: ToolSpec | Content) -> dict[str, Any]:
    """Persona Hub's tool shape as an OpenAI function-calling tool (a description, not code).

    ``input_args`` is free text ("city, date" or "year: int"); each identifier before an optional
    ``:`` type becomes a required string parameter.
    """
    data = tool.model_dump(by_alias=True) if isinstance(tool, ToolSpec) else dict(tool)
    params: dict[str, Any] = {}
    for chunk in str(data.get("input_args", "")).split(","):
        match = _ARG.search(chunk.split(":")[0])
        if match and match.group(0) not in params:
            params[match.group(0)] = {"type": "string", "description": chunk.strip()}
    description = str(data.get("description", ""))
    if data.get("return"):
        description += f" Returns: {data['return']}"
    return {
        "type": "function",
        "function": {
            "name": data["function_name"],
            "description": description.strip(),
            "parameters": {"type": "object", "properties": params, "required": list(params)},
        },
    }


class ToolTask(Task):
    """Runs store a tool's values joined by spaces; jobs and exports use its JSON."""

    def emission_text(self, content: Content) -> str:
        return " ".join(str(v) for v in content.values())

    def chat_tools(self, content: Content) -> list[dict[str, Any]] | None:
        return [tool_to_openai_function(content)]

    def personahub_text(self, content: Content, text: str) -> str:
        # JSON text inside a JSON string (decode twice), exactly as in Persona Hub's tool files
        return json.dumps(json.dumps(dict(content), ensure_ascii=False, indent=0),
                          ensure_ascii=False)


TASK = ToolTask(
    name="tool",
    schema=ToolSpec,
    check=check_tool_spec,
    describe=lambda content: json.dumps(content, ensure_ascii=False),
    description="tool development",
    emission=EmissionSpec(
        kind="tool_spec", max_tokens=400,
        prompt="Describe one software tool this person would find useful: name, description, "
               "function_name (a Python identifier), input_args, return, depend. No code."),
    synthesis=SynthesisSpec(
        summary="a tool interface (Persona Hub tool shape; never executed)", max_tokens=450,
        instruction="Design one tool (a function interface) that this persona would need, in the "
                    "form name, description, function_name (a valid Python identifier), "
                    "input_args, return, depend. Describe the interface only; do not write an "
                    "implementation."),
    offline_writers={"name": "title", "description": "description",
                     "function_name": "identifier", "input_args": "arguments",
                     "return": "returns", "depend": "dependencies"},
)
