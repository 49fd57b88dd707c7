"""Multi-turn: a conversation with an AI assistant, user turns only or with the assistant's
replies (``--with-assistant``) (synthesis)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, SynthesisSpec, Task
from personahub.tasks.validators import MIN_TURNS, has_letters

ASSISTANT_TURNS_NOTE = "Include the assistant's reply after every user turn."


class UserTurns(BaseModel):
    """A multi-turn conversation, user side only: each turn follows up on the previous one."""

    user_turns: list[str] = Field(min_length=2, max_length=5,
                                  description="what the user types, turn by turn")


class ChatTurn(BaseModel):
    """One exchange: the user's message and the assistant's answer to it."""

    user: str = Field(min_length=2, description="what the user types")
    assistant: str = Field(min_length=2, description="the assistant's reply")


class Conversation(BaseModel):
    """A multi-turn conversation with both sides; pairs keep user/assistant alternating."""

    turns: list[ChatTurn] = Field(min_length=2, max_length=5)


def check_multi_turn(content: Content) -> QualityIssue | None:
    """Check a synthesized conversation: user turns only, or user/assistant pairs, at least two."""
    if "turns" in content:
        pairs = content.get("turns") or []
        said = [t for t in pairs if has_letters(t.get("user")) and has_letters(t.get("assistant"))]
        if len(said) < len(pairs):
            return QualityIssue("empty_turn", "a turn has an empty user or assistant message")
        count = len(said)
    else:
        count = sum(has_letters(t) for t in content.get("user_turns") or [])
    if count < MIN_TURNS:
        return QualityIssue("too_few_turns", f"under {MIN_TURNS} non-empty turns")
    return None


def user_side(content: Content) -> str:
    """Return the user's turns, one a line (what near-duplicate detection compares)."""
    if "turns" in content:
        return "\n".join(t["user"] for t in content["turns"])
    return "\n".join(content["user_turns"])


class MultiTurnTask(Task):
    """Asks for ``Conversation`` with assistant turns, and exports both sides as chat."""

    def synthesis_schema(self, *, with_assistant: bool = False) -> type[BaseModel]:
        return Conversation if with_assistant else UserTurns

    def synthesis_instruction(self, *, with_assistant: bool = False) -> str:
        instruction = super().synthesis_instruction()
        return f"{instruction} {ASSISTANT_TURNS_NOTE}" if with_assistant else instruction

    def chat_messages(self, content: Content, solution: Mapping[str, object] | None = None, *,
                      persona: str = "") -> list[dict[str, str]]:
        if "turns" in content:
            messages = []
            for turn in content["turns"]:
                messages += [{"role": "user", "content": turn["user"]},
                             {"role": "assistant", "content": turn["assistant"]}]
            return messages
        # user-only turns: one user message holding the conversation's opening turn
        return [{"role": "user", "content": content["user_turns"][0]}]


TASK = MultiTurnTask(
    name="multi_turn",
    schema=UserTurns,
    check=check_multi_turn,
    describe=user_side,
    description="multi-turn instruction",
    synthesis=SynthesisSpec(
        summary="a multi-turn conversation's user turns (and assistant turns on request)",
        max_tokens=600,
        instruction="Write a conversation this persona would have with an AI assistant over "
                    "several turns. Each user turn follows up on the previous exchange. If "
                    "assistant turns are requested, each one answers the user turn before it."),
    # list items are written under the list's name without its trailing "s"
    offline_writers={"user_turn": "request", "user": "request", "assistant": "assistant_reply"},
)
