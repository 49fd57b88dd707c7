"""Survey answers: what an agent answers when a scenario's survey asks it a question.

Not a registered task: the answer schema is built from the survey itself, and answers go to
their own table, not to emissions or items.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, create_model

SURVEY_MAX_TOKENS = 160  # output limit of a survey answer: an answer and a one-sentence reason
# what a survey asks besides its question; the system text is every in-character call's
# (agents/prompts/agent.py, AGENT_SYSTEM), so a survey shares its prompt's head with the actions
SURVEY_TASK = "Answer this survey question honestly."


@lru_cache(maxsize=256)
def survey_schema(answer: str, options: tuple[str, ...] = (), low: int = 1,
                  high: int = 5) -> type[BaseModel]:
    """Return the answer schema of a choice, scale or text survey (free text goes in reply)."""
    reason = (str, Field(default="", description="why, in one sentence"))
    if answer == "choice":
        choice: Any = Literal[options]
        return create_model("ChoiceAnswer", __doc__="A survey answer: one of the options.",
                            answer=(choice, Field(description="exactly one of the options")),
                            reason=reason)
    if answer == "scale":
        return create_model("ScaleAnswer", __doc__=f"A survey answer on a {low}..{high} scale.",
                            # the enum lets grammar-constrained servers (llama.cpp) keep to the range
                            answer=(int, Field(ge=low, le=high, description=f"{low} to {high}",
                                               json_schema_extra={"enum": list(range(low, high + 1))}
                                               if high - low <= 20 else None)),
                            reason=reason)
    return create_model("TextAnswer", __doc__="A survey answer in the persona's own words.",
                        reply=(str, Field(min_length=1, description="your answer, in your own words")))


def survey_value(content: dict[str, Any]) -> Any:
    """Return the answer in a validated survey answer's content."""
    return content["answer"] if "answer" in content else content["reply"]


def survey_values(answer: str, options: tuple[str, ...] = (), low: int = 1,
                  high: int = 5) -> tuple[object, ...]:
    """Return the answers a choice or scale survey allows, in order (what a share list is over)."""
    if answer == "choice":
        return tuple(options)
    if answer == "scale":
        return tuple(range(low, high + 1))
    raise ValueError(f"a {answer!r} survey has no answer distribution")


@lru_cache(maxsize=256)
def share_schema(answer: str, options: tuple[str, ...] = (), low: int = 1,
                 high: int = 5) -> type[BaseModel]:
    """Return the schema of an archetype's answer distribution: the percent giving each allowed answer."""
    n = len(survey_values(answer, options, low, high))
    percent = Annotated[float, Field(ge=0, le=100)]

    def some(value: list[float]) -> list[float]:
        if sum(value) <= 0:
            raise ValueError("the shares sum to zero")
        return value

    return create_model(
        "AnswerShares", __doc__="How the people like this persona would answer, in percent.",
        shares=(Annotated[list[percent], AfterValidator(some)],
                Field(min_length=n, max_length=n,
                      description="percent of such people giving each answer, in order")))


def normalised_shares(content: dict[str, Any]) -> list[float]:
    """Return a distribution answer's shares, summing to 1."""
    shares = [float(s) for s in content["shares"]]
    total = sum(shares)
    return [s / total for s in shares]
