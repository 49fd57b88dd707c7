"""The solvers' one structured call per test item, and the equivalence judge's call.

A solver either reasons first and then answers (cot) or answers alone; the reasoning is kept as
data and never executed. The judge gives a yes/no on a pair math-verify cannot decide.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

SOLVE_PURPOSE = "solve"
SOLVE_MAX_TOKENS = 600  # output limit of a solve call (a short worked solution and a final answer)
# an answer-only call: the answer alone (300 characters already read as prose, not an answer);
# a weak model that rambles to 600 tokens took a minute a call
ANSWER_MAX_TOKENS = 96
SolveMode = Literal["cot", "answer"]
SOLVE_MODES: tuple[SolveMode, ...] = ("cot", "answer")
SOLVE_SYSTEM = ("You solve problems carefully. Answer only with JSON for the schema. The final "
                "answer is a number, expression, set or interval alone: no words, no units.")
_TASK = {
    "cot": "Solve the problem above. Reason step by step in `reasoning`, then give the final "
           "answer alone in `final_answer`.",
    "answer": "Give the final answer to the problem above alone in `final_answer`.",
}


class ReasonedAnswer(BaseModel):
    """Chain of thought: the reasoning, then the final answer."""

    reasoning: str = Field(description="the steps, briefly")
    final_answer: str = Field(description="the final answer alone")


class FinalAnswer(BaseModel):
    """Answer only."""

    final_answer: str = Field(description="the final answer alone")


def solve_max_tokens(mode: SolveMode) -> int:
    """Return the output limit of a solve call in a prompting mode."""
    return SOLVE_MAX_TOKENS if mode == "cot" else ANSWER_MAX_TOKENS


def solve_schema(mode: SolveMode) -> type[BaseModel]:
    """Return the answer schema of a prompting mode."""
    return ReasonedAnswer if mode == "cot" else FinalAnswer


def solve_messages(problem: str, mode: SolveMode) -> list[BaseMessage]:
    """Return the messages asking one solver for one problem's final answer."""
    return [SystemMessage(SOLVE_SYSTEM), HumanMessage(f"Problem:\n{problem}\n\n{_TASK[mode]}")]


EQUIVALENCE_PURPOSE = "equivalence"
EQUIVALENCE_MAX_TOKENS = 60  # a yes/no on two final answers
EQUIVALENCE_SYSTEM = ("You compare two final answers to the same math problem. Answer only with "
                      "JSON for the schema: equal is true when they state the same value or "
                      "result, however written, and false otherwise.")


class EquivalenceVerdict(BaseModel):
    """The equivalence judge's yes/no on two answers math-verify could not compare."""

    equal: bool = Field(description="true when the two answers mean the same")


def equivalence_messages(a: str, b: str) -> list[BaseMessage]:
    """Return the messages asking the equivalence judge whether two answers are equal."""
    return [SystemMessage(EQUIVALENCE_SYSTEM),
            HumanMessage(f"Answer A: {a}\nAnswer B: {b}\n\nDo A and B mean the same?")]
