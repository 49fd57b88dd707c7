"""Planted answers (models/fake_server/plant.py): the loopback server answers marked survey
prompts with a known option by a known share, so an experiment has an effect to find; the
experiment's interval covers it. A marked prompt is answered as its control's, byte for byte."""

import functools
import json
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from personahub.agents.prompts.agent import survey_messages
from personahub.agents.prompts.budget import PromptBudget
from personahub.core.errors import UsageError
from personahub.experiments import experiment
from personahub.models.fake_server.plant import Plant, PlantedEngine, _unmark, parse_plant
from personahub.models.offline import EngineRequest, OfflineEngine, to_openai_dicts
from personahub.tasks.survey import survey_schema

SCHEMA = survey_schema("choice", ("yes", "no")).model_json_schema()
SCALE = survey_schema("scale", (), 1, 5).model_json_schema()


@functools.cache
def prompt(i: int, marked: bool) -> list[dict[str, str]]:
    """A survey prompt as agents get it; marked: its arm's world text is the marker."""
    return to_openai_dicts(survey_messages(
        persona=f"You are person {i}.", question="Buy it?",
        answer_hint="Choose exactly one of: yes | no", world="A town.",
        arm_world="TREATED" if marked else ""))


def answers(engine: OfflineEngine, marked: bool, schema=SCHEMA, n: int = 600) -> list:
    request = EngineRequest(json_schema=schema)
    return [json.loads(engine.answer(prompt(i, marked), request).content)["answer"]
            for i in range(n)]


def test_plant_flag_parses_and_refuses_bad_values():
    assert parse_plant("TREATED=yes:0.4") == Plant("TREATED", "yes", 0.4)
    assert parse_plant("a=b=c:d:1") == Plant("a", "b=c:d", 1.0)  # the last colon splits
    for bad, message in (("TREATED", "give MARKER=OPTION:SHARE"), ("T=yes", "MARKER=OPTION"),
                         ("T=yes:x", "is not a number"), ("T=yes:1.5", "within \\[0, 1\\]"),
                         ("T=yes:nan", "within"), ("=yes:0.5", "non-empty")):
        with pytest.raises(UsageError, match=message):
            parse_plant(bad)


def test_marked_prompts_get_the_option_by_its_share_and_others_are_untouched():
    plain, planted = OfflineEngine(3), PlantedEngine(3, (Plant("TREATED", "yes", 0.6),))
    # unmarked prompts: the engine's own answers, unchanged
    assert answers(planted, marked=False) == answers(plain, marked=False)
    # marked prompts: "yes" at 0.6 + 0.4 * 1/2 = 0.8 (the engine picks each option alike)
    marked = answers(planted, marked=True)
    low, high = proportion_confint(marked.count("yes"), len(marked), alpha=0.001, method="wilson")
    assert low < 0.8 < high
    # the marker is invisible: a marked prompt is answered as the unmarked one, then planted
    base = answers(plain, marked=False)
    assert marked != base
    assert all(p == "yes" for p, b in zip(marked, base, strict=True) if b == "yes")
    # a scale's option is matched by its text; an option the schema does not offer is no plant
    five = answers(PlantedEngine(3, (Plant("TREATED", "5", 1.0),)), True, SCALE, 50)
    assert five == [5] * 50
    assert answers(PlantedEngine(3, (Plant("TREATED", "maybe", 1.0),)), True) == base


WORLD = (Path(__file__).resolve().parents[3] / "scenarios/worlds/product_launch.md").read_text(
    encoding="utf-8")


@pytest.mark.parametrize("budget", [PromptBudget(), PromptBudget.unlimited()], ids=["default", "none"])
@pytest.mark.parametrize("arm", ["TREATED", "A notice went up (TREATED).\n\nIt stayed up."])
def test_unmarking_a_marked_arms_prompt_gives_its_controls_prompt_byte_for_byte(arm, budget):
    """The arm's world text, with the break before it, is taken out whole: what remains is the
    control's prompt, whether the base world is summarised or shown whole."""
    def messages(arm_world: str = "") -> list[dict[str, str]]:
        return to_openai_dicts(survey_messages(
            persona="A commuter.", question="Buy it?", answer_hint="Choose exactly one of: yes | no",
            world=WORLD, arm_world=arm_world, events=["Launch day."],
            memory=["I saw an ad.", "A neighbour rides one."], budget=budget))

    control, marked = messages(), messages(arm)
    assert marked != control
    assert [{**m, "content": _unmark(m["content"], "TREATED")} for m in marked] == control
    request = EngineRequest(json_schema=SCHEMA)
    never = PlantedEngine(3, (Plant("TREATED", "yes", 0.0),))
    assert never.answer(marked, request) == OfflineEngine(3).answer(control, request)


SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="planted", personas=PersonaSource(limit=40), world="A small town by a lake.",
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),),
    seed=0)
EXPERIMENT = Experiment(arms=(Arm(name="control"),
                              Arm(name="treated", world="TREATED")),
                        replicates=3, outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''


@pytest.mark.slow  # six runs over HTTP
def test_a_planted_effect_is_found_and_covered_by_the_interval(server, tmp_path):
    srv = server(plants=(Plant("TREATED", "yes", 0.6),))
    path = tmp_path / "planted.py"
    path.write_text(SCENARIO)
    result = experiment(path, db=tmp_path / "planted.duckdb", llm=f"{srv.base_url}?model=offline")
    row = result.effects.iloc[0]
    assert (row.n_control, row.n_treatment) == (120, 120) and row.personas == 40
    # the marker is invisible to the engine: the treated agents answer as the control's, but
    # for the planted answers (an agent answering yes in the control does so treated too)
    values = result.values.pivot(index=["replicate", "agent_id"], columns="arm",
                                 values="value")
    assert (values.treated >= values.control).all()
    planted = 100 * 0.6 * (1 - 1 / 2)  # the expected effect, in percentage points: 30
    assert row.ci_low <= planted <= row.ci_high
    assert row.ci_low > 0 and row.significant
    assert "treated raises it by +" in row.verdict
