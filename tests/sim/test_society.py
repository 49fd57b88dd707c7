"""The society in depth: memory, dialogue threads, activation, audiences, interventions, surveys."""

import asyncio
import json

import duckdb
import networkx as nx
import numpy as np
import pytest
from mesa.discrete_space import Network

from personahub.api import run_simulation
from personahub.personas.record import Persona
from personahub.pipelines.run import RunConfig
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.scenario import (
    Activation,
    Audience,
    Event,
    Intervention,
    Memory,
    Scenario,
    ScenarioError,
    Survey,
    load_scenario,
)
from personahub.sim.society import SocietyModel, _derived_seed, derived_rng, step_draws
from personahub.tasks import emission_task
from tests.conftest import persona_texts
from tests.fakes import FakeClient


def make_model(scenario: Scenario, n: int = 12, client=None, seed: int = 3) -> SocietyModel:
    personas = [Persona(text=t) for t in persona_texts(n)]
    ring = nx.watts_strogatz_graph(n, 4, 0.0, seed=1)
    graph = nx.relabel_nodes(ring, {i: p.persona_id for i, p in enumerate(personas)})
    loop = asyncio.new_event_loop()
    return SocietyModel(scenario=scenario, personas=personas, graph=graph,
                        llm=client or FakeClient(), run_id="r", seed=seed,
                        runner=loop.run_until_complete)


def test_memory_stays_bounded_and_summarises_what_it_evicts():
    memory = AgentMemory(observations=3, messages=2, own=2, summary_terms=10)
    for i in range(500):
        memory.observe(i, f"event {i} about lanterns harbour weather{i % 7}")
        memory.receive(Message(f"m{i}", i, "a", "b", f"message about ferries{i % 5} and tides"))
        memory.remember_own(i, "instruction", f"my own emission about gardening{i % 3}")
    state = memory.to_state()
    assert len(state["observations"]) == 3 and len(state["inbox"]) == 2 and len(state["own"]) == 2
    assert 0 < len(state["summary"]) <= 10
    assert "lanterns" in memory.summary_text()
    assert len(json.dumps(state)) < 3000  # bounded whatever the number of steps
    again = AgentMemory(observations=3, messages=2, own=2, summary_terms=10)
    again.load_state(json.loads(json.dumps(state)))
    assert again.to_state() == state


def test_every_agent_state_round_trips_through_plain_data():
    scenario = Scenario(name="rt", tasks=("npc_dialogue", "conversation", "instruction"),
                        memory=Memory(observations=2, own=1, summary_terms=8), inbox_size=2,
                        events=(Event(step=1, text="The market hall roof collapsed overnight."),
                                Event(step=2, text="Volunteers are rebuilding the market hall.")),
                        surveys=(Survey(id="q", steps=(2,), question="Happy?", answer="scale",
                                        remember=True),))
    model = make_model(scenario)
    for _ in range(4):
        model.step()
    fresh = make_model(scenario)
    for agent in model.ordered:
        state = json.loads(json.dumps(agent.get_state()))
        twin = fresh.by_agent_id[agent.unique_id]
        twin.set_state(state)
        assert twin.get_state() == agent.get_state()
    assert any(a.memory.summary for a in model.ordered)  # memory overflowed into summaries


@pytest.mark.parametrize("activation, expected", [
    (Activation(), [12, 12, 12]),
    (Activation(mode="count", count=5), [5, 5, 5]),
    (Activation(mode="function", when=lambda step, info, rng: info.agent_id % 3 == step % 3),
     [4, 4, 4]),
])
def test_idle_agents_make_no_model_call(activation, expected):
    client = FakeClient()
    model = make_model(Scenario(name="act", tasks=("instruction",), activation=activation), client=client)
    for _ in range(3):
        model.step()
    assert [client.by_step[(s, "instruction")] for s in (1, 2, 3)] == expected
    assert [model.last_result.n_active] == expected[-1:]


def test_probability_activation_is_seeded():
    counts = []
    for _ in range(2):
        client = FakeClient()
        model = make_model(Scenario(name="p", tasks=("instruction",), activation=0.4), client=client)
        for _ in range(3):
            model.step()
        counts.append(client.calls)
    assert counts[0] == counts[1] and 0 < counts[0] < 36


def test_activation_picks_the_agents_its_seeded_draws_name_in_agent_id_order():
    """Each policy, as an ``AgentSet.select``, chooses exactly the agents its draws name."""
    seed, n = 3, 12
    for activation in (Activation(mode="count", count=5), Activation(mode="probability", p=0.4),
                       Activation(mode="function",
                                  when=lambda step, info, rng: rng.random() < 0.5 and info.agent_id > 2)):
        model = make_model(Scenario(name="act", tasks=("instruction",), activation=activation), seed=seed)
        ids = [a.persona_id for a in model.ordered]
        keys = np.array([_derived_seed((seed, pid, "active")) for pid in ids], dtype=np.uint64)
        for step in (1, 2, 3):
            if activation.mode == "count":
                expected = sorted(i + 1 for i in derived_rng(seed, step, "activation").sample(range(n), 5))
            elif activation.mode == "probability":
                expected = (np.flatnonzero(step_draws(keys, step) < 0.4) + 1).tolist()
            else:
                expected = [i + 1 for i, pid in enumerate(ids)
                            if derived_rng(seed, step, pid, "active").random() < 0.5 and i + 1 > 2]
            assert expected  # each policy picks someone in these steps
            assert [a.unique_id for a in model._active(step)] == expected


