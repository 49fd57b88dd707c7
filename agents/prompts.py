"""Prompt templates, kept as plain data in one module.

Prompts use ``## Section`` headings (Persona, World, Events, Messages received, Task). A real model
reads them as ordinary structure; the offline engine uses the same headings to find its context.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personas.prompts import section

AGENT_SYSTEM = (
    "You are role-playing one member of a simulated society. Stay in character as the persona "
    "described below. Answer only with JSON that matches the requested schema."
)

KIND_TASKS: dict[str, str] = {
    "instruction": (
        "Write one prompt that this persona would plausibly type to an AI assistant today, "
        "in their own voice, shaped by their situation and what they heard."
    ),
    "npc_dialogue": (
        "Say one line of dialogue to the neighbour named below, in character. React to what "
        "they or others said if anything was said."
    ),
    "tool_spec": (
        "Design one software tool (a function interface) this persona would find useful. Give "
        "name, description, function_name (a valid Python identifier), input_args, return, "
        "depend. Do not write the implementation."
    ),
}

def agent_messages(
    *,
    persona: str,
    kind: str,
    world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    addressee: str | None = None,
) -> list[BaseMessage]:
    """Messages for one agent action of ``kind`` (inbox items are (sender persona, text))."""
    parts = [section("Persona", persona)]
    if world:
        parts.append(section("World", world))
    if events:
        parts.append(section("Events", "\n".join(f"- {e}" for e in events)))
    if inbox:
        heard = "\n".join(f"- from {sender[:80]}: {text}" for sender, text in inbox)
        parts.append(section("Messages received", heard))
    if addressee:
        parts.append(section("Talking to", addressee))
    parts.append(section("Task", KIND_TASKS[kind]))
    return [SystemMessage(AGENT_SYSTEM), HumanMessage("\n".join(parts))]
