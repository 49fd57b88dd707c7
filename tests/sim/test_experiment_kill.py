"""A killed experiment resumes to the tables of one never interrupted,
going on with the run the kill cut rather than leaving it behind.

``personahub experiment`` runs in a subprocess and gets ``kill -9`` as soon as it says its first
run finished (so the next run is cut mid-way, or before it started); the same command then goes
on: it runs only the missing arm x replicate runs and ends with the runs, answers and effects of
an uninterrupted experiment.
"""

import signal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.experiments import experiment
from personahub.pipelines.run import RunSpec
from tests.cli_helpers import kill_when

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny_kill", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=3, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    surveys=(Survey(id="buy", steps=(1, 3), options=("yes", "no", "unsure"), question="Buy?"),
             Survey(id="fair", steps=(3,), answer="scale", low=1, high=10, question="Fair?")),
    seed=11)
EXPERIMENT = Experiment(arms=(Arm(name="calm"), Arm(name="rumour", world="A rumour spreads.")),
                        replicates=2, outcomes=(Outcome(survey="buy", step=3, options=("yes",)),
                                                Outcome(survey="fair", step=3)))
'''
FIRST = "arm calm, replicate 0: run "


def unlinked(db: Path) -> list[tuple[str, str, int]]:
    """The runs no arm x replicate is linked to: their id, status and committed steps."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT run_id, status, steps_done FROM runs JOIN jobs ON job_id = "
                           "run_id WHERE run_id NOT IN (SELECT run_id FROM experiments)"
                           ).fetchall()
    finally:
        con.close()


def jobs(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {status for (status,) in con.execute("SELECT status FROM jobs").fetchall()}
    finally:
        con.close()


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
    # a run cut mid-way was found with no process, resumed and linked: no run is left over
    assert unlinked(db) == []
    assert jobs(db) == {"finished"}


@pytest.mark.slow
def test_a_run_an_experiment_left_unfinished_is_resumed_by_it_and_linked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second arm's run stops after its first step; the same experiment goes on with that
    run (its arm's scenario, not the file's base one) rather than starting the arm over, so no
    run is left over and the tables are an uninterrupted experiment's."""
    path = tmp_path / "tiny_kill.py"
    path.write_text(SCENARIO)
    db = tmp_path / "exp.duckdb"
    real = RunSpec.commit
    steps = {"n": 0}

    def commit(self: RunSpec, ctx: Any, batch: int, result: Any) -> Any:
        steps["n"] += 1
        if steps["n"] == 5:  # the rumour arm's step 2 (each run has 3)
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(RunSpec, "commit", commit)
    with pytest.raises(KeyboardInterrupt):
        experiment(path, db=db, replicates=1)
    monkeypatch.undo()
    [(stopped, status, done)] = unlinked(db)
    assert (status, done) == ("interrupted", 1)

    resumed = experiment(path, db=db, replicates=1)
    assert resumed.ran == [stopped]
    assert unlinked(db) == [] and jobs(db) == {"finished"}
    whole = experiment(path, db=tmp_path / "whole.duckdb", replicates=1)
    assert resumed.runs.drop(columns="run_id").equals(whole.runs.drop(columns="run_id"))
    keys = ["outcome", "arm", "replicate", "agent_id"]
    assert (resumed.values.drop(columns="run_id").sort_values(keys).reset_index(drop=True)
            .equals(whole.values.drop(columns="run_id").sort_values(keys)
                    .reset_index(drop=True)))
    assert resumed.effects.equals(whole.effects)
