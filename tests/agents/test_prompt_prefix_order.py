"""The prompts two agents get in one step share all but their own part: a server's prefix cache
reuses most of each prompt only when what differs between agents (the persona and after) comes last."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.messages import BaseMessage

from personahub.agents.prompts.agent import (
    agent_messages,
    decision_messages,
    interview_messages,
    reflection_messages,
    survey_messages,
)
from personahub.models.prompt_prefix import common_prefix, prompt_text
from personahub.pipelines.prompts.personas import expand_messages

WORLD = "A river town with a ferry and a market."
EVENTS = ["Heavy rain is forecast; the ferry may stop running tomorrow."]
PEOPLE = ("A nurse from Lisbon aged 20 who loves chess and birdwatching.",
          "A baker from Leeds aged 21 who loves jazz and gardening.")


def _share(build: Callable[[str], list[BaseMessage]]) -> float:
    """Return the share of the second agent's prompt (in characters) shared with the first's."""
    first, second = (prompt_text(build(persona)) for persona in PEOPLE)
    return common_prefix(first, second) / len(second)


PROMPTS: dict[str, Callable[[str], list[BaseMessage]]] = {
    "instruction": lambda p: agent_messages(persona=p, kind="instruction", world=WORLD,
                                            events=EVENTS),
    "tool_spec": lambda p: agent_messages(persona=p, kind="tool_spec", world=WORLD, events=EVENTS),
    "npc_dialogue": lambda p: agent_messages(persona=p, kind="npc_dialogue", world=WORLD,
                                             events=EVENTS, addressee=PEOPLE[0]),
    "survey": lambda p: survey_messages(persona=p, question="Would you use the new ferry app?",
                                        answer_hint="Choose exactly one of: yes | no | unsure",
                                        world=WORLD, events=EVENTS),
    "decide": lambda p: decision_messages(persona=p, options=["instruction", "npc_dialogue"],
                                          people=[PEOPLE[0]], world=WORLD, events=EVENTS),
    "interview": lambda p: interview_messages(persona=p, question="How was the market today?",
                                              world=WORLD, events=EVENTS),
    "expand": lambda p: expand_messages(p, 1),
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_two_agents_prompts_in_one_step_share_most_of_the_prompt(name: str) -> None:
    assert _share(PROMPTS[name]) >= 0.7


def test_what_differs_between_agents_comes_after_the_shared_instructions() -> None:
    text = prompt_text(PROMPTS["npc_dialogue"](PEOPLE[1]))
    order = [text.index(f"## {title}") for title in ("World", "Events", "Task", "Persona",
                                                      "Talking to")]
    assert order == sorted(order)


def test_every_in_character_purpose_shares_the_system_text_world_and_events() -> None:
    """A family's first call on a slot reuses the head that any other family left there: one
    system text for actions, decisions, surveys and interviews, then the world and the events,
    and only then what the call is for."""
    texts = {name: prompt_text(build(PEOPLE[0])) for name, build in PROMPTS.items()
             if name != "expand"}
    first = texts["instruction"]
    head = first.index(EVENTS[0]) + len(EVENTS[0])
    short = {name: common_prefix(first, text) for name, text in texts.items()
             if common_prefix(first, text) < head}
    assert not short, f"share less than the system text, world and events: {short}"


def test_a_reflection_shares_the_system_text_of_the_other_purposes() -> None:
    system = agent_messages(persona=PEOPLE[0], kind="instruction")[0].content
    assert reflection_messages(persona=PEOPLE[0], memory=["rain"])[0].content == system
