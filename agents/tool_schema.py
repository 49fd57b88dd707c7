"""Persona Hub's tool shape, shared by simulation emissions and synthesis jobs.

Kept in its own module so ``agents.schemas`` (emission kinds) and ``agents.synthesis_schemas``
(synthesis tasks) can both use it without importing each other in a cycle.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        if not _IDENTIFIER.match(value):
            raise ValueError(f"function_name {value!r} is not a valid identifier")
        return value
