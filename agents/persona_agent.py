"""The persona agent: one compiled LangGraph ``StateGraph`` shared by every agent.

Per-agent state is plain data passed in on each invocation; the graph itself holds nothing, so
100,000 agents cost one graph. The model is injected through the run context (``AgentContext``),
never built inside a node, so tests and the offline engine slot in without patching.

    observe ──▶ act ──▶ record
    (prompt)   (model)  (emission text, or the failure)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.messages import BaseMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.prompts import agent_messages
from agents.schemas import EMISSION_SCHEMAS, emission_text
from personas.expand import StructuredCaller


class AgentInput(TypedDict, total=False):
    """What the simulation hands an agent for one step (a frozen snapshot)."""

    persona_id: str
    persona: str
    step: int
    kind: str
    world: str
    events: list[str]
    inbox: list[tuple[str, str]]  # (sender persona text, message text)
    addressee: str | None


class AgentState(AgentInput, total=False):
    """Input plus what the nodes add."""

    prompt: list[BaseMessage]
    output: dict[str, Any] | None
    text: str | None
    error: str | None


@dataclass(frozen=True)
class AgentContext:
    """Run-scoped dependencies injected into the graph (the model seam)."""

    llm: StructuredCaller


def observe(state: AgentState) -> dict[str, Any]:
    """Turn the snapshot (persona, world, events, inbox, addressee) into the prompt."""
    prompt = agent_messages(
        persona=state["persona"],
        kind=state["kind"],
        world=state.get("world", ""),
        events=state.get("events", []),
        inbox=state.get("inbox", []),
        addressee=state.get("addressee"),
    )
    return {"prompt": prompt}


async def act(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for a structured emission of the chosen kind."""
    schema = EMISSION_SCHEMAS[state["kind"]]
    result = await runtime.context.llm.structured(
        schema, state["prompt"], purpose=state["kind"], persona_id=state["persona_id"],
        step=state.get("step"),
    )
    if result.value is None:
        last = result.records[-1] if result.records else None
        return {"output": None, "error": getattr(last, "error", None) or "no valid answer"}
    return {"output": result.value.model_dump(by_alias=True), "error": None}


def record(state: AgentState) -> dict[str, Any]:
    """Derive the emission's searchable text (None when the call failed)."""
    output = state.get("output")
    if output is None:
        return {"text": None}
    schema = EMISSION_SCHEMAS[state["kind"]]
    return {"text": emission_text(state["kind"], schema.model_validate(output))}


def build_agent_graph() -> Any:
    """Wire observe → act → record and compile (done once, at import)."""
    graph = StateGraph(AgentState, context_schema=AgentContext, input_schema=AgentInput)
    graph.add_node("observe", observe)
    graph.add_node("act", act)
    graph.add_node("record", record)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "act")
    graph.add_edge("act", "record")
    graph.add_edge("record", END)
    return graph.compile(name="persona_agent")


AGENT_GRAPH = build_agent_graph()
