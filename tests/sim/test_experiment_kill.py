"""A killed experiment resumes to the tables of one never interrupted (issue 47, "Done when").

``personahub experiment`` runs in a subprocess and gets ``kill -9`` as soon as it says its first
run finished (so the next run is cut mid-way, or before it started); the same command then goes
on: it runs only the missing arm x replicate runs and ends with the runs, answers and effects of
an uninterrupted experiment.
"""

import signal
from pathlib import Path

import duckdb
import pytest

from personahub.experiments import experiment
from tests.cli_helpers import kill_when

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny_kill", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=3, kinds=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    surveys=(Survey(id="buy", steps=(1, 3), options=("yes", "no", "unsure"), question="Buy?"),
             Survey(id="fair", steps=(3,), answer="scale", low=1, high=10, question="Fair?")),
    seed=11)
EXPERIMENT = Experiment(arms=(Arm(name="calm"), Arm(name="rumour", world="A rumour spreads.")),
                        replicates=2, outcomes=(Outcome(survey="buy", step=3, options=("yes",)),
                                                Outcome(survey="fair", step=3)))
'''
FIRST = "arm calm, replicate 0: run "


def recorded(db: Path) -> list[tuple[str, int, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [(a, int(r), i) for a, r, i in con.execute(
            "SELECT arm, replicate, run_id FROM experiments ORDER BY replicate, arm").fetchall()]
    finally:
        con.close()


@pytest.mark.slow
def test_an_experiment_killed_after_its_first_run_resumes_to_the_same_tables(tmp_path):
    path = tmp_path / "tiny_kill.py"
    path.write_text(SCENARIO)
    db, said = tmp_path / "exp.duckdb", tmp_path / "stderr.txt"
    args = ["experiment", str(path), "--db", str(db)]
    with said.open("w") as stderr:
        code = kill_when(args, lambda: FIRST in said.read_text(), "the first run never finished",
                         stderr=stderr, within_s=300)
    assert code == -signal.SIGKILL, said.read_text()
    before = recorded(db)
    assert 1 <= len(before) < 4 and before[0][:2] == ("calm", 0)
    first_run = said.read_text().split(FIRST)[1].split()[0]
    assert before[0][2] == first_run

    resumed = experiment(path, db=db)
    # only the runs not recorded were run; the recorded ones are kept as they were
    assert len(resumed.ran) == 4 - len(before)
    assert set(resumed.ran).isdisjoint(i for _, _, i in before)
    assert set(i for _, _, i in before) <= set(resumed.runs.run_id)

    whole = experiment(path, db=tmp_path / "whole.duckdb")
    assert len(whole.ran) == 4
    assert resumed.runs.drop(columns="run_id").equals(whole.runs.drop(columns="run_id"))
    keys = ["outcome", "arm", "replicate", "agent_id"]

    def answers(values):
        return values.drop(columns="run_id").sort_values(keys).reset_index(drop=True)

    assert answers(resumed.values).equals(answers(whole.values))
    assert resumed.arms.equals(whole.arms)
    assert resumed.effects.equals(whole.effects)
    # a run cut mid-way stays in the database, linked to nothing
    con = duckdb.connect(str(db), read_only=True)
    try:
        unlinked = con.execute("SELECT count(*) FROM runs WHERE run_id NOT IN "
                               "(SELECT run_id FROM experiments)").fetchone()[0]
    finally:
        con.close()
    assert unlinked <= 1
