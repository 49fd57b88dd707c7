"""``personahub evaluate`` as a kernel job: a ``jobs`` row of kind
``evaluation`` with its config (specs redacted) and a ``what`` label, its calls tagged with its
job id, batches committed as it goes, and a job stopped (Ctrl-C) or killed (``kill -9``) that
``personahub resume ID`` (or the same command, or ``--resume ID``) finishes to the tables of
the same evaluation run without a stop."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from personahub.api import run_synthesis
from personahub.core.store import connect
from personahub.models.fake_server.server import running_server
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, kill_when
from tests.pipeline_helpers import rows
from tests.pipelines.test_every_kind_resumes import stop_at_write

ANSWERS = "SELECT eval_id, item_id, role, spec, mode, sample, answer FROM eval_answers ORDER BY ALL"
TABLES = (ANSWERS, "SELECT * FROM eval_splits ORDER BY ALL",
          "SELECT * FROM eval_verified ORDER BY ALL",
          "SELECT eval_id, answer_a, answer_b, judge, equal FROM eval_equivalence ORDER BY ALL")


def _copies(tmp_path: Path, n: int, *names: str) -> tuple[str, dict[str, Path]]:
    """One offline math synthesis job of ``n`` items, copied once per name."""
    template = tmp_path / "template.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=n, db=str(template))).job_id
    copies = {}
    for name in names:
        copies[name] = tmp_path / f"{name}.duckdb"
        shutil.copy(template, copies[name])
    return job, copies


def _tables(db: Path) -> list[list[Any]]:
    return [rows(db, sql) for sql in TABLES]


@pytest.mark.slow
def test_a_stopped_evaluation_resumes_by_its_id_to_the_same_tables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, dbs = _copies(tmp_path, 16, "whole", "stopped", "again")
    args = ["evaluate", "--job", job, "--test-n", "6", "--seed", "2", "--solver",
            "offline?seed=1", "--solver", "offline?seed=2#answer", "--model", "offline?seed=3",
            "--agree", "1", "--batch-size", "4", "--equivalence-judge", "offline?seed=4"]
    whole = invoke(*args, "--db", dbs["whole"])
    assert whole.exit_code == 0, whole.output
    (job_id, status, config, parent), = rows(
        dbs["whole"], "SELECT job_id, status, config, parent_id FROM jobs WHERE kind = 'evaluation'")
    assert status == "finished" and parent == job and job_id.startswith("evaluation-")
    stored = json.loads(config)  # a solver's own prompting and the judge go with the job
    assert stored["solvers"] == ["offline?seed=1", "offline?seed=2#answer"]
    assert stored["equivalence_judge"] == "offline?seed=4"
    # every call is the evaluation's own (run_id NULL): 6 items x 2 solvers + 6 for the model
    assert rows(dbs["whole"], "SELECT job_kind, job_id, count(*), count(run_id) FROM llm_calls "
                "WHERE job_kind = 'evaluation' GROUP BY ALL") == [("evaluation", job_id, 18, 0)]
    listed = json.loads(invoke("jobs", "--db", dbs["whole"], "--json").stdout)
    assert [j["what"] for j in listed if j["kind"] == "evaluation"] == \
        [f"job {job}: 2 solver(s), 1 model(s)"]

    for db, how in ((dbs["stopped"], "resume"), (dbs["again"], "again")):
        with monkeypatch.context() as patch:
            stop_at_write(patch, 3)  # the job's row (with its split), one batch, then Ctrl-C
            stopped = invoke(*args, "--db", db)
        assert stopped.exit_code == 130, stopped.output
        assert f"resume with personahub resume {job_id}" in stopped.output
        assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("interrupted",)]
        assert len(rows(db, ANSWERS)) == 4  # one batch of 4 answers committed
        if how == "resume":
            resumed = invoke("resume", job_id, "--db", db)
        else:  # the same command goes on with the same job
            resumed = invoke(*args, "--db", db)
        assert resumed.exit_code == 0, resumed.output
        assert _tables(db) == _tables(dbs["whole"]), how
        assert rows(db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]
        assert rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'ok'",
                    [job_id]) == [(18,)]

    again = invoke(*args, "--db", dbs["whole"])  # finished: nothing asked, the same lines
    assert again.exit_code == 0 and again.stdout == whole.stdout


def test_a_new_model_on_a_stored_split_asks_only_that_model(tmp_path: Path) -> None:
    """Another evaluation job on the same split reuses the solvers' stored answers."""
    job, dbs = _copies(tmp_path, 12, "db")
    base = ["evaluate", "--db", dbs["db"], "--job", job, "--test-n", "4", "--solver",
            "offline?seed=1", "--solver", "offline?seed=2", "--agree", "1"]
    assert invoke(*base).exit_code == 0
    more = invoke(*base, "--model", "offline?seed=5")
    assert more.exit_code == 0, more.output
    assert "model calls: ok=4" in more.stdout  # only the new model's 4 answers
    assert len(rows(dbs["db"], "SELECT job_id FROM jobs WHERE kind = 'evaluation'")) == 2


