"""Schemas of the synthesis passes that are not output kinds: solutions and inferred personas.

SYNTH_SCHEMAS and schema_for keep the built-in tasks' older names, which the frozen offline
goldens hold.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, Field

from personahub.models.bounds import SHORT
from personahub.tasks import synthesis_task


class Solution(BaseModel):
    """A worked solution to a synthesized problem (second pass, ``--solve``)."""

    solution: str = Field(min_length=2, description="the reasoning, step by step")
    answer: Annotated[str, SHORT] = Field(min_length=1, description="the final answer, short")


class InferredPersona(BaseModel):
    """Text-to-persona: who would likely read, write or need the given text."""

    persona: str = Field(min_length=8, description="one sentence describing that person")


_BUILT_IN_TASKS = ("math_problem", "reasoning_problem", "instruction", "multi_turn",
                   "knowledge_text", "npc", "tool_spec")
SYNTH_SCHEMAS = MappingProxyType({name: synthesis_task(name).synthesis_schema()
                                  for name in _BUILT_IN_TASKS})


def schema_for(task: str, *, with_assistant: bool = False) -> type[BaseModel]:
    """Return the schema a synthesis task asks for."""
    return synthesis_task(task).synthesis_schema(with_assistant=with_assistant)


def content_of(value: BaseModel) -> dict[str, object]:
    """Return the stored JSON content of an answer, keys as Persona Hub has them."""
    return value.model_dump(by_alias=True)
