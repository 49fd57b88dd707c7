"""The planted-effect check on world_file scenarios: an arm whose world text carries a plant's
marker answers, through ``personahub serve --plant``'s engine on loopback, as its control but for
the planted answers, whatever the scenario's world source and the experiment's design.

Two plants on one server: MARK_NONE at share 0 (the arm must answer exactly as its control) and
MARK_ALL at share 1 (every answer that differs from the control's is the planted option, and every
survey offering that option gets it). Answers pair by persona, survey, step and replicate.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pytest

from personahub.api import run_simulation
from personahub.experiments import experiment
from personahub.models.fake_server.plant import Plant
from personahub.pipelines.run import RunConfig
from personahub.sim.experiment import Arm, arm_scenario, load_experiment
from personahub.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "scenarios").glob("*.py")
                 if re.search(r"^EXPERIMENT\s*=", p.read_text(encoding="utf-8"), re.MULTILINE))
NONE, ALL = "MARK_NONE", "MARK_ALL"  # neither holds the other
Key = tuple[str, str, int]  # persona, survey, step


def plants(option: str) -> tuple[Plant, Plant]:
    return Plant(NONE, option, 0.0), Plant(ALL, option, 1.0)


def answers(db: Path, run_id: str) -> dict[Key, object]:
    """Every survey answer of a run by (persona, survey, step)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT persona_id, survey_id, step, answer_choice, answer_scale, "
                           "answer_text FROM survey_answers WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return {(p, s, t): (c, n, x) for p, s, t, c, n, x in rows}


def offering(scenario: Scenario, option: str) -> set[str]:
    """The surveys whose answers the plant can set (choice surveys offering the option)."""
    return {s.id for s in scenario.surveys if s.answer == "choice" and option in s.options}


def check_planted(control: dict[Key, object], none: dict[Key, object], all_: dict[Key, object],
                  option: str, offered: set[str]) -> None:
    """Share 0 answers exactly as the control; share 1 differs only by the planted option."""
    assert control, "no survey answers to compare"
    assert none == control
    check_all_planted(control, all_, option, offered)


def check_all_planted(control: dict[Key, object], planted: dict[Key, object], option: str,
                      offered: set[str]) -> None:
    """Every answer the plant can set is the option; every other one is the control's."""
    assert any(k[1] in offered for k in control), "no survey offers the planted option"
    assert planted.keys() == control.keys()
    for key, answer in planted.items():
        assert answer == ((option, None, None) if key[1] in offered else control[key]), key


def shrunk(scenario: Scenario, personas: int) -> Scenario:
    return dataclasses.replace(scenario, personas=dataclasses.replace(scenario.personas,
                                                                      limit=personas))


def test_the_shipped_experiments_are_found_and_read_their_world_from_a_file():
    assert "product_launch.py" in [p.name for p in SHIPPED]
    assert load_experiment(ROOT / "scenarios" / "product_launch.py")[0].world_file


@pytest.mark.slow  # three runs per arm over HTTP
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_marked_shipped_arm_answers_as_its_control_but_for_the_planted_answers(path, server,
                                                                                tmp_path):
    scenario, spec = load_experiment(path)
    scenario = shrunk(scenario, 3)
    option = next(s.options[0] for s in scenario.surveys if s.answer == "choice")
    srv = server(plants=plants(option))
    db = tmp_path / "plant.duckdb"

    def run(arm: Arm) -> dict[Key, object]:
        config = RunConfig(scenario=arm_scenario(scenario, arm), db=db, seed=scenario.seed,
                           llm=f"{srv.base_url}?model=offline")
        return answers(db, run_simulation(config).run_id)

    for arm in spec.arms:
        control = dataclasses.replace(arm, world=None)
        marked = [dataclasses.replace(arm, name=f"{arm.name}_{m.lower()}", world=m)
                  for m in (NONE, ALL)]
        check_planted(run(control), *(run(a) for a in marked), option,
                      offering(scenario, option))


WORLD_FILE = """# Lakeside

Lakeside is a market town of nine thousand people on the north shore of a cold lake. Its ferry
runs every hour in summer and twice a day in winter, and most people know the skipper by name.

## The high street

The high street has a baker, two cafes, a hardware shop that also repairs bicycles, and a
bookshop that opens only when its owner feels like it. Parking is scarce on market days.

## Work

- The boatyard employs eighty people and is hiring welders.
- The regional hospital runs a shuttle bus from the ferry pier.
- Many younger people commute to the city by train, forty minutes each way.

## Talk of the town

A new e-bike shop is to open in the old post office. Some say the hills are too steep for
bicycles; others say that is exactly what the motor is for. The council has promised a covered
bike shelter at the station but has not said when.
"""

