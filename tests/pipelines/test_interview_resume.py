"""An interview is a resumable job: its answers are committed batch
by batch, so a crash, ``kill -9``, Ctrl-C or SIGTERM keeps them; ``interview --resume`` and
``personahub resume`` ask only the agents not yet answered, to the rows an uninterrupted
interview writes. A server that never answers stops judge and interview in one line."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from personahub.api import run_simulation
from personahub.core.contracts import CallRecord, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.interviews import run_interview
from personahub.pipelines.interview import InterviewConfig
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.fakes import Call, FakeClient, crash_after
from tests.pipeline_helpers import rows
from tests.sim.test_failure_exits import one_line_error
from tests.sim.test_recovery import signal_after_start
from tests.sim.test_soak import kill_after_start

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, Memory, PersonaSource, Scenario

SCENARIO = Scenario(name="asked", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=3), steps=2,
                    tasks=("npc_dialogue", "instruction"), memory=Memory(observations=2, own=1),
                    world="A river town with a ferry.", seed=6)
"""
QUESTION = "What do you remember of the last days?"
# the rows an interview makes, without what differs between two (ids, times)
ANSWERS = ("SELECT agent_id, persona_id, step, question, answer, status, error FROM interviews "
           "WHERE batch_id = ? ORDER BY agent_id")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 2-step run of 10 agents (copied per test)."""
    folder = tmp_path_factory.mktemp("asked")
    (folder / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(10)))
    (folder / "scenario.py").write_text(SCENARIO)
    db = folder / "run.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(folder / "scenario.py"), db=db))
    return db, summary.run_id


def copy(run: tuple[Path, str], to: Path) -> Path:
    to.write_bytes(run[0].read_bytes())
    return to


def config(db: Path, run_id: str, **more: Any) -> InterviewConfig:
    return InterviewConfig(run_id=run_id, question=QUESTION, carve=("hop=0",), db=str(db),
                           batch_size=3, **more)


def whole(run: tuple[Path, str], tmp_path: Path) -> list[tuple[Any, ...]]:
    """The answers of an uninterrupted interview of the run's 10 agents."""
    db = copy(run, tmp_path / "whole.duckdb")
    result = run_interview(config(db, run[1]), db)
    assert len(result.rows) == 10 and result.failed == 0
    return rows(db, ANSWERS, [result.batch_id])


@pytest.mark.slow
def test_a_crashed_interview_keeps_its_batches_and_resumes_to_the_whole(run, tmp_path):
    expected = whole(run, tmp_path)
    db = copy(run, tmp_path / "cut.duckdb")
    with pytest.raises(PersonahubError, match="failed: Interrupted: simulated crash"):
        run_interview(config(db, run[1]), db,
                      client=FakeClient(answer=crash_after(6, "interview"), seed=6))
    (job_id, status), = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'interview'")
    assert status == "failed" and len(rows(db, ANSWERS, [job_id])) == 6  # two batches of three
    asked = FakeClient(seed=6)
    result = run_interview({"db": str(db)}, db, resume=job_id, client=asked)
    assert asked.calls == 4  # only the agents not yet answered
    assert result.batch_id == job_id and len(result.rows) == 10
    assert rows(db, ANSWERS, [job_id]) == expected
    assert rows(db, "SELECT status, parent_id FROM jobs WHERE job_id = ?", [job_id]) == [
        ("finished", run[1])]


@pytest.mark.slow
def test_a_failed_answer_is_asked_again_on_resume_and_replaced(run, tmp_path):
    expected = whole(run, tmp_path)
    db = copy(run, tmp_path / "weak.duckdb")

    def third_fails(call: Call) -> StructuredResult[Any] | None:
        if call.number != 3:
            return None
        return StructuredResult(None, [CallRecord(purpose="interview", model="fake", attempt=1,
                                                  status="invalid", latency_ms=1.0,
                                                  error="planted failure")])

    first = run_interview(config(db, run[1]), db, client=FakeClient(answer=third_fails, seed=6))
    assert first.failed == 1
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [first.batch_id]) == [("partial",)]
    again = invoke("interview", "--resume", first.batch_id, "--db", db)
    assert again.exit_code == 0, again.output
    assert rows(db, ANSWERS, [first.batch_id]) == expected  # one row per agent, all answered
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [first.batch_id]) == [("finished",)]


