"""Instruction: a prompt the persona would type to an AI assistant (emission and synthesis)."""

from __future__ import annotations

from pydantic import BaseModel, Field, create_model

from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, Criterion, EmissionSpec, SynthesisSpec, Task
from personahub.tasks.validators import (
    MIN_INSTRUCTION_CHARS,
    MIN_INSTRUCTION_WORDS,
    free_text_issue,
    squash,
)


class Instruction(BaseModel):
    """A prompt this persona would plausibly type to an AI assistant."""

    instruction: str = Field(min_length=8, description="the user prompt, in the persona's voice")


# The same schema under the title and description synthesis jobs have always sent to models: the
# JSON schema is part of every prompt (and of the offline engine's seed), so it stays byte-for-byte.
InstructionItem = create_model("InstructionItem", __base__=Instruction,
                               __doc__="One user prompt the persona would type to an AI assistant.")


def check_instruction(content: Content) -> QualityIssue | None:
    """Check an instruction (emission or synthesis item) of non-trivial length."""
    return free_text_issue(squash(content.get("instruction")), "instruction",
                           MIN_INSTRUCTION_CHARS, MIN_INSTRUCTION_WORDS)


TASK = Task(
    name="instruction",
    schema=Instruction,
    check=check_instruction,
    describe=lambda content: content["instruction"],
    emission=EmissionSpec(
        max_tokens=256,
        prompt="Write one request this person would type to an AI assistant today, in their "
               "own words."),
    synthesis=SynthesisSpec(
        summary="a user prompt to an AI assistant", schema=InstructionItem,
        instruction="Guess one prompt (instruction) this persona would type to an AI assistant. "
                    "Write it in their voice, as they would actually type it."),
    offline_writers={"instruction": "request"},
    judge_criteria=(
        Criterion("clear", "The instruction is clear: a reader knows what is being asked."),
        Criterion("answerable", "An assistant could answer it well from the instruction alone."),
    ),
)
