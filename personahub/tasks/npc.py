"""NPC: the persona projected into a game world as a non-player character (synthesis; the world
comes from ``--world``, by default the shipped fantasy village)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, Field

from personahub.models.bounds import SHORT
from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, Criterion, SynthesisSpec, Task
from personahub.tasks.validators import has_letters


class NpcProfile(BaseModel):
    """A game non-player character: the persona projected into the given game world."""

    name: Annotated[str, SHORT] = Field(min_length=2, description="the character's name in the world")
    role: str = Field(min_length=2, description="their place in the world (faction, trade)")
    description: str = Field(min_length=8, description="background and motivations")
    line: str = Field(min_length=2, description="what they say when the player meets them")


def check_npc_profile(content: Content) -> QualityIssue | None:
    """Check a synthesized NPC: a name and a non-empty line."""
    if not has_letters(content.get("name")):
        return QualityIssue("no_name", "the NPC has no name")
    if not has_letters(content.get("line")):
        return QualityIssue("empty_line", "the NPC's line is empty")
    return None


def npc_text(content: Content) -> str:
    """Name, role, description and the quoted line."""
    head = f"{content['name']} ({content['role']}): {content['description']}"
    return f"{head} \"{content['line']}\""


# The user's turn of an NPC's chat row: the player walks up to the character.
PLAYER_MEETS = "You meet the player. What do you say?"


def npc_setup(content: Content) -> str:
    """Who the character is (name, role, background): how the user turn of its chat row opens."""
    return f"You are {content['name']} ({content['role']}): {content['description']}"


class NpcTask(Task):
    """An NPC exports as a chat exchange: the player meets the character, the NPC answers."""

    def chat_messages(self, content: Content, solution: Mapping[str, object] | None = None, *,
                      persona: str = "") -> list[dict[str, str]]:
        return [{"role": "user", "content": f"{npc_setup(content)}\n\n{PLAYER_MEETS}"},
                {"role": "assistant", "content": str(content["line"])}]


TASK = NpcTask(
    name="npc",
    schema=NpcProfile,
    check=check_npc_profile,
    describe=npc_text,
    synthesis=SynthesisSpec(
        summary="a game NPC in a given world", needs_world=True, max_tokens=400,
        instruction="Project this persona into the game world described above: create a "
                    "non-player character who is who the persona would be in that world. Give a "
                    "name that fits the world, their role, a background with motivations, and "
                    "the line they say on meeting the player."),
    offline_writers={"name": "title", "role": "sentence", "description": "description",
                     "line": "spoken_line"},
    judge_criteria=(
        Criterion("consistent_with_world", "It is consistent with the world described under "
                                           "World (its places, people and rules); with no world "
                                           "given, with the persona."),
        Criterion("in_character", "It reads as something this character would say or be."),
    ),
)
