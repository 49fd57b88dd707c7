"""The deliberate policy's decision: which kind to emit this step, to whom, or nothing.

A deliberate agent makes one structured call (purpose ``decide``) before it acts. The schema is
built from the step's options: ``action`` is one of the kinds the agent may emit or ``nothing``;
``addressee`` is a short label (``P1``, ``P2``, ...) of one of the people shown to it, or
``nobody``. Labels are positional, so the schema depends only on the kinds and the number of
people (cached), a small model copies a two-character label instead of a persona id, and a
grammar-constrained server (llama.cpp) cannot answer outside the options.

Mapping the answer back (``resolve``), decided once here:

- ``nothing``: the agent does not act; no addressee is kept.
- a kind that is not said to anyone: any addressee is ignored.
- a kind said to someone (``npc_dialogue``, ``conversation``) with ``nobody`` or a label that
  names no one shown: the agent addresses the first person shown (the latest sender still in
  its inbox, else a neighbour) and the decision records ``fallback="addressee"``, so a model
  that cannot pick is visible in the ``decisions`` table rather than silently corrected.
- an action that is none of the options (a client that skips validation): a failed decision,
  ``error`` set; the agent does not act and the step records a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

DECIDE_PURPOSE = "decide"
DECIDE_MAX_TOKENS = 120  # output limit of a decision call: an action, a target and a short reason
NOTHING = "nothing"
NOBODY = "nobody"
REASON_CHARS = 300  # what is stored of the model's reason
MAX_PEOPLE = 6  # people shown to a deliberating agent: enough to choose, short enough for a small model


def label(index: int) -> str:
    """The label of the ``index``-th person shown (``P1`` for index 0)."""
    return f"P{index + 1}"


def choices(kinds: Sequence[str], weights: Sequence[float] | None, neighbours: Sequence[str],
            senders: Sequence[str], addressed: frozenset[str],
            draw: Callable[[list[str], int], list[str]]) -> tuple[list[str], list[str]]:
    """(kinds, people) a deliberating agent chooses from this step.

    Kinds: those with a positive weight; those said to someone only when someone is near.
    People: the latest senders still in its inbox first (``senders``, newest first) among its
    ``neighbours``, then the other neighbours, at most ``MAX_PEOPLE``; when more neighbours
    remain than fit, ``draw(rest, k)`` picks ``k`` of them (a seeded sample, so a resumed run
    shows the same people), kept in neighbour order.
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
    """The decision schema for these kind options and ``people`` labelled people."""
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

    ``action`` is the kind chosen, ``nothing``, or None when the decision failed (``error``);
    ``fallback`` names what ``resolve`` had to fill in (``addressee``), else None.
    """

    action: str | None
    addressee_id: str | None = None
    reason: str = ""
    error: str | None = None
    fallback: str | None = None
    label: str | None = None  # the addressee label the model answered

    @property
    def acts(self) -> bool:
        """Whether the agent emits something this step."""
        return self.action is not None and self.action != NOTHING


def resolve(answer: BaseModel | None, error: str | None, options: list[str],
            people: list[tuple[str, str]], addressed: frozenset[str]) -> Decision:
    """The decision an answer means (see the module docstring for the rules).

    ``people`` are (persona id, persona text) in label order; ``addressed`` the kinds said to
    someone.
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
