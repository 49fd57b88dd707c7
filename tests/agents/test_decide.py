"""The deliberate policy's decision: its schema, its prompt, how an answer maps back, and the graph."""

import asyncio

import pytest
from pydantic import ValidationError

from personahub.agents.decide import (
    MAX_PEOPLE,
    NOBODY,
    NOTHING,
    Decision,
    choices,
    decision_schema,
    resolve,
)
from personahub.agents.persona_agent import AGENT_GRAPH, AgentInput, run_agents
from personahub.agents.prompts.agent import decision_messages
from personahub.core.contracts import StructuredResult
from personahub.models.client import LLMClient, LLMSettings
from tests.fakes import FakeClient

ADDRESSED = frozenset({"npc_dialogue", "conversation"})
OPTIONS = ["npc_dialogue", "instruction"]
PEOPLE = [("p-ann", "Ann, a ferry pilot."), ("p-bo", "Bo, a market baker.")]


def answer(action: str, addressee: str = NOBODY, reason: str = "because") -> object:
    return decision_schema(tuple(OPTIONS), len(PEOPLE))(action=action, addressee=addressee,
                                                         reason=reason)


def test_schema_offers_the_options_nothing_and_positional_labels():
    schema = decision_schema(("npc_dialogue", "instruction"), 2)
    props = schema.model_json_schema()["properties"]
    assert props["action"]["enum"] == ["npc_dialogue", "instruction", NOTHING]
    assert props["addressee"]["enum"] == [NOBODY, "P1", "P2"]
    assert decision_schema(("npc_dialogue", "instruction"), 2) is schema  # cached per shape
    with pytest.raises(ValidationError):
        schema(action="tool_spec", addressee="P1")
    with pytest.raises(ValidationError):
        schema(action="instruction", addressee="P3")


@pytest.mark.parametrize(("action", "addressee", "expected"), [
    ("npc_dialogue", "P2", Decision("npc_dialogue", "p-bo", "because", label="P2")),
    # a kind said to someone, nobody named: the first person shown, marked as a fallback
    ("npc_dialogue", NOBODY, Decision("npc_dialogue", "p-ann", "because", fallback="addressee",
                                      label=NOBODY)),
    # a kind said to no one: the addressee is ignored
    ("instruction", "P1", Decision("instruction", None, "because", label="P1")),
    (NOTHING, "P1", Decision(NOTHING, None, "because", label="P1")),
])
def test_answers_map_back_to_persona_ids(action, addressee, expected):
    assert resolve(answer(action, addressee), None, OPTIONS, PEOPLE, ADDRESSED) == expected


def test_failed_and_impossible_decisions_are_errors_not_actions():
    failed = resolve(None, "HTTP 500", OPTIONS, PEOPLE, ADDRESSED)
    assert failed.error == "HTTP 500" and not failed.acts
    off_menu = resolve(answer("npc_dialogue", "P1"), None, ["instruction"], PEOPLE, ADDRESSED)
    assert off_menu.action is None and "none of" in str(off_menu.error)
    alone = resolve(answer("npc_dialogue", "P1"), None, OPTIONS, [], ADDRESSED)
    assert alone.action is None and "nobody is near" in str(alone.error)


def test_prompt_lists_actions_and_labelled_people_marking_senders():
    text = decision_messages(persona="A teacher.", options=OPTIONS, people=[t for _, t in PEOPLE],
                             inbox=[("Bo, a market baker.", "Bread at six?")])[-1].content
    assert "- npc_dialogue: Say one line to one of the People" in text
    assert f"- {NOTHING}: do nothing this step." in text
    assert "P1: Ann, a ferry pilot.\nP2: Bo, a market baker. (wrote to you)" in text


def deliberating(persona_id: str) -> AgentInput:
    return AgentInput(persona_id=persona_id, persona=f"A river-town teacher ({persona_id}).", step=1,
                      policy="deliberate", options=OPTIONS, people=PEOPLE, addressee=None)


def scripted(persona_id: str) -> AgentInput:
    return AgentInput(persona_id=persona_id, persona="A river-town teacher.", step=1,
                      kind="instruction")


def test_one_graph_decides_for_deliberate_inputs_and_passes_scripted_ones_through():
    assert set(AGENT_GRAPH.get_graph().nodes) >= {"decide", "observe", "act", "record"}
    choices = {"d-nothing": (NOTHING, NOBODY), "d-talk": ("npc_dialogue", "P2")}

    def script(call):
        if call.purpose == "decide":
            action, who = choices[call.persona_id]
            return call.schema(action=action, addressee=who, reason="why not")
        return None

    fake = FakeClient(script)
    outcomes = asyncio.run(run_agents([scripted("s-1"), deliberating("d-nothing"),
                                       deliberating("d-talk")], fake, chunk_size=8))
    plain, idle, talk = outcomes
    assert plain.decision is None and plain.output is not None
    assert idle.decision == Decision(NOTHING, None, "why not", label=NOBODY)
    assert idle.output is None and idle.error is None  # nothing: no act call, no failure
    assert talk.decision is not None and talk.decision.addressee_id == "p-bo"
    assert talk.output is not None and "line" in talk.output
    assert fake.by_purpose == {"decide": 2, "instruction": 1, "npc_dialogue": 1}
    # the act prompt of the deliberating agent names the person it chose
    act_prompt = next(p for purpose, pid, p in fake.prompts if purpose == "npc_dialogue")
    assert "## Talking to\nBo, a market baker." in act_prompt


def test_a_failed_decision_is_an_outcome_error_with_its_records():
    fake = FakeClient(lambda call: StructuredResult(None, []) if call.purpose == "decide" else None)
    (outcome,) = asyncio.run(run_agents([deliberating("d-1")], fake))
    assert outcome.output is None and outcome.error == "no valid answer"
    assert outcome.decision is not None and outcome.decision.action is None
    assert fake.by_purpose == {"decide": 1}


def test_offline_engine_decides_deterministically_and_records_every_call():
    def run(seed: int) -> list:
        client = LLMClient(LLMSettings(seed=seed))
        outs = asyncio.run(run_agents([deliberating(f"d-{i}") for i in range(12)], client))
        return [(o.decision, o.output, len(o.records)) for o in outs]

    first = run(4)  # answers are seeded from the prompt: each persona decides its own way
    assert first == run(4) and first != run(5)
    actions = {d.action for d, _, _ in first}
    assert NOTHING in actions and actions & set(OPTIONS)
    # one decide call each, one act call for each that acted
    assert all(n == (2 if d.acts else 1) for d, _, n in first)


def test_choices_list_senders_first_cap_the_people_and_drop_unreachable_kinds():
    neighbours = [f"n{i}" for i in range(10)]
    drawn = []

    def draw(rest, k):
        drawn.append((list(rest), k))
        return rest[-k:]

    options, people = choices(["npc_dialogue", "instruction", "math_problem"], [1.0, 1.0, 0.0],
                              neighbours, ["n7", "gone", "n2", "n7"], ADDRESSED, draw)
    assert options == ["npc_dialogue", "instruction"]  # weight 0: never an option
    assert people == ["n7", "n2", "n5", "n6", "n8", "n9"]
    assert len(people) == MAX_PEOPLE and drawn == [([n for n in neighbours if n not in ("n7", "n2")], 4)]
    alone = choices(["npc_dialogue", "instruction"], None, [], ["x"], ADDRESSED, draw)
    assert alone == (["instruction"], [])  # nobody near: nothing said to someone
