"""The deliberate policy's decision: which kind to emit this step, to whom, or nothing.

The schema offers the allowed kinds or "nothing", and positional labels (P1, P2, ...) for the
people shown, or "nobody": a small schema that caches, and a small model copies a two-character
label more reliably than a persona id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

DECIDE_PURPOSE = "decide"
DECIDE_MAX_TOKENS = 120  # an action, a target and a short reason
NOTHING = "nothing"
NOBODY = "nobody"
REASON_CHARS = 300  # what is stored of the model's reason
MAX_PEOPLE = 6  # people shown to a deliberating agent: enough to choose, short enough for a small model


def label(index: int) -> str:
    """Return the label of the index-th person shown (P1 for index 0)."""
    return f"P{index + 1}"


def choices(kinds: Sequence[str], weights: Sequence[float] | None, neighbours: Sequence[str],
            senders: Sequence[str], addressed: frozenset[str],
            draw: Callable[[list[str], int], list[str]]) -> tuple[list[str], list[str]]:
    """Return (kinds, people) a deliberating agent chooses from this step.

    Kinds need a positive weight; kinds said to someone need someone near. People are the latest
    senders among the neighbours, then other neighbours, at most MAX_PEOPLE; extra neighbours are
    drawn by the seeded draw so a resumed run shows the same people.
    """
    near = set(neighbours)
    first = list(dict.fromkeys(s for s in senders if s in near))[:MAX_PEOPLE]
    rest = [n for n in neighbours if n not in set(first)]
    room = MAX_PEOPLE - len(first)
    if len(rest) > room:
        picked = set(draw(rest, room))
        rest = [n for n in rest if n in picked]
    people = [*first, *rest]
    options = [k for k, w in zip(kinds, weights or [1.0] * len(kinds), strict=True)
               if w > 0 and (people or k not in addressed)]
    return options, people


@lru_cache(maxsize=256)
def decision_schema(options: tuple[str, ...], people: int) -> type[BaseModel]:
    """Build the decision schema for these kinds and this many labelled people."""
    actions: Any = Literal[(*options, NOTHING)]
    labels: Any = Literal[(NOBODY, *(label(i) for i in range(people)))]
    return create_model(
        "Decision", __doc__="What you do this step: one action, whom it is for, and why.",
        action=(actions, Field(description="one of the actions, or nothing")),
        addressee=(labels, Field(description="the label of the person you address, or nobody")),
        reason=(str, Field(default="", description="why, in one short sentence")),
    )


@dataclass(frozen=True)
class Decision:
    """A deliberate agent's decision for one step, mapped back to persona ids.

    action is None when the decision failed (error is set); fallback names what was filled in.
    """

    action: str | None
    addressee_id: str | None = None
    reason: str = ""
    error: str | None = None
    fallback: str | None = None
    label: str | None = None

    @property
    def acts(self) -> bool:
        """Whether the agent emits something this step."""
        return self.action is not None and self.action != NOTHING


def resolve(answer: BaseModel | None, error: str | None, options: list[str],
            people: list[tuple[str, str]], addressed: frozenset[str]) -> Decision:
    """Map a model's answer to a Decision.

    An action outside the options (a client that skips validation) is a failed decision. A kind
    said to someone whose label names no one shown goes to the first person shown, recorded as
    fallback="addressee" so a model that cannot pick shows in the decisions table.
    """
    if answer is None:
        return Decision(None, error=error or "no valid answer")
    content = answer.model_dump()
    action, said = str(content.get("action")), str(content.get("addressee"))
    reason = str(content.get("reason") or "")[:REASON_CHARS]
    if action == NOTHING:
        return Decision(NOTHING, reason=reason, label=said)
    if action not in options:
        return Decision(None, reason=reason, label=said,
                        error=f"decide: action {action!r} is none of {[*options, NOTHING]}")
    if action not in addressed:
        return Decision(action, reason=reason, label=said)
    chosen = {label(i): pid for i, (pid, _) in enumerate(people)}.get(said)
    if chosen is not None:
        return Decision(action, chosen, reason, label=said)
    if not people:
        return Decision(None, reason=reason, label=said,
                        error=f"decide: {action} needs someone to address and nobody is near")
    return Decision(action, people[0][0], reason, fallback="addressee", label=said)
