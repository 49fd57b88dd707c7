"""Pydantic schemas for everything an agent or pipeline asks a model to produce.

Each emission kind has one schema; the registry ``EMISSION_SCHEMAS`` maps kind names to them so
scenarios select kinds by name and the run log stores ``kind`` plus the validated JSON.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from personahub.agents.synthesis_schemas import KnowledgeText, MathProblem, ReasoningProblem, item_text
from personahub.agents.tool_schema import ToolSpec
from pydantic import BaseModel, Field, create_model


class Instruction(BaseModel):
    """A prompt this persona would plausibly type to an AI assistant."""

    instruction: str = Field(min_length=8, description="the user prompt, in the persona's voice")


class NpcDialogue(BaseModel):
    """One line of dialogue said to a graph neighbour, delivered to them next step."""

    line: str = Field(min_length=2, description="what the persona says to the neighbour")
    tone: str = Field(default="neutral", description="one word for the tone, e.g. warm, curt")


class DialogueLine(BaseModel):
    """One line of a conversation between two neighbours."""

    line: str = Field(min_length=2, description="what is said")


class NeighbourConversation(BaseModel):
    """A short conversation with a graph neighbour: turns alternate, this persona speaks first."""

    turns: list[DialogueLine] = Field(min_length=2, max_length=6,
                                      description="alternating lines: you, them, you, ...")


EMISSION_SCHEMAS: dict[str, type[BaseModel]] = {
    "instruction": Instruction,
    "npc_dialogue": NpcDialogue,
    "tool_spec": ToolSpec,
    "conversation": NeighbourConversation,
    "math_problem": MathProblem,
    "reasoning_problem": ReasoningProblem,
    "knowledge_text": KnowledgeText,
}
# kinds addressed to a graph neighbour (they need one, and they send the neighbour a message)
ADDRESSED_KINDS = frozenset({"npc_dialogue", "conversation"})


def emission_text(kind: str, value: BaseModel) -> str:
    """The text of an emission that near-duplicate detection and search look at."""
    data = value.model_dump(by_alias=True)
    if kind == "instruction":
        return data["instruction"]
    if kind == "npc_dialogue":
        return data["line"]
    if kind == "conversation":
        return "\n".join(t["line"] for t in data["turns"])
    if kind in ("math_problem", "reasoning_problem", "knowledge_text"):
        return item_text(kind, data)
    return " ".join(str(v) for v in data.values())


def conversation_turns(content: dict[str, Any], speaker: str, listener: str) -> list[dict[str, str]]:
    """A conversation's turns with their speakers filled in (alternating, ``speaker`` first)."""
    return [{"speaker": speaker if i % 2 == 0 else listener, "line": t["line"]}
            for i, t in enumerate(content["turns"])]


@lru_cache(maxsize=256)
def survey_schema(answer: str, options: tuple[str, ...] = (), low: int = 1,
                  high: int = 5) -> type[BaseModel]:
    """The answer schema of a survey: ``choice`` (one of ``options``), ``scale`` or ``text``.

    Choice and scale answers are in ``answer``; a free-text answer is in ``reply``.
    """
    reason = (str, Field(default="", description="why, in one sentence"))
    if answer == "choice":
        choice: Any = Literal[options]  # type: ignore[valid-type]
        return create_model("ChoiceAnswer", __doc__="A survey answer: one of the options.",
                            answer=(choice, Field(description="exactly one of the options")),
                            reason=reason)
    if answer == "scale":
        return create_model("ScaleAnswer", __doc__=f"A survey answer on a {low}..{high} scale.",
                            # the enum lets grammar-constrained servers (llama.cpp) keep to the range
                            answer=(int, Field(ge=low, le=high, description=f"{low} to {high}",
                                               json_schema_extra={"enum": list(range(low, high + 1))}
                                               if high - low <= 20 else None)),
                            reason=reason)
    return create_model("TextAnswer", __doc__="A survey answer in the persona's own words.",
                        reply=(str, Field(min_length=1, description="your answer, in your own words")))


def survey_value(content: dict[str, Any]) -> Any:
    """The answer in a validated survey answer's content."""
    return content["answer"] if "answer" in content else content["reply"]
