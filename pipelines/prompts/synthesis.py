"""Synthesis prompts: one item of a task in a prompting mode, a solution, a demo's persona.
Prompts use "## Section" headings, by which the offline engine finds its context.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.core.sections import section
from personahub.tasks import synthesis_task
from personahub.tasks.prompting import PROMPTING_MODES, SYNTH_SYSTEM, prompt_messages

__all__ = ["PROMPTING_MODES", "SYNTH_SYSTEM", "demo_persona_messages", "solve_messages",
           "synthesis_messages", "world_for_prompt"]

SOLVE_TASK = (
    "Solve the problem above. Reason step by step, then give the final answer on its own."
)
TEXT_TO_PERSONA_TASK = (
    "Who is likely to read, write, like or need the text above? Describe that person as one "
    "specific persona sentence (role, circumstances, interests)."
)


def synthesis_messages(
    task: str,
    persona: str,
    *,
    mode: str = "zero-shot",
    examples: Sequence[tuple[str, str | None]] = (),
    world: str = "",
    with_assistant: bool = False,
) -> list[BaseMessage]:
    """Messages asking for one item of a task from a persona (examples are (text, persona) pairs)."""
    instruction = synthesis_task(task).synthesis_instruction(with_assistant=with_assistant)
    return prompt_messages(instruction, persona, mode=mode, examples=examples, world=world)


def solve_messages(problem: str) -> list[BaseMessage]:
    """Second pass: ask for a worked solution to a synthesized problem."""
    body = section("Problem", problem) + "\n" + section("Task", SOLVE_TASK)
    return [SystemMessage("You solve problems carefully. Answer only with JSON for the schema."),
            HumanMessage(body)]


def demo_persona_messages(text: str) -> list[BaseMessage]:
    """Infer the persona behind a demonstration that came without one (persona-few-shot)."""
    body = section("Text", text) + "\n" + section("Task", TEXT_TO_PERSONA_TASK)
    return [SystemMessage("You infer personas from texts. Answer only with JSON for the schema."),
            HumanMessage(body)]


def world_for_prompt(markdown: str) -> str:
    """Return a world/lore file flattened so that its own headings stay inside the prompt's World section."""
    lines = []
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            line = stripped.lstrip("#").strip() + ":"
        lines.append(line)
    return "\n".join(lines).strip()


# alias kept only for the frozen golden data (tests/agents/test_offline_golden.py)
text_to_persona_messages = demo_persona_messages
