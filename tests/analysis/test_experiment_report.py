"""``personahub report --experiment ID`` (analysis/experiment_report.py): each outcome per arm
over the survey's steps with intervals, and the effect forest plot, from a tiny offline
experiment."""

from pathlib import Path

import duckdb
import pytest

from personahub.analysis.experiment_report import arm_steps, experiment_tables
from personahub.experiments import experiment
from tests.cli_helpers import invoke

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny_report", personas=PersonaSource(limit=6),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1, 2), options=("yes", "no"), question="Buy it?"),
             Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="Fair price?")),
    seed=3)
EXPERIMENT = Experiment(arms=(Arm(name="calm"), Arm(name="rumour", world="A rumour spreads.")),
                        replicates=1, outcomes=(Outcome(survey="buy", step=2, options=("yes",)),
                                                Outcome(survey="fair", step=2)))
'''


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("exp")
    path = folder / "tiny_report.py"
    path.write_text(SCENARIO)
    db = folder / "exp.duckdb"
    return db, experiment(path, db=db, experiment_id="trial")


def test_report_draws_each_arm_and_outcome_over_the_steps(ran, tmp_path):
    db, result = ran
    con = duckdb.connect(str(db), read_only=True)
    try:
        spec, runs, steps, table = experiment_tables(con, "trial")
    finally:
        con.close()
    assert [a.name for a in spec.arms] == ["calm", "rumour"] and spec.replicates == 1
    # every outcome, arm and step its survey is asked (buy at 1 and 2, fair at 2)
    assert sorted(zip(steps.outcome, steps.arm, steps.step, strict=True)) == [
        ("buy@2", "calm", 1), ("buy@2", "calm", 2), ("buy@2", "rumour", 1),
        ("buy@2", "rumour", 2), ("fair@2", "calm", 2), ("fair@2", "rumour", 2)]
    assert (steps.ci_low <= steps.value).all() and (steps.value <= steps.ci_high).all()
    # at the outcome's step the point is the arm's value in the experiment's own tables
    at = steps[steps.step == 2].set_index(["outcome", "arm"])
    for row in result.arms.itertuples():
        scale = 100 if row.outcome == "buy@2" else 1
        assert at.loc[(row.outcome, row.arm), "value"] == pytest.approx(row.value * scale)
        assert at.loc[(row.outcome, row.arm), "n"] == row.n == 6
    assert table.drop(columns="verdict").equals(result.effects.drop(columns="verdict"))

    out = tmp_path / "report"
    cli = invoke("report", "--experiment", "trial", "--db", db, "--out", out)
    assert cli.exit_code == 0, cli.output
    assert sorted(p.name for p in out.iterdir()) == \
        ["experiment_arms.png", "experiment_effects.png", "index.html"]
    page = (out / "index.html").read_text()
    for name in ("calm (control)", "rumour", "buy@2", "fair@2", "experiment_arms.png",
                 "experiment_effects.png", *result.verdicts()):
        assert name in page, name
    for png in ("experiment_arms.png", "experiment_effects.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_experiment_or_a_mixed_request_is_one_error(ran, tmp_path):
    db, _ = ran
    unknown = invoke("report", "--experiment", "nope", "--db", db, "--out", tmp_path / "r")
    assert unknown.exit_code == 1
    assert "--experiment nope: not found in the database" in unknown.stderr
    mixed = invoke("report", "--experiment", "trial", "--run", "x", "--db", db,
                   "--out", tmp_path / "r")
    assert mixed.exit_code == 2 and "--experiment: give it alone" in mixed.stderr
    assert not (tmp_path / "r").exists()


def test_arm_steps_leave_out_steps_nobody_answered(ran):
    db, _ = ran
    con = duckdb.connect(str(db), read_only=True)
    try:
        from personahub.analysis.experiment_report import load_recorded_experiment
        scenario, spec, runs = load_recorded_experiment(con, "trial")
        only_calm = arm_steps(con, scenario, spec, runs[runs.arm == "calm"])
    finally:
        con.close()
    assert set(only_calm.arm) == {"calm"} and len(only_calm) == 3
