"""``--provider-batch`` on ``personas from-text``, ``personas expand``, ``judge``, ``interview`` and
``calibrate``.

Each of the five wraps its asker with ``pipelines.provider_batch_jobs.batched_asker``, as synthesis does
(``test_synthesis_batch.py``): the same ``BatchingCaller`` sends, polls and collects, so what is
tested there of the caller (faults, fallback, mode learning) holds here. What is tested here is
each job's own seam: a batched job commits the rows the online job with the same seed commits,
with zero online model calls and every ``llm_calls`` row carrying its batch id; a judge killed
while its batch runs polls that batch on resume (one kind: the four share the code path from
``batched_asker`` down); an interview written to ``--provider-batch-file`` and brought back with
``personahub provider-batch import`` equals the batched one. Tests poll; none times anything.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from personahub import runtime
from personahub.api import run_judge, run_simulation, run_synthesis
from personahub.core.errors import AwaitingResults
from personahub.core.store import connect
from personahub.interviews import run_interview
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig
from personahub.pipelines.expand import EXPANSION, ExpandConfig
from personahub.pipelines.interview import InterviewConfig
from personahub.pipelines.judge import JudgeConfig
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesize import SynthConfig
from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke, kill_when
from tests.conftest import persona_texts
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import make_population, write_survey
from tests.pipelines.test_synthesis_batch import results_by_server

FAST = {"provider_batch_poll_s": 0.02}
SCENARIO = """
from personahub.sim.scenario import GraphGrowth, Memory, PersonaSource, Scenario

SCENARIO = Scenario(name="asked", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=3), steps=2,
                    tasks=("npc_dialogue",), memory=Memory(observations=2, own=1),
                    world="A river town with a ferry.", seed=6)
"""
CORPUS = "\n\n".join(
    f"Notes from the {place} ferry, day {day}: the river was {mood} and the {thing} was late."
    for day, (place, mood, thing) in enumerate([
        ("north", "calm", "mail boat"), ("south", "high", "grain barge"),
        ("east", "brown", "doctor"), ("west", "frozen", "school bus"),
        ("old", "quiet", "ferryman"), ("new", "loud", "market cart")], start=1))


def model(url: str) -> dict[str, Any]:
    """The loopback server's offline answers, asked with a known structured mode."""
    return {"llm": f"{url}?model=offline", "structured": "json_schema"}


# -- each job: a database to start from, how to run it, what it made --------------------------

@dataclass(frozen=True)
class Case:
    """One job kind: ``run(db, url, **batch)`` runs it and returns its id; ``made(db, id)`` is
    what it committed, without ids and times that differ between two runs."""

    run: Callable[..., str]
    made: Callable[[Path, str], list[tuple[Any, ...]]]


def _text(folder: Path) -> Case:
    corpus = folder / "ferry.txt"
    corpus.write_text(CORPUS, encoding="utf-8")

    def run(db: Path, url: str, **more: Any) -> str:
        config = TextConfig(corpus="ferry", path=str(corpus), relations=("read", "like"),
                            db=str(db), **model(url), **more)
        return runtime.run(TEXT_TO_PERSONA, config, db).job_id

    def made(db: Path, job_id: str) -> list[tuple[Any, ...]]:
        return (rows(db, "SELECT text_id, relation, persona_ids::VARCHAR FROM text_done "
                         "ORDER BY 1, 2")
                + rows(db, "SELECT persona_id, text FROM personas ORDER BY 1"))

    return Case(run, made)


def _judge(folder: Path) -> Case:
    base = folder / "judged.duckdb"
    target = run_synthesis(SynthConfig(task="math_problem", n=10, solve=True, db=str(base))).job_id

    def run(db: Path, url: str, **more: Any) -> str:
        shutil.copy(base, db)
        return run_judge(JudgeConfig(job=target, db=str(db), **model(url), **more)).judge_id

    def made(db: Path, job_id: str) -> list[tuple[Any, ...]]:
        return rows(db, "SELECT item_id, task, criteria::VARCHAR, valid, reason FROM judgments "
                        "WHERE judge_id = ? ORDER BY item_id", [job_id])

    return Case(run, made)


def interview_base(folder: Path) -> tuple[Path, str]:
    """A finished 2-step run of 6 agents."""
    (folder / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(6)))
    (folder / "scenario.py").write_text(SCENARIO)
    db = folder / "run.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(folder / "scenario.py"), db=db))
    return db, summary.run_id


INTERVIEW_ROWS = ("SELECT agent_id, persona_id, step, question, answer, status, error "
                  "FROM interviews WHERE batch_id = ? ORDER BY agent_id")