FIXTURE = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Event, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="lakeside", personas=PersonaSource(limit=6), world="Lakeside in early spring.",
    world_file="worlds/lakeside.md", graph=GraphGrowth(hops=0, acquaintances=2), steps=2,
    tasks=("npc_dialogue", "instruction"), activation=Activation(mode="count", count=3),
    policy=POLICY,
    events=(Event(step=1, text="The e-bike shop opens with a week of free test rides."),),
    surveys=(Survey(id="buy", steps=(1, 2), options=("yes", "no", "unsure"),
                    question="Will you buy an e-bike this year?"),
             Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="How fair are the shop's prices?"),
             Survey(id="why", steps=(2,), answer="text", question="Why?")),
    seed=7)
EXPERIMENT = Experiment(
    arms=(Arm(name="control"), Arm(name="none", WORLD_NONE), Arm(name="all", WORLD_ALL)),
    replicates=1, design=DESIGN, outcomes=(Outcome(survey="buy", step=2, options=("yes",)),))
'''


def fixture(tmp_path: Path, *, marked: bool = True, design: str = "between",
            policy: str = "scripted") -> Path:
    """A world_file scenario whose arms' world texts carry the markers (or none, unmarked)."""
    (tmp_path / "worlds").mkdir(exist_ok=True)
    (tmp_path / "worlds" / "lakeside.md").write_text(WORLD_FILE, encoding="utf-8")
    text = (FIXTURE.replace("DESIGN", repr(design)).replace("POLICY", repr(policy))
            .replace("WORLD_NONE", f'world="A notice in the shop window: {NONE}."' if marked
                     else "").replace("WORLD_ALL", f'world="Overheard: {ALL}!\\n\\nMore."'
                                      if marked else ""))
    path = tmp_path / f"lakeside_{design}_{'marked' if marked else 'plain'}.py"
    path.write_text(text, encoding="utf-8")
    return path


def arm_answers(db: Path, runs: Iterable[tuple[str, str]]) -> dict[str, dict[Key, object]]:
    return {arm: answers(db, run_id) for arm, run_id in runs}


@pytest.mark.slow  # three runs over HTTP
@pytest.mark.parametrize("policy", ["scripted", "deliberate"])
def test_a_marked_world_file_arm_answers_as_its_control_but_for_the_planted_answers(
        policy, server, tmp_path):
    srv = server(plants=plants("yes"))
    db = tmp_path / "between.duckdb"
    path = fixture(tmp_path, policy=policy)
    scenario, _ = load_experiment(path)
    assert scenario.world and scenario.world_file  # the world from both sources
    result = experiment(path, db=db, llm=f"{srv.base_url}?model=offline")
    by_arm = arm_answers(db, zip(result.runs.arm, result.runs.run_id, strict=True))
    check_planted(by_arm["control"], by_arm["none"], by_arm["all"], "yes", {"buy"})


@pytest.mark.slow  # two runs over HTTP
def test_a_marked_arm_within_a_world_answers_as_unmarked_but_for_the_planted_answers(server,
                                                                                    tmp_path):
    """Within one world the arms' agents pair with the same agents of the same world whose arms
    carry no world text (the same randomisation)."""
    srv = server(plants=plants("yes"))
    db = tmp_path / "within.duckdb"
    llm = f"{srv.base_url}?model=offline"
    marked = experiment(fixture(tmp_path, design="within"), db=db, llm=llm, experiment_id="marked")
    plain = experiment(fixture(tmp_path, marked=False, design="within"), db=db, llm=llm,
                       experiment_id="plain")
    arm_of = dict(zip(marked.agents.persona_id, marked.agents.arm, strict=True))
    assert arm_of == dict(zip(plain.agents.persona_id, plain.agents.arm, strict=True))
    assert set(arm_of.values()) == {"control", "none", "all"}
    treated, control = (answers(db, r.run_id.iloc[0]) for r in (marked.runs, plain.runs))

    def of(arm: str, run: dict[Key, object]) -> dict[Key, object]:
        return {k: v for k, v in run.items() if arm_of[k[0]] == arm}

    assert of("control", control) and of("control", treated) == of("control", control)
    assert of("none", control) and of("none", treated) == of("none", control)
    check_all_planted(of("all", control), of("all", treated), "yes", {"buy"})
