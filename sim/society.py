"""The Mesa model of a persona society on a ``NetworkGrid`` over the relationship graph.

A step is *gather, then apply*: every active agent reads the same frozen snapshot (its inbox
from the previous step, the step's events, the world), all agents' LangGraph runs go
concurrently, and results are applied in agent-id order. Random draws come from RNGs derived
from (run seed, step, persona), never from completion order, so a seeded run is identical
however the model calls interleave.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mesa
import networkx as nx
from mesa.space import NetworkGrid

from agents.persona_agent import DEFAULT_CHUNK, AgentInput, AgentOutcome, run_agents
from personas.expand import StructuredCaller
from personas.record import Persona
from sim.scenario import Scenario

T = TypeVar("T")


@dataclass(frozen=True)
class Message:
    """A line of dialogue from one persona to a neighbour, delivered the step after."""

    message_id: str
    step: int
    sender_id: str
    receiver_id: str
    text: str
    reply_to: str | None = None
    emission_id: str | None = None


@dataclass(frozen=True)
class Emission:
    """One validated thing an agent produced in a step."""

    emission_id: str
    step: int
    agent_id: int
    persona_id: str
    kind: str
    content: dict[str, Any]
    text: str
    target_persona_id: str | None = None


@dataclass
class StepResult:
    """What a step produced, in agent-id order."""

    step: int
    n_active: int
    emissions: list[Emission] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (persona_id, error)


def derived_rng(*parts: object) -> random.Random:
    """An RNG seeded from ``parts`` (run seed, step, persona...), independent of call order."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class PersonaAgent(mesa.Agent):
    """A persona placed on the graph; its LangGraph behaviour is shared, its state is data."""

    def __init__(self, model: SocietyModel, persona: Persona, inbox_size: int) -> None:
        super().__init__(model)
        self.persona = persona
        self.inbox: deque[Message] = deque(maxlen=max(inbox_size, 1))
        self.pending: list[Message] = []

    @property
    def persona_id(self) -> str:
        """The hub id of this agent's persona."""
        return self.persona.persona_id

    def neighbour_ids(self) -> list[str]:
        """Persona ids adjacent on the relationship graph, sorted for determinism."""
        return sorted(self.model.grid.get_neighborhood(self.persona_id, include_center=False))

    def deliver(self) -> None:
        """Move messages received last step into view (the oldest fall out of the bounded inbox)."""
        self.inbox.extend(self.pending)
        self.pending = []

    def get_state(self) -> dict[str, Any]:
        """Plain-data state (inbox and undelivered messages), for checkpoints and replay."""
        return {
            "persona_id": self.persona_id,
            "inbox": [vars(m).copy() for m in self.inbox],
            "pending": [vars(m).copy() for m in self.pending],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned."""
        self.inbox.clear()
        self.inbox.extend(Message(**m) for m in state["inbox"])
        self.pending = [Message(**m) for m in state["pending"]]


class SocietyModel(mesa.Model):
    """A virtual society: persona agents on the relationship graph, stepping together."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        personas: Sequence[Persona],
        graph: nx.Graph,
        llm: StructuredCaller,
        run_id: str,
        seed: int,
        runner: Callable[[Awaitable[list[AgentOutcome]]], list[AgentOutcome]],
        world: str = "",
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(seed=seed)
        self.scenario = scenario
        self.llm = llm
        self.run_id = run_id
        self.run_seed = seed
        self.world = world
        self.chunk_size = chunk_size
        self._runner = runner
        self.last_result: StepResult | None = None
        self.grid = NetworkGrid(graph)
        self.by_persona: dict[str, PersonaAgent] = {}
        for persona in personas:  # creation order fixes agent ids
            agent = PersonaAgent(self, persona, scenario.inbox_size)
            self.grid.place_agent(agent, persona.persona_id)
            self.by_persona[persona.persona_id] = agent
        self.ordered: list[PersonaAgent] = sorted(self.by_persona.values(), key=lambda a: a.unique_id)

    def _plan(self, agent: PersonaAgent, step: int) -> tuple[str, str | None] | None:
        """(kind, addressee persona id) for an active agent, or None when it idles."""
        rng = derived_rng(self.run_seed, step, agent.persona_id)
        if self.scenario.activation < 1.0 and rng.random() >= self.scenario.activation:
            return None
        neighbours = agent.neighbour_ids()
        kinds = list(self.scenario.kinds)
        weights = list(self.scenario.kind_weights or [1.0] * len(kinds))
        if not neighbours and "npc_dialogue" in kinds:
            i = kinds.index("npc_dialogue")
            del kinds[i], weights[i]
        if not kinds or sum(weights) <= 0:
            return None
        kind = rng.choices(kinds, weights)[0]
        if kind != "npc_dialogue":
            return kind, None
        senders = [m.sender_id for m in agent.inbox if m.sender_id in neighbours]
        if senders and rng.random() < 0.7:
            return kind, senders[-1]  # keep the latest thread going
        return kind, rng.choice(neighbours)

    def step(self) -> None:
        """Gather every active agent's action on one snapshot, then apply in agent-id order."""
        step = self.steps  # Mesa increments ``steps`` before calling ``step``
        for agent in self.ordered:
            agent.deliver()
        events = list(self.scenario.events.get(step, ()))
        planned: list[tuple[PersonaAgent, str, str | None]] = []
        inputs: list[AgentInput] = []
        for agent in self.ordered:
            plan = self._plan(agent, step)
            if plan is None:
                continue
            kind, addressee = plan
            planned.append((agent, kind, addressee))
            inputs.append(AgentInput(
                persona_id=agent.persona_id,
                persona=agent.persona.text,
                step=step,
                kind=kind,
                world=self.world,
                events=events,
                inbox=[(self.by_persona[m.sender_id].persona.text, m.text) for m in agent.inbox],
                addressee=self.by_persona[addressee].persona.text if addressee else None,
            ))
        outcomes = self._runner(run_agents(inputs, self.llm, chunk_size=self.chunk_size))
        self.last_result = self._apply(step, planned, outcomes)

    def _apply(self, step: int, planned: list[tuple[PersonaAgent, str, str | None]],
               outcomes: list[AgentOutcome]) -> StepResult:
        result = StepResult(step=step, n_active=len(planned))
        for (agent, kind, addressee), outcome in zip(planned, outcomes, strict=True):
            if outcome.output is None or outcome.text is None:
                result.failures.append((agent.persona_id, outcome.error or "failed"))
                continue
            emission_id = f"{self.run_id}:{step}:{agent.unique_id}"
            result.emissions.append(Emission(
                emission_id=emission_id, step=step, agent_id=agent.unique_id,
                persona_id=agent.persona_id, kind=kind, content=outcome.output,
                text=outcome.text, target_persona_id=addressee,
            ))
            if kind == "npc_dialogue" and addressee:
                reply_to = next((m.message_id for m in reversed(agent.inbox)
                                 if m.sender_id == addressee), None)
                message = Message(
                    message_id=f"{emission_id}:m", step=step, sender_id=agent.persona_id,
                    receiver_id=addressee, text=outcome.text, reply_to=reply_to,
                    emission_id=emission_id,
                )
                result.messages.append(message)
                self.by_persona[addressee].pending.append(message)
        return result
