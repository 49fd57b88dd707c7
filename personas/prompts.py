"""Prompt templates of the persona pipeline (text-to-persona, persona-to-persona), as plain data.

Prompts use ``## Section`` headings; the offline engine finds its context by the same headings.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

PERSONA_SYSTEM = (
    "You write persona descriptions for synthetic data. A persona is one sentence describing a "
    "specific person: their role, circumstances and interests. Answer only with JSON that "
    "matches the requested schema."
)

EXPAND_TASK = (
    "Who is in close relationship with the persona above? Describe {count} different people "
    "(for example a patient, colleague, supplier, family member, customer or rival). For each, "
    "give the relation label (one or two words) and a specific one-sentence persona."
)


def section(title: str, body: str) -> str:
    """One ``## Title`` block of a prompt."""
    return f"## {title}\n{body.strip()}\n"


def expand_messages(persona: str, count: int) -> list[BaseMessage]:
    """Persona-to-persona prompt: who is in close relationship with ``persona``."""
    body = section("Persona", persona) + "\n" + section("Task", EXPAND_TASK.format(count=count))
    return [SystemMessage(PERSONA_SYSTEM), HumanMessage(body)]
