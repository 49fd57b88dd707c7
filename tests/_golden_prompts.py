"""The agent and survey prompts as they were when the offline goldens were pinned (frozen).

``tests/agents/test_offline_golden.py`` pins the offline engine's answers to fixed messages. Its engine,
chat model, client and server sections build those messages with these frozen templates, so
that changing today's prompts (``agents/prompts/agent.py``: shorter texts, section order, budgets)
leaves the engine's goldens alone; the agent-graph section runs today's prompts and pins them.
A verbatim copy of ``agents/prompts/agent.py`` at commit aafc1e7; do not edit.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.core.sections import section

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
    "conversation": (
        "Write a short conversation (2 to 6 lines) between this persona and the neighbour named "
        "below. Lines alternate: this persona speaks first, then the neighbour, and so on. Pick up "
        "what was said before if anything was."
    ),
    "math_problem": (
        "Write one challenging math word problem this persona would pose or meet in their life, "
        "set in their world. Give only the problem, no solution."
    ),
    "reasoning_problem": (
        "Write one logical reasoning problem (a puzzle or deduction) shaped by this persona's "
        "situation. Give only the problem, no solution."
    ),
    "knowledge_text": (
        "Write a short knowledge-rich text (an explainer) that this persona would write or want "
        "to read, with a title."
    ),
}

SURVEY_SYSTEM = (
    "You are answering a survey in character as the persona described below. Answer honestly "
    "from their point of view, only with JSON that matches the requested schema."
)

def agent_messages(
    *,
    persona: str,
    kind: str,
    world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    addressee: str | None = None,
    memory: Sequence[str] = (),
    recent: Sequence[str] = (),
) -> list[BaseMessage]:
    """Messages for one agent action of ``kind`` (inbox items are (sender persona, text)).

    ``memory`` holds what the agent remembers (summary of older things, earlier events), and
    ``recent`` its own latest emissions, so it does not repeat itself.
    """
    parts = _context(persona, world, events, inbox, memory, recent)
    if addressee:
        parts.append(section("Talking to", addressee))
    parts.append(section("Task", KIND_TASKS[kind]))
    return [SystemMessage(AGENT_SYSTEM), HumanMessage("\n".join(parts))]


def survey_messages(
    *,
    persona: str,
    question: str,
    answer_hint: str,
    world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    memory: Sequence[str] = (),
) -> list[BaseMessage]:
    """Messages asking one agent a survey question (``answer_hint`` says the answer format)."""
    parts = _context(persona, world, events, inbox, memory, ())
    parts.append(section("Question", question))
    parts.append(section("Answer format", answer_hint))
    return [SystemMessage(SURVEY_SYSTEM), HumanMessage("\n".join(parts))]


def _context(persona: str, world: str, events: Sequence[str], inbox: Sequence[tuple[str, str]],
             memory: Sequence[str], recent: Sequence[str]) -> list[str]:
    parts = [section("Persona", persona)]
    if world:
        parts.append(section("World", world))
    if memory:
        parts.append(section("Memory", "\n".join(f"- {m}" for m in memory)))
    if events:
        parts.append(section("Events", "\n".join(f"- {e}" for e in events)))
    if inbox:
        heard = "\n".join(f"- from {sender[:80]}: {text}" for sender, text in inbox)
        parts.append(section("Messages received", heard))
    if recent:
        parts.append(section("Your recent output", "\n".join(f"- {r[:200]}" for r in recent)))
    return parts
