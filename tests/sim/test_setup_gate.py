"""A run's setup expansion whose answers the quality gate mostly rejects goes on with the graph it
has and says so in one line; a scenario may ask it to stop instead; the endpoint's failures still
stop it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub import api
from personahub.api import run_simulation
from personahub.core.errors import PersonahubError
from personahub.models.client import CallRecord, StructuredResult
from personahub.pipelines.run import RUN, RunConfig
from personahub.sim.runner import load_scenario_personas
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke
from tests.fakes import Call, FakeClient

SEED = 11  # the scenario_file fixture's seed
BARE_NAME = "Lilith Maddox Carter"  # the gate's bare_name rule rejects it


def scenario_of(scenario_file, stop: bool = False) -> Path:
    extra = ", stop_on_rejected=True" if stop else ""
    return scenario_file(n_personas=6, steps=1, body=None,
                         graph=f"GraphGrowth(hops=1, fanout=2, acquaintances=2{extra})")


def start_ids(path: Path) -> list[str]:
    return [p.persona_id for p in load_scenario_personas(load_scenario(path))]


def rejecting(persona_ids: list[str]):
    """Every related person proposed for these personas is a bare name (on every attempt)."""
    def edit(call: Call, result: StructuredResult) -> StructuredResult:
        if call.purpose == "expand" and call.persona_id in persona_ids and result.value is not None:
            for person in result.value.people:
                person.persona = BARE_NAME
        return result
    return edit


def failing_at_endpoint(persona_ids: list[str]):
    """Expansion calls about these personas fail with HTTP 503 (as after the seam's retries)."""
    def answer(call: Call) -> StructuredResult | None:
        if call.purpose == "expand" and call.persona_id in persona_ids:
            record = CallRecord(purpose="expand", model="offline", attempt=1, status="error",
                                latency_ms=1.0, error="HTTP 503: overloaded",
                                persona_id=call.persona_id)
            return StructuredResult(None, [record])
        return None
    return answer


def status_of(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status FROM runs JOIN jobs ON job_id = run_id").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_a_setup_whose_answers_are_mostly_rejected_goes_on_and_says_so(scenario_file, tmp_path):
    path = scenario_of(scenario_file)
    db = tmp_path / "gate.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db),
                             client=FakeClient(edit=rejecting(start_ids(path)[1:]), seed=SEED))
    assert status_of(db) == [("finished",)]
    line = "setup expansion kept 2 of 12 answers (rejected: bare_name 10)"
    assert summary.setup_note == line
    lines = RUN.report(summary, db)
    assert lines.count(line) == 1  # one line, in what the run prints


@pytest.mark.slow
def test_the_run_command_prints_the_setup_line_once(scenario_file, tmp_path, monkeypatch):
    path = scenario_of(scenario_file)
    client = FakeClient(edit=rejecting(start_ids(path)[1:]), seed=SEED)
    real = api.run_simulation
    monkeypatch.setattr(api, "run_simulation", lambda config, **kw: real(config, client=client, **kw))
    result = invoke("run", path, "--db", tmp_path / "cli.duckdb")
    assert result.exit_code == 0, result.output
    line = "note: setup expansion kept 2 of 12 answers (rejected: bare_name 10)"
    assert [x.strip() for x in result.stderr.splitlines()].count(line) == 1


@pytest.mark.slow
def test_a_scenario_that_asks_to_stop_on_rejected_answers_stops(scenario_file, tmp_path):
    path = scenario_of(scenario_file, stop=True)
    db = tmp_path / "strict.duckdb"
    with pytest.raises(PersonahubError) as stop:
        run_simulation(RunConfig(scenario=load_scenario(path), db=db),
                       client=FakeClient(edit=rejecting(start_ids(path)[1:]), seed=SEED))
    assert "5 of 6 actions failed in a batch of hop 1, over --max-failed-share 0.8" in str(stop.value)
    assert status_of(db) == [("failed",)]


@pytest.mark.slow
def test_endpoint_failures_still_stop_a_setup_that_goes_on_past_rejections(scenario_file, tmp_path):
    path = scenario_of(scenario_file)
    ids = start_ids(path)
    db = tmp_path / "down.duckdb"
    with pytest.raises(PersonahubError) as stop:
        run_simulation(RunConfig(scenario=load_scenario(path), db=db),
                       client=FakeClient(failing_at_endpoint(ids[1:3]), rejecting(ids[3:]),
                                         seed=SEED))
    # the endpoint is named, not the gate: rejections are tolerated, the server's errors are not
    assert str(stop.value).startswith("setup: 2 of 6 expansion calls failed (most often: HTTP 503: "
                                      "overloaded); resume with personahub run --resume ")
    assert status_of(db) == [("failed",)]