def test_resume_with_an_unknown_id_is_one_line(tmp_path: Path) -> None:
    job, dbs = _copies(tmp_path, 4, "db")
    result = invoke("evaluate", "--db", dbs["db"], "--resume", "evaluation-nosuch")
    assert result.exit_code == 1
    assert "--resume evaluation-nosuch: no such evaluation" in result.output


@pytest.mark.slow
def test_a_killed_evaluation_resumes_to_the_tables_of_an_uninterrupted_one(
        server: Any, tmp_path: Path) -> None:
    """``kill -9`` mid-way over the loopback server (three models by name): the resume by id
    keeps the committed batches, asks the rest, and ends with the uninterrupted job's answers
    (answers compared, not attempts: a loaded machine adds straggler retries)."""
    srv = server(latency_s=0.2)
    job, dbs = _copies(tmp_path, 20, "killed", "whole")
    url = srv.base_url
    args = ["evaluate", "--job", job, "--test-n", "8", "--seed", "1",
            "--solver", f"{url}?model=a", "--solver", f"{url}?model=b",
            "--model", f"{url}?model=c", "--agree", "1", "--batch-size", "2"]
    code = kill_when([*args, "--db", str(dbs["killed"])], lambda: srv.stats.answered >= 10,
                     "the evaluation never answered 10 calls")
    assert code == -signal.SIGKILL
    [(job_id, status)] = rows(dbs["killed"], "SELECT job_id, status FROM jobs "
                                             "WHERE kind = 'evaluation'")
    assert status == "running"  # killed: nothing marked it
    assert 0 < len(rows(dbs["killed"], ANSWERS)) < 24
    resumed = invoke("resume", job_id, "--db", dbs["killed"])
    assert resumed.exit_code == 0, resumed.output
    whole = invoke(*args, "--db", dbs["whole"])
    assert whole.exit_code == 0, whole.output
    assert _tables(dbs["killed"]) == _tables(dbs["whole"])
    assert len(rows(dbs["killed"], ANSWERS)) == 24
    # each model's calls carry its own name (three clients, one job)
    assert rows(dbs["killed"], "SELECT DISTINCT model_name FROM llm_calls WHERE job_id = ? "
                "AND status = 'ok' ORDER BY 1", [job_id]) == [("a",), ("b",), ("c",)]
    # every kept answer's call is on record, tagged with the job
    assert rows(dbs["killed"], "SELECT count(DISTINCT call_id) >= 24 FROM llm_calls WHERE "
                "job_id = ? AND status = 'ok'", [job_id]) == [(True,)]


@pytest.fixture(scope="module")
def loopback_url() -> Any:
    with running_server(seed=3) as server:
        yield server.base_url + "?model=offline"


