"""Reasoning problem: a logic puzzle shaped by the persona, no solution (emission and synthesis;
``--solve`` adds a worked solution)."""

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

# Concrete steps a small model follows (the facts and rules, then one question), as for math
REASONING_PROMPT = ("Write a logic puzzle about this person's work or daily life. Give the facts "
                    "and rules it needs, then ask one question that follows from them. Do not "
                    "solve it.")


# Two shaped fields, as ``MathProblem`` (the docstring is sent to the model)
class ReasoningProblem(BaseModel):
    """A logic puzzle from the persona's situation: its facts and rules, then its question (no
    solution)."""

    # numbers, dates and times: bounded at a character a token, so a run of digits closes too
    problem: Annotated[str, DIGITS, SENTENCE] = Field(
        min_length=8, description="the situation, with the facts and rules the question needs")
    question: Annotated[str, SHORT, DIGITS, QUESTION] = Field(
        min_length=8, description="the one question to answer, ending with a question mark")


def check_reasoning_problem(content: Content) -> QualityIssue | None:
    """Check a reasoning problem that can be answered: a question, long enough."""
    return problem_issue(content, needs_quantity=False)


TASK = Task(
    name="reasoning_problem",
    schema=ReasoningProblem,
    check=check_reasoning_problem,
    describe=problem_text,
    description="logical reasoning problem",
    emission=EmissionSpec(
        max_tokens=PROBLEM_MAX_TOKENS,
        prompt=REASONING_PROMPT),
    synthesis=SynthesisSpec(
        summary="a logical reasoning problem", solvable=True,
        instruction=REASONING_PROMPT),
    offline_writers={"problem": "problem"},
    judge_criteria=PROBLEM_CRITERIA,
)
