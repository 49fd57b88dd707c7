"""Every shipped scenario runs offline with its seed and shows what distinguishes it."""

import json
from pathlib import Path

import duckdb
import pytest

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def check_fantasy_village(con, run_id):
    kinds = dict(con.execute("select task, count(*) from emissions group by 1").fetchall())
    assert set(kinds) == {"npc_dialogue", "conversation"}
    # dialogue threads span steps
    assert con.execute("select max(n) from (select count(distinct step) n from messages "
                       "group by thread_id)").fetchone()[0] >= 3
    audiences = [a for (a,) in con.execute("select audience from events order by step").fetchall()]
    assert audiences[0] == "within 2 hops of 1" and "all" in audiences
    assert con.execute("select count(*) from interventions where applied").fetchone()[0] == 3


def check_product_launch(con, run_id):
    for step in (1, 3, 5):  # one SQL query per step reads the purchase intent
        rows = con.execute("select answer_choice, count(*) from survey_answers where step = ? and "
                           "survey_id = 'purchase_intent' group by 1", [step]).fetchall()
        assert sum(n for _, n in rows) == con.execute("select count(*) from run_agents").fetchone()[0]
        assert {c for c, _ in rows} <= {"definitely", "probably", "unsure", "probably not",
                                        "definitely not"}
    assert con.execute("select count(*) from survey_answers where step in (2, 4)").fetchone()[0] == 0
    assert con.execute("select min(answer_scale) >= 1 and max(answer_scale) <= 10 from survey_answers "
                       "where survey_id = 'price_fairness'").fetchone()[0]
    assert {n for (n,) in con.execute("select n_active from steps").fetchall()} == {30}
    assert "knowledge_text" in {k for (k,) in con.execute("select task from emissions").fetchall()}


def check_developer_community(con, run_id):
    kinds = {k for (k,) in con.execute("select distinct task from emissions").fetchall()}
    assert kinds == {"tool_spec", "instruction", "reasoning_problem"}
    for (content,) in con.execute("select content from emissions where task = 'tool_spec'").fetchall():
        assert json.loads(content)["function_name"].isidentifier()
    answers = con.execute("select answer_text from survey_answers where survey_id = 'fix_first'").fetchall()
    assert answers and all(a for (a,) in answers)
    actions = [a for (a,) in con.execute("select action from interventions order by 1").fetchall()]
    assert actions == ["add_edge", "remove_edge", "set_persona"]


def check_town_hall_policy(con, run_id):
    before_after = con.execute("select step, count(*) from survey_answers where survey_id = 'support' "
                               "group by 1 order by 1").fetchall()
    assert [s for s, _ in before_after] == [2, 5]
    assert con.execute("select count(*) from survey_answers where survey_id = 'strength' and "
                       "answer_scale between 1 and 7").fetchone()[0] == sum(n for _, n in before_after)
    # answers are remembered (remember=True): later states mention the earlier answer
    assert con.execute("select count(*) from agent_states where step >= 2 and "
                       "state like '%I answered%'").fetchone()[0] > 0
    assert {k for (k,) in con.execute("select distinct task from emissions").fetchall()} == {
        "npc_dialogue", "conversation", "instruction", "math_problem"}


def check_town_hall_deliberate(con, run_id):
    check_town_hall_policy(con, run_id)  # the same town hall, surveys and kinds
    per_step = con.execute("select s.step, s.n_active, count(d.agent_id), count(*) filter "
                           "(where d.action = 'nothing') from steps s left join decisions d "
                           "using (run_id, step) group by all order by 1").fetchall()
    assert all(active == decided for _, active, decided, _ in per_step)  # one decision each
    nothing = sum(n for *_, n in per_step)
    emitted = con.execute("select count(*) from emissions").fetchone()[0]
    assert 0 < nothing and emitted == sum(a for _, a, _, _ in per_step) - nothing
    assert con.execute("select count(*) from llm_calls where purpose = 'decide'").fetchone()[0] \
        == sum(a for _, a, _, _ in per_step)
    # every addressed emission went to the persona its decision named
    assert con.execute("select count(*) from emissions e join decisions d using (run_id, step, "
                       "agent_id) where e.target_persona_id is distinct from d.addressee_id "
                       "or e.task <> d.action").fetchone()[0] == 0


CHECKS = {
    "fantasy_village": check_fantasy_village,
    "product_launch": check_product_launch,
    "developer_community": check_developer_community,
    "town_hall_policy": check_town_hall_policy,
    "town_hall_deliberate": check_town_hall_deliberate,
}


# all five in the full suite; the fast subset keeps three of them
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=() if name in ("fantasy_village", "town_hall_policy", "town_hall_deliberate")
            else pytest.mark.slow)
    for name in sorted(CHECKS)])
def test_scenario_runs_offline_and_shows_its_point(name, tmp_path):
    scenario = load_scenario(SCENARIOS / f"{name}.py")
    db = tmp_path / f"{name}.duckdb"
    summary = run_simulation(RunConfig(scenario=scenario, db=db))
    assert summary.steps == scenario.steps and summary.failed_actions == 0
    con = duckdb.connect(str(db), read_only=True)
    try:  # the summary reports what the database holds (speed is bench/'s business, not a test's)
        assert con.execute("select count(*) from steps where run_id = ?",
                           [summary.run_id]).fetchone()[0] == scenario.steps
        assert con.execute("select count(*) from emissions where run_id = ?",
                           [summary.run_id]).fetchone()[0] == sum(summary.emissions_by_kind.values())
        CHECKS[name](con, summary.run_id)
    finally:
        con.close()


def test_every_scenario_file_loads():
    """Each shipped scenario file, run or not above, defines a valid SCENARIO (a fast check for
    the ones only the slow runs and the README's commands run)."""
    files = sorted(p for p in SCENARIOS.glob("*.py") if p.name != "__init__.py")
    assert {"first_real_run", "developer_community", "riverside_town"} <= {p.stem for p in files}
    for path in files:
        scenario = load_scenario(path)
        assert scenario.steps >= 1 and scenario.source == path.resolve(), path
