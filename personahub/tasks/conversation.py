"""Conversation: a short talk with a graph neighbour, turns alternating, this persona first
(emission). Stored with each turn's speaker; the neighbour receives this persona's lines."""

from __future__ import annotations

from pydantic import BaseModel, Field

from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, EmissionSpec, Task
from personahub.tasks.validators import MIN_TURNS, has_letters


class DialogueLine(BaseModel):
    """One line of a conversation between two neighbours."""

    line: str = Field(min_length=2, description="what is said")


class NeighbourConversation(BaseModel):
    """A short conversation with a graph neighbour: turns alternate, this persona speaks first."""

    turns: list[DialogueLine] = Field(min_length=2, max_length=6,
                                      description="alternating lines: you, them, you, ...")


def check_neighbour_conversation(content: Content) -> QualityIssue | None:
    """Check a conversation emission: at least ``MIN_TURNS`` turns that say something."""
    turns = [t for t in content.get("turns") or [] if has_letters(t.get("line"))]
    if len(turns) < MIN_TURNS:
        return QualityIssue("too_few_turns", f"under {MIN_TURNS} non-empty turns")
    return None


def conversation_turns(content: Content, speaker: str, listener: str) -> list[dict[str, str]]:
    """Return a conversation's turns with their speakers filled in (alternating, ``speaker`` first)."""
    return [{"speaker": speaker if i % 2 == 0 else listener, "line": t["line"]}
            for i, t in enumerate(content["turns"])]


class ConversationTask(Task):
    """A conversation stores who said each turn and sends the neighbour this persona's lines."""

    def addressed_content(self, content: dict[str, object], text: str, speaker: str,
                          listener: str) -> tuple[dict[str, object], str]:
        turns = conversation_turns(content, speaker, listener)
        said = " / ".join(t["line"] for t in turns if t["speaker"] == speaker)
        return {"turns": turns}, said


TASK = ConversationTask(
    name="conversation",
    schema=NeighbourConversation,
    check=check_neighbour_conversation,
    describe=lambda content: "\n".join(t["line"] for t in content["turns"]),
    emission=EmissionSpec(
        addressed=True, max_tokens=450,
        prompt="Write a short talk (2 to 6 lines) between this person and the neighbour under "
               "Talking to. Take turns, this person first. Continue what was said."),
    offline_writers={"line": "spoken_line"},
)
