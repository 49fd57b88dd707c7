"""NPC dialogue: one line said to a graph neighbour, delivered to them next step (emission)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, Criterion, EmissionSpec, Task
from personahub.tasks.validators import has_letters

# A tone is a choice, not free text: small models fill an enum reliably.
Tone = Literal["neutral", "warm", "friendly", "curt", "worried", "angry", "excited", "formal",
               "playful", "sad"]


class NpcDialogue(BaseModel):
    """One line of dialogue said to a graph neighbour, delivered to them next step."""

    line: str = Field(min_length=2, description="what the persona says to the neighbour")
    tone: Tone = Field(default="neutral", description="the tone of the line")


def check_npc_line(content: Content) -> QualityIssue | None:
    """Check an NPC dialogue emission: the speaker is the agent; its line must say something."""
    if not has_letters(content.get("line")):
        return QualityIssue("empty_line", "the dialogue line is empty")
    return None


TASK = Task(
    name="npc_dialogue",
    schema=NpcDialogue,
    check=check_npc_line,
    describe=lambda content: content["line"],
    description="npc dialogue",
    emission=EmissionSpec(
        addressed=True, max_tokens=200,
        prompt="Say one line to the neighbour under Talking to, in character. If they said "
               "something, reply to it."),
    offline_writers={"line": "spoken_line", "tone": "sentence"},
    chat_request="Say one line to a neighbour, in character.",
    judge_criteria=(
        Criterion("consistent_with_world", "It is consistent with the world described under "
                                           "World (its places, people and rules); with no world "
                                           "given, with the persona."),
        Criterion("in_character", "It reads as something this character would say or be."),
    ),
)
