"""The persona agent: one compiled LangGraph graph shared by every agent.

Nodes: decide (deliberate agents only) -> observe (build prompts) -> act (model calls) -> record.
Per-agent state is plain data, so 100,000 agents cost one graph; the model comes in through
the run context, so tests and the offline engine need no patching. The graph runs over a chunk
of agents per invocation because each invocation has a fixed orchestration cost
(bench/bench_offline_engine.py times it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from langchain_core.messages import BaseMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from personahub.agents.decide import DECIDE_MAX_TOKENS, DECIDE_PURPOSE, Decision, decision_schema, resolve
from personahub.agents.prompts.agent import agent_messages, decision_messages
from personahub.agents.prompts.budget import DEFAULT_BUDGET, PromptBudget
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.personas.quality import QualityIssue
from personahub.tasks import addressed_kinds, emission_task
from personahub.tasks.max_tokens import kind_max_tokens

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

DEFAULT_CHUNK = 128


class AgentInput(TypedDict, total=False):
    """What the simulation hands one agent for one step."""

    persona_id: str
    persona: str
    step: int
    kind: str
    world: str
    arm_world: str  # an experiment arm's world text, the World section's last paragraph
    events: list[str]
    inbox: list[tuple[str, str]]  # (sender persona text, message text)
    addressee: str | None
    memory: list[str]  # summary and earlier events
    recent: list[str]  # its own latest emissions
    policy: str  # "scripted" or "deliberate"
    options: list[str]  # kinds a deliberating agent may emit
    people: list[tuple[str, str]]  # (persona id, persona text) it may address, label order
    addressee_id: str | None  # set by decide: whom the chosen kind is said to


DELIBERATE = "deliberate"


def deliberates(agent: AgentInput) -> bool:
    return agent.get("policy") == DELIBERATE


@dataclass(frozen=True)
class AgentOutcome:
    """What one agent produced: the validated output and its text, or the failure.

    rejected is set when the output passed its schema but failed the kind's semantic check; it is
    kept for the rejected table, not emitted. records and cache_entries cover all the agent's calls.
    """

    output: dict[str, object] | None
    text: str | None
    error: str | None
    rejected: QualityIssue | None = None
    records: Sequence[CallRecord] = ()
    cache_entries: Sequence[CacheEntry] = ()
    decision: Decision | None = None


class ChunkState(TypedDict, total=False):
    """Graph state: the agents of one chunk and what each node adds for them."""

    agents: list[AgentInput]
    prompts: list[list[BaseMessage]]
    values: list[BaseModel | None]
    errors: list[str | None]
    calls: list[StructuredResult[Any] | None]  # None: it did not act
    decisions: list[Decision | None]  # None: scripted
    decide_calls: list[StructuredResult[Any] | None]
    outcomes: list[AgentOutcome]


@dataclass(frozen=True)
class AgentContext:
    """Run-scoped dependencies injected into the graph: the model and the prompt budget."""

    llm: StructuredCaller
    budget: PromptBudget = DEFAULT_BUDGET


def route(state: ChunkState) -> str:
    """Route the chunk to decide when any agent deliberates, else to observe."""
    return "decide" if any(deliberates(a) for a in state["agents"]) else "observe"


async def decide(state: ChunkState, runtime: Runtime[AgentContext]) -> dict[str, object]:
    """Ask each deliberating agent what it does, and set its kind and addressee from the answer."""
    llm, budget = runtime.context.llm, runtime.context.budget
    agents = state["agents"]
    deliberating = [i for i, a in enumerate(agents) if deliberates(a)]

    async def ask(a: AgentInput) -> StructuredResult[Any]:
        options, people = a.get("options", []), a.get("people", [])
        messages = decision_messages(
            persona=a["persona"], options=options, people=[text for _, text in people],
            world=a.get("world", ""), arm_world=a.get("arm_world", ""),
            events=a.get("events", []), inbox=a.get("inbox", []),
            memory=a.get("memory", []), recent=a.get("recent", []), budget=budget)
        return await llm.structured(decision_schema(tuple(options), len(people)), messages,
                                    purpose=DECIDE_PURPOSE, persona_id=a["persona_id"],
                                    step=a.get("step"), max_tokens=DECIDE_MAX_TOKENS)

    answers = await asyncio.gather(*[ask(agents[i]) for i in deliberating])
    updated = list(agents)
    decisions: list[Decision | None] = [None] * len(agents)
    calls: list[StructuredResult[Any] | None] = [None] * len(agents)
    addressed = addressed_kinds()
    for i, result in zip(deliberating, answers, strict=True):
        a = agents[i]
        people = a.get("people", [])
        decision = resolve(result.value, _error_of(result), a.get("options", []), people, addressed)
        decisions[i], calls[i] = decision, result
        chosen = dict(a)
        chosen.pop("kind", None)
        if decision.acts:
            texts = dict(people)
            chosen["kind"] = str(decision.action)
            chosen["addressee_id"] = decision.addressee_id
            chosen["addressee"] = texts[decision.addressee_id] if decision.addressee_id else None
        updated[i] = AgentInput(**chosen)  # type: ignore[typeddict-item]
    return {"agents": updated, "decisions": decisions, "decide_calls": calls}


def _error_of(result: StructuredResult[Any]) -> str | None:
    """Return why a call has no value, or None when it has one."""
    if result.value is not None:
        return None
    last = result.records[-1] if result.records else None
    return getattr(last, "error", None) or "no valid answer"


def observe(state: ChunkState, runtime: Runtime[AgentContext]) -> dict[str, object]:
    """Build each acting agent's prompt; an agent without a kind decided not to act."""
    budget = runtime.context.budget
    prompts = [
        [] if "kind" not in a else agent_messages(
            persona=a["persona"],
            kind=a["kind"],
            world=a.get("world", ""),
            arm_world=a.get("arm_world", ""),
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


async def act(state: ChunkState, runtime: Runtime[AgentContext]) -> dict[str, object]:
    """Ask the model for each acting agent's emission, concurrently."""
    llm = runtime.context.llm
    acting = [(i, a, prompt) for i, (a, prompt) in enumerate(zip(state["agents"], state["prompts"],
                                                                 strict=True)) if "kind" in a]
    done = await asyncio.gather(*[
        llm.structured(emission_task(a["kind"]).schema, prompt, purpose=a["kind"],
                       persona_id=a["persona_id"], step=a.get("step"),
                       check=emission_task(a["kind"]).gate,
                       max_tokens=kind_max_tokens(a["kind"]))
        for _, a, prompt in acting
    ])
    results: list[StructuredResult[Any] | None] = [None] * len(state["agents"])
    for (i, _, _), result in zip(acting, done, strict=True):
        results[i] = result
    return {"values": [r.value if r is not None else None for r in results],
            "errors": [_error_of(r) if r is not None else None for r in results], "calls": results}


def record(state: ChunkState) -> dict[str, object]:
    """Turn each answer into an outcome: stored fields, searchable text and the quality verdict."""
    outcomes = []
    n = len(state["agents"])
    decisions = state.get("decisions") or [None] * n
    decide_calls = state.get("decide_calls") or [None] * n
    for agent, value, error, call, decision, asked in zip(
            state["agents"], state["values"], state["errors"], state["calls"], decisions,
            decide_calls, strict=True):
        if asked is None and call is not None:
            records, cached = call.records, call.cache_entries
        else:
            records = [*(asked.records if asked else ()), *(call.records if call else ())]
            cached = [*(asked.cache_entries if asked else ()), *(call.cache_entries if call else ())]
        if call is None:  # decided nothing, or the decision failed
            outcomes.append(AgentOutcome(None, None, decision.error if decision else error,
                                         records=records, cache_entries=cached, decision=decision))
        elif value is None:
            outcomes.append(AgentOutcome(None, None, error, records=records, cache_entries=cached,
                                         decision=decision))
        else:
            task = emission_task(agent["kind"])
            content = value.model_dump(by_alias=True)
            outcomes.append(AgentOutcome(content, task.emission_text(content), error,
                                         task.check(content), records, cached, decision))
    return {"outcomes": outcomes}


def build_agent_graph() -> CompiledStateGraph[ChunkState, AgentContext, ChunkState, ChunkState]:
    """Wire and compile the agent graph (once, at import)."""
    graph = StateGraph(ChunkState, context_schema=AgentContext)
    graph.add_node("decide", decide)
    graph.add_node("observe", observe)
    graph.add_node("act", act)
    graph.add_node("record", record)
    graph.add_conditional_edges(START, route, ["decide", "observe"])
    graph.add_edge("decide", "observe")
    graph.add_edge("observe", "act")
    graph.add_edge("act", "record")
    graph.add_edge("record", END)
    return graph.compile(name="persona_agent")


AGENT_GRAPH = build_agent_graph()


async def run_agents(agents: Sequence[AgentInput], llm: StructuredCaller, *,
                     chunk_size: int = DEFAULT_CHUNK,
                     budget: PromptBudget = DEFAULT_BUDGET) -> list[AgentOutcome]:
    """Run the agent graph over all inputs in chunks; return outcomes in input order."""
    if not agents:
        return []
    context = AgentContext(llm=llm, budget=budget)
    chunks = [list(agents[i : i + chunk_size]) for i in range(0, len(agents), chunk_size)]
    states = await asyncio.gather(*[
        AGENT_GRAPH.ainvoke({"agents": chunk}, context=context) for chunk in chunks
    ])
    return [outcome for state in states for outcome in state["outcomes"]]
