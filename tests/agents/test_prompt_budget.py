"""Prompt budgets: prompts stay within their token budget, and trimming keeps what matters."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personahub.agents.prompts.agent import agent_messages, survey_messages
from personahub.agents.prompts.budget import (
    Context,
    PromptBudget,
    PromptBudgetError,
    count_prompt_tokens,
    count_tokens,
    fit_context,
    fit_world,
    part_tokens,
    world_units,
)
from personahub.agents.prompts.budget import sentences as split_sentences
from personahub.api import run_simulation
from personahub.core.sections import section
from personahub.models.offline import OfflineEngine, to_openai_dicts
from personahub.models.offline_text import split_sections
from personahub.models.prompt_prefix import SharedPrefixMeter, common_prefix, prompt_text
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import Event, PersonaSource, Scenario, ScenarioError, Survey, load_scenario
from personahub.tasks import emission_kinds, emission_task
from tests.fakes import FakeClient
from tests.sim.test_society import make_model

ROOT = Path(__file__).resolve().parents[2]
WORLD = (ROOT / "scenarios" / "worlds" / "riverside_town.md").read_text(encoding="utf-8")
PERSONA = "A ferry skipper from Millbrook who knows every passenger's business."

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
sentences = st.lists(words, min_size=1, max_size=40).map(" ".join)
caps = st.one_of(st.none(), st.integers(0, 300))


def human(messages) -> dict[str, str]:
    """The user message's sections (lower-case headings)."""
    return split_sections(messages[-1].content)