def test_agents_are_fixed_to_the_cells_of_their_personas_on_a_mesa_network():
    model = make_model(Scenario(name="mesa", tasks=("instruction",)))
    assert isinstance(model.network, Network) and model.network.G.number_of_nodes() == 12
    assert [a.unique_id for a in model.agents] == list(range(1, 13))  # the AgentSet is in id order
    for agent in model.agents:
        assert agent.cell is model.network[agent.persona_id]
        assert agent.cell.agents == [agent]
        assert agent.neighbour_ids() == sorted(model.network.G.neighbors(agent.persona_id))
    with pytest.raises(ValueError, match="Cannot move"):
        model.by_agent_id[1].cell = model.network[model.by_agent_id[2].persona_id]


def test_near_audience_follows_edges_changed_by_interventions():
    """Two hops out, after edges of the centre were removed in the same step (before broadcast)."""
    scenario = Scenario(
        name="near", tasks=("instruction",),
        events=tuple(Event(step=s, text=f"Smoke seen, step {s}.", audience=Audience(near=1, hops=2))
                     for s in (1, 2)),
        interventions=(Intervention(step=2, action="remove_edge", target=1, other=2),
                       Intervention(step=2, action="remove_edge", target=1, other=3)),
    )
    model = make_model(scenario)
    first = model.by_agent_id[1].persona_id
    before = set(nx.single_source_shortest_path_length(model.network.G, first, cutoff=2))
    model.step()
    assert set(model.last_result.events[0]["recipients"]) == before
    model.step()
    after = set(nx.single_source_shortest_path_length(model.network.G, first, cutoff=2))
    assert after != before
    assert model.last_result.events[0]["recipients"] == [a.persona_id for a in model.ordered
                                                         if a.persona_id in after]


def test_step_draws_are_uniform_seeded_and_fresh_each_step():
    keys = np.arange(1, 50_001, dtype=np.uint64) * np.uint64(7919)  # correlated keys on purpose
    one, two = step_draws(keys, 1), step_draws(keys, 2)
    assert np.array_equal(one, step_draws(keys.copy(), 1))  # a function of (key, step) only
    assert one.min() >= 0.0 and one.max() < 1.0
    assert abs((one < 0.1).mean() - 0.1) < 0.006  # 10% activation is about 10%
    counts, _ = np.histogram(one, bins=10, range=(0, 1))
    assert counts.min() > 4_600 and counts.max() < 5_400
    both = ((one < 0.1) & (two < 0.1)).mean()  # steps draw independently: about 1% both times
    assert abs(both - 0.01) < 0.003


def test_event_audiences_interventions_and_dialogue_threads():
    scenario = Scenario(
        name="aud", tasks=("npc_dialogue",),
        events=(Event(step=1, text="Near the well a fire broke out.", audience=Audience(near=1, hops=1)),
                Event(step=1, text="Bakers get a flour delivery.",
                      audience=Audience(text_contains=("baker",))),
                Event(step=2, text="A list-only notice.", audience=Audience(personas=(2, 3)))),
        interventions=(Intervention(step=2, action="add_edge", target=1, other=7),
                       Intervention(step=2, action="remove_edge", target=1, other=2),
                       Intervention(step=2, action="set_persona", target=4,
                                    text="A retired lighthouse keeper who collects sea glass.")),
    )
    client = FakeClient()
    model = make_model(scenario, client=client)
    first = model.by_agent_id[1].persona_id
    model.step()
    near = {r for r in model.last_result.events[0]["recipients"]}
    ball = nx.single_source_shortest_path_length(model.network.G, first, cutoff=1)
    assert near == set(ball) and len(near) == 5
    bakers = model.last_result.events[1]["recipients"]
    assert bakers and all("baker" in model.by_persona[p].persona_text for p in bakers)
    model.step()
    assert model.last_result.events[0]["recipients"] == [model.by_agent_id[i].persona_id for i in (2, 3)]
    seventh, second = model.by_agent_id[7].persona_id, model.by_agent_id[2].persona_id
    assert model.network.G.has_edge(first, seventh)
    assert not model.network.G.has_edge(first, second)
    assert model.network.G.edges[first, seventh]["relation"] == scenario.interventions[0].relation
    # the cells follow the graph: neighbours (and so addressees) come from cell connections
    assert seventh in model.by_agent_id[1].neighbour_ids()
    assert second not in model.by_agent_id[1].neighbour_ids()
    assert first in model.by_agent_id[7].neighbour_ids()
    assert [x["applied"] for x in model.last_result.interventions] == [True, True, True]
    changed = model.by_agent_id[4].persona_id
    step2 = [p for purpose, pid, p in client.prompts if pid == changed][-1]
    assert "lighthouse keeper" in step2
    for _ in range(3):
        model.step()
    # threads: a reply inherits the thread of what it answers, across steps
    messages = [m for a in model.ordered for m in a.memory.inbox]
    replies = [m for m in messages if m.reply_to]
    assert replies and all(m.thread_id and m.thread_id != m.message_id for m in replies)


