"""SQL outcomes of an experiment (``Outcome(sql=...)``): a query over a run's tables giving one
number per agent or per run, ``$run_id`` bound as a parameter, a wrong query or shape refused in
one line naming the outcome."""

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from personahub.core.errors import PersonahubError
from personahub.sim.experiment import Arm, Experiment, Outcome, load_experiment
from personahub.sim.experiment_store import sql_outcome_values
from personahub.sim.scenario import ScenarioValueError

PER_AGENT = "SELECT agent_id, count(*) AS value FROM said WHERE run_id = $run_id GROUP BY agent_id"
PER_RUN = "SELECT count(*) AS value FROM said WHERE run_id = $run_id"


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE said (run_id VARCHAR, agent_id INTEGER, text VARCHAR)")
    con.execute("INSERT INTO said VALUES ('r1', 1, 'a'), ('r1', 1, 'b'), ('r1', 2, 'c'), "
                "('r2', 1, 'd'), ('it''s', 3, 'e')")
    return con


def test_per_agent_and_per_run_values_with_the_run_bound(con):
    got = sql_outcome_values(con, ["r1", "r2"], "talk", PER_AGENT)
    assert sorted(map(tuple, got[["run_id", "agent_id", "value"]].values.tolist())) == \
        [("r1", 1, 2.0), ("r1", 2, 1.0), ("r2", 1, 1.0)]
    per_run = sql_outcome_values(con, ["r1", "r2", "r3"], "talk", PER_RUN)
    assert per_run["value"].tolist() == [3.0, 1.0, 0.0] and per_run["agent_id"].isna().all()
    # the id is a bound parameter: a quote in it is a value, not SQL
    assert sql_outcome_values(con, ["it's"], "talk", PER_RUN)["value"].tolist() == [1.0]


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM nowhere WHERE run_id = $run_id",
     "outcome 'talk': its sql failed on run r1: Catalog Error: Table with name nowhere"),
    ("SELECT agent_id, text FROM said WHERE run_id = $run_id",
     "outcome 'talk': its sql must return the columns agent_id, value (per agent) or value "
     "(per run), got agent_id, text"),
    ("SELECT 1 AS value FROM said WHERE run_id = $run_id",
     "outcome 'talk': its sql returned 3 rows without agent_id on run r1"),
    ("SELECT agent_id, 1 AS value FROM said WHERE run_id = $run_id",
     "outcome 'talk': its sql returned agent 1 more than once on run r1"),
    ("SELECT agent_id, max(text) AS value FROM said WHERE run_id = $run_id GROUP BY agent_id",
     "outcome 'talk': its sql returned a value that is no number on run r1"),
])
def test_a_failing_or_misshapen_query_is_one_line_naming_the_outcome(con, sql, message):
    with pytest.raises(PersonahubError) as info:
        sql_outcome_values(con, ["r1"], "talk", sql)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_sql_outcome_fields_are_checked():
    outcome = Outcome(sql=PER_RUN, name="talk")
    assert outcome.is_sql and not outcome.is_share and outcome.name == "talk"
    with pytest.raises(ScenarioValueError, match="outcome.sql: give the outcome a name="):
        Outcome(sql=PER_RUN)
    with pytest.raises(ScenarioValueError, match=r"outcome 'talk': sql must read the run from "
                                                 r"the parameter \$run_id"):
        Outcome(sql="SELECT 1 AS value", name="talk")
    with pytest.raises(ScenarioValueError, match="give either sql or survey"):
        Outcome(sql=PER_RUN, name="talk", survey="q", step=1)
    with pytest.raises(ScenarioValueError, match="outcome.survey must be a survey id"):
        Outcome(step=1)


SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Event, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny_sql", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    events=(Event(step=1, text="A new e-bike goes on sale."),),
    surveys=(Survey(id="fair", steps=(2,), answer="scale", low=1, high=10,
                    question="Fair price?"),),
    seed=5)
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="b")), replicates=1, outcomes=(
    Outcome(survey="fair", step=2),
    Outcome(name="fair_sql", sql="SELECT agent_id, answer_scale AS value FROM survey_answers "
                                 "WHERE run_id = $run_id AND survey_id = 'fair'"),
    Outcome(name="answers", sql="SELECT count(*) AS value FROM survey_answers "
                                "WHERE run_id = $run_id")))
'''


def test_an_experiment_reads_sql_outcomes_from_its_runs(tmp_path: Path):
    """Two small runs: the SQL outcome over survey_answers equals the survey outcome, and a
    per-run outcome gives one value per run (too few for a row of the effect table)."""
    from personahub.experiments import experiment

    path = tmp_path / "tiny_sql.py"
    path.write_text(SCENARIO)
    scenario, spec = load_experiment(path)
    assert [o.is_sql for o in spec.outcomes] == [False, True, True]
    result = experiment(path, db=tmp_path / "exp.duckdb")
    values = result.values.set_index(["outcome", "run_id", "agent_id"])["value"]
    survey = values.loc["fair@2"].sort_index()
    assert len(survey) == 16 and survey.equals(values.loc["fair_sql"].sort_index())
    per_run = result.values[result.values.outcome == "answers"]
    assert per_run["value"].tolist() == [8.0, 8.0] and per_run["agent_id"].isna().all()
    table = result.effects.set_index("outcome")
    assert list(table.index) == ["fair@2", "fair_sql"]
    assert table.loc["fair_sql", "unit"] == "units of the query's value"
    assert table.loc["fair_sql", "effect"] == pytest.approx(table.loc["fair@2", "effect"])
    assert table.loc["fair_sql", "verdict"].startswith("fair_sql (mean of its SQL values): ")

    # the report draws the survey outcome over the steps and every outcome in the forest plot
    from tests.cli_helpers import invoke
    cli = invoke("report", "--experiment", result.experiment_id, "--db", tmp_path / "exp.duckdb",
                 "--out", tmp_path / "report")
    assert cli.exit_code == 0, cli.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "fair_sql" in page and "fair@2" in page


def test_a_bad_sql_outcome_stops_the_reading_naming_it(tmp_path: Path):
    from personahub.experiments import read_experiment

    db = tmp_path / "empty.duckdb"
    from personahub.core.store import connect
    connect(db).close()
    spec = Experiment(arms=(Arm(name="a"), Arm(name="b")),
                      outcomes=(Outcome(name="bad", sql="SELECT x FROM runs WHERE run_id = $run_id"),))
    runs = pd.DataFrame({"arm": ["a", "b"], "replicate": [0, 0], "run_id": ["r1", "r2"]})
    with pytest.raises(PersonahubError, match="outcome 'bad': its sql failed on run r1: Binder"):
        read_experiment(spec, runs, db=db)