@pytest.mark.slow
def test_the_same_interview_again_while_unfinished_offers_the_resume(run, tmp_path):
    db = copy(run, tmp_path / "twice.duckdb")
    with pytest.raises(PersonahubError):
        run_interview(config(db, run[1]), db,
                      client=FakeClient(answer=crash_after(3, "interview"), seed=6))
    (job_id,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'interview'")
    line = one_line_error(invoke("interview", "--run", run[1], "--carve", "hop=0", "--db", db,
                                 QUESTION))
    assert f"resume it with personahub interview --resume {job_id}" in line
    fresh = invoke("interview", "--run", run[1], "--carve", "hop=0", "--db", db, "--fresh",
                   QUESTION)
    assert fresh.exit_code == 0, fresh.output
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("superseded",)]


# -- a real process: kill -9, Ctrl-C, SIGTERM ---------------------------------------------------

# four batches of three agents... of ten (3, 3, 3, 1), each answered after 0.5 s (>= 2 s): the
# kill or signal, 0.7 s after the start, finds the interview going
SLOW = ["--carve", "hop=0", "--batch-size", "3", "--offline-latency", "0.5"]


@pytest.mark.slow
def test_kill_9_then_resume_equals_the_uninterrupted_interview(run, tmp_path):
    expected = whole(run, tmp_path)
    db = copy(run, tmp_path / "killed.duckdb")
    job_id = kill_after_start(["interview", "--run", run[1], "--db", str(db), *SLOW, QUESTION],
                              0.7)
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("running",)]
    kept = len(rows(db, ANSWERS, [job_id]))
    assert kept < 10
    resumed = invoke("resume", job_id, "--db", db)  # any job by its id, through the kernel
    assert resumed.exit_code == 0, resumed.output
    assert rows(db, ANSWERS, [job_id]) == expected
    answered = rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'ok'",
                    [job_id])[0][0]
    assert answered == 10  # each agent answered once: nothing asked twice was committed
    print(f"\ninterview, kill -9 0.7 s after start: {kept} of 10 answers committed")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"),
                                                  (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_leaves_the_interview_interrupted_in_one_line(run, tmp_path, sig, code, name):
    db = copy(run, tmp_path / "sig.duckdb")
    returncode, lines, job_id = signal_after_start(
        ["interview", "--run", run[1], "--db", str(db), *SLOW, QUESTION], sig, 0.7)
    assert returncode == code, lines
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith(f"interview {job_id} interrupted by {name} (")
    assert lines[-1].endswith(f"resume with personahub interview --resume {job_id} --db {db}")
    assert rows(db, "SELECT status, error FROM jobs WHERE job_id = ?", [job_id]) == [
        ("interrupted", f"interrupted by {name}")]
    again = invoke("interview", "--resume", job_id, "--db", db)
    assert again.exit_code == 0, again.output
    assert len(rows(db, ANSWERS, [job_id])) == 10


# -- a server that never answers ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["judge", "interview"])
def test_a_server_that_never_answers_stops_judge_and_interview(run, server, tmp_path, kind):
    """``serve --hang-rate 1.0``: each attempt is cut at --timeout and asked again until the
    call's budget (2 x --timeout + 30 s, docs/models.md) is spent; the job stops in one line,
    exit 1, ``failed``, resumable, with every attempt in ``llm_calls``."""
    db = copy(run, tmp_path / "hang.duckdb")
    srv = server(hang_rate=1.0, hang_s=3600.0)
    if kind == "judge":
        args: list[Any] = ["judge", "--run", run[1], "--sample", "3"]
    else:
        args = ["interview", "--run", run[1], "--agent", "1", QUESTION]
    line = one_line_error(invoke(*args, "--db", db, "--timeout", "1", "--llm", srv.base_url))
    assert "kept failing" in line and "timeout" in line and "resume" in line
    (job_id, status), = rows(db, "SELECT job_id, status FROM jobs WHERE kind = ?", [kind])
    assert status == "failed" and job_id in line
    calls = rows(db, "SELECT status, error FROM llm_calls WHERE job_id = ?", [job_id])
    failed = [e for s, e in calls if s == "error"]
    # an attempt still in flight when the job stopped is a sent row: billed, never answered
    assert len(failed) >= 2 and all(e.startswith("timeout") for e in failed)
    assert all(s in ("error", "sent") for s, _ in calls)
