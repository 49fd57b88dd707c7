"""A run's price before it starts (``personahub run --plan``): calls and tokens a step.

Each step's model calls are counted from the scenario: per agent (an active agent's action, a
deliberating agent's decision, a text survey) or per archetype (a pooled action per archetype
and kind with an active member, a choice or scale survey per archetype, N calls each with
``sample:N``). Archetypes are taken as equal groups, so a pooled kind's calls are its expected
number of (archetype, kind) pools. Prompt tokens are those of one prompt of each call built
with the run's own prompt code, world and budget (events as the step has them, memory as the
budget allows), times the calls; completion tokens are the calls' ``max_tokens``, an upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage

from personahub.agents.decide import DECIDE_MAX_TOKENS
from personahub.agents.prompts.agent import agent_messages, survey_messages
from personahub.agents.prompts.budget import count_tokens
from personahub.sim.scenario import Scenario, archetype_sample_size
from personahub.tasks import addressed_kinds
from personahub.tasks.max_tokens import kind_max_tokens
from personahub.tasks.survey import SURVEY_MAX_TOKENS


@dataclass(frozen=True)
class StepPrice:
    """One step's expected calls and tokens."""

    step: int
    active: float
    calls: float
    archetype_calls: float
    prompt_tokens: float
    completion_tokens_max: float


def _tokens(messages: Sequence[BaseMessage]) -> int:
    return sum(count_tokens(str(m.content)) for m in messages)


def step_prices(scenario: Scenario, agents: int, persona: str, *,
                archetypes: int | None = None, elicit: str | None = None,
                columns: bool = False) -> list[StepPrice]:
    """Return each step's expected calls and tokens.

    Args:
        scenario: the scenario (its steps, kinds, activation, surveys, budget, world).
        agents: the run's agents (before any setup expansion adds people).
        persona: a persona text to build the sample prompts with.
        archetypes, elicit: the run's overrides of the scenario's.
        columns: whether the population lives in column shards (``--society columns``), which
            pool the addressed kinds too.
    """
    k = archetypes if archetypes is not None else scenario.archetypes
    sample = archetype_sample_size(elicit if elicit is not None else scenario.archetype_elicit)
    groups = min(k, agents) if k else 0
    size = agents / groups if groups else 0.0
    activation = scenario.activation
    mode = getattr(activation, "mode", "all")
    share = {"all": 1.0, "probability": float(getattr(activation, "p", 1.0)),
             "count": min(1.0, getattr(activation, "count", 0) / max(agents, 1))}.get(mode, 1.0)
    weights = list(scenario.task_weights or [1.0] * len(scenario.tasks))
    total_weight = sum(weights) or 1.0
    addressed = set() if columns else set(addressed_kinds())
    world = scenario.world_text()
    deliberate = scenario.policy == "deliberate"
    out = []
    for step in range(1, scenario.steps + 1):
        events = [e.text for e in scenario.events_at(step)]
        active = agents * share
        calls = pooled = prompt = completion = 0.0
        if deliberate:
            calls += active
            prompt += active * _tokens(agent_messages(persona=persona, kind=scenario.tasks[0],
                                                      world=world, events=events,
                                                      budget=scenario.prompt_budget))
            completion += active * DECIDE_MAX_TOKENS
        for kind, weight in zip(scenario.tasks, weights, strict=True):
            chance = share * weight / total_weight
            if groups and not deliberate and kind not in addressed:
                n = groups * (1.0 - (1.0 - chance) ** size)
                pooled += n
            else:
                n = agents * chance
            calls += n
            prompt += n * _tokens(agent_messages(persona=persona, kind=kind, world=world,
                                                 events=events, budget=scenario.prompt_budget))
            completion += n * kind_max_tokens(kind)
        for survey in scenario.surveys_at(step):
            if groups and survey.answer != "text":
                n = groups * (min(sample, size) if sample else 1)
                pooled += n
            else:
                n = agents
            calls += n
            prompt += n * _tokens(survey_messages(persona=persona, question=survey.question,
                                                  answer_hint=" | ".join(survey.options),
                                                  world=world, events=events,
                                                  budget=scenario.prompt_budget))
            completion += n * SURVEY_MAX_TOKENS
        out.append(StepPrice(step, active, calls, pooled, prompt, completion))
    return out


def plan_lines(prices: Sequence[StepPrice], agents: int, archetypes: int | None) -> list[str]:
    """Return the plan as console lines: one per step, then the run's totals."""
    grouped = f", {archetypes} archetypes" if archetypes else ", every agent asked"
    lines = [f"plan: {agents:,} agents{grouped}; expected per step (prompt tokens estimated, "
             "completion tokens at most):"]
    for p in prices:
        lines.append(f"  step {p.step}: {p.active:,.0f} active, {p.calls:,.0f} calls "
                     f"({p.archetype_calls:,.0f} for archetypes), "
                     f"{p.prompt_tokens:,.0f} prompt tokens, "
                     f"{p.completion_tokens_max:,.0f} completion tokens")
    lines.append(f"  run: {sum(p.calls for p in prices):,.0f} calls, "
                 f"{sum(p.prompt_tokens for p in prices):,.0f} prompt tokens, "
                 f"{sum(p.completion_tokens_max for p in prices):,.0f} completion tokens at most "
                 "(a setup expansion, reflections and retries come on top)")
    return lines
