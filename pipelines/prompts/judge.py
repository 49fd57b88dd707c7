"""The judge's one structured call per item: its answer schema and its prompt.

Each of the kind's criteria gets yes/no with a short reason, then an overall verdict. The schema
class is built once per set of criteria, because the seam and the offline engine cache by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model

from personahub.core.sections import section
from personahub.tasks.base import Criterion, Task

JUDGE_PURPOSE = "judge"
JUDGE_MAX_TOKENS = 400  # a verdict and a one-sentence reason per criterion (the prompt below)
JUDGE_SYSTEM = ("You judge the quality of synthetic data items strictly and briefly. Answer only "
                "with JSON for the schema.")
JUDGE_TASK = ("Judge the item above against each criterion: answer yes (true) or no (false) with a "
              "one-sentence reason. Then say whether the item is valid overall (true only when "
              "every criterion holds) with a one-sentence reason.")
MAX_REASON_CHARS = 400  # what a row keeps of a reason (a runaway answer is cut, not refused)


class Verdict(BaseModel):
    """One criterion's answer."""

    yes: bool = Field(description="true when the criterion holds")
    reason: str = Field(default="", description="why, in one sentence")


@lru_cache(maxsize=64)
def judge_schema(names: tuple[str, ...]) -> type[BaseModel]:
    """Return the answer schema for these criteria; the same names always give the same class."""
    fields: dict[str, Any] = {name: (Verdict, Field(description=f"criterion {name}"))
                              for name in names}
    fields["valid"] = (bool, Field(description="true when the item is valid overall"))
    fields["reason"] = (str, Field(default="", description="why, in one sentence"))
    return create_model("Judgment", __doc__="A judgment of one synthetic data item.", **fields)


def judge_messages(task: Task, text: str, criteria: Sequence[Criterion], *, persona: str = "",
                   solution: str = "", world: str = "") -> list[BaseMessage]:
    """Return the prompt judging one item of a task (its text, and its solution when it has one)."""
    body = section("Kind", task.export_description)
    if world:
        body += "\n" + section("World", world)
    if persona:
        body += "\n" + section("Persona the item was written for", persona)
    body += "\n" + section("Item", text)
    if solution:
        body += "\n" + section("Solution", solution)
    body += "\n" + section("Criteria", "\n".join(f"- {c.name}: {c.question}" for c in criteria))
    body += "\n" + section("Task", JUDGE_TASK)
    return [SystemMessage(JUDGE_SYSTEM), HumanMessage(body)]


def verdicts(answer: BaseModel, criteria: Sequence[Criterion]) -> dict[str, dict[str, object]]:
    """Each criterion's yes/no and reason from an answer, in the criteria's order."""
    out = {}
    for criterion in criteria:
        verdict = getattr(answer, criterion.name)
        out[criterion.name] = {"yes": bool(verdict.yes),
                               "reason": str(verdict.reason)[:MAX_REASON_CHARS]}
    return out


def overall(answer: BaseModel) -> tuple[bool, str]:
    """Return the answer's overall valid flag and its reason (cut to MAX_REASON_CHARS)."""
    fields = answer.model_dump()  # a judge_schema class: it has both fields
    return bool(fields["valid"]), str(fields.get("reason") or "")[:MAX_REASON_CHARS]
