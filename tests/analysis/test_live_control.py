"""Control a run from the live view (``POST /api/steer``, ``sim/live_control.py``) with the offline
engine: pause, one step, resume, and an event typed in, applied at the tick barrier.

The steered runs go in a worker thread (the API runs a job there as in a notebook) while this
thread steers them through the endpoint, waiting on the runner reaching its barrier (never on
time), so where the event lands is exact: it changes the steps after it and none before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from starlette.testclient import TestClient

from personahub.analysis.live_view import ViewSource, make_app
from personahub.analysis.report_data import run_events
from personahub.api import resume_run, run_simulation
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig
from personahub.results import Run
from personahub.sim.live_control import LiveControl
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts

ROOT = Path(__file__).resolve().parents[2]
EVENT = "A flood closes the harbour road; everyone is talking about it."
INJECT_AT = 3  # the event is typed in while the run waits before step 3
STEPS = 5

SCENARIO = """
from personahub.sim.scenario import Event, GraphGrowth, Memory, PersonaSource, Scenario, Survey

SCENARIO = Scenario(
    name="steered",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=5,
    tasks=("npc_dialogue", "instruction"),
    memory=Memory(observations=3, own=1, summary_terms=6),
    events=(Event(step=2, text="The market opens early on Saturday."),),
    surveys=(Survey(id="mood", steps=(1, 3, 5), question="How is the town doing?",
                    answer="choice", options=("well", "badly", "unsure"), remember=True),),
    seed=11,
)
"""

TABLES = {
    "emissions": "step, agent_id, task, text, target_persona_id, is_duplicate",
    "messages": "step, sender_id, receiver_id, text",
    "survey_answers": "step, survey_id, agent_id, answer_choice",
    "events": "step, event_index, text, audience, n_recipients, source",
    "interventions": "step, intervention_index, action, persona_id, text, applied, source",
    "agent_states": "agent_id, step, state",
    "steps": "step, n_active, n_emissions, n_messages, n_failed, n_answers",
}


def snapshot(db: Path, run_id: str) -> dict[str, list]:
    """The run's tables (no timestamps), run ids replaced so two runs compare."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {table: json.loads(json.dumps(con.execute(
            f"SELECT {cols} FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall(),
            default=str).replace(run_id, "RUN")) for table, cols in TABLES.items()}
    finally:
        con.close()


def by_step(snap: dict[str, list], step: int) -> dict[str, list]:
    """The rows of ``step`` (the first column of every table but agent_states is the step)."""
    return {t: [r for r in rows if (r[1] if t == "agent_states" else r[0]) == step]
            for t, rows in snap.items()}


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("steer")
    (folder / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(12)))
    path = folder / "steered.py"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(scope="module")
def plain(scenario_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    db = tmp_path_factory.mktemp("plain") / "plain.duckdb"
    return snapshot(db, run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db)).run_id)


def steer(client: TestClient, action: str, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/steer", json={"action": action, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def steered_run(scenario_path: Path, db: Path, drive: Callable[[TestClient, LiveControl], None],
                client: Any = None) -> tuple[str | None, BaseException | None]:
    """Run the scenario paused in a worker thread while ``drive`` steers it through the
    endpoint; returns the run id (None if it raised) and what it raised."""
    live_control = LiveControl(paused=True)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            config = RunConfig(scenario=load_scenario(scenario_path), db=db, live_control=live_control)
            result["id"] = run_simulation(config, client=client).run_id
        except BaseException as exc:  # noqa: BLE001  # handed to the test thread
            result["error"] = exc
        finally:
            live_control.finish()

    worker = threading.Thread(target=work)
    worker.start()
    source = ViewSource(lambda: None)  # the live-control endpoints read no table
    try:
        with TestClient(make_app(source, live_control), base_url="http://127.0.0.1") as client_:
            drive(client_, live_control)
    finally:
        live_control.resume() if not live_control.status()["over"] else None
        worker.join(timeout=300)
    assert not worker.is_alive()
    return result.get("id"), result.get("error")


def step_to_event(client: TestClient, live_control: LiveControl) -> None:
    """Step through the steps before INJECT_AT one at a time, type the event while the run waits
    before INJECT_AT, then resume."""
    for step in range(1, INJECT_AT):
        assert live_control.wait_for(step, timeout=120)
        state = client.get("/api/steer").json()
        assert state["paused"] and state["waiting_before"] == step
        steer(client, "step")
    assert live_control.wait_for(INJECT_AT, timeout=120)
    queued = steer(client, "inject", text=EVENT)
    assert queued["queued"] == [EVENT] and queued["committed"] == INJECT_AT - 1
    steer(client, "resume")


