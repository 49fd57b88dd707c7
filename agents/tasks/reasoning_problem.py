"""Reasoning problem: a logic puzzle shaped by the persona, no solution (emission and synthesis;
``--solve`` adds a worked solution)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from personahub.agents.llm.bounds import DIGITS
from personahub.agents.tasks.base import (
    PROBLEM_CRITERIA,
    PROBLEM_MAX_TOKENS,
    Content,
    EmissionSpec,
    SynthesisSpec,
    Task,
)
from personahub.agents.validators import problem_issue
from personahub.personas.quality import QualityIssue


class ReasoningProblem(BaseModel):
    """A logical reasoning problem (puzzle, deduction) shaped by the persona (no solution)."""

    # numbers, dates and times: bounded at a character a token, so a run of digits closes too
    problem: Annotated[str, DIGITS] = Field(
        min_length=8, description="the full problem statement, ending with the question to answer")


def check_reasoning_problem(content: Content) -> QualityIssue | None:
    """A reasoning problem that can be answered: a question, long enough."""
    return problem_issue(content, needs_quantity=False)


TASK = Task(
    name="reasoning_problem",
    schema=ReasoningProblem,
    check=check_reasoning_problem,
    describe=lambda content: content["problem"],
    description="logical reasoning problem",
    emission=EmissionSpec(
        kind="reasoning_problem", max_tokens=PROBLEM_MAX_TOKENS,
        prompt="Write one logic puzzle shaped by this person's life. Only the puzzle, no "
               "solution; end with the question to answer."),
    synthesis=SynthesisSpec(
        summary="a logical reasoning problem", solvable=True,
        instruction="Create a logical reasoning problem (a deduction, scheduling or constraint "
                    "puzzle) grounded in this persona's situation. It must have exactly one "
                    "correct answer that follows from the stated facts. Write only the problem, "
                    "not the solution, and end it with the question to answer, ending in a "
                    "question mark."),
    offline_writers={"problem": "problem"},
    judge_criteria=PROBLEM_CRITERIA,
)
