"""Running an experiment (personahub/experiments.py): each arm x replicate a run on the kernel,
linked in the ``experiments`` table, resumable by experiment id; an A/A experiment shows no
effect."""

from pathlib import Path

import duckdb
import pytest

from personahub.experiments import experiment

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Event, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny_launch", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    events=(Event(step=1, text="A new e-bike goes on sale."),),
    surveys=(Survey(id="buy", steps=(2,), options=("yes", "no", "unsure"), question="Buy it?"),
             Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="Fair price?")),
    seed=5)
EXPERIMENT = Experiment(arms=ARMS, replicates=2,
                        outcomes=(Outcome(survey="buy", step=2, options=("yes",)),
                                  Outcome(survey="fair", step=2)))
'''


def scenario_file(tmp_path: Path, arms: str) -> Path:
    path = tmp_path / "tiny_launch.py"
    path.write_text(SCENARIO.replace("ARMS", arms))
    return path


@pytest.mark.slow
def test_aa_experiment_runs_each_arm_and_replicate_and_shows_no_effect(tmp_path):
    db = tmp_path / "exp.duckdb"
    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    result = experiment(path, db=db, replicates=3)
    assert len(result.ran) == 6
    assert sorted(zip(result.runs.arm, result.runs.replicate, result.runs.seed,
                      strict=True)) == \
        [("a", 0, 5), ("a", 1, 6), ("a", 2, 7), ("b", 0, 5), ("b", 1, 6), ("b", 2, 7)]
    assert list(result.runs.is_control) == [True, False, True, False, True, False]
    assert set(result.arms.n) == {24}  # 8 agents x 3 replicates answered each survey
    assert list(result.effects.outcome) == ["buy@2", "fair@2"]
    # two identical worlds from the same seeds: the same answers, no effect
    assert (result.effects.effect == 0).all() and (result.effects.p_value == 1).all()
    assert not result.effects.significant.any()
    assert all("no detectable effect of b against a" in v for v in result.verdicts())
    # run again with the same id: every run is finished, nothing runs, the same tables
    again = experiment(path, db=db, replicates=3)
    assert again.ran == [] and again.runs.equals(result.runs)
    assert again.effects.drop(columns="verdict").equals(result.effects.drop(columns="verdict"))


@pytest.mark.slow
def test_a_killed_experiment_runs_only_what_is_missing(tmp_path):
    db = tmp_path / "exp.duckdb"
    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b", world="Prices are rising."))')
    first = experiment(path, db=db, replicates=1)
    assert len(first.ran) == 2 and set(first.runs.replicate) == {0}
    con = duckdb.connect(str(db))  # as if killed before the last run finished
    con.execute("DELETE FROM experiments WHERE arm = 'b'")
    con.close()
    second = experiment(path, db=db)
    assert len(second.ran) == 3  # b of replicate 0, a and b of replicate 1
    assert first.ran[0] in set(second.runs.run_id)
    assert len(second.runs) == 4
    # the treatment's world differs: its agents answer otherwise (the offline engine hashes
    # the prompt), so the arms' values are not the same
    values = second.values[second.values.outcome == "fair@2"]
    assert list(values[values.arm == "a"].value) != list(values[values.arm == "b"].value)
    # the resumed experiment's answers and effects are those of one never interrupted
    whole = experiment(path, db=tmp_path / "whole.duckdb")
    keys = ["outcome", "arm", "replicate", "agent_id"]
    assert whole.values.drop(columns="run_id").sort_values(keys).reset_index(drop=True).equals(
        second.values.drop(columns="run_id").sort_values(keys).reset_index(drop=True))
    assert whole.effects.equals(second.effects)


def test_bad_replicates_and_options_are_refused_before_any_run(tmp_path):
    from personahub.core.errors import PersonahubError
    from personahub.sim.scenario import ScenarioValueError
    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    with pytest.raises(ScenarioValueError, match="replicates must be an int within 1..10000"):
        experiment(path, db=tmp_path / "x.duckdb", replicates=0)
    with pytest.raises(PersonahubError, match="experiment: unknown option.s. stepz; choose from"):
        experiment(path, db=tmp_path / "x.duckdb", stepz=2)
    assert not (tmp_path / "x.duckdb").exists()


def test_experiment_command_prints_the_effect_table_and_verdicts(tmp_path):
    """Fast (two small runs): the one test of the fast subset through the runner and the CLI."""
    from tests.cli_helpers import invoke

    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    result = invoke("experiment", path, "--db", tmp_path / "exp.duckdb", "--replicates", "1",
                    "--id", "trial")
    assert result.exit_code == 0, result.output
    assert "experiment trial: 2 arms x 1 replicates, 2 runs run now, 0 finished before" \
        in result.stderr
    lines = result.stdout.splitlines()
    assert any("buy@2" in line and "no test" in line and "+0.0 pp" in line for line in lines)
    assert any("fair@2" in line and "8 p x 1 r" in line for line in lines)
    assert any(line.startswith("tests and intervals: paired by persona within each replicate")
               for line in lines)
    verdicts = [line for line in lines if "b against a differs by +0.0" in line]
    assert [v.split(":")[0] for v in verdicts] == \
        ["buy at step 2 (share answering yes)", "fair at step 2 (mean answer)"]
    assert all("no test: 1 replicate cannot separate" in v and "--replicates 5" in v
               for v in verdicts)
    # the file edited since (arm b's world): the same id is refused, nothing is run or rewritten
    con = duckdb.connect(str(tmp_path / "exp.duckdb"), read_only=True)
    before = con.execute("SELECT * FROM experiments ORDER BY ALL").fetchall()
    con.close()
    scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b", world="Prices are rising."))')
    edited = invoke("experiment", path, "--db", tmp_path / "exp.duckdb", "--replicates", "1",
                    "--id", "trial")
    assert edited.exit_code == 1
    assert edited.stderr.strip().splitlines()[-1].endswith(
        "experiment trial: arm 'a' replicate 0 was run with other settings (the scenario file, "
        "--llm or a run option changed since); give a new --id")
    con = duckdb.connect(str(tmp_path / "exp.duckdb"), read_only=True)
    assert con.execute("SELECT * FROM experiments ORDER BY ALL").fetchall() == before
    con.close()


def test_a_stopped_arm_run_says_the_experiment_goes_on_not_the_run(tmp_path, monkeypatch):
    """An arm's run stopped by its endpoint names the experiment, the arm and the replicate, and
    points at the experiment command (re-running it goes on), not at the run's own resume."""
    import personahub.experiments as experiments
    from personahub.core.errors import PersonahubError, ResumableStop

    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b", world="Prices are rising."))')
    real = experiments.run_simulation
    calls = []

    def stops_on_b(config, *args, **kwargs):
        calls.append(config.scenario.arm_world)
        if config.scenario.arm_world:
            raise ResumableStop("run r-b stopped: model endpoint kept failing; resume with "
                                "personahub run --resume r-b --db x.duckdb")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(experiments, "run_simulation", stops_on_b)
    with pytest.raises(PersonahubError) as stopped:  # what the command runs
        experiments.experiment_file(path, db=tmp_path / "e.duckdb", replicates=1)
    text = str(stopped.value)
    assert text.startswith("experiment tiny_launch, arm 'b' replicate 0: run r-b stopped: model "
                           "endpoint kept failing; the same personahub experiment command goes on")
    assert "personahub run --resume" not in text and not isinstance(stopped.value, ResumableStop)
    assert len(calls) == 2  # arm a ran and was kept: the next attempt starts at b


def test_how_a_run_runs_is_no_other_setting_but_what_it_makes_is(tmp_path):
    """An experiment goes on with another --timeout, --concurrency, --cache or --executor (how
    its runs run), but not with other steps or sampling (what they make)."""
    from personahub.experiments import arm_settings
    from personahub.sim.experiment import load_experiment

    scenario, _ = load_experiment(scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))'))
    base = arm_settings(scenario, "a", "offline", {"steps": 2})
    assert arm_settings(scenario, "a", "offline",
                        {"steps": 2, "timeout_s": 5.0, "concurrency": 3, "cache": "record",
                         "executor": "ray", "ray_workers": 2, "max_failed_share": 0.5}) == base
    # the command passes every option, at its default where not given; the API none
    assert arm_settings(scenario, "a", "offline",
                        {"steps": 2, "structured": "auto", "temperature": None}) == base
    for made in ({"steps": 3}, {"steps": 2, "temperature": 0.5}, {"steps": 2, "max_tokens": 9}):
        assert arm_settings(scenario, "a", "offline", made) != base, made
    assert arm_settings(scenario, "b", "offline", {"steps": 2}) != base


def test_agreement_says_whether_an_effect_lies_within_the_reference_interval():
    import pandas as pd

    from personahub.analysis.experiment_effects import agreement

    keys = {"treatment": "b", "control": "a", "unit": "percentage points"}
    base = pd.DataFrame([{"outcome": "buy@2", **keys, "effect": 5.0, "ci_low": -2.0,
                          "ci_high": 12.0, "significant": False},
                         {"outcome": "fair@2", **keys, "effect": 0.5, "ci_low": 0.1,
                          "ci_high": 0.9, "significant": True}])
    compared = pd.DataFrame([{"outcome": "buy@2", **keys, "effect": 11.5, "ci_low": 2.0,
                              "ci_high": 20.0, "significant": True},
                             {"outcome": "fair@2", **keys, "effect": 1.2, "ci_low": 0.6,
                              "ci_high": 1.8, "significant": True},
                             {"outcome": "other@1", **keys, "effect": 0.0, "ci_low": -1.0,
                              "ci_high": 1.0, "significant": False}])
    table = agreement(base, compared, base_label="experiment full",
                      compared_label="experiment arch")
    assert list(table["outcome"]) == ["buy@2", "fair@2"]  # only what both hold
    assert list(table["agrees"]) == [True, False]
    assert "experiment arch estimates +11.5 percentage points, within experiment full's " \
           "interval -2.0 to +12.0" in table["line"][0]
    assert table["line"][1].endswith("the two estimates do not agree.")
    from personahub.analysis.experiment_effects import agreement_verdict

    said = agreement_verdict(table, "experiment full")
    assert said.startswith("agrees on 1 of 2 effects with experiment full")
    assert said.endswith("does not agree on fair@2 (b against a)")
    assert agreement_verdict(table.iloc[:1], "experiment full") == (
        "agrees on 1 of 1 effects with experiment full (each effect within its interval, and "
        "each effect it finds found)")


def test_agreement_with_an_experiment_that_has_no_test_says_so():
    import pandas as pd

    from personahub.analysis.experiment_effects import agreement

    keys = {"outcome": "buy@2", "treatment": "b", "control": "a", "unit": "percentage points"}
    base = pd.DataFrame([{**keys, "effect": 5.0, "ci_low": float("nan"),
                          "ci_high": float("nan"), "significant": False}])
    compared = pd.DataFrame([{**keys, "effect": 1.0, "ci_low": -3.0, "ci_high": 5.0,
                              "significant": False}])
    row = agreement(base, compared, base_label="experiment full",
                    compared_label="experiment arch").iloc[0]
    assert not row.agrees and not row.missed
    assert row.line == ("buy@2, b against a: experiment full has no interval to compare with "
                        "(too few replicates to test; give it at least 3).")


@pytest.mark.slow
def test_an_experiment_with_archetypes_is_compared_with_the_per_agent_one(tmp_path):
    from tests.cli_helpers import invoke

    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    db = tmp_path / "exp.duckdb"
    full = invoke("experiment", path, "--db", db, "--replicates", "3", "--id", "full")
    assert full.exit_code == 0, full.output
    arch = invoke("experiment", path, "--db", db, "--replicates", "3", "--id", "arch",
                  "--archetypes", "2", "--compare", "full")
    assert arch.exit_code == 0, arch.output
    lines = arch.stdout.splitlines()
    compared = [line for line in lines if "experiment arch estimates" in line]
    assert [line.split(",")[0] for line in compared] == ["buy@2", "fair@2"]
    assert all("experiment full's interval" in line for line in compared)
    held = sum(line.endswith(").") for line in compared)
    assert any(line.startswith(f"{held} of 2 effects agree with experiment full (within its "
                               "intervals, and found where it finds one)") for line in lines)
    con = duckdb.connect(str(db), read_only=True)
    try:
        grouped = con.execute(
            "SELECT e.experiment_id, count(DISTINCT a.run_id), max(a.archetype) FROM experiments e "
            "JOIN run_archetypes a USING (run_id) GROUP BY 1").fetchall()
        asked = con.execute(
            "SELECT DISTINCT e.experiment_id, c.purpose FROM experiments e JOIN llm_calls c "
            "USING (run_id) WHERE c.purpose LIKE 'survey%' ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert grouped == [("arch", 6, 1)]  # every arm run grouped into 2 archetypes (0 and 1)
    assert asked == [("arch", "survey_archetype"), ("full", "survey")]
    # the report draws the same comparison, from the recorded runs, with a verdict line
    report = invoke("report", "--experiment", "arch", "--compare", "full", "--db", db,
                    "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>Agreement with experiment full</h2>" in page
    assert f"experiment arch agrees on {held} of 2 effects with experiment full" in page
    assert "<th>compared_effect</th><th>agrees</th>" in page
    assert all(line.replace("'", "&#x27;") in page for line in compared)
    bad = invoke("report", "--experiment", "arch", "--compare", "nope", "--db", db,
                 "--out", tmp_path / "bad")
    assert bad.exit_code == 1 and bad.stderr.strip().count("\n") == 0
    assert "--compare nope: not found" in bad.stderr and not (tmp_path / "bad").exists()
    alone = invoke("report", "--compare", "full", "--db", db, "--out", tmp_path / "alone")
    assert alone.exit_code != 0 and "--compare: give it with --experiment" in alone.stderr
    # a comparison with an experiment that is not there: one line, exit 1, before any run
    missing = invoke("experiment", path, "--db", db, "--replicates", "1", "--id", "new",
                     "--archetypes", "2", "--compare", "nope")
    assert missing.exit_code == 1 and "--compare nope: not found" in missing.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM experiments WHERE experiment_id = 'new'"
                           ).fetchall() == [(0,)]
    finally:
        con.close()


def test_an_arm_run_stopped_by_a_failing_server_points_at_the_experiment(tmp_path):
    """The same as above through the real path: a server failing every call stops the first
    arm's run in the kernel, and the message still names the experiment command."""
    from personahub.core.errors import PersonahubError
    from personahub.experiments import experiment_file
    from personahub.models.fake_server.server import running_server

    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    with running_server(error_rate=1.0) as server, pytest.raises(PersonahubError) as stopped:
        experiment_file(path, db=tmp_path / "e.duckdb", replicates=1,
                        llm=server.base_url + "?model=offline", timeout_s=2, max_retries=0)
    text = str(stopped.value)
    assert text.startswith("experiment tiny_launch, arm 'a' replicate 0: run ")
    assert "the same personahub experiment command goes on" in text
    assert "personahub run --resume" not in text


def test_archetype_elicit_reaches_every_arm_run_and_is_part_of_the_experiment(tmp_path):
    """``experiment --archetype-elicit sample:N`` (as ``run``'s): each arm run asks N members of
    each of its K archetypes per survey; a resume with another value is refused in one line, as
    for ``--archetypes``; a bad value exits 2 in one line before anything is written."""
    from tests.cli_helpers import invoke

    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    db = tmp_path / "exp.duckdb"
    args = ["experiment", path, "--db", db, "--replicates", "1", "--archetypes", "2"]
    sampled = invoke(*args, "--archetype-elicit", "sample:3")
    assert sampled.exit_code == 0, sampled.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        calls = con.execute(
            "SELECT e.arm, s.step, s.n_archetype_calls FROM experiments e JOIN steps s "
            "USING (run_id) ORDER BY ALL").fetchall()
        configs = con.execute(
            "SELECT DISTINCT json_extract_string(j.config, '$.archetype_elicit') FROM experiments "
            "e JOIN jobs j ON j.job_id = e.run_id").fetchall()
    finally:
        con.close()
    # step 2 asks two surveys: 2 archetypes x 3 sampled members x 2 surveys (stated: 2 x 2)
    assert calls == [("a", 1, 0), ("a", 2, 12), ("b", 1, 0), ("b", 2, 12)]
    assert configs == [("sample:3",)]
    for other in (["--archetype-elicit", "stated"], []):
        refused = invoke(*args, *other)
        assert refused.exit_code == 1, refused.output
        assert refused.stderr.strip().splitlines() == [
            "error: experiment tiny_launch: arm 'a' replicate 0 was run with other settings (the "
            "scenario file, --llm or a run option changed since); give a new --id"]
    again = invoke(*args, "--archetype-elicit", "sample:3")
    assert again.exit_code == 0 and "0 runs run now, 2 finished before" in again.stderr
    bad = invoke("experiment", path, "--db", tmp_path / "bad.duckdb", "--archetype-elicit",
                 "sample:0")
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --archetype-elicit must be 'distribution' ('stated') or 'sample:N' with N >= 1, "
        "got 'sample:0'"]
    assert not (tmp_path / "bad.duckdb").exists()
