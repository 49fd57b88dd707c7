"""The persona agent: one compiled LangGraph ``StateGraph`` shared by every agent.

    observe ──▶ act ──▶ record
    (prompts from persona, world, memory, events, inbox, within the run's prompt budget)
                 (model)  (emission texts, or failures; the quality gate's verdict)

Per-agent state is plain data (``AgentInput``); the graph holds nothing, so 100,000 agents cost
one graph. The model is injected through the run context (``AgentContext``), never built inside
a node, so tests and the offline engine slot in without patching.

The graph runs over a *chunk* of agents per invocation: each node maps over the chunk and ``act``
issues the chunk's model calls concurrently. A LangGraph invocation costs about 2 ms of
orchestration here whatever its nodes do, which would cap a one-invocation-per-agent design near
400 actions/s on two cores; chunking amortises that without changing what an agent does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.messages import BaseMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from personahub.agents.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.agents.prompt_budget import DEFAULT_BUDGET, PromptBudget
from personahub.agents.prompts import agent_messages
from personahub.agents.tasks import emission_task
from personahub.personas.quality import QualityIssue
from pydantic import BaseModel

DEFAULT_CHUNK = 128


class AgentInput(TypedDict, total=False):
    """What the simulation hands one agent for one step (a frozen snapshot)."""

    persona_id: str
    persona: str
    step: int
    kind: str
    world: str
    events: list[str]
    inbox: list[tuple[str, str]]  # (sender persona text, message text)
    addressee: str | None
    memory: list[str]  # what the agent recalls (summary, earlier events)
    recent: list[str]  # its own latest emissions


@dataclass(frozen=True)
class AgentOutcome:
    """What one agent produced: the validated output, its text, or the failure.

    ``rejected`` is set when the output passed its schema but failed the kind's semantic check
    (``agents.validators``): the output is kept for the ``rejected`` table, not emitted.
    ``records`` and ``cache_entries`` are those of the agent's model call, for the step's commit.
    """

    output: dict[str, Any] | None
    text: str | None
    error: str | None
    rejected: QualityIssue | None = None
    records: Sequence[CallRecord] = ()
    cache_entries: Sequence[CacheEntry] = ()


class ChunkState(TypedDict, total=False):
    """Graph state: the agents of one chunk and what each node adds for them."""

    agents: list[AgentInput]
    prompts: list[list[BaseMessage]]
    values: list[BaseModel | None]  # the validated answers (None where the call failed)
    errors: list[str | None]
    calls: list[StructuredResult[Any]]  # each agent's call, with its records and cache entries
    outcomes: list[AgentOutcome]


@dataclass(frozen=True)
class AgentContext:
    """Run-scoped dependencies injected into the graph (the model seam, the prompt budget)."""

    llm: StructuredCaller
    budget: PromptBudget = DEFAULT_BUDGET


def observe(state: ChunkState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Turn each agent's snapshot (persona, world, events, inbox, addressee) into its prompt."""
    budget = runtime.context.budget
    prompts = [
        agent_messages(
            persona=a["persona"],
            kind=a["kind"],
            world=a.get("world", ""),
            events=a.get("events", []),
            inbox=a.get("inbox", []),
            addressee=a.get("addressee"),
            memory=a.get("memory", []),
            recent=a.get("recent", []),
            budget=budget,
        )
        for a in state["agents"]
    ]
    return {"prompts": prompts}


async def act(state: ChunkState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for each agent's structured emission, concurrently."""
    llm = runtime.context.llm
    results = await asyncio.gather(*[
        llm.structured(emission_task(a["kind"]).schema, prompt, purpose=a["kind"],
                       persona_id=a["persona_id"], step=a.get("step"))
        for a, prompt in zip(state["agents"], state["prompts"], strict=True)
    ])
    errors: list[str | None] = []
    for result in results:
        last = result.records[-1] if result.records else None
        errors.append(None if result.value is not None
                      else getattr(last, "error", None) or "no valid answer")
    return {"values": [r.value for r in results], "errors": errors, "calls": results}


def record(state: ChunkState) -> dict[str, Any]:
    """Each emission as stored (the validated answer's fields), its searchable text, and the
    quality gate's verdict on it."""
    outcomes = []
    for agent, value, error, call in zip(state["agents"], state["values"], state["errors"],
                                         state["calls"], strict=True):
        if value is None:
            outcomes.append(AgentOutcome(None, None, error, records=call.records,
                                         cache_entries=call.cache_entries))
        else:
            task = emission_task(agent["kind"])
            content = value.model_dump(by_alias=True)
            outcomes.append(AgentOutcome(content, task.emission_text(content), error,
                                         task.check(content), call.records, call.cache_entries))
    return {"outcomes": outcomes}


def build_agent_graph() -> Any:
    """Wire observe → act → record and compile (done once, at import)."""
    graph = StateGraph(ChunkState, context_schema=AgentContext)
    graph.add_node("observe", observe)
    graph.add_node("act", act)
    graph.add_node("record", record)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "act")
    graph.add_edge("act", "record")
    graph.add_edge("record", END)
    return graph.compile(name="persona_agent")


AGENT_GRAPH = build_agent_graph()


async def run_agents(agents: Sequence[AgentInput], llm: StructuredCaller, *,
                     chunk_size: int = DEFAULT_CHUNK,
                     budget: PromptBudget = DEFAULT_BUDGET) -> list[AgentOutcome]:
    """Run the agent graph for every input (chunks in parallel); outcomes in input order."""
    if not agents:
        return []
    context = AgentContext(llm=llm, budget=budget)
    chunks = [list(agents[i : i + chunk_size]) for i in range(0, len(agents), chunk_size)]
    states = await asyncio.gather(*[
        AGENT_GRAPH.ainvoke({"agents": chunk}, context=context) for chunk in chunks
    ])
    return [outcome for state in states for outcome in state["outcomes"]]