@pytest.fixture(scope="module")
def injected(scenario_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("injected") / "injected.duckdb"
    run_id, error = steered_run(scenario_path, db, step_to_event)
    assert error is None and run_id is not None
    return db, run_id


@pytest.mark.slow
def test_an_injected_event_changes_exactly_the_steps_after_it(plain, injected):
    db, run_id = injected
    steered = snapshot(db, run_id)
    for step in range(1, INJECT_AT):
        assert by_step(steered, step) == by_step(plain, step), step
    for step in range(INJECT_AT, STEPS + 1):  # the event is in every agent's memory from here
        assert by_step(steered, step)["emissions"] != by_step(plain, step)["emissions"], step
    agents = len({r[0] for r in steered["agent_states"]})
    assert [r for r in steered["events"] if r[-1] == "view"] == [
        [INJECT_AT, 1, EVENT, "all", 12, "view"]]  # numbered after the scenario's one event
    assert [r for r in steered["events"] if r[-1] == "scenario"] == plain["events"]
    assert steered["interventions"] == [[INJECT_AT, 0, "event", "*", EVENT, True, "view"]]
    assert agents == 12


@pytest.mark.slow  # starts a steered run in a thread (the module's fixture)
def test_the_injected_event_is_in_the_report_and_the_timeline(injected):
    db, run_id = injected
    con = connect(db, read_only=True)
    try:
        events = run_events(con, run_id)
    finally:
        con.close()
    assert [(e.step, e.text, e.source) for e in events] == [
        (2, "The market opens early on Saturday.", "scenario"), (INJECT_AT, EVENT, "view")]
    timeline = Run(job_id=run_id, db=db).timeline()
    assert timeline.events.tolist() == [0, 1, 1, 0, 0]
    injected_texts = timeline.set_index("step").injected
    assert list(injected_texts[INJECT_AT]) == [EVENT]
    assert [len(v) for v in injected_texts] == [0, 0, 1, 0, 0]


def test_the_endpoint_refuses_what_it_cannot_do(tmp_path):
    live_control = LiveControl()
    with TestClient(make_app(ViewSource(lambda: None), live_control), base_url="http://127.0.0.1") as c:
        assert c.get("/api/steer").json()["paused"] is False
        form = c.post("/api/steer", data={"action": "pause"})
        assert form.status_code == 415 and "application/json" in form.json()["error"]
        bad = c.post("/api/steer", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"] == "the body is not JSON"
        unknown = c.post("/api/steer", json={"action": "rewind"})
        assert unknown.status_code == 400 and "pause, resume, step, inject" in unknown.json()["error"]
        empty = c.post("/api/steer", json={"action": "inject", "text": "  "})
        assert empty.status_code == 400 and "non-empty" in empty.json()["error"]
        huge = c.post("/api/steer", json={"action": "inject", "text": "x" * 5000})
        assert huge.status_code == 400 and "at most" in huge.json()["error"]
        assert live_control.status()["queued"] == []
        assert c.post("/api/steer", json={"action": "pause"}).json()["paused"] is True
        granted = c.post("/api/steer", json={"action": "step"}).json()
        assert granted["paused"] and granted["steps_granted"] == 1
        foreign = c.post("/api/steer", json={"action": "resume"},
                         headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403 and live_control.status()["paused"] is True
        rebound = c.post("/api/steer", json={"action": "resume"}, headers={"host": "evil.example"})
        assert rebound.status_code == 403 and live_control.status()["paused"] is True
        live_control.finish()
        over = c.post("/api/steer", json={"action": "resume"})
        assert over.status_code == 409 and "over" in over.json()["error"]
    with TestClient(make_app(ViewSource(lambda: None)), base_url="http://127.0.0.1") as c:
        watch_only = c.post("/api/steer", json={"action": "pause"})
        assert watch_only.status_code == 409 and "only watches" in watch_only.json()["error"]


@pytest.mark.slow
def test_a_paused_run_still_stops_on_an_interrupt(scenario_path, tmp_path):
    """A run waiting at the barrier is interrupted like any other: marked interrupted, resumable."""
    db = tmp_path / "interrupted.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "personahub", "run", str(scenario_path),
                             "--db", str(db), "--view", "--view-port", "0", "--view-paused",
                             "--preview", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                            text=True)
    try:
        url = wait_for_url(proc)
        assert wait_steer(url, lambda s: s["waiting_before"] == 1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    con = duckdb.connect(str(db), read_only=True)
    status = con.execute("SELECT status FROM jobs WHERE kind = 'run'").fetchall()
    con.close()
    assert status == [("interrupted",)]


def wait_for_url(proc: subprocess.Popen) -> str:
    """The view's address, from the line the command prints when it starts serving."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("view: "):
            return line.split()[1]
    raise AssertionError(f"no view line; exit {proc.wait()}")


def wait_steer(url: str, ready: Callable[[dict[str, Any]], bool], tries: int = 600) -> bool:
    """Poll ``GET /api/steer`` until ``ready`` holds (the runner reached its barrier)."""
    import time

    for _ in range(tries):
        with urllib.request.urlopen(url + "api/steer") as answer:
            if ready(json.load(answer)):
                return True
        time.sleep(0.1)
    return False


def post_steer(url: str, action: str, **body: Any) -> dict[str, Any]:
    request = urllib.request.Request(url + "api/steer", method="POST",
                                     data=json.dumps({"action": action, **body}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


@pytest.mark.slow
def test_a_killed_steered_run_resumes_identically(scenario_path, injected, tmp_path):
    """``run --view --view-paused`` steered over HTTP like the page does, killed (SIGKILL) while
    it waits after the injected event's step: the resume ends with the tables of the run that
    was never killed."""
    db = tmp_path / "killed.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "personahub", "run", str(scenario_path),
                             "--db", str(db), "--view", "--view-port", "0", "--view-paused",
                             "--preview", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=tmp_path, text=True)
    try:
        url = wait_for_url(proc)
        for step in range(1, INJECT_AT):
            assert wait_steer(url, lambda s, step=step: s["waiting_before"] == step)
            post_steer(url, "step")
        assert wait_steer(url, lambda s: s["waiting_before"] == INJECT_AT)
        post_steer(url, "inject", text=EVENT)
        post_steer(url, "step")
        assert wait_steer(url, lambda s: s["waiting_before"] == INJECT_AT + 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    con = duckdb.connect(str(db), read_only=True)
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done == INJECT_AT
    resume_run(run_id, db=db)
    assert snapshot(db, run_id) == snapshot(*injected)
