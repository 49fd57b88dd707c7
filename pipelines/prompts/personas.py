"""Prompt templates of the persona pipeline (text-to-persona, persona-to-persona), as plain data.

Prompts use "## Section" headings; the offline engine finds its context by them.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.core.sections import section
from personahub.personas.quality import language_name

PERSONA_SYSTEM = (
    "You write persona descriptions for synthetic data. A persona is one sentence describing a "
    "specific person: their role, circumstances and interests. Answer only with JSON that "
    "matches the requested schema."
)

EXPAND_TASK = (
    "The persona below knows other people: a patient, a colleague, a supplier, a family member, "
    "a customer, a rival. Describe {count} of them, each a new person, not the one below. For "
    "each, give the relation label (one or two words) and a description: one sentence that "
    "starts with \"A\" or \"An\" and that person's own role, then their circumstances and interests. "
    "Not a name."
)


def language_clause(language: str | None) -> str:
    """Return the sentence asking for a language ("" when none is asked for: prompts stay unchanged)."""
    return f" Write the personas in {language_name(language)}." if language else ""


def prompt_text(messages: list[BaseMessage]) -> str:
    """Return what a prompt shows besides its system message (the gate's echo rule compares a persona with
    it).
    """
    return "\n".join(str(m.content) for m in messages if not isinstance(m, SystemMessage))


def expand_messages(persona: str, count: int, *, language: str | None = None) -> list[BaseMessage]:
    """Persona-to-persona prompt: people in close relationship with the given persona.

    The task comes before the persona, so that the prompts of one expansion share all but the
    persona and a server's prefix cache reuses the rest.
    """
    task = EXPAND_TASK.format(count=count) + language_clause(language)
    body = section("Task", task) + "\n" + section("Persona", persona)
    return [SystemMessage(PERSONA_SYSTEM), HumanMessage(body)]


# Text-to-persona: "who is likely to <verb> this text?" (Persona Hub, section 2.1).
TEXT_RELATIONS: dict[str, str] = {
    "read": "read",
    "write": "have written",
    "like": "like",
    "dislike": "dislike",
}

TEXT_TO_PERSONA_TASK = (
    "Who is likely to {verb} the text above? Describe {count_words} in one sentence{each} that "
    "starts with \"A\" or \"An\" and the person's role (not a name), then their circumstances "
    "and interests, for example \"A night-shift nurse who ...\". Be as specific as the text "
    "allows: a detailed, specialised text (a proof, a clinical note, a tax form) points to a "
    "fine-grained persona, a general text to a broader one. Do not copy or summarise the text; "
    "describe the person."
)


def text_to_persona_messages(text: str, relation: str, count: int, *,
                             language: str | None = None) -> list[BaseMessage]:
    """Text-to-persona prompt: who is likely to read, write, like or dislike the text."""
    if relation not in TEXT_RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; known: {', '.join(TEXT_RELATIONS)}")
    count_words = "the most likely person" if count == 1 else f"up to {count} different people"
    task = TEXT_TO_PERSONA_TASK.format(verb=TEXT_RELATIONS[relation], count_words=count_words,
                                       each="" if count == 1 else " each")
    task += language_clause(language)
    body = section("Text", text) + "\n" + section("Task", task)
    return [SystemMessage(PERSONA_SYSTEM), HumanMessage(body)]


LINK_TASK = (
    "The new persona above was just described as someone in close relationship with the source "
    "persona. Below are people already in the source persona's circle. For each candidate, in "
    "the order given, say whether the new persona plausibly knows them personally, and if so how "
    "(a relation label of one or two words, e.g. neighbour, colleague, cousin). If a candidate "
    "is the new persona themself, described differently, answer knows with relation 'same "
    "person'. Answer with one entry per candidate."
)


def link_messages(new_persona: str, relation: str, source_persona: str,
                  candidates: Sequence[str]) -> list[BaseMessage]:
    """Return the triangle-closing prompt: a new persona, its source, and numbered candidates."""
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(candidates, 1))
    body = (section("Persona", new_persona)
            + "\n" + section("Source persona", f"{source_persona} (the new persona is their "
                                                f"{relation})")
            + "\n" + section("Candidates", listed) + "\n" + section("Task", LINK_TASK))
    return [SystemMessage(PERSONA_SYSTEM), HumanMessage(body)]