def _interview(folder: Path) -> Case:
    base, run_id = interview_base(folder)

    def run(db: Path, url: str, **more: Any) -> str:
        shutil.copy(base, db)
        config = InterviewConfig(run_id=run_id, question="How was the ferry this week?",
                                 carve=("hop=0",), db=str(db), **model(url), **more)
        return run_interview(config, db).batch_id

    return Case(run, lambda db, job_id: rows(db, INTERVIEW_ROWS, [job_id]))


def _calibrate(folder: Path) -> Case:
    base = folder / "population.duckdb"
    population = make_population(folder, base, n=30)
    survey = write_survey(folder / "survey.csv")

    def run(db: Path, url: str, **more: Any) -> str:
        shutil.copy(base, db)
        config = CalibrateConfig(survey=str(survey), population=population, n=4, no_persona_n=2,
                                 **model(url), **more)
        return runtime.run(CALIBRATION, config, db).job_id

    def made(db: Path, job_id: str) -> list[tuple[Any, ...]]:
        return rows(db, "SELECT question_id, steering, respondent, persona_id, answer, refused, "
                        "reason FROM calibration_answers WHERE job_id = ? ORDER BY 1, 2, 3",
                        [job_id])

    return Case(run, made)


def _expand(folder: Path) -> Case:
    base = folder / "hub.duckdb"
    con = connect(base)
    upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(4)])
    con.close()

    def run(db: Path, url: str, **more: Any) -> str:
        shutil.copy(base, db)
        settings = {"hops": 2, "fanout": 2, "batch_size": 3, "link_candidates": 2, **more}
        config = ExpandConfig(db=str(db), **model(url), **settings)
        return runtime.run(EXPANSION, config, db).job_id

    def made(db: Path, job_id: str) -> list[tuple[Any, ...]]:
        return (rows(db, "SELECT persona_id, text FROM personas ORDER BY 1")
                + rows(db, "SELECT src, dst, relation, source FROM relations ORDER BY ALL"))

    return Case(run, made)


CASES = {"from-text": _text, "judge": _judge, "interview": _interview, "calibrate": _calibrate,
         "expand": _expand}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.slow
def test_a_batched_job_commits_the_online_rows_with_no_online_call(
        kind: str, server: Any, tmp_path: Path) -> None:
    case = CASES[kind](tmp_path)
    online_srv = server()
    online = case.run(tmp_path / "online.duckdb", online_srv.base_url)
    expected = case.made(tmp_path / "online.duckdb", online)
    assert expected and online_srv.stats.requests > 0 and online_srv.stats.batches_created == 0

    srv = server(batch_delay_s=0.05)
    db = tmp_path / "batch.duckdb"
    job_id = case.run(db, srv.base_url, provider_batch=True, **FAST)
    assert case.made(db, job_id) == expected
    assert srv.stats.requests == 0  # every answer came from a batch line
    assert srv.stats.batches_created >= 1
    [(calls, batched, ids)] = rows(db, "SELECT count(*), count(provider_batch_id), count(DISTINCT "
                                       "custom_id) FROM llm_calls WHERE job_id = ?", [job_id])
    assert calls == batched == ids == srv.stats.batch_lines > 0
    assert rows(db, "SELECT DISTINCT status FROM provider_batches WHERE job_id = ?",
                [job_id]) == [("completed",)]


def test_a_batched_judges_report_counts_its_batches_and_resent_requests(
        server: Any, tmp_path: Path) -> None:
    srv = server(batch_error_rate=0.2, fault_seed=5)
    _judge(tmp_path)
    db = tmp_path / "judge.duckdb"
    shutil.copy(tmp_path / "judged.duckdb", db)
    target = rows(db, "SELECT job_id FROM synth_jobs")[0][0]
    result = invoke("judge", "--job", target, "--db", db, "--llm", f"{srv.base_url}?model=offline",
                    "--structured", "json_schema", "--provider-batch", "--provider-batch-poll", "0.02")
    assert result.exit_code == 0, result.output
    assert srv.stats.batches_created > 1 and srv.stats.batch_line_errors > 0  # resent
    assert (f"batches: {srv.stats.batches_created} created, 0 picked up again; requests: ok=10, "
            f"resent: HTTP 500={srv.stats.batch_line_errors}") in " ".join(result.stdout.split())
    assert rows(db, "SELECT count(*) FROM judgments") == [(10,)]
    assert srv.stats.requests == 0


# -- provider files, and a kill while the judge's batch runs ----------------------------------

def server_files(srv: Any) -> list[str]:
    """The files the loopback server holds, as the openai SDK lists them."""
    import openai

    sdk = openai.OpenAI(base_url=srv.base_url, api_key="unused")
    return [f.id for f in sdk.files.list().data]


