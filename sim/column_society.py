"""A society with archetypes whose population lives in column shards: the step as a plan over them.

The driver holds the scenario, the archetypes' representatives and the step's small messages,
never a row per agent. A step: every shard applies the step's changes and events and says what
its (archetype, kind) pools and (survey, archetype) groups need; the driver folds the members'
history into one call per group, asked with the same prompts as ``SocietyModel`` (and, on Ray,
on the call actors); every shard then draws its members' actions and answers from the results
and writes its rows as Parquet files, which the run commits in one transaction. A kind said to
a neighbour (``npc_dialogue``, ``conversation``) is pooled like the others, asked with no
particular addressee; each sender's shard draws its addressee among its neighbours and returns the
step's outbox partitioned by the receiver's shard, and the driver hands each shard the messages
to its agents, who hold them in their inboxes at the next step.

Draws are vectorised: each agent's draws come from one 64-bit key (``sim/draws.py``), so the
tables are the same for any number of shards, locally or on Ray, but not those of
``SocietyModel``, whose draws are a ``random.Random`` per agent (activation with a probability is
the one draw both make alike).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from personahub.agents.persona_agent import DEFAULT_CHUNK, AgentInput, AgentOutcome, run_agents
from personahub.agents.prompts.agent import survey_messages
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.personas.near_dup import IndexesByKind
from personahub.personas.quality import rejected_row
from personahub.sim.group_memory import MEMBERS_READ, group_history
from personahub.sim.memory import AgentMemory
from personahub.sim.population_plan import (
    AudienceRule,
    GroupKey,
    PoolAnswer,
    ShardAsk,
    ShardDone,
    ShareAnswer,
    StepClose,
    StepDeliver,
    StepOpen,
    SurveyAsk,
)
from personahub.sim.scenario import AgentRef, Audience, Scenario
from personahub.sim.society import action_prefix, prefix_order, unorder
from personahub.sim.step_rows import EventRow, InterventionRow
from personahub.tasks import addressed_kinds
from personahub.tasks.survey import (
    SURVEY_MAX_TOKENS,
    normalised_shares,
    share_schema,
    survey_values,
)

if TYPE_CHECKING:
    from personahub.sim.live_control import Injected

MAX_EVENTS_A_STEP = 64  # a shard marks what each agent saw this step in one 64-bit word
#: whom a pooled addressed kind is said to: no particular neighbour (each member's is drawn after)
ANY_NEIGHBOUR = "One of this person's neighbours (no one in particular)"


def columns_refusal(scenario: Scenario, archetype_sample: int | None) -> str | None:
    """Return why a scenario needs one object per agent (``SocietyModel``), or None if it fits."""
    activation = scenario.activation
    mode = getattr(activation, "mode", "all")
    surveys = [s for s in scenario.surveys if s.answer == "text"]
    audiences = [*(e.audience for e in scenario.scheduled_events),
                 *(s.audience for s in scenario.surveys)]
    steps = [e.step for e in scenario.scheduled_events]
    reasons = [
        (scenario.archetypes is None, "no archetypes"),
        (scenario.policy != "scripted", f"policy={scenario.policy!r}"),
        (bool(surveys), f"text survey {surveys[0].id!r}" if surveys else ""),
        (mode not in ("all", "probability"), f"activation mode {mode!r}"),
        (archetype_sample is not None, "archetype_elicit='sample:N'"),
        (any(a.where is not None or a.near is not None or a.arms for a in audiences),
         "an audience with where=, near= or arms="),
        (any(x.action in ("add_edge", "remove_edge") or x.arms for x in scenario.interventions),
         "edge interventions or interventions by arm"),
        (bool(scenario.within_arms), "a within-world experiment"),
        (scenario.memory.retrieve or scenario.memory.reflects, "memory retrieval or reflection"),
        (any(steps.count(s) > MAX_EVENTS_A_STEP for s in set(steps)),
         f"more than {MAX_EVENTS_A_STEP} events at one step"),
    ]
    found = [why for bad, why in reasons if bad]
    return found[0] if found else None


class Shards(Protocol):
    """The population's shards, local or on Ray actors: each call goes to every shard."""

    async def open_step(self, plan: StepOpen) -> list[ShardAsk]:
        """Open a step on every shard."""
        ...

    async def close_step(self, close: StepClose) -> list[ShardDone]:
        """Close a step on every shard."""
        ...

    async def deliver(self, deliveries: Sequence[StepDeliver]) -> list[ShardDone]:
        """Give every shard the messages to its agents (one delivery a shard, in order)."""
        ...


