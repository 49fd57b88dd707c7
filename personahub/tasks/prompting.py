"""The synthesis prompt every task shares, in Persona Hub's three prompting modes.

- ``zero-shot``: persona + task only;
- ``few-shot``: demonstrations (texts) before the task;
- ``persona-few-shot``: each demonstration is paired with the persona it came from.

A task brings only its instruction (``Task.synthesis_instruction``). Prompts use ``## Section``
headings; the offline engine finds its context by the same headings.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.core.sections import section

PROMPTING_MODES = ("zero-shot", "few-shot", "persona-few-shot")

SYNTH_SYSTEM = (
    "You create synthetic data from the perspective of a persona. Let the persona's background, "
    "work and interests shape the content; do not mention the persona explicitly unless asked. "
    "Answer only with JSON that matches the requested schema."
)
FEW_SHOT_NOTE = " Follow the style of the examples, but write new content for this persona."


def examples_block(mode: str, examples: Sequence[tuple[str, str | None]]) -> str:
    """Return the ``## Examples`` section of a few-shot mode ("" for zero-shot or no examples)."""
    if mode == "zero-shot" or not examples:
        return ""
    blocks = []
    for i, (text, persona) in enumerate(examples, 1):
        if mode == "persona-few-shot" and persona:
            blocks.append(f"Example {i}\nExample persona: {persona}\nExample output: {text}")
        else:
            blocks.append(f"Example {i}\n{text}")
    return section("Examples", "\n\n".join(blocks))


def prompt_messages(instruction: str, persona: str, *, mode: str = "zero-shot",
                    examples: Sequence[tuple[str, str | None]] = (),
                    world: str = "") -> list[BaseMessage]:
    """Messages asking for one item: world, examples, persona, then ``instruction`` as the task."""
    parts = []
    if world:
        parts.append(section("World", world))
    block = examples_block(mode, examples)
    if block:
        parts.append(block)
    parts.append(section("Persona", persona))
    task_text = instruction + FEW_SHOT_NOTE if block else instruction
    parts.append(section("Task", task_text))
    return [SystemMessage(SYNTH_SYSTEM), HumanMessage("\n".join(parts))]
