"""The rows a step hands the run log: events, interventions, survey answers and decisions.

Both societies (one object per agent, or column shards) build them and sim/store.py writes them,
each with the run's tags, into the table of the same name.
"""

from __future__ import annotations

from typing import TypedDict


class EventRow(TypedDict):
    """Hold one event delivered at a step (recipients are None where a column society keeps none)."""

    step: int
    event_index: int
    text: str
    audience: str
    n_recipients: int | None
    recipients: list[str] | None
    source: str


class InterventionRow(TypedDict):
    """Hold one intervention applied at a step, or an injected event's record."""

    step: int
    intervention_index: int
    action: str
    persona_id: str
    agent_id: int | None
    other_persona_id: str | None
    text: str | None
    relation: str | None
    applied: bool
    source: str


class AnswerRow(TypedDict):
    """Hold one agent's survey answer; content is the answer as the model gave it, with extras."""

    step: int
    survey_id: str
    question: str
    persona_id: str
    agent_id: int
    answer_kind: str
    answer_choice: object
    answer_scale: int | None
    answer_text: str | None
    content: dict[str, object]


class DecisionRow(TypedDict):
    """Hold what a deliberating agent decided at a step, and why."""

    step: int
    agent_id: int
    persona_id: str
    action: str | None
    addressee_id: str | None
    addressee_label: str | None
    fallback: str | None
    reason: str
    error: str | None