@dataclass
class ColumnStep:
    """What a step of a column society did: counts, small rows, its calls and the shards' files."""

    step: int
    n_active: int = 0
    emissions: int = 0
    answers: int = 0
    drawn: int = 0
    messages: int = 0
    archetype_calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    interventions: list[InterventionRow] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    cache_entries: list[CacheEntry] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        """Return one error per failed action or answer (the failure policy counts them)."""
        return [reason for reason, count in self.failures.items() for _ in range(count)]


@dataclass
class _Group:
    key: GroupKey
    count: int = 0
    first: int = 0
    read: list[tuple[int, int, int, int, int]] = field(default_factory=list)


class ColumnSociety:
    """The driver of a column society: plans each step over the shards and asks the groups."""

    def __init__(self, *, scenario: Scenario, shards: Shards, representatives: Sequence[str],
                 representative_texts: Sequence[str], refs: Mapping[AgentRef, tuple[int, str]],
                 llm: StructuredCaller, run_id: str, seed: int, world: str,
                 folder: Callable[[int], str], indexes: IndexesByKind,
                 chunk_size: int = DEFAULT_CHUNK, read: int = MEMBERS_READ) -> None:
        """Args:
            representatives, representative_texts: each archetype's representative persona id
                and text.
            refs: the agents the scenario names (persona id or agent id) -> (agent id, persona id).
            folder: the folder a step's Parquet files go to.
            indexes: the run's near-duplicate indexes (the pools' texts are checked once each).
        """
        self.scenario = scenario
        self.shards = shards
        self.representatives = list(representatives)
        self.texts = list(representative_texts)
        self.refs = dict(refs)
        self.llm = llm
        self.run_id = run_id
        self.seed = seed
        self.world = world
        self.folder = folder
        self.indexes = indexes
        self.chunk_size = chunk_size
        self.read = read
        self.steps = 0
        self.model_label = ""
        self.injected: list[Injected] = []
        self.next_event_index = len(scenario.scheduled_events)
        self.next_intervention_index = len(scenario.interventions)
        self._by_rep = {pid: a for a, pid in enumerate(self.representatives)}
        self._memories: dict[str, AgentMemory] = {}

    async def advance(self, llm: StructuredCaller | None = None) -> ColumnStep:
        """Run the next step; its rows are in the shards' files until the run commits them."""
        if llm is not None:
            self.llm = llm
        self.steps += 1
        step = self.steps
        result = ColumnStep(step=step)
        plan = self._plan(step, result)
        asks = await self.shards.open_step(plan)
        result.n_active = sum(a.n_active for a in asks)
        for event in result.events:
            if event["n_recipients"] is None:
                event["n_recipients"] = sum(a.delivered.get(event["event_index"], 0) for a in asks)
        groups, seen, memories = self._merge(asks)
        self._memories = {}
        pools = sorted((k for k in groups if k[0] == "pool"), key=lambda k: (k[1], k[2]))
        surveys = sorted((k for k in groups if k[0] == "survey"),
                         key=lambda k: (k[1], groups[k].first))
        histories = {key: self._history(step, groups[key], seen, memories)
                     for key in (*pools, *surveys)}
        outcomes, shares = await self._ask(step, plan, pools, surveys, histories)
        result.archetype_calls = len(pools) + len(surveys)
        for outcome in outcomes:
            result.records.extend(outcome.records)
            result.cache_entries.extend(outcome.cache_entries)
        for stated in shares:
            result.records.extend(stated.records)
            result.cache_entries.extend(stated.cache_entries)
        close = StepClose(step=step, run_id=self.run_id, model=self.model_label,
                          folder=self.folder(step),
                          pools=self._pool_answers(step, pools, groups, outcomes, result),
                          shares=tuple(self._share_answer(plan, key, stated)
                                       for key, stated in zip(surveys, shares, strict=True)),
                          bounds=tuple(a.span[0] for a in asks))
        closed = await self.shards.close_step(close)
        if plan.addressed:
            closed += await self.shards.deliver(_deliveries(step, closed))
        for done in closed:
            result.emissions += done.emissions
            result.answers += done.answers
            result.drawn += done.drawn
            result.messages += done.messages
            for reason, count in done.failures.items():
                result.failures[reason] = result.failures.get(reason, 0) + count
            for table, files in done.files.items():
                result.files.setdefault(table, []).extend(files)
        return result

    # -- the plan ----------------------------------------------------------------------------------
    def _plan(self, step: int, result: ColumnStep) -> StepOpen:
        scenario = self.scenario
        changes = []
        for index, x in scenario.interventions_at(step):
            agent_id, persona_id = self.refs[x.target]
            changes.append((x.action, agent_id, x.text))
            if x.action == "set_persona" and persona_id in self._by_rep:
                self.texts[self._by_rep[persona_id]] = x.text
            result.interventions.append({
                "step": step, "intervention_index": index, "action": x.action,
                "persona_id": persona_id, "agent_id": agent_id, "other_persona_id": None,
                "text": x.text or None, "relation": None, "applied": True, "source": "scenario"})
        events = []
        for index, event in enumerate(scenario.scheduled_events):
            if event.step == step:
                events.append((index, event.text, self._rule(event.audience)))
                result.events.append({
                    "step": step, "event_index": index, "text": event.text,
                    "audience": event.audience.describe(), "n_recipients": None,
                    "recipients": None, "source": "scenario"})
        injected, self.injected = self.injected, []
        pushed = []
        for item in injected:
            pushed.append((self.next_event_index, item.text))
            result.events.append({
                "step": step, "event_index": self.next_event_index, "text": item.text,
                "audience": "all", "n_recipients": None, "recipients": None,
                "source": item.source})
            result.interventions.append({
                "step": step, "intervention_index": self.next_intervention_index,
                "action": "event", "persona_id": "*", "agent_id": None, "other_persona_id": None,
                "text": item.text, "relation": None, "applied": True, "source": item.source})
            self.next_event_index += 1
            self.next_intervention_index += 1
        activation = scenario.activation
        mode = getattr(activation, "mode", "all")
        weights = list(scenario.task_weights or [1.0] * len(scenario.tasks))
        total = sum(weights)
        cumulative, running = [], 0.0
        for w in weights:
            running += w / total
            cumulative.append(running)
        cumulative[-1] = 1.0
        addressed = tuple(k for k in scenario.tasks if k in addressed_kinds())
        alone_weights = [0.0 if k in addressed else w for k, w in zip(scenario.tasks, weights,
                                                                      strict=True)]
        alone = _cumulative(alone_weights) if sum(alone_weights) > 0 else None
        surveys = tuple(
            SurveyAsk(index=i, survey_id=s.id, question=s.question, answer=s.answer,
                      values=survey_values(s.answer, s.options, s.low, s.high),
                      audience=self._rule(s.audience), remember=s.remember)
            for i, s in enumerate(scenario.surveys) if step in s.steps)
        return StepOpen(step=step, changes=tuple(changes), events=tuple(events),
                        injected=tuple(pushed),
                        activation=(mode, float(getattr(activation, "p", 1.0))),
                        kinds=tuple(scenario.tasks), cumulative=tuple(cumulative),
                        surveys=surveys, read=self.read, addressed=addressed,
                        alone=alone if addressed else None)

    def _rule(self, audience: Audience) -> AudienceRule:
        ids = (tuple(self.refs[r][0] for r in audience.personas) if audience.personas else None)
        return AudienceRule(agent_ids=ids, text_contains=tuple(audience.text_contains),
                            attributes=tuple(sorted(audience.attributes.items())))

    # -- the groups --------------------------------------------------------------------------------
    def _merge(self, asks: list[ShardAsk]) -> tuple[dict[GroupKey, _Group],
                                                   list[list[tuple[str, ...]]],
                                                   list[dict[int, str]]]:
        groups: dict[GroupKey, _Group] = {}
        for shard, ask in enumerate(asks):
            for part in ask.groups:
                group = groups.setdefault(part.key, _Group(part.key, 0, part.first))
                group.count += part.count
                group.first = min(group.first, part.first)
                group.read.extend((rank, agent, shard, entry, seen)
                                  for rank, agent, entry, seen in part.candidates)
        for group in groups.values():
            group.read = sorted(sorted(group.read)[: self.read], key=lambda c: c[1])
        return groups, [a.seen for a in asks], [a.memories for a in asks]

    def _history(self, step: int, group: _Group, seen: list[list[tuple[str, ...]]],
                 memories: list[dict[int, str]]) -> object:
        cfg = self.scenario.memory
        read = [self._memory(memories[shard][entry]) for _, _, shard, entry, _ in group.read]
        events = [list(seen[shard][index]) for _, _, shard, _, index in group.read]
        return group_history(read, events, step, cfg.observations)

    def _memory(self, text: str) -> AgentMemory:
        found = self._memories.get(text)
        if found is None:
            found = self.scenario.memory.new_agent_memory(self.scenario.inbox_size)
            found.load_state(json.loads(text))
            self._memories[text] = found
        return found

    async def _ask(self, step: int, plan: StepOpen, pools: list[GroupKey],
                   surveys: list[GroupKey], histories: dict[GroupKey, Any]
                   ) -> tuple[list[AgentOutcome], list[StructuredResult[Any]]]:
        inputs = [AgentInput(
            persona_id=self.representatives[archetype], persona=self.texts[archetype], step=step,
            kind=kind, world=self.world, arm_world="", events=histories[key].events, inbox=[],
            addressee=ANY_NEIGHBOUR if kind in plan.addressed else None,
            memory=histories[key].memory, recent=[])
            for key in pools for _, archetype, kind in [key]]
        order = prefix_order([action_prefix(i) for i in inputs])
        actions = run_agents([inputs[i] for i in order], self.llm, chunk_size=self.chunk_size,
                             budget=self.scenario.prompt_budget)
        by_index = {s.index: s for s in plan.surveys}
        questions = [self._ask_shares(step, by_index[key[1]], key[2], histories[key])
                     for key in surveys]
        sent, *shares = await asyncio.gather(actions, *questions)
        return unorder(sent, order), list(shares)

    async def _ask_shares(self, step: int, survey: SurveyAsk, archetype: int,
                          history: Any) -> StructuredResult[Any]:
        """One archetype's answer distribution, as ``SocietyModel._ask_shares`` asks it."""
        hint = ("For each of these answers, in this order, the percent of people like you "
                "(the persona's archetype) who would give it: "
                + " | ".join(map(str, survey.values)))
        messages = survey_messages(
            persona=self.texts[archetype], question=survey.question, answer_hint=hint,
            world=self.world, arm_world="", events=history.events, memory=history.memory,
            budget=self.scenario.prompt_budget)
        options, low, high = _range(survey)
        return await self.llm.structured(
            share_schema(survey.answer, options, low, high), messages,
            purpose="survey_archetype", persona_id=self.representatives[archetype], step=step,
            max_tokens=SURVEY_MAX_TOKENS)

    def _pool_answers(self, step: int, pools: list[GroupKey], groups: dict[GroupKey, _Group],
                      outcomes: list[AgentOutcome], result: ColumnStep) -> tuple[PoolAnswer, ...]:
        answers: list[PoolAnswer] = []
        checks: dict[str, list[tuple[int, str, int]]] = {}
        for key, outcome in zip(pools, outcomes, strict=True):
            _, archetype, kind = key
            first = groups[key].first
            error = ((outcome.error or "failed") if outcome.output is None or outcome.text is None
                     else (f"quality gate: {outcome.rejected}" if outcome.rejected is not None
                           else None))
            if outcome.rejected is not None and outcome.output is not None:
                result.rejected.append(rejected_row(
                    "emission", outcome.rejected, outcome.output,
                    key=f"{self.run_id}:{step}:a{archetype}:{kind}", run_id=self.run_id,
                    step=step, persona_id=self.representatives[archetype], task=kind))
            if error is not None:
                answers.append(PoolAnswer(archetype, kind, None, None, error, first, None))
                continue
            assert outcome.output is not None and outcome.text is not None
            checks.setdefault(kind, []).append((first, outcome.text, len(answers)))
            answers.append(PoolAnswer(archetype, kind, json.dumps(outcome.output,
                                                                  ensure_ascii=False,
                                                                  default=str),
                                      outcome.text, None, first, None))
        for kind, items in checks.items():  # in agent-id order, as per-agent emissions are
            items.sort()
            flags = self.indexes[kind].check_and_add_many(
                [(f"{self.run_id}:{step}:{first}", text) for first, text, _ in items])
            for (_, _, at), flag in zip(items, flags, strict=True):
                if flag is not None:
                    old = answers[at]
                    answers[at] = PoolAnswer(old.archetype, old.kind, old.content, old.text,
                                             None, old.first, flag)
        return tuple(answers)

    @staticmethod
    def _share_answer(plan: StepOpen, key: GroupKey,
                      stated: StructuredResult[Any]) -> ShareAnswer:
        _, survey_index, archetype = key
        if stated.value is None:
            last = stated.records[-1] if stated.records else None
            return ShareAnswer(survey_index, archetype, None,
                               getattr(last, "error", None) or "no valid answer")
        shares = normalised_shares(stated.value.model_dump())
        cumulative, running = [], 0.0
        for share in shares:
            running += share
            cumulative.append(running)
        cumulative[-1] = 1.0
        return ShareAnswer(survey_index, archetype, tuple(cumulative), None)


