"""What a notebook user calls: ``personahub.experiment`` inside a running event loop and its
await twin, ``progress=`` on every job function, carve conditions given as one string, and
errors that name Python calls rather than command lines."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

import personahub
from personahub.core.errors import PersonahubError
from personahub.python_names import python_message
from tests.sim.test_experiment_run import scenario_file

ROOT = Path(__file__).resolve().parent.parent
ARMS = '(Arm(name="a"), Arm(name="b"))'

#: every job function of the API, evaluate and experiment included
JOBS = ["run_scenario", "synthesize", "text_to_persona", "expand", "dedup", "interview", "judge",
        "evaluate", "calibrate", "write_population", "experiment", "resume"]


def _statuses(db: Path) -> list[str]:
    return sorted(personahub.jobs(db=db)["status"])


@pytest.mark.slow
def test_experiment_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A notebook cell runs in an event loop: ``personahub.experiment()`` there raised
    "Cannot run the event loop while another loop is running" and left an interrupted run."""
    path, db = scenario_file(tmp_path, ARMS), tmp_path / "cell.duckdb"

    async def cell() -> personahub.experiments.ExperimentResult:
        return personahub.experiment(path, db=db, replicates=1)

    result = asyncio.run(cell())
    assert len(result.ran) == 2 and len(result.effects) == 2
    assert _statuses(db) == ["finished", "finished"]


@pytest.mark.slow
def test_experiment_has_an_await_twin(tmp_path: Path) -> None:
    path, db = scenario_file(tmp_path, ARMS), tmp_path / "twin.duckdb"
    result = asyncio.run(personahub.experiment_async(path, db=db, replicates=1, progress=False))
    assert len(result.ran) == 2 and _statuses(db) == ["finished", "finished"]
    assert inspect.iscoroutinefunction(personahub.experiment_async)


@pytest.mark.parametrize("name", JOBS)
def test_every_job_function_and_its_twin_takes_progress(name: str) -> None:
    """``progress=`` was refused by evaluate and experiment as an unknown option."""
    for function in (getattr(personahub, name), getattr(personahub, f"{name}_async")):
        assert "progress" in inspect.signature(function).parameters, function.__name__


@pytest.mark.slow
def test_experiment_reports_progress_within_each_arm_run(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int | None]] = []
    personahub.experiment(scenario_file(tmp_path, ARMS), db=tmp_path / "p.duckdb", replicates=1,
                          progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert ("arm a #0: step", 2, 2) in seen and ("arm b #0: step", 2, 2) in seen


@pytest.mark.slow
def test_evaluate_reports_progress(tmp_path: Path) -> None:
    db = tmp_path / "math.duckdb"
    job = personahub.synthesize("math_problem", db=db, n=6, progress=False)
    seen: list[str] = []
    summary = personahub.evaluate(job=job.job_id, solvers=["offline?seed=1", "offline?seed=2"],
                                  db=db, test_n=3, progress=lambda phase, *_: seen.append(phase))
    assert seen and summary.job_id


@pytest.mark.slow
def test_a_carve_string_is_one_condition(tmp_path: Path) -> None:
    """``carve="occupation~nurse"`` was read character by character ("carve='o': expected KEY
    OP VALUE"); one string is one condition, and a list is a list of them."""
    db = tmp_path / "hub.duckdb"
    personahub.run_scenario(scenario_file(tmp_path, ARMS), db=db, progress=False)
    one = personahub.synthesize("math_problem", db=db, n=2, carve="hop=0", progress=False)
    both = personahub.synthesize("math_problem", db=db, n=2, carve=["hop=0", "hop<1"], seed=1,
                                 progress=False)
    assert len(one.items()) == 2 and len(both.items()) == 2
    with pytest.raises(PersonahubError, match="carve='nurse'"):
        personahub.synthesize("math_problem", db=db, n=2, carve="nurse", progress=False)


def test_calibrates_carve_string_is_one_condition(tmp_path: Path) -> None:
    from personahub.api import calibration_config

    config = calibration_config("s.csv", "pop-1", "offline", 0, 5, {"carve": "age>30"})
    assert config.carve == ("age>30",)
    assert calibration_config("s.csv", "pop-1", "offline", 0, 5,
                              {"carve": ["age>30", "sex=female"]}).carve == ("age>30", "sex=female")


@pytest.mark.slow
def test_a_missing_population_names_the_python_call(tmp_path: Path) -> None:
    """``personahub.calibrate`` said "draw one with personas sample-population", a command."""
    db = tmp_path / "hub.duckdb"
    personahub.write_population(ROOT / "examples" / "population_marginals.csv", n=20, db=db,
                                progress=False)
    survey = tmp_path / "survey.csv"
    from tests.pipelines.calibrate_fixtures import write_survey

    write_survey(survey)
    with pytest.raises(PersonahubError) as caught:
        personahub.calibrate(survey, population="pop-0000000000", db=db, progress=False)
    message = str(caught.value)
    assert "personahub.write_population(" in message and "sample-population" not in message


@pytest.mark.slow
def test_a_stopped_run_says_how_to_resume_it_from_python(tmp_path: Path) -> None:
    """A run stopped by a failing server said "resume with personahub run --resume ID --db D"."""
    from personahub.models.fake_server.server import running_server

    db = tmp_path / "stopped.duckdb"
    with running_server(error_rate=1.0) as server, pytest.raises(PersonahubError) as caught:
        personahub.run_scenario(scenario_file(tmp_path, ARMS), db=db, progress=False,
                                llm=server.base_url + "?model=offline", timeout_s=2,
                                max_retries=0)
    message = str(caught.value)
    run_id = personahub.jobs(db=db)["job_id"][0]
    assert f"personahub.resume('{run_id}', db='{db}')" in message, message
    assert "personahub run" not in message and "--" not in message


@pytest.mark.slow
def test_an_experiment_stopped_by_a_failing_server_names_the_python_call(tmp_path: Path) -> None:
    from personahub.models.fake_server.server import running_server

    path = scenario_file(tmp_path, ARMS)
    with running_server(error_rate=1.0) as server, pytest.raises(PersonahubError) as caught:
        personahub.experiment(path, db=tmp_path / "e.duckdb", replicates=1,
                              llm=server.base_url + "?model=offline", timeout_s=2, max_retries=0)
    message = str(caught.value)
    assert "the same personahub.experiment(...) call goes on" in message, message
    assert "personahub experiment command" not in message


@pytest.mark.parametrize(("command", "python"), [
    ("resume with personahub run --resume r-1 --db x.duckdb",
     "resume with personahub.resume('r-1', db='x.duckdb')"),
    ("failed (resume to retry: personahub synthesize --resume J --db d)",
     "failed (resume to retry: personahub.resume('J', db='d'))"),
    ("resume with personahub personas expand --resume exp-1 --db h.duckdb",
     "resume with personahub.resume('exp-1', db='h.duckdb')"),
    ("finish it first (personahub resume calib-2)", "finish it first (personahub.resume('calib-2'))"),
    ("(draw one with personas sample-population)", "(draw one with personahub.write_population(...))"),
    ("give a new --id", "give a new experiment_id"),
])
def test_command_lines_are_said_as_calls(command: str, python: str) -> None:
    assert python_message(command, {"id": "experiment_id"}) == python