@pytest.mark.parametrize("examples", [40, pytest.param(150, marks=pytest.mark.slow)])
def test_agent_prompts_stay_within_their_budget(examples):
    """A few examples in the fast subset, the full search in the slow one."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(total=st.integers(200, 900), world=caps, events=caps, inbox=caps, memory=caps,
           kind=st.sampled_from(sorted(emission_kinds())),
           paragraphs=st.lists(sentences, max_size=12), event_texts=st.lists(sentences, max_size=8),
           heard=st.lists(st.tuples(sentences, sentences), max_size=12),
           remembered=st.lists(sentences, max_size=12), recent=st.lists(sentences, max_size=4),
           addressee=st.one_of(st.none(), sentences))
    def check(total, world, events, inbox, memory, kind, paragraphs, event_texts, heard, remembered,
              recent, addressee):
        budget = PromptBudget(total=total, world=world, events=events, inbox=inbox, memory=memory)
        messages = agent_messages(persona=PERSONA, kind=kind, world="\n\n".join(paragraphs),
                                  events=event_texts, inbox=heard, addressee=addressee,
                                  memory=remembered, recent=recent, budget=budget)
        assert count_prompt_tokens(messages) <= total
        parts = fit_context(Context("\n\n".join(paragraphs), event_texts, heard, remembered, recent),
                            budget, fixed=0, memory_query=emission_task(kind).agent_prompt())
        for name, text in parts.items():
            cap = budget.cap(name)
            assert cap is None or part_tokens(text) <= cap, name

    check()


@settings(max_examples=60, deadline=None)
@given(total=st.integers(150, 600), heard=st.lists(st.tuples(sentences, sentences), max_size=10),
       remembered=st.lists(sentences, max_size=10))
def test_survey_prompts_stay_within_their_budget(total, heard, remembered):
    budget = PromptBudget(total=total)
    messages = survey_messages(persona=PERSONA, question="Should the ferry run all night?",
                               answer_hint="Choose exactly one of: yes | no", world=WORLD,
                               inbox=heard, memory=remembered, budget=budget)
    assert count_prompt_tokens(messages) <= total
    assert "## Question\nShould the ferry run all night?" in messages[-1].content


def test_the_newest_messages_and_events_are_kept():
    heard = [(f"Neighbour {i}", f"message number {i:02d} about the weather") for i in range(20)]
    events = [f"Event number {i:02d} happened in town." for i in range(10)]
    messages = agent_messages(persona=PERSONA, kind="instruction", events=events, inbox=heard,
                              budget=PromptBudget(total=None, inbox=60, events=30))
    sections = human(messages)
    kept = [i for i in range(20) if f"message number {i:02d}" in sections["messages received"]]
    assert kept and kept == list(range(20 - len(kept), 20)) and len(kept) < 20
    seen = [i for i in range(10) if f"Event number {i:02d}" in sections["events"]]
    assert seen and seen == list(range(10 - len(seen), 10)) and len(seen) < 10
    # shown oldest first, as they happened
    assert sections["messages received"].index(f"{kept[0]:02d}") < \
        sections["messages received"].index("19")


def test_memory_keeps_what_this_step_is_about_then_the_newest():
    memory = ["(step 1) The bakery changed its opening hours for the summer holidays.",
              "(step 2) Lanterns were hung along the harbour wall for the regatta festival.",
              "(step 3) A choir rehearsed in the church on a quiet evening this week.",
              "(step 4) Someone painted the benches in the park bright green again."]
    budget = PromptBudget(total=None, memory=part_tokens("## Memory\n- " + memory[1]) + 2)
    about = agent_messages(persona=PERSONA, kind="instruction", memory=memory, budget=budget,
                           events=["The regatta festival is cancelled: the harbour lanterns "
                                   "blew down."])
    assert "Lanterns were hung" in human(about)["memory"]  # relevant, though older
    plain = agent_messages(persona=PERSONA, kind="instruction", memory=memory, budget=budget)
    assert "painted the benches" in human(plain)["memory"]  # nothing relevant: the newest


def test_world_is_summarised_by_its_opening_then_each_sections_lead():
    units = world_units(WORLD)
    assert units[0].startswith("Millbrook-on-Vale:\nMillbrook-on-Vale is a river town")
    assert all("#" not in u for u in units)  # headings stay inside the World section
    messages = agent_messages(persona=PERSONA, kind="instruction", world=WORLD,
                              events=["Heavy rain: the ferry may stop running tomorrow."])
    world = human(messages)["world"]
    assert "Most quarrels end up in the council chamber." in world  # the opening, whole
    assert "Geography: The town sits on the west bank" in world  # a section's first sentence
    assert "- The Marigold: a chain ferry" in world and "**" not in world
    assert "Upper Town" not in world and "The Vale Courier" not in world  # details wait
    assert part_tokens(section("World", world)) <= PromptBudget().world
    assert not {"geography", "institutions"} & set(human(messages))
    looser = fit_world(WORLD, 240)
    assert world.strip() in looser.replace("Vale.\n", "Vale. ") or len(looser) > len(world)
    assert "Named places: Ferry Steps" in looser
    full = agent_messages(persona=PERSONA, kind="instruction", world=WORLD,
                          budget=PromptBudget.unlimited())
    assert all(unit.split("\n")[-1] in human(full)["world"] for unit in units)


def test_a_world_that_fits_is_shown_whole_and_a_summary_keeps_sentences_whole():
    small = "# Eldermoor\nA misty fen village.\n## Factions\nThe Reed Guild trades eels."
    assert fit_world(small, 160) == fit_world(small, None)
    assert "The Reed Guild trades eels." in fit_world(small, 160)
    assert split_sentences("**The mill.** It shuts in March. The fire is 6 a.m. to 10 p.m. daily.") == \
        ["The mill. It shuts in March.", "The fire is 6 a.m. to 10 p.m. daily."]
    for cap in (20, 40, 60, 100):
        text = fit_world(WORLD, cap)
        assert 0 < part_tokens(text) <= cap
        if cap >= 100:
            assert text.rstrip().endswith(".")  # whole sentences, no cut


def test_every_agent_of_a_run_shares_the_world_right_after_the_system_message():
    """The world depends on neither the task, the persona nor the events: one cached prefix."""
    prompts = [agent_messages(persona=f"Resident {i}, {PERSONA}", kind=kind, world=WORLD,
                              events=events, memory=["(step 1) Rain."] * (i % 2))
               for i, (kind, events) in enumerate([("instruction", []), ("tool_spec", ["Flood."]),
                                                   ("npc_dialogue", ["The mill closes."])])]
    heads = {m[0].content + m[1].content.split("## Events")[0].split("## Task")[0]
             for m in prompts}
    assert len(heads) == 1 and "## World" in heads.pop()
    meter = SharedPrefixMeter()
    shared = [meter.add(m) for m in prompts]
    assert shared[0] == 0 and min(shared[1:]) >= part_tokens(fit_world(WORLD, 160))
    assert 0.4 < meter.share < 1


def test_sections_run_from_shared_to_specific_and_keep_their_headings():
    messages = agent_messages(persona=PERSONA, kind="npc_dialogue", world="A river town.",
                              events=["Rain."], inbox=[("A baker", "Hello there!")],
                              addressee="A baker", memory=["(step 1) Sun."], recent=["Hi."])
    assert list(human(messages)) == ["", "world", "events", "task", "persona", "memory",
                                     "your recent output", "messages received", "talking to"]
    assert "Answer only with JSON" in messages[0].content


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_trimming_is_the_same_in_every_process():
    """Set iteration order changes with the hash seed; the prompts must not."""
    script = ("import hashlib, sys; sys.path.insert(0, '.'); "
              "from tests.agents.test_prompt_budget import sample_prompt; "
              "print(hashlib.sha256(sample_prompt().encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
               for seed in ("1", "2")}
    assert digests == {hashlib.sha256(sample_prompt().encode()).hexdigest()}


def sample_prompt() -> str:
    """A trimmed prompt whose world, memory and inbox all need ranking."""
    messages = agent_messages(
        persona=PERSONA, kind="tool_spec", world=WORLD,
        events=["The council delays the flood wall vote.", "The mill sells its site."],
        inbox=[(f"Neighbour {i}", f"Did you hear about the flood wall and the mill, {i}?")
               for i in range(8)],
        memory=[f"(step {i}) Housing, allotments, ferry fares and floods, note {i}."
                for i in range(8)],
        recent=["A tool for ferry timetables.", "A flood wall cost tracker."])
    return "\n".join(str(m.content) for m in messages)


def test_the_token_count_matches_what_the_offline_engine_records():
    messages = agent_messages(persona=PERSONA, kind="instruction", world=WORLD)
    dicts = to_openai_dicts(messages)
    reply = OfflineEngine(0).respond(dicts)
    assert count_prompt_tokens(dicts) == count_prompt_tokens(messages)
    assert abs(reply.tokens_in - count_prompt_tokens(messages)) <= len(messages)


def test_a_scenarios_budget_reaches_agent_and_survey_prompts():
    events = (Event(step=1, text="The ferry fare doubles from Monday."),)
    survey = Survey(id="fare", question="Is the new fare fair?", steps=(2,), answer="choice",
                    options=("yes", "no"))
    prompts = {}
    for name, budget in (("tight", PromptBudget(total=260, world=0)),
                         ("open", PromptBudget.unlimited())):
        client = FakeClient()
        model = make_model(Scenario(name=name, tasks=("npc_dialogue", "instruction"),
                                    events=events, surveys=(survey,), prompt_budget=budget),
                           client=client)
        model.world = WORLD
        for _ in range(3):
            model.step()
        prompts[name] = client.prompts
    assert {purpose for purpose, _, _ in prompts["tight"]} >= {"survey", "npc_dialogue"}
    for _, _, text in prompts["tight"]:
        assert "## World" not in text
        assert part_tokens(text) <= 260
    assert all("Named places" in text for _, _, text in prompts["open"])


@pytest.mark.slow
def test_the_run_summary_reports_prompt_tokens_per_action(tmp_path):
    means = {}
    for name, budget in (("default", PromptBudget()), ("open", PromptBudget.unlimited())):
        scenario = Scenario(name=name, personas=PersonaSource(limit=12), world=WORLD, steps=2,
                            prompt_budget=budget, seed=5)
        db = tmp_path / f"{name}.duckdb"
        summary = run_simulation(RunConfig(scenario=scenario, db=db))
        with duckdb.connect(str(db), read_only=True) as con:
            expected = con.execute("select avg(tokens_in) from llm_calls where status = 'ok' "
                                   "and step is not null").fetchone()[0]
        assert summary.prompt_tokens_per_action == pytest.approx(expected)
        means[name] = summary.prompt_tokens_per_action
    assert means["default"] <= 400 < means["open"]


@pytest.mark.parametrize("kwargs, field", [
    ({"total": 0}, "prompt_budget.total"),
    ({"world": -1}, "prompt_budget.world"),
    ({"inbox": 2.5}, "prompt_budget.inbox"),
    ({"memory": True}, "prompt_budget.memory"),
    ({"events": "50"}, "prompt_budget.events"),
])
def test_invalid_budget_values_are_one_line_errors_naming_the_field(kwargs, field):
    with pytest.raises(PromptBudgetError) as info:
        PromptBudget(**kwargs)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_a_scenario_file_with_a_bad_budget_names_the_field(tmp_path):
    path = tmp_path / "bad_budget.py"
    path.write_text("from personahub.sim.scenario import PromptBudget, Scenario\n\n"
                    "SCENARIO = Scenario(name='x', prompt_budget=PromptBudget(world=-5))\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert "prompt_budget.world" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ScenarioError, match="scenario.prompt_budget must be a PromptBudget"):
        Scenario(name="x", prompt_budget=400)  # type: ignore[arg-type]



def test_the_shared_prefix_meter_counts_the_longest_prefix_with_any_earlier_prompt():
    assert common_prefix("abcdef", "abcxyz") == 3 and common_prefix("", "abc") == 0
    meter = SharedPrefixMeter()
    first = [{"role": "system", "content": "S" * 40}, {"role": "user", "content": "A" * 40}]
    other = [{"role": "system", "content": "S" * 40}, {"role": "user", "content": "B" * 40}]
    assert meter.add(first) == 0
    shared = meter.add(other)
    assert shared == count_tokens(prompt_text(first)[: prompt_text(first).index("A")])
    assert meter.add(first) * 4 >= len(prompt_text(first)) - 4  # seen before: all of it
    assert 0 < meter.share < 1
