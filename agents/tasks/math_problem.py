"""Math problem: a challenging word problem set in the persona's world, no solution (emission and
synthesis; ``--solve`` adds a worked solution)."""

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


class MathProblem(BaseModel):
    """A challenging math word problem set in the persona's world (no solution)."""

    # numbers, dates and times: bounded at a character a token, so a run of digits closes too
    problem: Annotated[str, DIGITS] = Field(
        min_length=8, description="the full problem statement, ending with the question to answer")


def check_math_problem(content: Content) -> QualityIssue | None:
    """A math problem that can be answered: a question, long enough, with a quantity."""
    return problem_issue(content, needs_quantity=True)


TASK = Task(
    name="math_problem",
    schema=MathProblem,
    check=check_math_problem,
    describe=lambda content: content["problem"],
    description="math problem",
    emission=EmissionSpec(
        kind="math_problem", max_tokens=PROBLEM_MAX_TOKENS,
        prompt="Write one hard math word problem from this person's life. Only the problem, no "
               "solution; end with the question to answer."),
    synthesis=SynthesisSpec(
        summary="a challenging math word problem", solvable=True,
        instruction="Create a challenging math problem that this persona would meet in their work "
                    "or life. It needs advanced skills to solve, and its numbers and setting come "
                    "from the persona's world. Write only the problem, not the solution, and end "
                    "it with the question to answer, ending in a question mark."),
    offline_writers={"problem": "problem"},
    judge_criteria=PROBLEM_CRITERIA,
)
