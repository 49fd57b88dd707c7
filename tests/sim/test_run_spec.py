"""A run is a kernel job (``pipelines/run.py``): it lists in ``personahub jobs``, resumes through
``personahub resume ID`` to the tables of an uninterrupted run, commits nothing of a step whose
actions the endpoint lost (the resume redoes that step), and a new run of a scenario is not
refused beside a stopped one."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.models.client import CallRecord, StructuredResult
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke
from tests.fakes import Call, FakeClient, unreachable_from_step
from tests.sim.test_resume import SEED, scenario_path, snapshot, uninterrupted  # noqa: F401


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _stopped(scenario_path: Path, db: Path, client: FakeClient, match: str) -> str:  # noqa: F811
    with pytest.raises(PersonahubError, match=match):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db), client=client)
    ((run_id,),) = _rows(db, "SELECT run_id FROM runs")
    return run_id


def lost_once_at(step: int) -> FakeClient:
    """The offline client, except that the first call of ``step`` comes back failed with an
    endpoint error (as after the seam's retries): the other actions of the step are answered."""
    lost: list[int] = []

    def answer(call: Call) -> StructuredResult | None:
        if call.step == step and not lost:
            lost.append(step)
            record = CallRecord(purpose=call.purpose, model="offline", attempt=1, status="error",
                                latency_ms=1.0, error="HTTP 503: overloaded", step=step,
                                persona_id=call.persona_id)
            return StructuredResult(None, [record])
        return None

    return FakeClient(answer, seed=SEED)


@pytest.mark.slow
def test_a_step_with_an_action_lost_to_the_endpoint_is_not_committed_and_resume_redoes_it(
        scenario_path: Path, tmp_path: Path, uninterrupted: dict) -> None:  # noqa: F811
    db = tmp_path / "lost.duckdb"
    run_id = _stopped(scenario_path, db, lost_once_at(3), "step 3: 1 of .* lost to the endpoint")
    assert _rows(db, "SELECT steps_done, status FROM runs JOIN jobs ON job_id = run_id") == \
        [(2, "failed")]
    for table in ("steps", "emissions", "survey_answers", "agent_states", "llm_calls"):
        assert _rows(db, f"SELECT count(*) FROM {table} WHERE step >= 3") == [(0,)], table
    assert _rows(db, "SELECT count(*) FROM emissions WHERE step = 2")[0][0] > 0
    resume_run(run_id, db=db)
    assert snapshot(db, run_id) == uninterrupted


@pytest.mark.slow
def test_personahub_jobs_lists_a_run_and_personahub_resume_finishes_it(
        scenario_path: Path, tmp_path: Path, uninterrupted: dict) -> None:  # noqa: F811
    db = tmp_path / "stopped.duckdb"
    run_id = _stopped(scenario_path, db, FakeClient(unreachable_from_step(3), seed=SEED),
                      "unreachable")
    listed = json.loads(invoke("jobs", "--db", db, "--json").stdout)
    assert [(j["job_id"], j["kind"], j["status"], j["what"]) for j in listed] == \
        [(run_id, "run", "failed", "resumable")]
    result = invoke("resume", run_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert f"run {run_id} (resumable): 5 steps" in result.stdout
    assert snapshot(db, run_id) == uninterrupted
    again = invoke("resume", run_id, "--db", db)
    assert again.exit_code == 0 and "already finished" in again.stderr
    assert snapshot(db, run_id) == uninterrupted


def test_a_new_run_beside_a_stopped_one_is_not_refused(scenario_path: Path,  # noqa: F811
                                                       tmp_path: Path) -> None:
    """Two runs of one scenario are two experiments (as before the kernel): the stopped one
    stays as it was, resumable by its id."""
    db = tmp_path / "twice.duckdb"
    first = _stopped(scenario_path, db, FakeClient(unreachable_from_step(2), seed=SEED),
                     "unreachable")
    second = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, steps=1))
    assert second.run_id != first
    assert dict(_rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'run'")) == \
        {first: "failed", second.run_id: "finished"}
