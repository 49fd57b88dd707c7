"""Prompt templates of persona-driven synthesis, as plain data (``personahub synthesize --list``).

One template per task, written for this project after the Persona Hub method: the persona goes
into the prompt and the model writes from that perspective. Three prompting modes:

- ``zero-shot``: persona + task only;
- ``few-shot``: demonstrations (texts) before the task;
- ``persona-few-shot``: each demonstration is paired with the persona it came from.

Prompts use ``## Section`` headings; the offline engine finds its context by the same headings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from personahub.personas.prompts import section

PROMPTING_MODES = ("zero-shot", "few-shot", "persona-few-shot")

SYNTH_SYSTEM = (
    "You create synthetic data from the perspective of a persona. Let the persona's background, "
    "work and interests shape the content; do not mention the persona explicitly unless asked. "
    "Answer only with JSON that matches the requested schema."
)


@dataclass(frozen=True)
class SynthesisTemplate:
    """One task's prompt: what it asks for, and whether it takes a world file or a solver."""

    task: str
    summary: str
    instruction: str
    needs_world: bool = False
    solvable: bool = False


TEMPLATES: dict[str, SynthesisTemplate] = {t.task: t for t in (
    SynthesisTemplate(
        "math_problem", "a challenging math word problem",
        "Create a challenging math problem that this persona would meet in their work or life. "
        "It needs advanced skills to solve, and its numbers and setting come from the persona's "
        "world. Write only the problem, not the solution.",
        solvable=True),
    SynthesisTemplate(
        "reasoning_problem", "a logical reasoning problem",
        "Create a logical reasoning problem (a deduction, scheduling or constraint puzzle) "
        "grounded in this persona's situation. It must have exactly one correct answer that "
        "follows from the stated facts. Write only the problem, not the solution.",
        solvable=True),
    SynthesisTemplate(
        "instruction", "a user prompt to an AI assistant",
        "Guess one prompt (instruction) this persona would type to an AI assistant. Write it "
        "in their voice, as they would actually type it."),
    SynthesisTemplate(
        "multi_turn", "a multi-turn conversation's user turns (and assistant turns on request)",
        "Write a conversation this persona would have with an AI assistant over several turns. "
        "Each user turn follows up on the previous exchange. If assistant turns are requested, "
        "each one answers the user turn before it."),
    SynthesisTemplate(
        "knowledge_text", "a knowledge-rich text",
        "Write a short knowledge-rich text (an explainer or encyclopedia-style article) that "
        "this persona knows well or would want to read: accurate, specific, well organised. "
        "Give it a title."),
    SynthesisTemplate(
        "npc", "a game NPC in a given world",
        "Project this persona into the game world described above: create a non-player "
        "character who is who the persona would be in that world. Give a name that fits the "
        "world, their role, a background with motivations, and the line they say on meeting "
        "the player.",
        needs_world=True),
    SynthesisTemplate(
        "tool", "a tool interface (Persona Hub tool shape; never executed)",
        "Design one tool (a function interface) that this persona would need, in the form "
        "name, description, function_name (a valid Python identifier), input_args, return, "
        "depend. Describe the interface only; do not write an implementation."),
)}

SOLVE_TASK = (
    "Solve the problem above. Reason step by step, then give the final answer on its own."
)
TEXT_TO_PERSONA_TASK = (
    "Who is likely to read, write, like or need the text above? Describe that person as one "
    "specific persona sentence (role, circumstances, interests)."
)
ASSISTANT_TURNS_NOTE = "Include the assistant's reply after every user turn."


def _examples_block(mode: str, examples: Sequence[tuple[str, str | None]]) -> str:
    if mode == "zero-shot" or not examples:
        return ""
    blocks = []
    for i, (text, persona) in enumerate(examples, 1):
        if mode == "persona-few-shot" and persona:
            blocks.append(f"Example {i}\nExample persona: {persona}\nExample output: {text}")
        else:
            blocks.append(f"Example {i}\n{text}")
    return section("Examples", "\n\n".join(blocks))


def synthesis_messages(
    task: str,
    persona: str,
    *,
    mode: str = "zero-shot",
    examples: Sequence[tuple[str, str | None]] = (),
    world: str = "",
    with_assistant: bool = False,
) -> list[BaseMessage]:
    """Messages asking for one item of ``task`` from ``persona`` (examples: (text, persona))."""
    template = TEMPLATES[task]
    parts = []
    if world:
        parts.append(section("World", world))
    block = _examples_block(mode, examples)
    if block:
        parts.append(block)
    parts.append(section("Persona", persona))
    task_text = template.instruction
    if task == "multi_turn" and with_assistant:
        task_text += " " + ASSISTANT_TURNS_NOTE
    if block:
        task_text += " Follow the style of the examples, but write new content for this persona."
    parts.append(section("Task", task_text))
    return [SystemMessage(SYNTH_SYSTEM), HumanMessage("\n".join(parts))]


def solve_messages(problem: str) -> list[BaseMessage]:
    """Second pass: ask for a worked solution to a synthesized problem."""
    body = section("Problem", problem) + "\n" + section("Task", SOLVE_TASK)
    return [SystemMessage("You solve problems carefully. Answer only with JSON for the schema."),
            HumanMessage(body)]


def text_to_persona_messages(text: str) -> list[BaseMessage]:
    """Text-to-persona: infer the persona behind a demonstration that came without one."""
    body = section("Text", text) + "\n" + section("Task", TEXT_TO_PERSONA_TASK)
    return [SystemMessage("You infer personas from texts. Answer only with JSON for the schema."),
            HumanMessage(body)]


def world_for_prompt(markdown: str) -> str:
    """A world/lore file flattened so its own headings stay inside the ``## World`` section."""
    lines = []
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            line = stripped.lstrip("#").strip() + ":"
        lines.append(line)
    return "\n".join(lines).strip()
