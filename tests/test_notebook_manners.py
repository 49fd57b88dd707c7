"""The Python API in a notebook: progress bars, a stop button that stops the job (marked
``interrupted``, resumable), HTML cards for handles, and tidy survey shares and timelines."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pytest

import personahub
from personahub.core.interrupts import Stopped
from tests.core.test_jobs import hub, rows
from tests.test_notebook import NOTEBOOK  # noqa: F401 - the notebook these manners serve

SCENARIO = str(files("personahub.scenarios") / "product_launch.py")


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> personahub.Run:
    """Three steps of the product launch (its survey asked at steps 1 and 3), offline."""
    db = tmp_path_factory.mktemp("launch") / "launch.duckdb"
    return personahub.run_scenario(SCENARIO, db=db, steps=3, seed=7, progress=False)


def test_progress_bars_on_stderr_and_hooks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    personahub.synthesize("instruction", db=db, n=4, progress=True)
    err = capsys.readouterr().err
    assert "synthesis" in err and "4/4" in err  # tqdm's bar, ended at the job's total
    seen: list[tuple[str, int, int | None]] = []
    personahub.synthesize("instruction", db=db, n=4, seed=1, progress=lambda *a: seen.append(a))
    assert seen and seen[-1][1:] == (4, 4)
    personahub.synthesize("instruction", db=db, n=4, seed=2, progress=False)
    assert "synthesis" not in capsys.readouterr().err


@pytest.mark.slow
def test_the_persona_jobs_report_progress_and_stay_quiet_when_told(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """text_to_persona (texts read), expand (hops) and dedup (its stages) take ``progress=``
    as run_scenario and synthesize do: a callable hears each phase up to its total, False
    prints nothing."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n\n".join(f"A note on ferry timetables, number {i}." for i in range(5)))
    db = tmp_path / "hub.duckdb"
    heard: dict[str, list[tuple[str, int, int | None]]] = {}

    def hook(job: str) -> Any:
        return lambda *report: heard.setdefault(job, []).append(report)

    personahub.text_to_persona(corpus, db=db, relations="read", limit=4, batch_size=2,
                               progress=hook("text"))
    assert [done for phase, done, _ in heard["text"] if phase == "texts"] == [2, 4]
    personahub.expand(db=db, hops=2, fanout=1, link_candidates=0, progress=hook("expand"))
    assert [done for phase, done, total in heard["expand"] if total == 2][-1] == 2
    personahub.dedup(db=db, embedder="hash", progress=hook("dedup"))
    stages = {phase for phase, _, _ in heard["dedup"]}
    assert {"minhash", "embedding"} <= stages
    assert all(done <= total for _, done, total in heard["dedup"] if total is not None)
    capsys.readouterr()
    personahub.text_to_persona(corpus, db=db, corpus_name="again", relations="read", limit=2,
                               progress=False)
    personahub.dedup(db=db, embedder=None, progress=False)
    assert capsys.readouterr().err == ""


def test_the_stop_button_interrupts_a_job_run_from_a_notebook_loop(tmp_path: Path) -> None:
    """In Jupyter a cell runs inside an event loop, so the job runs in a worker thread and the
    stop button's SIGINT reaches the waiting main thread: the job itself must stop, marked."""
    assert threading.current_thread() is threading.main_thread()  # where SIGINT lands
    db = tmp_path / "hub.duckdb"
    hub(db, 6)
    main = threading.main_thread().ident
    assert main is not None
    reports: list[int] = []

    def stop_after_first_batch(phase: str, done: int, total: int | None) -> None:
        reports.append(done)  # each answer (1, 2), then the first batch's commit (2)
        if len(reports) != 3:
            return
        signal.pthread_kill(main, signal.SIGINT)  # the stop button, delivered to the kernel
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the job is busy: the interrupt lands in here
            threading.Event().wait(0.01)
        raise AssertionError("the interrupt never reached the job's thread")

    async def cell() -> Any:
        return personahub.synthesize("instruction", db=db, n=6, batch_size=2,
                                     progress=stop_after_first_batch)

    loop = asyncio.new_event_loop()  # as ipykernel runs cells: no asyncio.run signal handler
    try:
        with pytest.raises(Stopped) as stopped:
            loop.run_until_complete(cell())
    finally:
        loop.close()
    job_id = rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")[0][0]
    assert job_id in str(stopped.value) and "resume" in str(stopped.value)
    assert rows(db, f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("interrupted",)]
    assert rows(db, "SELECT count(*) FROM synth_items")[0][0] == 2  # the first batch is kept
    assert reports == [1, 2, 2]

    from tests.cli_helpers import invoke

    resumed = invoke("resume", job_id, "--db", db)
    assert resumed.exit_code == 0, resumed.output
    assert rows(db, f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("finished",)]
    assert rows(db, "SELECT count(*) FROM synth_items")[0][0] == 6