@pytest.mark.parametrize("where", ["offline", "loopback"])
def test_an_equivalence_judge_settles_the_pairs_math_verify_cannot(
        tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    """Without a judge an undecidable pair is unequal; with one, each such pair is asked once
    (its calls logged under the job), its verdicts stored and used, and nothing asked again."""
    judge = "offline?seed=4" if where == "offline" else request.getfixturevalue("loopback_url")
    job, dbs = _copies(tmp_path, 12, "db")
    db = dbs["db"]
    base = ["evaluate", "--db", db, "--job", job, "--test-n", "4", "--solver", "offline?seed=1",
            "--solver", "offline?seed=2", "--agree", "2"]
    assert invoke(*base).exit_code == 0
    items = [r[0] for r in rows(db, "SELECT DISTINCT item_id FROM eval_answers ORDER BY 1")]
    words = ["one", "two", "three", "four"]
    for k, item in enumerate(items):  # one solver writes its answer in words: undecidable
        with connect(db) as con:
            con.execute("UPDATE eval_answers SET answer = CASE spec WHEN 'offline?seed=1' THEN ? "
                        "ELSE ? END WHERE item_id = ?", [words[k], str(k + 1), item])
    plain = invoke(*base)
    assert "verified: 0 of 4 test items" in plain.output
    assert "equivalence: 4 answer pairs math-verify cannot decide count as not equal" \
        in plain.output

    judged = invoke(*base, "--equivalence-judge", judge)
    assert judged.exit_code == 0, judged.output
    (job_id,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'evaluation' AND "
                          "config->>'equivalence_judge' IS NOT NULL")
    assert rows(db, "SELECT DISTINCT purpose FROM llm_calls WHERE job_id = ?",
                [job_id]) == [("equivalence",)]  # no answer asked again: only the judge
    if where == "offline":  # over loopback a loaded machine may add straggler attempts
        assert rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'ok'",
                    [job_id]) == [(4,)]
    stored = rows(db, "SELECT answer_a, answer_b FROM eval_equivalence ORDER BY ALL")
    assert stored == sorted((str(k + 1), w) for k, w in enumerate(words))
    assert "equivalence judge " in judged.output and "4 of 4 undecidable answer pairs judged" \
        in judged.output

    for equal, verified in ((True, 4), (False, 0)):  # the stored verdicts decide, not re-asked
        with connect(db) as con:
            con.execute("UPDATE eval_equivalence SET equal = ?", [equal])
        again = invoke(*base, "--equivalence-judge", judge)
        assert f"verified: {verified} of 4 test items" in again.output, again.output
        assert f"judged, {verified} equal" in again.output
    assert rows(db, "SELECT count(*) FROM eval_equivalence") == [(4,)]


def test_a_judge_stopped_between_its_batches_resumes_asking_only_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, dbs = _copies(tmp_path, 12, "db")
    db = dbs["db"]
    base = ["evaluate", "--db", db, "--job", job, "--test-n", "4", "--solver", "offline?seed=1",
            "--solver", "offline?seed=2", "--batch-size", "1"]
    assert invoke(*base).exit_code == 0
    with connect(db) as con:  # words against numbers: four undecidable pairs
        con.execute("UPDATE eval_answers SET answer = CASE spec WHEN 'offline?seed=1' THEN "
                    "'word ' || item_id ELSE '7' END")
    judged = [*base, "--equivalence-judge", "offline?seed=4"]
    with monkeypatch.context() as patch:
        stop_at_write(patch, 3)  # the job's row, one verdict, then Ctrl-C
        stopped = invoke(*judged)
    assert stopped.exit_code == 130, stopped.output
    assert rows(db, "SELECT count(*) FROM eval_equivalence") == [(1,)]
    first = rows(db, "SELECT * EXCLUDE (created_at) FROM eval_equivalence")
    resumed = invoke(*judged)
    assert resumed.exit_code == 0, resumed.output
    verdicts = rows(db, "SELECT * EXCLUDE (created_at) FROM eval_equivalence ORDER BY ALL")
    assert len(verdicts) == 4 and set(first) <= set(verdicts)
    (job_id,), = rows(db, "SELECT job_id FROM jobs WHERE config->>'equivalence_judge' "
                          "IS NOT NULL")
    # one verdict a pair: the resume asked only the three not stored
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'ok'",
                [job_id]) == [(4,)]