def _cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Return weights as a cumulative distribution ending at exactly 1."""
    total, running, out = sum(weights), 0.0, []
    for w in weights:
        running += w / total
        out.append(running)
    out[-1] = 1.0
    return tuple(out)


def _deliveries(step: int, closed: Sequence[ShardDone]) -> list[StepDeliver]:
    """Return each shard's messages: its part of every shard's outbox."""
    import pyarrow as pa

    out = []
    for shard in range(len(closed)):
        parts = [done.outbox[shard] for done in closed
                 if shard < len(done.outbox) and done.outbox[shard] is not None]
        out.append(StepDeliver(step=step, inbox=pa.concat_tables(parts) if parts else None))
    return out


def _range(survey: SurveyAsk) -> tuple[tuple[str, ...], int, int]:
    """Return the options, low and high a share schema is made from."""
    if survey.answer == "choice":
        return tuple(map(str, survey.values)), 1, 5
    return (), int(survey.values[0]), int(survey.values[-1])


class LocalShards:
    """Shards in this process, one after the other (the same code a Ray actor runs)."""

    def __init__(self, shards: Sequence[Any]) -> None:
        self.shards = list(shards)

    async def open_step(self, plan: StepOpen) -> list[ShardAsk]:
        """Open a step on every shard."""
        return [shard.open_step(plan) for shard in self.shards]

    async def close_step(self, close: StepClose) -> list[ShardDone]:
        """Close a step on every shard."""
        return [shard.close_step(close, i) for i, shard in enumerate(self.shards)]

    async def deliver(self, deliveries: Sequence[StepDeliver]) -> list[ShardDone]:
        """Give every shard the messages to its agents."""
        return [shard.deliver(d, i) for i, (shard, d) in
                enumerate(zip(self.shards, deliveries, strict=True))]
