"""Pydantic schemas for everything an agent or pipeline asks a model to produce.

Each emission kind has one schema; the registry ``EMISSION_SCHEMAS`` maps kind names to them so
scenarios select kinds by name and the run log stores ``kind`` plus the validated JSON.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Instruction(BaseModel):
    """A prompt this persona would plausibly type to an AI assistant."""

    instruction: str = Field(min_length=8, description="the user prompt, in the persona's voice")


class NpcDialogue(BaseModel):
    """One line of dialogue said to a graph neighbour, delivered to them next step."""

    line: str = Field(min_length=2, description="what the persona says to the neighbour")
    tone: str = Field(default="neutral", description="one word for the tone, e.g. warm, curt")


class ToolSpec(BaseModel):
    """A function interface in Persona Hub's tool shape (data only: never executed)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=2)
    description: str = Field(min_length=8)
    function_name: str = Field(description="a valid Python identifier")
    input_args: str = Field(description="comma-separated argument names")
    return_: str = Field(alias="return", description="what the function returns")
    depend: str = Field(description="libraries or APIs it would depend on")

    @field_validator("function_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        value = value.strip()
        if not _IDENTIFIER.match(value):
            raise ValueError(f"function_name {value!r} is not a valid identifier")
        return value


EMISSION_SCHEMAS: dict[str, type[BaseModel]] = {
    "instruction": Instruction,
    "npc_dialogue": NpcDialogue,
    "tool_spec": ToolSpec,
}


def emission_text(kind: str, value: BaseModel) -> str:
    """The text of an emission that near-duplicate detection and search look at."""
    data = value.model_dump(by_alias=True)
    if kind == "instruction":
        return data["instruction"]
    if kind == "npc_dialogue":
        return data["line"]
    return " ".join(str(v) for v in data.values())
