"""Within-world experiments (``design="within"``): one run per replicate, its agents randomised
into arms, each arm's treatment reaching only its agents; resumable to the same tables."""

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from personahub.analysis.experiment_inference import RANDOMISED
from personahub.experiments import experiment
from tests.pipeline_helpers import rows

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Event, GraphGrowth, Intervention, PersonaSource
from personahub.sim.scenario import Scenario, Survey
SCENARIO = Scenario(
    name="tiny_within", personas=PersonaSource(limit=10),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1),
    events=(Event(step=1, text="A new e-bike goes on sale."),),
    surveys=(Survey(id="buy", steps=(2,), options=("yes", "no", "unsure"), question="Buy it?"),
             Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="Fair price?")),
    seed=5)
EXPERIMENT = Experiment(
    arms=(Arm(name="quiet"),
          Arm(name="rumour", add_events=(Event(step=1, text="A rumour: its battery burns."),),
              add_interventions=tuple(Intervention(step=1, action="add_memory", target=i,
                                                   text="I distrust e-bikes.")
                                      for i in range(1, 11)))),
    replicates=2, design="within", STRATIFY
    outcomes=(Outcome(survey="buy", step=2, options=("yes",)), Outcome(survey="fair", step=2)))
'''


def scenario_file(tmp_path: Path, stratify: str = "") -> Path:
    path = tmp_path / "tiny_within.py"
    path.write_text(SCENARIO.replace("STRATIFY", f"stratify={stratify!r},"))
    return path


def test_within_treatment_reaches_only_its_arm_and_gives_an_effect_table(tmp_path):
    db = tmp_path / "exp.duckdb"
    result = experiment(scenario_file(tmp_path, "community"), db=db)
    assert len(result.ran) == 2  # one world per replicate
    assert sorted(zip(result.runs.arm, result.runs.replicate, strict=True)) == \
        [("quiet", 0), ("quiet", 1), ("rumour", 0), ("rumour", 1)]
    assert set(result.runs.run_id) == set(result.ran)
    agents = result.agents
    assert len(agents) == 20 and set(agents.arm) == {"quiet", "rumour"}
    assert (agents.groupby("replicate").arm.value_counts() == 5).all()  # 5 + 5 in each world
    con = duckdb.connect(str(db), read_only=True)
    for run_id, members in agents.groupby("run_id"):
        treated = set(members[members.arm == "rumour"].persona_id)
        rows = con.execute("SELECT text, recipients, audience FROM events WHERE run_id = ?",
                           [run_id]).fetchall()
        by_text = {text: (set(json.loads(recipients)), audience)
                   for text, recipients, audience in rows}
        assert by_text["A rumour: its battery burns."] == (treated, "arms=rumour")
        assert by_text["A new e-bike goes on sale."][0] == set(members.persona_id)
        applied = {r[0] for r in con.execute(
            "SELECT persona_id FROM interventions WHERE run_id = ? AND action = 'add_memory'",
            [run_id]).fetchall()}
        assert applied == treated  # the arm's interventions skipped the control's agents
    con.close()
    # each answer counts for its agent's arm: 5 agents x 2 worlds per arm
    assert set(result.arms.n) == {10}
    values = result.values.merge(agents, on=["run_id", "agent_id"], suffixes=("", "_drawn"))
    assert (values.arm == values.arm_drawn).all() and len(values) == len(result.values)
    assert list(result.effects.outcome) == ["buy@2", "fair@2"]
    assert set(result.effects.inference) == {RANDOMISED}
    assert result.effects.p_value.isna().all()  # two worlds are too few to test
    assert all("no test: 2 replicates" in v for v in result.verdicts())
    assert set(result.effects.n_control) == {10} and set(result.effects.replicates) == {2}
    # the report reads the same arms from the recorded randomisation
    from personahub.analysis.experiment_report import experiment_tables
    con = duckdb.connect(str(db), read_only=True)
    _, _, steps, table = experiment_tables(con, result.experiment_id)
    con.close()
    assert set(steps.n) == {10} and table.equals(result.effects)


@pytest.mark.slow
def test_a_killed_within_experiment_resumes_to_the_same_tables(tmp_path):
    """Stratified by a persona attribute (7 of 10 agents in one town): balanced in each town;
    killed once replicate 1's run finished but before it was linked, the experiment links that
    run (noted as it started) without running it again, and ends with the tables of the one
    never interrupted."""
    people = tmp_path / "people.jsonl"
    people.write_text("".join(
        json.dumps({"persona": f"Resident {i} of the valley, who works as a {job}.",
                    "town": "north" if i < 7 else "south"}) + "\n"
        for i, job in enumerate(["baker", "nurse", "pilot", "farmer", "teacher", "coder",
                                 "plumber", "judge", "cook", "miner"])))
    path = scenario_file(tmp_path, "attributes:town")
    path.write_text(path.read_text().replace("PersonaSource(limit=10)",
                                             'PersonaSource(path="people.jsonl", limit=10)'))
    whole_db, db = tmp_path / "whole.duckdb", tmp_path / "exp.duckdb"
    whole = experiment(path, db=whole_db)
    towns = {p: ("north" if int(t.split()[1]) < 7 else "south") for p, t in duckdb.connect(
        str(whole_db), read_only=True).execute("SELECT persona_id, text FROM personas").fetchall()}
    for _, world in whole.agents.groupby("replicate"):
        for town, size in (("north", 7), ("south", 3)):
            arms = list(world[world.persona_id.map(towns) == town].arm)
            assert len(arms) == size and abs(arms.count("quiet") - arms.count("rumour")) <= 1
    shutil.copy(whole_db, db)
    con = duckdb.connect(str(db))  # as if killed before replicate 1 was linked to its arms
    con.execute("DELETE FROM experiments WHERE replicate = 1")
    con.close()
    second = experiment(path, db=db)
    replicate_1 = set(whole.runs[whole.runs.replicate == 1].run_id)
    assert len(second.ran) == 1 and {second.ran[0]} == replicate_1
    assert rows(db, "SELECT count(*) FROM runs") == [(2,)]  # nothing ran again
    keys = ["replicate", "persona_id"]
    assert whole.agents.drop(columns="run_id").sort_values(keys).reset_index(drop=True).equals(
        second.agents.drop(columns="run_id").sort_values(keys).reset_index(drop=True))
    keys = ["outcome", "arm", "replicate", "agent_id"]
    assert whole.values.drop(columns="run_id").sort_values(keys).reset_index(drop=True).equals(
        second.values.drop(columns="run_id").sort_values(keys).reset_index(drop=True))
    assert whole.effects.equals(second.effects)
    assert experiment(path, db=db).ran == []  # finished: nothing runs again


WORLD_ARMS = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource
from personahub.sim.scenario import Scenario, Survey
SCENARIO = Scenario(
    name="tiny_world_arms", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2), world="A small river town.",
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),),
    seed=3)
EXPERIMENT = Experiment(
    arms=(Arm(name="plain"), Arm(name="storm", world="A storm warning is in force.")),
    replicates=1, design="within", outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''


def test_a_world_text_arm_reaches_only_its_agents_prompts(tmp_path):
    path = tmp_path / "world_arms.py"
    path.write_text(WORLD_ARMS)
    db = tmp_path / "exp.duckdb"
    result = experiment(path, db=db, cache="record")  # the cache keeps each call's prompt
    arm_of = dict(zip(result.agents.persona_id, result.agents.arm, strict=True))
    assert sorted(arm_of.values()) == ["plain"] * 4 + ["storm"] * 4
    con = duckdb.connect(str(db), read_only=True)
    text_of = dict(con.execute("SELECT text, persona_id FROM personas").fetchall())
    prompts = [json.loads(r[0])["messages"][-1]["content"]
               for r in con.execute("SELECT CAST(request AS VARCHAR) FROM llm_cache").fetchall()]
    con.close()
    seen: dict[str, list[bool]] = {"plain": [], "storm": []}
    for prompt in prompts:
        persona = prompt.split("## Persona\n", 1)[1].split("\n\n## ", 1)[0].strip()
        assert "## World\nA small river town." in prompt  # the base world: every arm
        seen[arm_of[text_of[persona]]].append("A storm warning is in force." in prompt)
    assert len(seen["plain"]) >= 4 and len(seen["storm"]) >= 4  # every agent's survey at least
    assert not any(seen["plain"]) and all(seen["storm"])

