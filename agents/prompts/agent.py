"""Prompt templates for agents, surveys, reflections and interviews, kept as plain data.

Prompts use "## Section" headings, which the offline engine also reads to find its context.
Sections run from the most shared to the most specific, so a server's prefix cache reuses all
but the persona's part of a prompt: the system text (one for every purpose), world, events, then
the fixed instructions of the call (task, question, answer format, the actions), then the
persona, its memory and messages, and last what names other people (talking to, people). An
experiment arm's world text (``arm_world``) is the World section's last paragraph, after the
scenario's world and world file, whole and outside the budget: a treated prompt is its control's
prompt plus that paragraph, one blank line before it (core/sections.py, PARAGRAPH_BREAK).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.agents.decide import NOBODY, NOTHING, label
from personahub.agents.prompts.budget import (
    DEFAULT_BUDGET,
    Context,
    PromptBudget,
    clip_text,
    fit_context,
    part_tokens,
)
from personahub.core.sections import section
from personahub.tasks import emission_task
from personahub.tasks.interview import INTERVIEW_TASK
from personahub.tasks.reflection import REFLECTION_TASK
from personahub.tasks.survey import SURVEY_TASK

# The one system text of every in-character call (actions, decisions, surveys, reflections,
# interviews): what a call is for is said in its fixed sections, after the world and events, so
# a family's first call on a slot reuses the system text, world and events another family left.
AGENT_SYSTEM = ("You are the person described under Persona. Stay in character. "
                "Answer only with JSON that matches the schema.")

ADDRESSEE_CHARS = 120  # a name tag, not a second persona to read


def agent_messages(
    *,
    persona: str,
    kind: str,
    world: str = "",
    arm_world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    addressee: str | None = None,
    memory: Sequence[str] = (),
    recent: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> list[BaseMessage]:
    """Build the messages for one agent action of this kind.

    memory and recent (its own latest emissions, so it does not repeat itself) are oldest first;
    budget trims world, events, inbox and memory.
    """
    task = emission_task(kind).agent_prompt()
    own = [section("Talking to", clip_text(addressee, ADDRESSEE_CHARS))] if addressee else []
    context = Context(world, events, inbox, memory, recent, arm_world)
    return _messages(AGENT_SYSTEM, persona, [section("Task", task)], context, budget, task, own)


def decision_messages(
    *,
    persona: str,
    options: Sequence[str],
    people: Sequence[str],
    world: str = "",
    arm_world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    memory: Sequence[str] = (),
    recent: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> list[BaseMessage]:
    """Build the messages asking a deliberating agent what to do this step.

    people are shown as P1, P2, ... in order; those who wrote to the agent are marked.
    """
    lines = [f"- {kind}: {_first_sentence(emission_task(kind).agent_prompt())}".replace(
        "the neighbour under Talking to", "one of the People") for kind in options]
    lines.append(f"- {NOTHING}: do nothing this step.")
    task = ("Decide what you do now: choose one action. If it is said to someone, choose the "
            f"label of that person, else {NOBODY}. Give a short reason.")
    fixed = [section("Actions", "\n".join(lines)), section("Task", task)]
    senders = {sender for sender, _ in inbox}
    own = [section("People", "\n".join(
        f"{label(i)}: {clip_text(text, ADDRESSEE_CHARS)}"
        + (" (wrote to you)" if text in senders else "") for i, text in enumerate(people)))
    ] if people else []
    return _messages(AGENT_SYSTEM, persona, fixed,
                     Context(world, events, inbox, memory, recent, arm_world), budget, task, own)


def _first_sentence(text: str) -> str:
    """Return a task prompt's first sentence: what the action is, not how to write it."""
    head = text.strip().split("\n", 1)[0]
    cut = head.find(". ")
    return head[: cut + 1] if cut >= 0 else head


def survey_messages(
    *,
    persona: str,
    question: str,
    answer_hint: str,
    world: str = "",
    arm_world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    memory: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> list[BaseMessage]:
    """Build the messages asking one agent a survey question."""
    fixed = [section("Task", SURVEY_TASK), section("Question", question),
             section("Answer format", answer_hint)]
    return _messages(AGENT_SYSTEM, persona, fixed,
                     Context(world, events, inbox, memory, arm_world=arm_world), budget, question)


def survey_situation(
    *,
    persona: str,
    question: str,
    world: str = "",
    arm_world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    memory: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> str:
    """Return what an agent's survey prompt shows besides its persona and question (world, events,
    memory, messages), trimmed as survey_messages trims them, as prompt sections; '' when none.

    A survey profile's elicitation method shows these after the persona, so an answer drawn
    through a profile still sees what the agent saw and remembers.
    """
    fixed = part_tokens(persona) + part_tokens(question)
    events_text = "\n".join(events)
    heard = "\n".join(text for _, text in inbox)
    parts = fit_context(Context(world, events, inbox, memory, arm_world=arm_world), budget,
                        fixed=fixed, memory_query=f"{events_text}\n{heard}\n{question}")
    return "\n".join(p for p in (parts["world"], parts["events"], parts["memory"], parts["inbox"])
                     if p)


def reflection_messages(
    *,
    persona: str,
    summary: Sequence[str] = (),
    memory: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> list[BaseMessage]:
    """Build the messages asking one agent to reflect on its summary and memory.

    Memory may take three times the budget's cap: a reflection looks back further than one
    action, and it is asked only every few steps.
    """
    own = [section("Your summary so far", "\n".join(summary) or "(nothing yet)")]
    cap = budget.memory
    wider = replace(budget, memory=None if cap is None else 3 * cap,
                    total=None if budget.total is None or cap is None else budget.total + 2 * cap)
    return _messages(AGENT_SYSTEM, persona, [section("Task", REFLECTION_TASK)],
                     Context(memory=memory), wider, REFLECTION_TASK, own)


def interview_messages(
    *,
    persona: str,
    question: str,
    world: str = "",
    arm_world: str = "",
    events: Sequence[str] = (),
    inbox: Sequence[tuple[str, str]] = (),
    memory: Sequence[str] = (),
    recent: Sequence[str] = (),
    budget: PromptBudget = DEFAULT_BUDGET,
) -> list[BaseMessage]:
    """Build the messages putting a user's question to one agent, from its state at a step."""
    fixed = [section("Task", INTERVIEW_TASK), section("Interview question", question)]
    return _messages(AGENT_SYSTEM, persona, fixed,
                     Context(world, events, inbox, memory, recent, arm_world), budget, question)


def _messages(system: str, persona: str, fixed: list[str], context: Context, budget: PromptBudget,
              focus: str, own: Sequence[str] = ()) -> list[BaseMessage]:
    """Assemble system and user messages, the parts many calls share first.

    The order is world, events, the fixed instructions (the same for every agent asked this),
    persona, memory, messages, then own (what only this agent is shown), so that prompts of one
    step differ from the persona on and a server's prefix cache reuses the rest. Memory is ranked
    against events, messages and focus; the world is not, so it stays a shared prefix.
    """
    head = section("Persona", persona)
    fixed_tokens = part_tokens(system) + sum(part_tokens(p) for p in (head, *fixed, *own))
    events = "\n".join(context.events)
    heard = "\n".join(text for _, text in context.inbox)
    parts = fit_context(context, budget, fixed=fixed_tokens,
                        memory_query=f"{events}\n{heard}\n{focus}")
    body = [parts["world"], parts["events"], *fixed, head, parts["memory"], parts["inbox"], *own]
    return [SystemMessage(system), HumanMessage("\n".join(p for p in body if p))]
