"""Math problem: a challenging word problem set in the persona's world, no solution (emission and
synthesis; ``--solve`` adds a worked solution)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from personahub.models.bounds import DIGITS, QUESTION, SENTENCE, SHORT
from personahub.personas.quality import QualityIssue
from personahub.tasks.base import (
    PROBLEM_CRITERIA,
    PROBLEM_MAX_TOKENS,
    Content,
    EmissionSpec,
    SynthesisSpec,
    Task,
)
from personahub.tasks.validators import problem_issue, problem_text

# Concrete steps a small model follows (what the facts hold, what the question needs) rather than
# "a challenging problem that needs advanced skills", which SmolLM2-135M answered by restating
MATH_PROMPT = ("Write a math word problem about this person's work or daily life. Give the numbers "
               "it needs (amounts, prices, distances, times), then ask one question that needs a "
               "calculation. Do not solve it.")


# Two shaped fields (``SENTENCE``, ``QUESTION``) rather than one free string: a tiny model on a
# grammar-constrained server then writes a question, and cannot open with a run of digits
# (``bench/bench_problem_schema.py`` compares the two). The docstring is sent to the model.
class MathProblem(BaseModel):
    """A math word problem from the persona's world: its facts, then its question (no
    solution)."""

    # numbers, dates and times: bounded at a character a token, so a run of digits closes too
    problem: Annotated[str, DIGITS, SENTENCE] = Field(
        min_length=8, description="the situation and the facts the question needs, with its numbers")
    question: Annotated[str, SHORT, DIGITS, QUESTION] = Field(
        min_length=8, description="the one question to answer, ending with a question mark")


def check_math_problem(content: Content) -> QualityIssue | None:
    """Check a math problem that can be answered: a question, long enough, with a quantity."""
    return problem_issue(content, needs_quantity=True)


TASK = Task(
    name="math_problem",
    schema=MathProblem,
    check=check_math_problem,
    describe=problem_text,
    description="math problem",
    emission=EmissionSpec(
        max_tokens=PROBLEM_MAX_TOKENS,
        prompt=MATH_PROMPT),
    synthesis=SynthesisSpec(
        summary="a challenging math word problem", solvable=True,
        instruction=MATH_PROMPT),
    offline_writers={"problem": "problem"},
    judge_criteria=PROBLEM_CRITERIA,
)
