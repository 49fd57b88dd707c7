"""The judge job (pipelines/judge.py): a row per item, seeded samples, resume, errors, accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub.api import run_judge, run_synthesis
from personahub.core.contracts import CallRecord, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.pipelines.judge import JudgeConfig, judge_id_for, select_items
from personahub.pipelines.synthesize import SynthConfig
from personahub.tasks import get
from tests.fakes import Call, FakeClient, crash_after


@pytest.fixture(scope="module")
def math_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A synthesis job of 12 solved math problems, offline (copied per test that writes)."""
    db = tmp_path_factory.mktemp("judge") / "math.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=12, solve=True, db=str(db)))
    return db, job.job_id


@pytest.fixture
def db(math_db: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "copy.duckdb"
    path.write_bytes(math_db[0].read_bytes())
    return path, math_db[1]


def _rows(db: Path, sql: str, params: list | None = None) -> list:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_one_row_per_item_with_every_criterion(db):
    path, job = db
    summary = run_judge(JudgeConfig(job=job, db=str(path)))
    rows = _rows(path, "SELECT item_id, task, criteria, valid, model, target_kind, target_id "
                       "FROM judgments WHERE judge_id = ?", [summary.judge_id])
    assert summary.judged == len(rows) == 12 and summary.failed == 0
    items = {r[0] for r in _rows(path, "SELECT item_id FROM synth_items WHERE job_id = ?", [job])}
    assert {r[0] for r in rows} == items
    names = [c.name for c in get("math_problem").judge_criteria]
    for _, kind, criteria, valid, model, target_kind, target_id in rows:
        verdicts = json.loads(criteria)
        assert kind == "math_problem" and list(verdicts) == names  # solved: solution_correct too
        assert all(isinstance(v["yes"], bool) and v["reason"] for v in verdicts.values())
        assert isinstance(valid, bool) and model == "offline"
        assert (target_kind, target_id) == ("synthesis", job)
    calls = _rows(path, "SELECT purpose, run_id, job_kind, status FROM llm_calls WHERE job_id = ?",
                  [summary.judge_id])
    # a judge's calls are its own job's: no run_id, not even the judged job's
    assert len(calls) == 12 and {c[:3] for c in calls} == {("judge", None, "judge")}


def test_offline_verdicts_are_deterministic(db, tmp_path):
    path, job = db
    other = tmp_path / "other.duckdb"
    other.write_bytes(path.read_bytes())
    first = run_judge(JudgeConfig(job=job, db=str(path), seed=3))
    second = run_judge(JudgeConfig(job=job, db=str(other), seed=3))
    query = "SELECT item_id, criteria, valid, reason FROM judgments ORDER BY item_id"
    assert first.judge_id == second.judge_id
    assert _rows(path, query) == _rows(other, query)


def test_sample_is_seeded_and_nested(db):
    path, job = db
    con = connect(path)
    try:
        five = [i.item_id for i in select_items(con, JudgeConfig(job=job, db=str(path), sample=5))]
        again = [i.item_id for i in select_items(con, JudgeConfig(job=job, db=str(path), sample=5))]
        six = [i.item_id for i in select_items(con, JudgeConfig(job=job, db=str(path), sample=6))]
        other = [i.item_id for i in select_items(con, JudgeConfig(job=job, db=str(path), sample=5,
                                                                   seed=9))]
    finally:
        con.close()
    assert five == again == six[:5] and len(set(five)) == 5
    assert other != five  # another seed, another draw (12 items: a tie has odds ~1/95,000)


def test_resume_skips_judged_items_and_retries_failed_ones(db):
    path, job = db
    options = JudgeConfig(job=job, db=str(path), batch_size=4)

    def refuse_odd(call: Call) -> StructuredResult | None:
        if call.number % 2:
            record = CallRecord(purpose="judge", model="offline", attempt=1, status="invalid",
                                latency_ms=0.0, error="not JSON")
            return StructuredResult(None, [record])
        return None

    first = run_judge(options, client=FakeClient(answer=refuse_odd, seed=0))
    assert first.judged == 6 and first.failed == 6
    second = run_judge(options, client=FakeClient(seed=0))
    assert second.judge_id == first.judge_id
    assert second.skipped_done == 6 and second.judged == 6 and second.failed == 0
    assert _rows(path, "SELECT count(*), count(DISTINCT item_id) FROM judgments")[0] == (12, 12)
    third = run_judge(options, client=FakeClient(seed=0))
    assert third.skipped_done == 12 and third.judged == 0
    statuses = dict(_rows(path, "SELECT status, count(*) FROM llm_calls WHERE job_id = ? "
                                "GROUP BY 1", [first.judge_id]))
    assert statuses == {"ok": 12, "invalid": 6}


def test_a_crash_keeps_committed_batches(db):
    path, job = db
    options = JudgeConfig(job=job, db=str(path), batch_size=4)
    # the kernel says a crash in one line, the error it was kept as the cause
    with pytest.raises(PersonahubError, match="failed: Interrupted: simulated crash") as caught:
        run_judge(options, client=FakeClient(answer=crash_after(5, "judge"), seed=0))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert _rows(path, "SELECT count(*) FROM judgments")[0][0] == 4
    assert _rows(path, "SELECT status FROM jobs WHERE kind = 'judge'") == [("failed",)]
    assert run_judge(options, client=FakeClient(seed=0)).judged == 8


def test_every_call_failed_is_one_line_error(db):
    path, job = db

    def refuse(call: Call) -> StructuredResult:
        record = CallRecord(purpose="judge", model="offline", attempt=1, status="error",
                            latency_ms=0.0, error="HTTP 500: boom")
        return StructuredResult(None, [record])

    # three endpoint failures stop the batch (the failure policy); a quality failure of every
    # item is said as the judge keeping none
    with pytest.raises(PersonahubError, match="3 of 3 actions failed at the endpoint.*HTTP 500: boom"):
        run_judge(JudgeConfig(job=job, db=str(path), sample=3), client=FakeClient(answer=refuse))
    assert _rows(path, "SELECT count(*) FROM judgments")[0][0] == 0
    assert _rows(path, "SELECT status FROM jobs WHERE kind = 'judge'") == [("failed",)]

    def weak(call: Call) -> StructuredResult:
        record = CallRecord(purpose="judge", model="offline", attempt=1, status="invalid",
                            latency_ms=0.0, error="not JSON")
        return StructuredResult(None, [record])

    with pytest.raises(PersonahubError, match="every model call failed \\(2 items\\).*not JSON"):
        run_judge(JudgeConfig(job=job, db=str(path), sample=2), client=FakeClient(answer=weak))


def test_bad_targets_and_options(db):
    path, job = db
    with pytest.raises(PersonahubError, match="exactly one of --job or --run"):
        JudgeConfig(db=str(path))
    with pytest.raises(PersonahubError, match="exactly one"):
        JudgeConfig(job=job, run="r", db=str(path))
    with pytest.raises(PersonahubError, match="--sample must be >= 1"):
        JudgeConfig(job=job, sample=0)
    with pytest.raises(PersonahubError, match="no such synthesis job"):
        run_judge(JudgeConfig(job="synth-nope", db=str(path)))
    with pytest.raises(PersonahubError, match="no such run"):
        run_judge(JudgeConfig(run="run-nope", db=str(path)))
    with pytest.raises(PersonahubError, match="no items of task 'tool_spec' to judge"):
        run_judge(JudgeConfig(job=job, task="tool_spec", db=str(path)))


def test_judge_id_follows_the_settings():
    base = JudgeConfig(job="j", sample=5)
    assert judge_id_for(base) == judge_id_for(JudgeConfig(job="j", sample=5, concurrency=2))
    assert judge_id_for(base) != judge_id_for(JudgeConfig(job="j", sample=6))
    assert judge_id_for(base) != judge_id_for(JudgeConfig(job="j", sample=5, llm="openai:m"))
    assert judge_id_for(base) != judge_id_for(JudgeConfig(run="j", sample=5))


@pytest.mark.slow
def test_a_run_is_judged_with_each_kind_own_criteria(tmp_path):
    from tests.synth_helpers import run_default_scenario

    db = tmp_path / "run.duckdb"
    run = run_default_scenario(db, steps=1)
    summary = run_judge(JudgeConfig(run=run.run_id, db=str(db), sample=15))
    rows = _rows(db, "SELECT task, criteria FROM judgments")
    assert summary.judged == len(rows) == 15
    from personahub.tasks import emission_task

    for kind, criteria in rows:
        expected = [c.name for c in emission_task(kind).criteria_for(has_solution=False)]
        assert list(json.loads(criteria)) == expected
    calls = _rows(db, "SELECT count(*), count(run_id) FROM llm_calls WHERE job_id = ?",
                  [summary.judge_id])
    assert calls[0] == (15, 0)  # the judge's own calls, not the judged run's


def test_npc_items_are_judged_against_the_jobs_world(tmp_path):
    db = tmp_path / "npc.duckdb"
    job = run_synthesis(SynthConfig(task="npc", n=2, db=str(db))).job_id
    fake = FakeClient(seed=0)
    run_judge(JudgeConfig(job=job, db=str(db)), client=fake)
    assert len(fake.prompts) == 2
    for purpose, _, prompt in fake.prompts:
        assert purpose == "judge" and "## World" in prompt and "consistent_with_world" in prompt


def test_a_stopped_judge_is_a_job_that_personahub_resume_finishes(db):
    """The judge is a job of the kernel: ``personahub jobs`` lists it (its parent the judged
    job), and ``personahub resume JUDGE_ID`` asks only the items it has not rated."""
    from tests.cli_helpers import invoke

    path, job = db
    options = JudgeConfig(job=job, db=str(path), batch_size=4)
    with pytest.raises(PersonahubError):
        run_judge(options, client=FakeClient(answer=crash_after(5, "judge"), seed=0))
    listed = json.loads(invoke("jobs", "--db", path, "--kind", "judge", "--json").stdout)
    judge_id = judge_id_for(options)
    assert [(j["job_id"], j["status"], j["parent_id"]) for j in listed] == [(judge_id, "failed", job)]
    resumed = invoke("resume", judge_id, "--db", path)
    assert resumed.exit_code == 0, resumed.output
    assert f"judge {judge_id} of job {job}: 8 items judged (4 already judged, 0 failed)" in resumed.stdout
    assert _rows(path, "SELECT count(*), count(DISTINCT item_id) FROM judgments")[0] == (12, 12)
    assert _rows(path, "SELECT status FROM jobs WHERE job_id = ?", [judge_id]) == [("finished",)]