def test_surveys_are_concurrent_stay_out_of_memory_and_are_one_query_per_step(scenario_file, tmp_path):
    path = scenario_file(
        steps=3, tasks=("instruction",),
        surveys="(Survey(id='buy', steps=(1, 3), question='Would you buy it?', answer='choice', "
                "options=('yes', 'no', 'maybe')), Survey(id='mood', steps=(2,), question='Mood?', "
                "answer='scale', low=1, high=10, audience=Audience(personas=(1, 2, 3))))",
        body=None)
    text = path.read_text().replace("import GraphGrowth", "import Audience, GraphGrowth, Survey")
    path.write_text(text)
    scenario = load_scenario(path)
    client = FakeClient(delay=lambda call: 0.002)
    db = tmp_path / "survey.duckdb"
    summary = run_simulation(RunConfig(scenario=scenario, db=db, steps=3), client=client)
    con = duckdb.connect(str(db), read_only=True)
    step3 = con.execute("select answer_choice, count(*) from survey_answers where step = 3 "
                        "group by 1 order by 1").fetchall()
    assert {c for c, _ in step3} <= {"yes", "no", "maybe"} and sum(n for _, n in step3) == summary.agents
    mood = con.execute("select agent_id, answer_scale from survey_answers "
                       "where survey_id = 'mood'").fetchall()
    assert sorted(a for a, _ in mood) == [1, 2, 3] and all(1 <= v <= 10 for _, v in mood)
    assert con.execute("select count(*) from llm_calls where purpose = 'survey'").fetchone()[0] == \
        2 * summary.agents + 3
    assert con.execute("select sum(n_answers) from steps").fetchone()[0] == 2 * summary.agents + 3
    states = [json.loads(s) for (s,) in con.execute("select state from agent_states").fetchall()]
    assert not any("Would you buy" in json.dumps(s) for s in states)  # not remembered
    con.close()
    assert client.max_in_flight > 1


def test_new_emission_kinds_validate_and_conversations_alternate(scenario_file, tmp_path):
    kinds = ("conversation", "math_problem", "reasoning_problem", "knowledge_text")
    db = tmp_path / "kinds.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_file(tasks=kinds, steps=2)), db=db))
    assert set(summary.emissions_by_kind) == set(kinds)
    con = duckdb.connect(str(db), read_only=True)
    for kind, content, persona, target in con.execute(
            "select task, content, persona_id, target_persona_id from emissions").fetchall():
        data = json.loads(content)
        if kind == "conversation":
            speakers = [t["speaker"] for t in data["turns"]]
            assert len(speakers) >= 2
            assert speakers == [persona if i % 2 == 0 else target for i in range(len(speakers))]
        else:
            emission_task(kind).schema.model_validate(data)
    n_conv = con.execute("select count(*) from emissions where task = 'conversation'").fetchone()[0]
    assert con.execute("select count(*) from messages").fetchone()[0] == n_conv
    con.close()


@pytest.mark.parametrize("fields, message", [
    ("surveys=(Survey(id='x', steps=(1,), question='Q?', answer='choice', options=('a',)),)",
     "at least two distinct options"),
    ("activation=Activation(mode='count', count=0)", "activation.count must be an integer >= 1"),
    ("interventions=(Intervention(step=1, action='explode', target=1),)", "action must be one of"),
    ("events=(Event(step=0, text='x'),)", "event.step must be an int >= 1"),
    ("surveys=(Survey(id='x', steps=(1,), question='Q?', answer='scale', low=5, high=1),)",
     "scale needs low < high"),
])
def test_bad_scenario_settings_fail_at_load_with_one_line(scenario_file, fields, message):
    path = scenario_file()
    text = path.read_text().replace(
        "import GraphGrowth", "import Activation, Event, GraphGrowth, Intervention, Survey")
    path.write_text(text.replace("seed=11,", f"seed=11,\n    {fields},"))
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_reference_to_an_agent_not_in_the_run_fails_before_anything_is_written(scenario_file,
                                                                              tmp_path):
    path = scenario_file(interventions="(Intervention(step=2, action='forget', target=9999),)")
    path.write_text(path.read_text().replace("import GraphGrowth", "import GraphGrowth, Intervention"))
    db = tmp_path / "ref.duckdb"
    with pytest.raises(ScenarioError, match="9999"):
        run_simulation(RunConfig(scenario=load_scenario(path), db=db))
    assert not db.exists()