def stored_files(db: Path, job_id: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT input_file_id, output_file_id, error_file_id FROM provider_batches "
                    "WHERE job_id = ? ORDER BY created_at", [job_id])


@pytest.mark.slow
def test_a_batchs_provider_files_are_deleted_once_its_results_are_committed(
        server: Any, tmp_path: Path) -> None:
    srv = server(batch_error_rate=0.2, fault_seed=5)  # output and error files, and a resend
    case = _calibrate(tmp_path)
    db = tmp_path / "calib.duckdb"
    job_id = case.run(db, srv.base_url, provider_batch=True, batch_size=10, **FAST)
    assert srv.stats.batches_created > 2 and srv.stats.files_uploaded == srv.stats.batches_created
    assert server_files(srv) == []  # inputs, outputs and error files all gone
    assert set(stored_files(db, job_id)) == {(None, None, None)}
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]


def test_a_batch_whose_files_are_gone_is_not_collected_from() -> None:
    from personahub.core.provider_batch_records import BatchHandle
    from personahub.models.provider_batch_caller import BatchBook

    book = BatchBook()
    ended = BatchHandle(key="k", endpoint=0, model="m", custom_ids=("a", "b"), batch_id="b1",
                        status="completed", input_file_id="file-1", output_file_id="file-2")
    book.add(ended)
    assert book.holding("a") is ended  # files there, nothing committed: collected from it
    book.committed.add(("b1", "a"))
    assert not book.spent(ended)  # "b" is neither committed nor collected
    book.used.add(("k", "b"))
    assert book.spent(ended)
    book.add(ended.updated(input_file_id=None, output_file_id=None))  # deleted
    assert book.holding("b") is None  # nothing left to collect: asked afresh
    assert not book.spent(book.handles["k"])


@pytest.mark.slow
def test_a_judge_killed_during_its_batch_polls_the_same_batch_on_resume(
        server: Any, tmp_path: Path) -> None:
    case = _judge(tmp_path)
    online_srv = server()
    online = case.run(tmp_path / "online.duckdb", online_srv.base_url)
    expected = case.made(tmp_path / "online.duckdb", online)

    srv = server(batch_delay_s=3.0)
    db = tmp_path / "killed.duckdb"
    shutil.copy(tmp_path / "judged.duckdb", db)
    target = rows(db, "SELECT job_id FROM synth_jobs")[0][0]
    url = f"{srv.base_url}?model=offline"
    # two batches of 5: killed while the second runs, the first committed and its files gone
    code = kill_when(["judge", "--job", target, "--db", str(db), "--llm", url, "--structured",
                      "json_schema", "--provider-batch", "--batch-size", "5",
                      "--provider-batch-poll", "0.05"],
                     lambda: srv.stats.batches_created >= 2,
                     "the judge never created its second batch")
    assert code == -signal.SIGKILL
    [(judge_id, status)] = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'judge'")
    assert status == "running"  # killed: nothing marked it
    first, second = stored_files(db, judge_id)
    assert first == (None, None, None) and second[0] is not None
    assert server_files(srv) == [second[0]]  # only the running batch's input is left
    summary = run_judge(JudgeConfig(job=target, db=str(db), llm=url, structured="json_schema",
                                    provider_batch=True, batch_size=5, **FAST))
    assert summary.judge_id == judge_id
    assert case.made(db, judge_id) == expected
    assert srv.stats.batches_created == 2  # the second polled after the kill, never created again
    assert srv.stats.requests == 0
    assert "1 picked up again" in (summary.batches or "")
    assert server_files(srv) == []


# -- a batch file, then batch import ------------------------------------------------------------

@pytest.mark.slow
def test_an_interview_batch_file_then_import_equals_the_batched_interview(
        server: Any, tmp_path: Path) -> None:
    case = _interview(tmp_path)
    srv = server()
    batched = case.run(tmp_path / "batched.duckdb", srv.base_url, provider_batch=True, **FAST)
    expected = case.made(tmp_path / "batched.duckdb", batched)

    db = tmp_path / "file.duckdb"
    requests = tmp_path / "requests.jsonl"
    with pytest.raises(AwaitingResults, match="batch import"):
        case.run(db, srv.base_url, provider_batch_file=str(requests))
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'interview'")
    assert status == "awaiting_results"
    assert len(requests.read_text().splitlines()) == len(expected)
    results = tmp_path / "results.jsonl"
    results_by_server(srv, requests, results)
    done = invoke("provider-batch", "import", results, "--job", job_id, "--db", db, "--llm",
                  f"{srv.base_url}?model=offline")
    assert done.exit_code == 0, done.output
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]
    assert case.made(db, job_id) == expected
    assert srv.stats.requests == 0
    assert rows(db, "SELECT DISTINCT provider_batch_id FROM llm_calls WHERE job_id = ?",
                [job_id]) == [("file:requests.jsonl",)]