@pytest.mark.slow
def test_handles_show_as_html_cards(launch: personahub.Run, tmp_path: Path) -> None:
    card = launch._repr_html_()
    assert launch.run_id in card and "finished" in card and "<table" in card
    assert "agents" in card and str(launch.agents) in card  # counts from the summary
    sampled = launch.sample()
    assert len(sampled) == 3 and list(sampled.columns) == ["step", "agent_id", "task", "text"]
    con = duckdb.connect(str(launch.db), read_only=True)
    try:
        texts = {r[0] for r in con.execute("SELECT text FROM emissions WHERE run_id = ?",
                                           [launch.run_id]).fetchall()}
    finally:
        con.close()
    for text in sampled.text:  # rows of this run, cut to one line's length
        assert text.rstrip("…") and any(t.startswith(text.rstrip("…")) for t in texts)
        assert text.split()[0] in card
    assert "\n" not in repr(launch) and len(repr(launch)) < 200
    assert launch.sample().equals(sampled)  # the same rows each time

    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    job = personahub.synthesize("instruction", db=db, n=3, progress=False)
    card = job._repr_html_()
    assert job.job_id in card and "finished" in card and "written" in card
    assert list(job.sample().columns) == ["persona", "text"] and len(job.sample()) == 3
    judged = personahub.judge(job=job.job_id, db=db, progress=False)
    assert judged.job_id in judged._repr_html_() and len(judged.sample()) == 3


def test_survey_shares_are_tidy_and_ordered(launch: personahub.Run) -> None:
    shares = launch.survey_shares()
    assert list(shares.columns) == ["survey_id", "step", "answer", "n", "share"]
    assert set(shares.survey_id) == {"purchase_intent"} and sorted(set(shares.step)) == [1, 3]
    config = json.loads(launch.sql("SELECT config FROM jobs WHERE job_id = ?",
                                   [launch.run_id]).iloc[0, 0])
    options = next(s["options"] for s in config["scenario"]["surveys"]
                   if s["id"] == "purchase_intent")
    assert list(shares.answer.cat.categories) == options  # the survey's own order
    assert len(shares) == 2 * len(options)  # every option at every step, unpicked ones as 0
    assert shares.groupby("step").share.sum().round(9).tolist() == [1.0, 1.0]
    answers = launch.survey_answers()
    counted = answers.groupby(["step", "answer_choice"]).size()
    for row in shares.itertuples():
        assert row.n == counted.get((row.step, row.answer), 0)
    wide = launch.survey_shares("purchase_intent", wide=True)
    assert list(wide.index) == [1, 3] and list(wide.columns) == options
    assert wide.sum(axis=1).round(9).tolist() == [1.0, 1.0]


def test_timeline_has_a_row_per_step(launch: personahub.Run) -> None:
    timeline = launch.timeline()
    assert timeline.step.tolist() == [1, 2, 3]
    per_step = launch.emissions().groupby("step").size()
    assert timeline.emissions.tolist() == [per_step.get(s, 0) for s in (1, 2, 3)]
    assert timeline.survey_answers.tolist()[0] == len(launch.survey_answers().query("step == 1"))
    assert {"active", "messages", "failed", "duplicates", "seconds"} <= set(timeline.columns)
