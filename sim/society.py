"""The Mesa model of a persona society: one agent per persona on its relationship graph.

A step applies interventions and events, runs the agents' model calls concurrently on a frozen
snapshot, then applies results in agent-id order. Random draws derive from (run seed, step,
persona), so a seeded run is identical however the calls interleave.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import mesa
import networkx as nx
import numpy as np
from mesa.discrete_space import FixedAgent, Network

from personahub.agents.decide import Decision, choices
from personahub.agents.persona_agent import (
    DEFAULT_CHUNK,
    DELIBERATE,
    AgentInput,
    AgentOutcome,
    run_agents,
)
from personahub.agents.prompts.agent import survey_messages, survey_situation
from personahub.core.contracts import (
    CacheEntry,
    CallRecord,
    CarriesCalls,
    StructuredCaller,
    StructuredResult,
)
from personahub.personas.graph import SocialEdges
from personahub.personas.quality import rejected_row
from personahub.personas.record import Persona
from personahub.sim import bulk_agents
from personahub.sim.experiment import STRATIFY_COMMUNITY, assign_arms, strata
from personahub.sim.group_memory import MEMBERS_READ, GroupHistory, group_history
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.network import SocialNetwork
from personahub.sim.reflection import apply_reflection, reflect
from personahub.sim.scenario import (
    AgentInfo,
    AgentRef,
    Audience,
    Intervention,
    Scenario,
    ScenarioError,
    Survey,
)
from personahub.sim.step_rows import AnswerRow, DecisionRow, EventRow, InterventionRow
from personahub.sim.survey_profiles import Profiled, SurveyAnswerer, drawn_answer
from personahub.tasks import addressed_kinds, emission_task
from personahub.tasks.survey import (
    SURVEY_MAX_TOKENS,
    normalised_shares,
    share_schema,
    survey_schema,
    survey_value,
    survey_values,
)

if TYPE_CHECKING:
    from personahub.sim.live_control import Injected

T = TypeVar("T")
__all__ = ["AgentInfo", "Emission", "Message", "SocietyAgent", "SocietyModel", "StepResult",
           "derived_rng"]


@dataclass(frozen=True)
class Emission:
    """One validated thing an agent produced in a step."""

    emission_id: str
    step: int
    agent_id: int
    persona_id: str
    task: str  # the output kind (personahub/tasks/)
    content: dict[str, object]
    text: str
    target_persona_id: str | None = None
    archetype: int | None = None  # drawn from its archetype's pool


@dataclass
class StepResult:
    """What a step produced, in agent-id order."""

    step: int
    n_active: int
    emissions: list[Emission] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (persona_id, error)
    events: list[EventRow] = field(default_factory=list)
    interventions: list[InterventionRow] = field(default_factory=list)
    answers: list[AnswerRow] = field(default_factory=list)
    n_asked: int = 0
    states: list[tuple[int, str]] = field(default_factory=list)  # the checkpoint
    rejected: list[dict[str, object]] = field(default_factory=list)  # quality-gate rejects
    decisions: list[DecisionRow] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    cache_entries: list[CacheEntry] = field(default_factory=list)
    archetype_calls: int = 0  # calls made once per archetype
    drawn: int = 0  # answers and emissions drawn from those calls


def _derived_seed(parts: tuple[object, ...]) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest(), "big")


def derived_rng(*parts: object) -> random.Random:
    """Return an RNG seeded from parts, independent of call order."""
    return random.Random(_derived_seed(parts))


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 arrays: a bijective scrambler."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def step_draws(keys: np.ndarray, step: int) -> np.ndarray:
    """Return one uniform draw per agent for this step, vectorised over the agents' keys."""
    salt = _mix64(np.array([step], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return (_mix64(keys ^ salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class SocietyAgent(FixedAgent):
    """A persona on its cell of the graph; its behaviour is shared, its state is data."""

    model: SocietyModel

    def __init__(self, model: SocietyModel, persona: Persona, inbox_size: int) -> None:
        super().__init__(model)
        self.cell = model.network[persona.persona_id]
        self.persona = persona
        self.persona_text = persona.text  # an intervention may change it
        self._inbox_size = inbox_size
        self._memory: AgentMemory | None = None
        self.pending: list[Message] = []

    @classmethod
    def create_many(cls, model: SocietyModel, personas: Sequence[Persona],
                    inbox_size: int) -> list[SocietyAgent]:
        """Make one agent per persona, registered with Mesa in bulk rather than one by one."""
        if not bulk_agents.supported(model):
            return [cls(model, persona, inbox_size) for persona in personas]
        network = model.network
        agents = []
        for unique_id, persona in zip(bulk_agents.next_unique_ids(model, len(personas)), personas,
                                      strict=True):
            agent = cls.__new__(cls)
            agent.model, agent.unique_id, agent.pos = model, unique_id, None
            cell = network[persona.persona_id]
            agent._mesa_cell = cell
            cell.add_agent(agent)
            agent.persona, agent.persona_text = persona, persona.text
            agent._inbox_size, agent._memory, agent.pending = inbox_size, None, []
            agents.append(agent)
        bulk_agents.register_agents(model, agents)
        return agents

    @property
    def memory(self) -> AgentMemory:
        """The agent's memory, made on first use (most of 100,000 agents stay idle)."""
        if self._memory is None:
            self._memory = self.model.scenario.memory.new_agent_memory(self._inbox_size)
        return self._memory

    @property
    def persona_id(self) -> str:
        """The hub id of this agent's persona."""
        return self.persona.persona_id

    @property
    def inbox(self) -> Sequence[Message]:
        """Messages in view."""
        return self._memory.inbox if self._memory is not None else ()

    def neighbour_ids(self) -> list[str]:
        """Persona ids adjacent on the graph, sorted for determinism."""
        return sorted(self.cell.connections)

    def info(self, step: int) -> AgentInfo:
        """Return a read-only view for activation functions and audience predicates."""
        return AgentInfo(agent_id=self.unique_id, persona_id=self.persona_id,
                         persona=self.persona_text, attributes=dict(self.persona.attributes),
                         neighbours=tuple(self.neighbour_ids()),
                         memory=tuple(self.memory.prompt_lines(step + 1)))

    def touch(self) -> None:
        """Mark this agent as changed this step, so it is checkpointed."""
        self.model.touched.add(self.unique_id)

    def deliver(self) -> None:
        """Move messages received last step into view."""
        if not self.pending:
            return
        for message in self.pending:
            self.memory.receive(message)
        self.pending = []
        self.touch()

    def get_state(self) -> dict[str, object]:
        """Plain-data state for checkpoints."""
        return {
            "persona_id": self.persona_id,
            "persona_text": self.persona_text,
            "memory": self.memory.to_state(),
            "pending": [vars(m).copy() for m in self.pending],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from get_state."""
        if state.get("persona_id", self.persona_id) != self.persona_id:
            raise ValueError(f"state of {state['persona_id']} given to agent {self.persona_id}")
        self.persona_text = state.get("persona_text", self.persona.text)
        self.memory.load_state(state["memory"])
        self.pending = [Message(**m) for m in state["pending"]]


Plan = tuple[SocietyAgent, str, str | None]
# (archetype, kind, its active members)
Pool = tuple[int, str, list[SocietyAgent]]


@dataclass(frozen=True)
class _Drawn:
    """A member's survey answer drawn from its archetype's distribution."""

    value: Any
    error: str | None = None
    records: tuple[CallRecord, ...] = ()
    cache_entries: tuple[CacheEntry, ...] = ()
    profile: str | None = None  # the survey profile the archetype's shares came from


class Gathered(NamedTuple):
    """Hold what a step's calls returned, each list in the order the step planned it."""

    outcomes: list[AgentOutcome]  # the planned agents' actions, then one per pool
    answers: list[StructuredResult[Any] | Profiled | _Drawn]  # one per (survey, agent) asked
    reflections: list[StructuredResult[Any]]  # one per reflecting agent
    shares: list[StructuredResult[Any]]  # one call per archetype group asked once


@dataclass
class _Planned:
    result: StepResult
    planned: list[Plan]
    inputs: list[AgentInput]
    asked: list[tuple[Survey, SocietyAgent]]
    seen: dict[int, list[str]]
    reflecting: list[SocietyAgent]
    pools: list[Pool] = field(default_factory=list)  # their inputs follow the agents'


class SocietyModel(mesa.Model):
    """A virtual society: persona agents on the relationship graph, stepping together."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        personas: Sequence[Persona],
        graph: nx.Graph | SocialEdges,
        llm: StructuredCaller,
        run_id: str,
        seed: int,
        runner: Callable[[Coroutine[Any, Any, Any]], Any],
        world: str = "",
        chunk_size: int = DEFAULT_CHUNK,
        archetypes: tuple[Sequence[int], Sequence[str]] | None = None,
        archetype_sample: int | None = None,
        survey_answerers: Mapping[str, SurveyAnswerer] | None = None,
    ) -> None:
        """Args:
            archetypes: each agent's archetype and each archetype's representative persona id;
                None asks every agent itself.
            archetype_sample: sample an archetype's answers from N members (None: its
                representative states them in one call).
            survey_answerers: the survey profile answering each choice survey, by survey id:
                each agent's answer is drawn from the profile's distribution for it (an
                archetype's shares come from it too).
        """
        super().__init__(seed=seed)
        self.scenario = scenario
        self.llm = llm
        self.run_id = run_id
        self.run_seed = seed
        self.world = world
        self.chunk_size = chunk_size
        self._runner = runner
        self.last_result: StepResult | None = None
        # networkx is built only if something walks the graph
        self.network = (Network(graph, random=self.random) if isinstance(graph, nx.Graph)
                        else SocialNetwork(graph, random=self.random))
        # creation order fixes agent ids (1, 2, ...)
        created = SocietyAgent.create_many(self, personas, scenario.inbox_size)
        self.by_persona: dict[str, SocietyAgent] = dict(
            zip([p.persona_id for p in personas], created, strict=True))
        self.by_agent_id: dict[int, SocietyAgent] = {a.unique_id: a for a in created}
        # indexing by position beats an AgentSet filter (seconds per step at a million agents)
        self._positions: list[SocietyAgent] = created
        # only changed agents are checkpointed
        self.touched: set[int] = set()
        self._activation_keys: np.ndarray | None = None
        # events injected mid-run, delivered at the next step
        self.injected: list[Injected] = []
        self.next_event_index = len(scenario.scheduled_events)
        self.next_intervention_index = len(scenario.interventions)
        self.arm_of: dict[str, str] = self._assign_arms(personas) if scenario.within_arms else {}
        # each within-world arm's own world text, shown after the run's world
        self.arm_worlds: dict[str, str] = {arm: text.strip()
                                           for arm, text in scenario.within_worlds}
        self._check_references()
        self.archetype_of: dict[int, int] | None = None
        self.representatives: list[SocietyAgent] = []
        if archetypes is not None:
            labels, reps = archetypes
            self.archetype_of = {a.unique_id: int(x) for a, x in zip(created, labels, strict=True)}
            self.representatives = [self.by_persona[r] for r in reps]
        self.archetype_sample = archetype_sample
        self.survey_answerers: dict[str, SurveyAnswerer] = dict(survey_answerers or {})

    def pooled_survey(self, survey: Survey) -> bool:
        """Whether the survey is asked once per archetype (choice and scale; free text is not)."""
        return self.archetype_of is not None and survey.answer in ("choice", "scale")

    def _assign_arms(self, personas: Sequence[Persona]) -> dict[str, str]:
        """Each agent's arm, drawn as the experiment redraws it from the same inputs."""
        ids = [p.persona_id for p in personas]
        graph = self.network.G if self.scenario.within_stratify == STRATIFY_COMMUNITY else None
        labels = strata(ids, [p.attributes for p in personas], graph,
                        self.scenario.within_stratify, self.run_seed)
        return assign_arms(ids, self.scenario.within_arms, self.run_seed, labels)

    def arm(self, agent: SocietyAgent) -> str:
        """Return the agent's arm in a within-world run ('' otherwise)."""
        return self.arm_of.get(agent.persona_id, "")

    def arm_world_of(self, agent: SocietyAgent) -> str:
        """Return the arm's world text the agent sees after the run's world ("" for none).

        Between worlds it is the arm scenario's arm_world; within one, the agent's arm's text.
        """
        if not self.arm_worlds:
            return self.scenario.arm_world
        return self.arm_worlds.get(self.arm_of.get(agent.persona_id, ""), "")

    @property
    def ordered(self) -> list[SocietyAgent]:
        """The agents in agent-id order."""
        return list(self.agents)

    def agent(self, ref: AgentRef) -> SocietyAgent:
        """Return the agent a scenario names by persona id or agent id (KeyError if none)."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return self.by_agent_id[ref]
        return self.by_persona[str(ref)]

    def _check_references(self) -> None:
        def check(ref: AgentRef | None, where: str) -> None:
            if ref is not None and not (ref in self.by_agent_id if isinstance(ref, int)
                                        else ref in self.by_persona):
                raise ScenarioError(f"scenario {self.scenario.name}: {where} names {ref!r}, which "
                                    f"is not an agent of this run (persona id, or agent id "
                                    f"1..{len(self.agents)})")
        audiences = [(f"event at step {e.step}", e.audience) for e in self.scenario.scheduled_events]
        audiences += [(f"survey {s.id!r}", s.audience) for s in self.scenario.surveys]
        for where, audience in audiences:
            for ref in audience.personas:
                check(ref, f"{where}: audience.personas")
            check(audience.near, f"{where}: audience.near")
        for x in self.scenario.interventions:
            check(x.target, f"intervention at step {x.step}: target")
            check(x.other, f"intervention at step {x.step}: other")

    def audience(self, audience: Audience, step: int) -> list[SocietyAgent]:
        """Return the agents an audience covers, in agent-id order."""
        agents = self.agents
        if audience.personas:
            wanted = {self.agent(r).unique_id for r in audience.personas}
            agents = agents.select(lambda a: a.unique_id in wanted)
        if audience.text_contains:
            needles = [t.lower() for t in audience.text_contains]
            agents = agents.select(lambda a: any(n in a.persona_text.lower() for n in needles))
        if audience.attributes:
            wanted_attributes = audience.attributes.items()
            agents = agents.select(
                lambda a: all(a.persona.attributes.get(k) == v for k, v in wanted_attributes))
        if audience.near is not None:
            # not cell.get_neighborhood: Mesa caches radius > 1 and does not clear it when an edge changes
            centre = self.agent(audience.near).persona_id
            within = nx.single_source_shortest_path_length(self.network.G, centre,
                                                           cutoff=audience.hops)
            agents = agents.select(lambda a: a.persona_id in within)
        if audience.where is not None:
            where = audience.where
            agents = agents.select(lambda a: where(a.info(step)))
        if audience.arms:
            arms = set(audience.arms)
            agents = agents.select(lambda a: self.arm_of.get(a.persona_id) in arms)
        return list(agents)

    def _active(self, step: int) -> list[SocietyAgent]:
        """Who acts this step, in agent-id order, drawn so a resumed run draws the same."""
        policy = self.scenario.activation
        assert not isinstance(policy, float)
        n = len(self.agents)
        if policy.mode == "all":
            return list(self.agents)
        if policy.mode == "count":  # position i is agent id i + 1
            rng = derived_rng(self.run_seed, step, "activation")
            chosen = sorted(rng.sample(range(n), min(policy.count, n)))
            return [self._positions[i] for i in chosen]
        if policy.mode == "probability":
            if self._activation_keys is None:
                self._activation_keys = np.array(
                    [_derived_seed((self.run_seed, pid, "active")) for pid in self.agents.get("persona_id")],
                    dtype=np.uint64)
            drawn = np.flatnonzero(step_draws(self._activation_keys, step) < policy.p)
            return [self._positions[i] for i in drawn.tolist()]
        when = policy.when
        assert when is not None
        return list(self.agents.select(
            lambda a: when(step, a.info(step), derived_rng(self.run_seed, step, a.persona_id, "active"))))

    def _plan(self, agent: SocietyAgent, step: int) -> tuple[str, str | None] | None:
        """(kind, addressee persona id) for an active agent, or None when it cannot act."""
        rng = derived_rng(self.run_seed, step, agent.persona_id)
        neighbours = agent.neighbour_ids()
        kinds = list(self.scenario.tasks)
        weights = list(self.scenario.task_weights or [1.0] * len(kinds))
        addressed = addressed_kinds()
        if not neighbours:
            keep = [i for i, k in enumerate(kinds) if k not in addressed]
            kinds, weights = [kinds[i] for i in keep], [weights[i] for i in keep]
        if not kinds or sum(weights) <= 0:
            return None
        kind = rng.choices(kinds, weights)[0]
        if kind not in addressed:
            return kind, None
        senders = [m.sender_id for m in agent.inbox if m.sender_id in neighbours]
        if senders and rng.random() < 0.7:
            return kind, senders[-1]  # keep the latest thread going
        return kind, rng.choice(neighbours)

    def _deliberate_input(self, agent: SocietyAgent, step: int) -> AgentInput | None:
        """Return the deliberate policy's options for an active agent, or None when it has none."""
        rng = derived_rng(self.run_seed, step, agent.persona_id, "people")
        options, people = choices(
            self.scenario.tasks, self.scenario.task_weights, agent.neighbour_ids(),
            [m.sender_id for m in reversed(agent.inbox)], addressed_kinds(), rng.sample)
        if not options:
            return None
        return AgentInput(policy=DELIBERATE, options=options,
                          people=[(p, self.by_persona[p].persona_text) for p in people])

    def step(self) -> None:
        """Run one step synchronously, as Mesa expects."""
        planned = self._open_step(self.steps)  # Mesa increments steps before calling step
        self.last_result = self._close_step(planned, self._runner(self._gather_step(planned)))

    async def advance(self, llm: StructuredCaller | None = None) -> StepResult:
        """Run the next step on the caller's event loop."""
        if llm is not None:
            self.llm = llm
        self.steps += 1  # as Mesa's wrapped step does
        planned = self._open_step(self.steps)
        self.last_result = self._close_step(planned, await self._gather_step(planned))
        return self.last_result

    def _open_step(self, step: int) -> _Planned:
        result = StepResult(step=step, n_active=0)
        self._intervene(step, result)
        # not shuffle_do: a shuffle would draw from self.random for nothing
        for agent in self._positions:
            if agent.pending:
                agent.deliver()
        seen = self._broadcast(step, result)
        self._deliver_injected(step, result, seen)
        planned: list[Plan] = []
        inputs: list[AgentInput] = []
        deliberate = self.scenario.policy == DELIBERATE
        pooled: dict[tuple[int, str, str], list[SocietyAgent]] = {}
        for agent in self._active(step):
            choice = self._deliberate_input(agent, step) if deliberate else None
            plan = self._plan(agent, step) if not deliberate else None
            if choice is None and plan is None:
                continue
            if plan is not None and plan[1] is None and self.archetype_of is not None:
                key = (self.archetype_of[agent.unique_id], self.arm(agent), plan[0])
                pooled.setdefault(key, []).append(agent)
                continue
            kind, addressee = plan or ("", None)  # a deliberating agent decides them
            planned.append((agent, kind, addressee))
            inputs.append(AgentInput(
                persona_id=agent.persona_id,
                persona=agent.persona_text,
                step=step,
                **({"kind": kind} if plan else {}),
                world=self.world,
                arm_world=self.arm_world_of(agent),
                events=seen.get(agent.unique_id, []),
                inbox=[(self.by_persona[m.sender_id].persona_text, m.text) for m in agent.inbox],
                addressee=self.by_persona[addressee].persona_text if addressee else None,
                memory=agent.memory.prompt_lines(step),
                recent=agent.memory.recent_own(),
                **(choice or {}),
            ))
        pools = [(archetype, kind, members)
                 for (archetype, _, kind), members in sorted(pooled.items())]
        for archetype, kind, members in pools:
            representative = self.representatives[archetype]
            history = self._history(step, members, seen, ("pool", archetype, kind))
            inputs.append(AgentInput(
                persona_id=representative.persona_id, persona=representative.persona_text,
                step=step, kind=kind, world=self.world, arm_world=self.arm_world_of(members[0]),
                events=history.events, inbox=[], addressee=None, memory=history.memory,
                recent=[]))
        asked = [(survey, agent) for survey in self.scenario.surveys_at(step)
                 for agent in self.audience(survey.audience, step)]
        return _Planned(result, planned, inputs, asked, seen, self._reflecting(step), pools)

    def _gather_step(self, p: _Planned) -> Coroutine[object, object, Gathered]:
        return self._gather(p.result.step, p.inputs, p.asked, p.seen, p.reflecting)

    def _share_groups(self, asked: list[tuple[Survey, SocietyAgent]]) -> list[list[int]]:
        """Positions of each (survey, archetype, arm) asked once, first asked first.

        A within-world run asks each arm's part of an archetype apart: one call for members of
        several arms would give them one distribution and erase the arms' difference.
        """
        groups: dict[tuple[int, int, str], list[int]] = {}
        if self.archetype_of is None:
            return []
        surveys: dict[int, int] = {}
        for i, (survey, agent) in enumerate(asked):
            if self.pooled_survey(survey):
                key = (surveys.setdefault(id(survey), len(surveys)),
                       self.archetype_of[agent.unique_id], self.arm(agent))
                groups.setdefault(key, []).append(i)
        return list(groups.values())

    def _close_step(self, p: _Planned, gathered: Gathered) -> StepResult:
        step, result = p.result.step, p.result
        n = len(p.planned)
        result.n_active = n + sum(len(members) for _, _, members in p.pools)
        self._apply_reflections(step, p.reflecting, gathered.reflections, result)
        self._apply(step, p.planned, gathered.outcomes[:n], result)
        self._apply_pools(step, p.pools, gathered.outcomes[n:], result)
        self._apply_answers(step, p.asked, gathered.answers, result)
        result.archetype_calls = len(p.pools) + (
            len(gathered.shares) if self.archetype_sample is None
            else sum(min(self.archetype_sample, len(g)) for g in self._share_groups(p.asked)))
        result.drawn += sum(isinstance(a, _Drawn) for a in gathered.answers)
        calls: list[CarriesCalls] = [*gathered.outcomes, *gathered.answers, *gathered.shares,
                                     *gathered.reflections]
        for call in calls:
            result.records.extend(call.records)
            result.cache_entries.extend(call.cache_entries)
        result.states = self._changed_states()
        return result

    async def _gather(self, step: int, inputs: list[AgentInput],
                      asked: list[tuple[Survey, SocietyAgent]],
                      seen: dict[int, list[str]], reflecting: Sequence[SocietyAgent] = (),
                      ) -> Gathered:
        order = prefix_order([action_prefix(i) for i in inputs])
        actions = run_agents([inputs[i] for i in order], self.llm, chunk_size=self.chunk_size,
                             budget=self.scenario.prompt_budget)
        groups = self._share_groups(asked)
        grouped = {i for group in groups for i in group}
        own = [i for i in range(len(asked)) if i not in grouped]
        asked_order = prefix_order([tuple(seen.get(asked[i][1].unique_id, [])) for i in own])
        questions = [self._ask(step, survey, agent, seen.get(agent.unique_id, []))
                     for survey, agent in (asked[own[i]] for i in asked_order)]
        share_calls = [self._profile_shares(step, asked[g[0]][0], [asked[i][1] for i in g],
                                            seen, self._sampled(step, asked, g)
                                            if self.archetype_sample is not None else None)
                       if asked[g[0]][0].id in self.survey_answerers
                       else self._ask_shares(step, asked[g[0]][0], [asked[i][1] for i in g], seen)
                       if self.archetype_sample is None
                       else self._sample_shares(step, asked[g[0]][0],
                                                self._sampled(step, asked, g), seen)
                       for g in groups]
        thoughts = [reflect(self.llm, agent.memory, persona=agent.persona_text,
                            persona_id=agent.persona_id, step=step,
                            budget=self.scenario.prompt_budget) for agent in reflecting]
        sent, *rest = await asyncio.gather(actions, *questions, *share_calls, *thoughts)
        answers: list[Any] = [None] * len(asked)
        for i, answer in zip(own, unorder(rest[: len(questions)], asked_order), strict=True):
            answers[i] = answer
        shares = rest[len(questions): len(questions) + len(groups)]
        for group, stated in zip(groups, shares, strict=True):
            for i in group:
                answers[i] = self._drawn_answer(step, *asked[i], stated)
        return Gathered(outcomes=unorder(sent, order), answers=answers,
                        reflections=rest[len(questions) + len(groups):], shares=shares)

    def _archetype(self, agent: SocietyAgent) -> SocietyAgent:
        assert self.archetype_of is not None
        return self.representatives[self.archetype_of[agent.unique_id]]

    def _history(self, step: int, members: Sequence[SocietyAgent], seen: dict[int, list[str]],
                 salt: tuple[object, ...]) -> GroupHistory:
        """Return what a group's members saw this step and remember, for the one call that speaks for them.

        At most MEMBERS_READ members are read (a sample drawn from the run seed, the step and
        salt, so a resume reads the same); the memory keeps as many items as a member's prompt.
        """
        read = list(members)
        if len(read) > MEMBERS_READ:
            read = sorted(derived_rng(self.run_seed, step, "history", *salt).sample(
                read, MEMBERS_READ), key=lambda a: a.unique_id)
        cfg = self.scenario.memory
        limit = (cfg.top_k if cfg.retrieve else cfg.observations) + (1 if cfg.reflects else 0)
        return group_history([a._memory for a in read],
                             [seen.get(a.unique_id, []) for a in read], step, limit)

    def _arm_key(self, members: Sequence[SocietyAgent]) -> str:
        """Return the arm of a pool's or group's members as a key part ('' outside a within run)."""
        arm = self.arm(members[0])
        return f":{arm}" if arm else ""

    async def _ask_shares(self, step: int, survey: Survey, members: Sequence[SocietyAgent],
                          seen: dict[int, list[str]]) -> StructuredResult[Any]:
        """One archetype's answer distribution, stated by its representative in one call.

        The call sees what its asked members saw and remember (group_memory), and their arm's
        world text, as each member's own survey would.
        """
        representative = self._archetype(members[0])
        archetype = self.archetype_of[members[0].unique_id] if self.archetype_of else -1
        history = self._history(step, members, seen,
                                ("survey", survey.id, archetype, self.arm(members[0])))
        values = survey_values(survey.answer, survey.options, survey.low, survey.high)
        hint = ("For each of these answers, in this order, the percent of people like you "
                "(the persona's archetype) who would give it: " + " | ".join(map(str, values)))
        messages = survey_messages(
            persona=representative.persona_text, question=survey.question, answer_hint=hint,
            world=self.world, arm_world=self.arm_world_of(members[0]), events=history.events,
            memory=history.memory,
            budget=self.scenario.prompt_budget)
        return await self.llm.structured(
            share_schema(survey.answer, survey.options, survey.low, survey.high), messages,
            purpose="survey_archetype", persona_id=representative.persona_id, step=step,
            max_tokens=SURVEY_MAX_TOKENS)

    def _sampled(self, step: int, asked: list[tuple[Survey, SocietyAgent]],
                 group: list[int]) -> list[SocietyAgent]:
        """Return the members sampled for one archetype's distribution, drawn so a resume draws the same."""
        assert self.archetype_sample is not None and self.archetype_of is not None
        survey, first = asked[group[0]]
        members = [asked[i][1] for i in group]
        if len(members) > self.archetype_sample:
            arm = self.arm(first)  # a within run samples each arm's part apart
            rng = derived_rng(self.run_seed, step, survey.id, "sample",
                              self.archetype_of[first.unique_id], *((arm,) if arm else ()))
            members = rng.sample(members, self.archetype_sample)
        return sorted(members, key=lambda a: a.unique_id)

    async def _sample_shares(self, step: int, survey: Survey, members: list[SocietyAgent],
                             seen: dict[int, list[str]]) -> StructuredResult[Any]:
        """Raw shares of an archetype's sampled members' answers (unsmoothed: an answer no one gave is
        never drawn).
        """
        results = await asyncio.gather(*(
            self._ask(step, survey, agent, seen.get(agent.unique_id, []),
                      purpose="survey_archetype") for agent in members))
        records = [r for result in results for r in result.records]
        entries = [e for result in results for e in result.cache_entries]
        given = [result.value.answer for result in results if result.value is not None]
        if not given:
            return StructuredResult(None, records, cache_entries=entries)
        values = survey_values(survey.answer, survey.options, survey.low, survey.high)
        shares = [100.0 * sum(v == x for v in given) / len(given) for x in values]
        schema = share_schema(survey.answer, survey.options, survey.low, survey.high)
        return StructuredResult(schema(shares=shares), records, cache_entries=entries)

    def _drawn_answer(self, step: int, survey: Survey, agent: SocietyAgent,
                      stated: StructuredResult[Any]) -> _Drawn:
        answerer = self.survey_answerers.get(survey.id)
        profile = answerer.profile_id if answerer is not None else None
        if stated.value is None:
            last = stated.records[-1] if stated.records else None
            return _Drawn(None, "archetype call: " + (getattr(last, "error", None)
                                                      or "no valid answer"), profile=profile)
        values = survey_values(survey.answer, survey.options, survey.low, survey.high)
        rng = derived_rng(self.run_seed, step, agent.persona_id, survey.id)
        value = rng.choices(values, weights=normalised_shares(stated.value.model_dump()))[0]
        schema = survey_schema(survey.answer, survey.options, survey.low, survey.high)
        archetype = self.archetype_of[agent.unique_id] if self.archetype_of else None
        through = f" (survey profile {profile})" if profile else ""
        return _Drawn(schema.model_validate(
            {"answer": value, "reason": f"drawn from archetype {archetype}'s shares{through}"}),
            profile=profile)

    async def _profile_shares(self, step: int, survey: Survey, members: Sequence[SocietyAgent],
                              seen: dict[int, list[str]],
                              sampled: Sequence[SocietyAgent] | None) -> StructuredResult[Any]:
        """One archetype's shares from the survey's profile: its representative's distribution
        (shown what its asked members saw and remember), or the mean of its sampled members'.
        """
        answerer = self.survey_answerers[survey.id]
        asked: list[tuple[SocietyAgent, str]] = []
        if sampled is None:
            representative = self._archetype(members[0])
            archetype = self.archetype_of[members[0].unique_id] if self.archetype_of else -1
            history = self._history(step, members, seen,
                                    ("survey", survey.id, archetype, self.arm(members[0])))
            asked.append((representative, survey_situation(
                persona=representative.persona_text, question=survey.question, world=self.world,
                arm_world=self.arm_world_of(members[0]), events=history.events,
                memory=history.memory, budget=self.scenario.prompt_budget)))
        else:
            asked += [(agent, self._situation(step, survey, agent,
                                              seen.get(agent.unique_id, [])))
                      for agent in sampled]
        results = await asyncio.gather(*(answerer.shares(
            survey.question, survey.options, text=agent.persona_text,
            attributes=agent.persona.attributes, persona_id=agent.persona_id,
            situation=situation, step=step, caller=self.llm) for agent, situation in asked))
        records = [r for _, call in results for r in call.records]
        entries = [e for _, call in results for e in call.cache_entries]
        given = [shares for shares, _ in results if shares is not None]
        if not given:
            return StructuredResult(None, records, cache_entries=entries)
        mean = np.mean(np.asarray(given, float), axis=0)
        schema = share_schema(survey.answer, survey.options, survey.low, survey.high)
        return StructuredResult(schema(shares=[100.0 * float(v) for v in mean]), records,
                                cache_entries=entries)

    def _situation(self, step: int, survey: Survey, agent: SocietyAgent,
                   events: list[str]) -> str:
        """Return what the agent's survey prompt would show besides its persona, as prompt sections."""
        return survey_situation(
            persona=agent.persona_text, question=survey.question, world=self.world,
            arm_world=self.arm_world_of(agent), events=events,
            inbox=[(self.by_persona[m.sender_id].persona_text, m.text) for m in agent.inbox],
            memory=agent.memory.prompt_lines(step), budget=self.scenario.prompt_budget)

    async def _ask_profiled(self, step: int, survey: Survey, agent: SocietyAgent,
                            events: list[str]) -> Profiled:
        """Return the agent's answer drawn, seeded, from the survey profile's distribution for it."""
        answerer = self.survey_answerers[survey.id]
        shares, call = await answerer.shares(
            survey.question, survey.options, text=agent.persona_text,
            attributes=agent.persona.attributes, persona_id=agent.persona_id,
            situation=self._situation(step, survey, agent, events), step=step, caller=self.llm)
        records, entries = tuple(call.records), tuple(call.cache_entries)
        if shares is None:
            last = call.records[-1] if call.records else None
            return Profiled(None, answerer.profile_id, error="survey profile: " + (
                getattr(last, "error", None) or "no valid answer"), records=records,
                cache_entries=entries)
        rng = derived_rng(self.run_seed, step, agent.persona_id, survey.id, "profile")
        value = drawn_answer(survey.options, shares, rng)
        schema = survey_schema(survey.answer, survey.options, survey.low, survey.high)
        return Profiled(schema.model_validate(
            {"answer": value, "reason": f"drawn from survey profile {answerer.profile_id}"}),
            answerer.profile_id, tuple(shares), records=records, cache_entries=entries)

    def _reflecting(self, step: int) -> list[SocietyAgent]:
        cfg = self.scenario.memory
        if not cfg.reflects:
            return []
        return [agent for agent in self._positions if agent._memory is not None
                and agent._memory.reflection_due(step, cfg.reflect_every)]

    def _apply_reflections(self, step: int, reflecting: list[SocietyAgent],
                           reflections: list[StructuredResult[Any]], result: StepResult) -> None:
        """Each reflection replaces its agent's summary; a failed one changes nothing."""
        for agent, reflection in zip(reflecting, reflections, strict=True):
            error = apply_reflection(agent.memory, step, reflection)
            if error is not None:
                result.failures.append((agent.persona_id, f"reflection: {error}"))
                continue
            agent.touch()

    async def _ask(self, step: int, survey: Survey, agent: SocietyAgent,
                   events: list[str], purpose: str = "survey") -> StructuredResult[Any] | Profiled:
        if survey.id in self.survey_answerers:
            return await self._ask_profiled(step, survey, agent, events)
        schema = survey_schema(survey.answer, survey.options, survey.low, survey.high)
        if survey.answer == "choice":
            hint = "Choose exactly one of: " + " | ".join(survey.options)
        elif survey.answer == "scale":
            hint = f"An integer from {survey.low} (lowest) to {survey.high} (highest)."
        else:
            hint = "A short answer in your own words."
        messages = survey_messages(
            persona=agent.persona_text, question=survey.question, answer_hint=hint,
            world=self.world, arm_world=self.arm_world_of(agent), events=events,
            inbox=[(self.by_persona[m.sender_id].persona_text, m.text) for m in agent.inbox],
            memory=agent.memory.prompt_lines(step), budget=self.scenario.prompt_budget,
        )
        return await self.llm.structured(schema, messages, purpose=purpose,
                                         persona_id=agent.persona_id, step=step,
                                         max_tokens=SURVEY_MAX_TOKENS)

    def _intervene(self, step: int, result: StepResult) -> None:
        for index, x in self.scenario.interventions_at(step):
            agent = self.agent(x.target)
            if x.arms and self.arm_of.get(agent.persona_id) not in x.arms:
                continue  # the target is in another arm
            other = self.agent(x.other) if x.other is not None else None
            applied = self.apply_intervention(x, step)
            result.interventions.append({
                "step": step, "intervention_index": index, "action": x.action,
                "persona_id": agent.persona_id, "agent_id": agent.unique_id,
                "other_persona_id": other.persona_id if other else None,
                "text": x.text or None,
                "relation": x.relation if x.action == "add_edge" else None, "applied": applied,
                "source": "scenario",
            })

    def apply_intervention(self, x: Intervention, step: int) -> bool:
        """Apply one intervention; False when it changed nothing."""
        agent = self.agent(x.target)
        agent.touch()
        if x.action == "set_persona":
            agent.persona_text = x.text
        elif x.action == "add_memory":
            agent.memory.observe(step, x.text)
        elif x.action == "forget":
            agent.memory.forget()
        else:
            return self.change_edge(x.action, agent.persona_id, self.agent(x.other or "").persona_id,
                                    x.relation)
        return True

    def change_edge(self, action: str, a: str, b: str, relation: str | None = None) -> bool:
        """Add or remove an edge of the run's graph (the hub's relations stay as they are)."""
        network = self.network
        linked = network.G.has_edge(a, b)
        if action == "add_edge":
            if linked:
                return False
            network.add_connection(network[a], network[b])
            network.G.edges[a, b]["relation"] = relation
            return True
        if not linked:
            return False
        network.remove_connection(network[a], network[b])
        return True

    def _broadcast(self, step: int, result: StepResult) -> dict[int, list[str]]:
        seen: dict[int, list[str]] = {}
        for index, event in enumerate(self.scenario.scheduled_events):
            if event.step != step:
                continue
            audience = self.audience(event.audience, step)
            for agent in audience:
                seen.setdefault(agent.unique_id, []).append(event.text)
                agent.memory.observe(step, event.text)
                agent.touch()
            result.events.append({
                "step": step, "event_index": index, "text": event.text,
                "audience": event.audience.describe(), "n_recipients": len(audience),
                "recipients": [a.persona_id for a in audience], "source": "scenario",
            })
        return seen

    def _deliver_injected(self, step: int, result: StepResult, seen: dict[int, list[str]]) -> None:
        """Deliver the events injected since the last step to every agent, each recorded as an event
        and an intervention naming its source.
        """
        injected, self.injected = self.injected, []
        everyone = [str(p) for p in self.by_persona]
        for item in injected:
            for agent in self._positions:
                seen.setdefault(agent.unique_id, []).append(item.text)
                agent.memory.observe(step, item.text)
                agent.touch()
            result.events.append({
                "step": step, "event_index": self.next_event_index, "text": item.text,
                "audience": "all", "n_recipients": len(everyone), "recipients": everyone,
                "source": item.source})
            result.interventions.append({
                "step": step, "intervention_index": self.next_intervention_index,
                "action": "event", "persona_id": "*", "agent_id": None, "other_persona_id": None,
                "text": item.text, "relation": None, "applied": True, "source": item.source})
            self.next_event_index += 1
            self.next_intervention_index += 1

    def _apply(self, step: int, planned: list[Plan], outcomes: list[AgentOutcome],
               result: StepResult) -> None:
        for (agent, kind, addressee), outcome in zip(planned, outcomes, strict=True):
            if outcome.decision is not None:
                decision = outcome.decision
                result.decisions.append(self._decision_row(step, agent, decision))
                if not decision.acts:
                    if decision.error is not None:
                        result.failures.append((agent.persona_id, decision.error))
                    continue
                kind, addressee = str(decision.action), decision.addressee_id
            if outcome.output is None or outcome.text is None:
                result.failures.append((agent.persona_id, outcome.error or "failed"))
                continue
            emission_id = f"{self.run_id}:{step}:{agent.unique_id}"
            if outcome.rejected is not None:  # a failed action, kept with its reason
                result.failures.append((agent.persona_id, f"quality gate: {outcome.rejected}"))
                result.rejected.append(rejected_row(
                    "emission", outcome.rejected, outcome.output, key=emission_id,
                    run_id=self.run_id, step=step, persona_id=agent.persona_id, task=kind))
                continue
            content, said = outcome.output, outcome.text
            if addressee:
                content, said = emission_task(kind).addressed_content(
                    content, said, agent.persona_id, addressee)
            result.emissions.append(Emission(
                emission_id=emission_id, step=step, agent_id=agent.unique_id,
                persona_id=agent.persona_id, task=kind, content=content,
                text=outcome.text, target_persona_id=addressee,
            ))
            agent.memory.remember_own(step, kind, outcome.text[:300])
            agent.touch()
            if addressee:
                replied = next((m for m in reversed(agent.inbox) if m.sender_id == addressee), None)
                message_id = f"{emission_id}:m"
                message = Message(
                    message_id=message_id, step=step, sender_id=agent.persona_id,
                    receiver_id=addressee, text=said,
                    reply_to=replied.message_id if replied else None, emission_id=emission_id,
                    thread_id=(replied.thread_id or replied.message_id) if replied else message_id,
                )
                result.messages.append(message)
                receiver = self.by_persona[addressee]
                receiver.pending.append(message)
                receiver.touch()

    def _apply_pools(self, step: int, pools: list[Pool], outcomes: list[AgentOutcome],
                     result: StepResult) -> None:
        """Each pool's one action, emitted by each member; a failed pool call fails them all."""
        for (archetype, kind, members), outcome in zip(pools, outcomes, strict=True):
            error = (outcome.error or "failed") if outcome.output is None or outcome.text is None \
                else (f"quality gate: {outcome.rejected}" if outcome.rejected is not None else None)
            if error is not None:
                if outcome.rejected is not None and outcome.output is not None:
                    result.rejected.append(rejected_row(
                        "emission", outcome.rejected, outcome.output,
                        key=f"{self.run_id}:{step}:a{archetype}{self._arm_key(members)}:{kind}",
                        run_id=self.run_id,
                        step=step, persona_id=self.representatives[archetype].persona_id,
                        task=kind))
                result.failures.extend(
                    (agent.persona_id, f"archetype {archetype}: {error}") for agent in members)
                continue
            assert outcome.output is not None and outcome.text is not None
            for agent in members:
                result.emissions.append(Emission(
                    emission_id=f"{self.run_id}:{step}:{agent.unique_id}", step=step,
                    agent_id=agent.unique_id, persona_id=agent.persona_id, task=kind,
                    content=outcome.output, text=outcome.text, archetype=archetype))
                agent.memory.remember_own(step, kind, outcome.text[:300])
                agent.touch()
            result.drawn += len(members)

    @staticmethod
    def _decision_row(step: int, agent: SocietyAgent, decision: Decision) -> DecisionRow:
        return {"step": step, "agent_id": agent.unique_id, "persona_id": agent.persona_id,
                "action": decision.action, "addressee_id": decision.addressee_id,
                "addressee_label": decision.label, "fallback": decision.fallback,
                "reason": decision.reason, "error": decision.error}

    def _apply_answers(self, step: int, asked: list[tuple[Survey, SocietyAgent]],
                       answers: Sequence[StructuredResult[Any] | Profiled | _Drawn],
                       result: StepResult) -> None:
        result.n_asked = len(asked)
        for (survey, agent), answer in zip(asked, answers, strict=True):
            if answer.value is None:
                last = answer.records[-1] if answer.records else None
                error = (getattr(answer, "error", None) or getattr(last, "error", None)
                         or "no valid answer")
                result.failures.append((agent.persona_id, f"survey {survey.id}: {error}"))
                continue
            content = answer.value.model_dump()
            value = survey_value(content)
            if isinstance(answer, Profiled):  # which profile answered, and its distribution
                content["profile"] = answer.profile
                content["shares"] = dict(zip(survey.options, answer.shares, strict=True))
            elif isinstance(answer, _Drawn) and answer.profile:
                content["profile"] = answer.profile
            result.answers.append({
                "step": step, "survey_id": survey.id, "question": survey.question,
                "persona_id": agent.persona_id, "agent_id": agent.unique_id,
                "answer_kind": survey.answer,
                "answer_choice": value if survey.answer == "choice" else None,
                "answer_scale": int(value) if survey.answer == "scale" else None,
                "answer_text": str(value) if survey.answer == "text" else None,
                "content": content,
            })
            if survey.remember:
                agent.memory.observe(step, f"Asked '{survey.question}', I answered: {value}",
                                     source="answer")
                agent.touch()

    def _changed_states(self) -> list[tuple[int, str]]:
        """(agent id, state as JSON) of every agent touched this step, in agent-id order.

        Only touched ones: serialising all cost seconds per step at 100,000 agents.
        """
        touched, self.touched = sorted(self.touched), set()
        return [(agent_id, json.dumps(self.by_agent_id[agent_id].get_state(), ensure_ascii=False))
                for agent_id in touched]

    def restore(self, steps_done: int, states: dict[int, dict[str, object]]) -> None:
        """Put the model where it was after steps_done, from checkpointed agent states."""
        for agent_id, state in states.items():
            self.by_agent_id[agent_id].set_state(state)
        self.steps = steps_done


T_ = TypeVar("T_")


def action_prefix(agent_input: AgentInput) -> tuple[str, ...]:
    """Return what an action's prompt starts with besides the world: its events, then its kind's task."""
    return (*agent_input.get("events", ()), str(agent_input.get("kind") or ""))


def prefix_order(keys: Sequence[tuple[str, ...]]) -> list[int]:
    """Return the order a step's requests are sent: prompts sharing a prefix sit together, so a server's
    prefix cache finds it.

    Keys are compared part by part: requests whose keys share their first parts sit together, in the
    order those parts were first seen, then by the next part the same way.
    """
    ended = [(*key, None) for key in keys]  # None ends a key: a shorter key is its own group
    first: dict[tuple[str | None, ...], int] = {}
    for key in ended:
        for n in range(1, len(key) + 1):
            first.setdefault(key[:n], len(first))
    return sorted(range(len(keys)),
                  key=lambda i: tuple(first[ended[i][:n]] for n in range(1, len(ended[i]) + 1)))


def unorder(items: Sequence[T_], order: Sequence[int]) -> list[T_]:
    """Items sent in order put back in their original positions."""
    out: list[Any] = [None] * len(items)
    for item, position in zip(items, order, strict=True):
        out[position] = item
    return out
