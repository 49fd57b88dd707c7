"""The Python API (``personahub.api``): sync and async forms, inside and outside a running loop,
returning handles whose tables read as DataFrames."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import personahub
from personahub.core.errors import PersonahubError
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "scenarios" / "product_launch.py"


def _check_run(run: personahub.Run, db: Path) -> None:
    assert run.db == db and run.run_id.startswith("20")
    emissions = run.emissions()
    assert isinstance(emissions, pd.DataFrame) and len(emissions) == sum(run.emissions_by_kind.values()) > 0
    assert set(emissions["run_id"]) == {run.run_id}
    answers = run.survey_answers()
    assert isinstance(answers, pd.DataFrame)
    assert set(answers["survey_id"]) == {"purchase_intent"} and len(answers) == run.answers > 0
    assert len(run.items()) == len(emissions)


def test_async_form_under_asyncio_run(tmp_path: Path) -> None:
    """Done-when: ``asyncio.run`` around the async form runs a scenario and gives DataFrames."""
    db = tmp_path / "a.duckdb"
    run = asyncio.run(personahub.run_scenario_async(LAUNCH, db=db, steps=1))
    _check_run(run, db)


@pytest.mark.slow
async def test_sync_form_inside_a_running_loop(tmp_path: Path) -> None:
    """Done-when: the sync form called inside a running loop (a Jupyter cell) works, and the run
    answers as one started from a script does."""
    db = tmp_path / "s.duckdb"
    asyncio.get_running_loop()  # this test body runs inside the loop
    run = personahub.run_scenario(str(LAUNCH), db=db, steps=1)
    _check_run(run, db)
    plain = await asyncio.to_thread(personahub.run_scenario, LAUNCH, db=tmp_path / "t.duckdb", steps=1)
    texts = run.emissions()["text"].tolist()
    assert texts == plain.emissions()["text"].tolist()
    with pytest.raises(PersonahubError, match="no_such"):  # errors cross the worker thread as raised
        personahub.run_scenario(LAUNCH, db=db, no_such=1)


def test_positional_run_config_is_the_base(tmp_path: Path) -> None:
    """``run_scenario(scenario, RunConfig(...))`` is the base the keywords override; the
    handle reads the summary's fields."""
    db = tmp_path / "b.duckdb"
    run = personahub.run_scenario(load_scenario(LAUNCH), RunConfig(db=db, steps=1), seed=3)
    assert run.summary.steps == 1 and run.agents > 0 and run.offline
    assert run.sql("SELECT seed FROM runs JOIN jobs ON job_id = run_id")["seed"].tolist() == [3]


def test_sql_is_read_only_and_options_are_checked(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    run = personahub.run_scenario(LAUNCH, db=db, steps=1)
    with pytest.raises(duckdb.Error):
        run.sql("CREATE TABLE scratch (a INT)")
    assert run.sql("SELECT count(*) AS n FROM v_run_cost")["n"].tolist() == [1]  # views installed
    with pytest.raises(PersonahubError, match="unknown option.*no_such"):
        personahub.run_scenario(LAUNCH, db=db, no_such=1)
    with pytest.raises(PersonahubError, match="unknown option"):
        personahub.synthesize("math_problem", db=db, colour="red")


@pytest.mark.slow
async def test_persona_jobs_sync_and_async(tmp_path: Path) -> None:
    """synthesize, text_to_persona, expand and dedup: both forms, items as DataFrames."""
    db = tmp_path / "hub.duckdb"
    job = personahub.synthesize("math_problem", db=db, n=4, seed=1)
    items = job.items()
    assert job.kind == "synthesis" and len(items) == 4 == job.written
    assert set(items["task"]) == {"math_problem"}
    corpus = tmp_path / "notes.txt"
    corpus.write_text("The river flooded the bakery.\n\nA new bus line opens in May.\n", encoding="utf-8")
    texts = await personahub.text_to_persona_async(corpus, db=db, relations="read,write")
    assert texts.job_id.startswith("text-") and texts.asked == 4
    assert len(texts.items()) == texts.personas > 0
    assert len(texts.calls()) == 4
    grown = personahub.expand(db=db, hops=1, fanout=2, limit=2)
    assert grown.job_id.startswith("exp-") and len(grown.items()) >= 2
    flagged = await personahub.dedup_async(db=db, embedder=None)
    assert flagged.stage("minhash") is not None
    assert list(flagged.items().columns[:2]) == ["persona_id", "seq"]


@pytest.mark.slow
async def test_interview_sync_async_and_from_the_run_handle(tmp_path: Path) -> None:
    """``personahub.interview`` (one agent or a carved group) returns a
    DataFrame, in both forms and inside a running loop; ``Run.interview`` asks its own run."""
    db = tmp_path / "i.duckdb"
    run = await personahub.run_scenario_async(LAUNCH, db=db, steps=2)
    one = personahub.interview("Would you buy it?", db=db, run=run.run_id, agent="1")
    assert isinstance(one, pd.DataFrame) and one["agent_id"].tolist() == [1]
    assert one["status"].tolist() == ["ok"] and one["model"].tolist() == ["offline"]
    assert one.attrs["offline"] is True and one["step"].tolist() == [2]
    group = await personahub.interview_async("Would you buy it?", db=db, run=run.run_id,
                                             carve="hop=0", step=1, limit=4)
    assert group["agent_id"].tolist() == [1, 2, 3, 4] and set(group["step"]) == {1}
    again = run.interview("Would you buy it?", agent="1")
    assert again["answer"].tolist() == one["answer"].tolist()  # offline: deterministic
    assert len(await run.interview_async("Why?", where="hop = 0", limit=2)) == 2
    stored = run.sql("SELECT count(*) AS n FROM interviews")["n"].tolist()
    assert stored == [1 + 4 + 1 + 2]
    with pytest.raises(PersonahubError, match="unknown option"):
        run.interview("Why?", agent="1", colour="red")
async def test_judge_sync_and_async(tmp_path: Path) -> None:
    """``personahub.judge``: a handle whose items are the judgments and whose validity has an
    interval; the async twin is the same judge, so it skips what was rated."""
    db = tmp_path / "judge.duckdb"
    job = personahub.synthesize("math_problem", db=db, n=5, seed=1)
    judged = personahub.judge(job=job.job_id, db=db, sample=4)
    rows = judged.items()
    assert judged.kind == "judge" and judged.judge_id.startswith("judge-")
    assert isinstance(rows, pd.DataFrame) and len(rows) == 4 == judged.judged
    figures = judged.validity()
    assert figures.valid.n == 4 and 0 <= figures.valid.interval[0] <= figures.valid.interval[1] <= 1
    assert len(judged.calls()) == 4 and set(judged.calls()["purpose"]) == {"judge"}
    again = await personahub.judge_async(job=job.job_id, db=db, sample=4)
    assert again.judge_id == judged.judge_id and again.skipped_done == 4 and again.judged == 0
    with pytest.raises(PersonahubError, match="unknown option.*colour"):
        personahub.judge(job=job.job_id, db=db, colour="red")