@pytest.mark.slow
def test_resuming_a_job_that_waits_for_its_batch_file_exits_3_with_the_import_command(
        tmp_path: Path) -> None:
    corpus = tmp_path / "ferry.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    db, requests = tmp_path / "wait.duckdb", tmp_path / "requests.jsonl"
    url = "http://127.0.0.1:9/v1?model=offline"  # a batch file needs no server
    written = invoke("personas", "from-text", corpus, "--db", db, "--llm", url, "--relations",
                     "read", "--structured", "json_schema", "--provider-batch-file", requests)
    assert written.exit_code == 0, written.output  # the file written: what was asked is done
    [(job_id, status)] = rows(db, "SELECT job_id, status FROM jobs")
    assert status == "awaiting_results"
    before = rows(db, "SELECT count(*) FROM llm_calls") + rows(db, "SELECT count(*) FROM personas")
    sent = requests.read_bytes()
    for args in (["resume", job_id], ["personas", "from-text", "--resume", job_id]):
        waited = invoke(*args, "--db", db)
        assert waited.exit_code == 3, (args, waited.output)
        assert f"personahub provider-batch import RESULTS.jsonl --job {job_id}" in " ".join(
            waited.stderr.split())
        assert "error" not in waited.stderr
        assert rows(db, "SELECT status FROM jobs") == [("awaiting_results",)]
        assert (rows(db, "SELECT count(*) FROM llm_calls")
                + rows(db, "SELECT count(*) FROM personas")) == before
        assert requests.read_bytes() == sent  # the batch file is not written again


@pytest.mark.slow
def test_the_api_takes_the_batch_options(server: Any, tmp_path: Path) -> None:
    import personahub

    srv = server()
    corpus = tmp_path / "ferry.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    db = tmp_path / "api.duckdb"
    options = {**model(srv.base_url), "provider_batch": True, "provider_batch_window": "24h",
               "provider_batch_fallback": "online", "provider_batch_poll_s": 0.02}
    text = personahub.text_to_persona(corpus, db=db, relations="read", **options)
    assert "batches: 1 created" in (text.summary.provider_batches or "")
    target = run_synthesis(SynthConfig(task="math_problem", n=3, db=str(db))).job_id
    judged = personahub.judge(job=target, db=db, **options)
    assert "batches: 1 created" in (judged.summary.batches or "")
    assert srv.stats.requests == 0 and srv.stats.batches_created == 2


@pytest.mark.slow
def test_an_expansion_goes_through_batch_files_a_level_at_a_time(
        server: Any, tmp_path: Path) -> None:
    """Each level's batch is one file: written, run elsewhere, imported; the import goes on to
    the next level's file, and the last import ends the expansion with the batched rows."""
    case = _expand(tmp_path)
    srv = server()
    options = {"link_candidates": 0, "batch_size": 10}
    batched = case.run(tmp_path / "batched.duckdb", srv.base_url, provider_batch=True, **options, **FAST)
    expected = case.made(tmp_path / "batched.duckdb", batched)

    db, requests = tmp_path / "file.duckdb", tmp_path / "requests.jsonl"
    with pytest.raises(AwaitingResults, match="batch import"):
        case.run(db, srv.base_url, provider_batch_file=str(requests), **options)
    [(job_id,)] = rows(db, "SELECT job_id FROM jobs WHERE kind = 'expansion'")
    waves = 0
    while rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("awaiting_results",)]:
        waves += 1
        results = tmp_path / f"results-{waves}.jsonl"
        results_by_server(srv, requests, results)
        done = invoke("provider-batch", "import", results, "--job", job_id, "--db", db, "--llm",
                      f"{srv.base_url}?model=offline")
        assert done.exit_code == 0, done.output
        assert waves < 5
    assert waves == 2  # one file a level
    assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]
    assert case.made(db, job_id) == expected
    assert srv.stats.requests == 0


def test_a_batch_file_cannot_hold_an_expansions_link_questions(tmp_path: Path) -> None:
    _expand(tmp_path)
    refused = invoke("personas", "expand", "--db", tmp_path / "hub.duckdb", "--link-candidates", 2,
                     "--provider-batch-file", tmp_path / "requests.jsonl")
    assert refused.exit_code == 2, refused.output
    assert "--provider-batch-file with --link-candidates" in refused.output
    assert not (tmp_path / "requests.jsonl").exists()
    assert rows(tmp_path / "hub.duckdb", "SELECT count(*) FROM jobs") == [(0,)]
