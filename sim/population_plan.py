"""What a step's driver and the population's shards say to each other: small, per group.

Nothing here grows with the population: a shard answers with counts per archetype and kind, up
to ``read`` members of each group (to fold their history into the group's one call) and the
distinct memories those members hold. The driver answers with one result per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GroupKey = tuple[Any, ...]  # ("pool", archetype, kind) or ("survey", survey index, archetype)
#: a member read for its group's history: (rank, agent id, its shard's memory entry, seen index)
Candidate = tuple[int, int, int, int]


@dataclass(frozen=True)
class AudienceRule:
    """An audience as a shard evaluates it: agent ids, persona text, attributes (all must hold).

    Attributes:
        agent_ids: the agents named (None: the audience names none).
        text_contains: persona text contains any of these (case-insensitive).
        attributes: (name, value) pairs every member's attributes hold.
    """

    agent_ids: tuple[int, ...] | None = None
    text_contains: tuple[str, ...] = ()
    attributes: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class SurveyAsk:
    """A choice or scale survey asked this step, pooled by archetype."""

    index: int
    survey_id: str
    question: str
    answer: str
    values: tuple[Any, ...]
    audience: AudienceRule
    remember: bool


@dataclass(frozen=True)
class StepOpen:
    """The start of a step, the same message to every shard.

    Attributes:
        changes: interventions on single agents, (action, agent id, text).
        events: this step's events in order, (event index, text, audience).
        injected: events injected from outside, to everyone, (event index, text).
        activation: ("all", 1.0) or ("probability", p).
        kinds, cumulative: the scripted kinds and their cumulative weights.
        read: members of each group read for its history.
        addressed: the kinds said to a neighbour (their emissions are messages).
        alone: the cumulative weights of an agent without neighbours (the addressed kinds'
            weights dropped), or None when every kind is addressed (such an agent cannot act).
    """

    step: int
    changes: tuple[tuple[str, int, str], ...]
    events: tuple[tuple[int, str, AudienceRule], ...]
    injected: tuple[tuple[int, str], ...]
    activation: tuple[str, float]
    kinds: tuple[str, ...]
    cumulative: tuple[float, ...]
    surveys: tuple[SurveyAsk, ...]
    read: int
    addressed: tuple[str, ...] = ()
    alone: tuple[float, ...] | None = None


@dataclass
class GroupAsk:
    """One group's part in one shard: members, the lowest agent id, members read."""

    key: GroupKey
    count: int
    first: int
    candidates: list[Candidate]


@dataclass
class ShardAsk:
    """What one shard needs asked this step."""

    n_active: int
    groups: list[GroupAsk]
    memories: dict[int, str]  # memory entry -> its state as JSON text
    seen: list[tuple[str, ...]]  # the event texts a member read saw this step
    delivered: dict[int, int] = field(default_factory=dict)  # event index -> recipients
    span: tuple[int, int] = (0, 0)  # the agent ids the shard holds, [lo, hi)


@dataclass(frozen=True)
class PoolAnswer:
    """One pooled action's result, for every active member of (archetype, kind).

    Attributes:
        content, text: the emission as JSON text and its text (None when it failed).
        error: why it failed.
        first: the lowest agent id of the pool; first_flag: what its emission duplicates.
    """

    archetype: int
    kind: str
    content: str | None
    text: str | None
    error: str | None
    first: int
    first_flag: str | None


@dataclass(frozen=True)
class ShareAnswer:
    """One archetype's answer distribution for a survey (cumulative), or why it failed."""

    survey_index: int
    archetype: int
    cumulative: tuple[float, ...] | None
    error: str | None


@dataclass(frozen=True)
class StepClose:
    """The end of a step: the groups' results, and where each shard writes its rows."""

    step: int
    run_id: str
    model: str
    folder: str
    pools: tuple[PoolAnswer, ...]
    shares: tuple[ShareAnswer, ...]
    bounds: tuple[int, ...] = ()  # each shard's lowest agent id, in shard order (for messages)


@dataclass(frozen=True)
class StepDeliver:
    """The messages a step's senders wrote to one shard's agents, from every shard's outbox.

    Attributes:
        inbox: the messages' rows (``population.OUTBOX``'s columns), or None when none came.
    """

    step: int
    inbox: Any


@dataclass
class ShardDone:
    """What one shard wrote for a step: counts and its Parquet files by table."""

    emissions: int = 0
    answers: int = 0
    drawn: int = 0
    messages: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    outbox: list[Any] = field(default_factory=list)  # per receiving shard: messages or None
