"""The live view of an experiment's arms side by side: ``/api/experiment`` for a finished and a
partly finished experiment (offline), ``view --experiment`` and ``experiment --view``."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import duckdb
import pytest
from starlette.testclient import TestClient

from personahub.analysis.live_view import (
    ExperimentFeed,
    ExperimentSnapshots,
    ExperimentView,
    ViewSource,
    make_app,
    start_view,
)
from personahub.core.store import connect
from personahub.experiments import experiment
from tests.cli_helpers import invoke, one_line_error, usage_error

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Event, GraphGrowth, PersonaSource
from personahub.sim.scenario import Scenario, Survey
SCENARIO = Scenario(
    name="tiny_live", personas=PersonaSource(limit=6),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1, 2), options=("yes", "no", "unsure"), question="Buy it?"),),
    seed=11)
EXPERIMENT = Experiment(
    arms=(Arm(name="quiet"),
          Arm(name="rumour", add_events=(Event(step=1, text="A rumour: it breaks."),))),
    replicates=2, outcomes=(Outcome(survey="buy", step=2, options=("yes",)),))
'''


def scenario_file(folder: Path) -> Path:
    path = folder / "tiny_live.py"
    path.write_text(SCENARIO)
    return path


class Stop(Exception):
    """Raised by ``on_run`` to stop an experiment after its first run."""


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exp_live")
    db = folder / "exp.duckdb"
    experiment(scenario_file(folder), db=db)
    return db


@pytest.fixture(scope="module")
def partial_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exp_partial")
    db = folder / "exp.duckdb"

    def stop(arm: str, replicate: int, run_id: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        experiment(scenario_file(folder), db=db, on_run=stop)
    return db


def get_experiment(db: Path, experiment_id: str) -> tuple[int, dict]:
    source = ViewSource(lambda: connect(db, read_only=True))
    try:
        with TestClient(make_app(source), base_url="http://127.0.0.1") as c:
            answer = c.get(f"/api/experiment?id={experiment_id}")
            return answer.status_code, answer.json()
    finally:
        source.close()


def shares(db: Path, run_ids: list[str]) -> dict[int, tuple[int, float]]:
    """(answers, % yes) per step of ``buy`` over these runs, straight from survey_answers."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT step, count(*), 100 * avg((answer_choice = 'yes')::INT) "
                           "FROM survey_answers WHERE survey_id = 'buy' AND run_id IN "
                           "(SELECT unnest(?)) GROUP BY step", [run_ids]).fetchall()
    finally:
        con.close()
    return {int(step): (int(n), float(share)) for step, n, share in rows}


def test_a_finished_experiment_shows_each_arm_over_the_steps(finished_db):
    status, state = get_experiment(finished_db, "tiny_live")
    assert status == 200 and state["design"] == "between"
    assert [(a["name"], a["control"], a["replicates_done"], len(a["runs"]))
            for a in state["arms"]] == [("quiet", True, 2, 2), ("rumour", False, 2, 2)]
    [outcome] = state["outcomes"]
    assert outcome["name"] == "buy@2" and outcome["unit"] == "% of agents"
    assert outcome["steps"] == [1, 2]
    for arm in state["arms"]:
        series = outcome["series"][arm["name"]]
        expected = shares(finished_db, arm["runs"])
        assert [p["step"] for p in series] == [1, 2]
        for point in series:
            n, share = expected[point["step"]]
            assert point["n"] == n == 12  # 6 agents x 2 replicates
            assert point["value"] == pytest.approx(share)
            assert point["ci_low"] <= point["value"] <= point["ci_high"]
    json.dumps(state)


def test_a_partly_finished_experiment_shows_the_runs_landed_so_far(partial_db):
    status, state = get_experiment(partial_db, "tiny_live")
    assert status == 200
    done = {a["name"]: (a["replicates_done"], len(a["runs"])) for a in state["arms"]}
    assert done == {"quiet": (1, 1), "rumour": (0, 0)}
    series = state["outcomes"][0]["series"]
    assert series["rumour"] == []
    assert [p["n"] for p in series["quiet"]] == [6, 6]


def test_an_unknown_experiment(finished_db, tmp_path):
    status, state = get_experiment(finished_db, "nope")
    assert status == 404 and state["error"] == "no experiment nope"
    assert "--experiment nope: no such experiment in" in one_line_error(
        invoke("view", "--db", finished_db, "--experiment", "nope", "--port", 0))
    assert "--run and --experiment: give one" in usage_error(
        invoke("view", "--db", finished_db, "--experiment", "x", "--run", "y", "--port", 0))


@pytest.mark.slow  # starts the view's server (uvicorn)
def test_served_on_loopback_with_its_page(finished_db):
    source = ViewSource(lambda: connect(finished_db, read_only=True))
    handle = start_view(source, port=0, experiments=ExperimentFeed(source, "tiny_live"))
    try:
        with urllib.request.urlopen(handle.url + "api/experiment", timeout=10) as res:
            assert [a["replicates_done"] for a in json.load(res)["arms"]] == [2, 2]
        with urllib.request.urlopen(handle.url + "experiment?id=tiny_live", timeout=10) as res:
            page = res.read().decode()
        assert "/static/experiment.js" in page
        with urllib.request.urlopen(handle.url + "static/experiment.js", timeout=10) as res:
            script = res.read().decode()
        assert "/api/experiment" in script and "cdn" not in script.lower()
    finally:
        handle.stop()


def test_snapshots_wait_then_follow_the_database(partial_db):
    feed = ExperimentSnapshots(partial_db, "tiny_live", ["quiet", "rumour"], 2)
    waiting = feed.state("tiny_live")
    assert waiting is not None and waiting["waiting"] and waiting["outcomes"] == []
    assert feed.state("other") is None
    feed.refresh()
    state = feed.state("tiny_live")
    assert state is not None and "waiting" not in state and state["replicates_planned"] == 2
    assert [a["replicates_done"] for a in state["arms"]] == [1, 0]
    with TestClient(make_app(None, experiments=feed), base_url="http://127.0.0.1") as c:
        assert c.get("/api/experiment").json()["arms"][0]["replicates_done"] == 1
        assert c.get("/api/state").status_code == 409  # the runs hold the database in turn


@pytest.mark.slow  # starts the view's server (uvicorn) and an experiment
def test_experiment_view_follows_the_runs_as_they_land(tmp_path, monkeypatch):
    """``experiment --view``: the page answers while the experiment runs, one more run each
    time one lands, and after it ends (``linger`` is replaced: it would wait for Ctrl-C)."""
    seen: list[list[int]] = []
    landed = ExperimentView.landed

    def fetch(view: ExperimentView) -> dict:
        url = view.url.replace("experiment?id=", "api/experiment?id=")
        with urllib.request.urlopen(url, timeout=10) as res:
            return json.load(res)

    def on_landed(view: ExperimentView) -> None:
        landed(view)
        seen.append([a["replicates_done"] for a in fetch(view)["arms"]])

    def linger(view: ExperimentView) -> None:
        seen.append([a["replicates_done"] for a in fetch(view)["arms"]])
        view.stop()

    monkeypatch.setattr(ExperimentView, "landed", on_landed)
    monkeypatch.setattr(ExperimentView, "linger", linger)
    result = invoke("experiment", scenario_file(tmp_path), "--db", tmp_path / "exp.duckdb",
                    "--view", "--view-port", 0)
    assert result.exit_code == 0, result.output
    assert "view: http://127.0.0.1:" in result.stderr and "experiment?id=tiny_live" in result.stderr
    assert seen == [[1, 0], [1, 1], [2, 1], [2, 2], [2, 2]]
