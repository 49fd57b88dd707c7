"""``personahub evaluate`` (personahub/cli/evaluate.py) and ``personahub.evaluate``: over a real
offline synthesis job, the split, verified share, agreement and score are printed, and a second
run asks nothing again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import personahub
from personahub.api import run_synthesis
from personahub.core.errors import UsageError
from personahub.core.store import connect
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, usage_error
from tests.pipeline_helpers import rows


def _job(db: Path, n: int = 12) -> str:
    return run_synthesis(SynthConfig(task="math_problem", n=n, db=str(db))).job_id


@pytest.mark.slow
def test_evaluate_prints_split_agreement_and_score_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "ev.duckdb"
    job = _job(db)
    args = ("evaluate", "--db", db, "--job", job, "--test-n", "4", "--seed", "1",
            "--solver", "offline?seed=1", "--solver", "offline?seed=2#cot",
            "--model", "offline?seed=3", "--agree", "1", "--mode", "answer")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert re.search(r"of job \S+: 12 items, test 4, train 8", result.output)
    # --agree 1: every answered item is verified, with the first solver's answer as reference
    assert "verified: 4 of 4 test items (100.0%)" in result.output
    # --mode answer is the default; the second solver's own #cot wins: its name has no mark
    assert re.search(r"agreement: offline\?seed=1#answer ~ offline\?seed=2 \d+%", result.output)
    assert re.search(r"score offline\?seed=3#answer: \d/4 = .*95% Wilson", result.output)
    assert "model calls: ok=12" in result.output
    # it says what it is doing as the other jobs do, and names the evaluation by one id
    assert re.search(r"evaluation evaluation-\w+ started in ", result.stderr)
    assert "progress: evaluating 12/12" in result.stderr and "12 calls" in result.stderr
    assert "split" not in result.stdout.splitlines()[0]
    again = invoke(*args)
    assert "model calls: ok=12" in again.output  # nothing asked again
    con = connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM llm_calls WHERE job_kind = 'evaluation'"
                           ).fetchone() == (12,)
        # each solver's answers are stored with its own prompting, reasoning only under cot
        assert con.execute("SELECT spec, mode, count(reasoning) FROM eval_answers GROUP BY ALL "
                           "ORDER BY ALL").fetchall() == [
            ("offline?seed=1#answer", "answer", 0), ("offline?seed=2", "cot", 4),
            ("offline?seed=3#answer", "answer", 0)]
    finally:
        con.close()


def test_evaluate_usage_errors(tmp_path: Path) -> None:
    db = tmp_path / "bad.duckdb"
    job = _job(db, 3)
    assert "exactly one of --test-share or --test-n" in usage_error(
        invoke("evaluate", "--db", db, "--job", job, "--solver", "offline"))
    assert "must be one of cot, answer, got 'pot'" in usage_error(
        invoke("evaluate", "--db", db, "--job", job, "--solver", "offline#pot", "--test-n", "1",
               "--agree", "1"))
    # --provider-batch with a solver that answers in process (no Batch API): one line, nothing asked
    refused = invoke("evaluate", "--db", db, "--job", job, "--solver", "offline", "--test-n",
                     "1", "--agree", "1", "--provider-batch")
    assert refused.exit_code == 2
    assert "--provider-batch: offline answers in process and has no Batch API" in refused.output
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE job_kind = 'evaluation'") == [(0,)]
    # a batch file is refused in one line, not ignored (the command has no such option)
    with pytest.raises(UsageError, match="provider_batch_file is not supported"):
        personahub.evaluate(job=job, solvers=["offline"], db=db, test_n=1, agree=1,
                            provider_batch_file=str(tmp_path / "requests.jsonl"))
    # an unknown executor is refused as for every kind (--executor ray runs: test_evaluate_ray)
    assert "--executor 'dask': use one of local, ray" in usage_error(
        invoke("evaluate", "--db", db, "--job", job, "--solver", "offline", "--test-n", "1",
               "--agree", "1", "--executor", "dask"))
    with pytest.raises(UsageError, match="use one of local, ray"):
        personahub.evaluate(job=job, solvers=["offline"], db=db, test_n=1, agree=1,
                            executor="dask")
    assert "a --solver is given twice (with the same prompting)" in usage_error(
        invoke("evaluate", "--db", db, "--job", job, "--solver", "offline", "--solver",
               "offline#cot", "--test-n", "1"))
    assert "--agree must be between 1 and the 1 solvers" in usage_error(
        invoke("evaluate", "--db", db, "--job", job, "--solver", "offline", "--test-n", "1"))


@pytest.mark.slow
def test_the_api_evaluates_like_the_command(tmp_path: Path) -> None:
    db = tmp_path / "api.duckdb"
    job = _job(db)
    summary = personahub.evaluate(job=job, solvers=["offline?seed=1", "offline?seed=2"], db=db,
                                  test_share=0.25, agree=1, models=["offline"])
    assert (summary.split.test, summary.verified) == (3, 3)
    assert summary.scores[0].total == 3
    assert summary.calls == {"ok": 9}


def test_an_unknown_job_or_database_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """A job id that is not there exits 1 in one line; a database that does not exist is not
    created (nothing half-written), and one that exists gets no evaluation rows."""
    missing = tmp_path / "none.duckdb"
    args = ("--job", "nosuch", "--solver", "offline", "--agree", "1", "--test-n", "2")
    result = invoke("evaluate", "--db", missing, *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == \
        f"error: --job nosuch: no such synthesis job in {missing}"
    assert not missing.exists()
    db = tmp_path / "ev.duckdb"
    _job(db, n=2)
    result = invoke("evaluate", "--db", db, *args)
    assert result.exit_code == 1 and "--job nosuch: no synthesized items" in result.output
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM eval_splits").fetchone() == (0,)
    finally:
        con.close()


@pytest.mark.slow
def test_two_models_print_their_paired_difference_and_return_dataframes(tmp_path: Path) -> None:
    db = tmp_path / "two.duckdb"
    job = _job(db)
    result = invoke("evaluate", "--db", db, "--job", job, "--test-n", "6", "--agree", "1",
                    "--solver", "offline?seed=1", "--model", "offline?seed=1",
                    "--model", "offline?seed=2")
    assert result.exit_code == 0, result.output
    # the first model is the solver itself: right on every verified item
    assert "score offline?seed=1: 6/6 = 100.0%" in result.output
    assert re.search(r"difference offline\?seed=1 - offline\?seed=2: \+\d+\.\d% on 6 items "
                     r"\(95% paired bootstrap .* McNemar p=", result.output)
    summary = personahub.evaluate(job=job, solvers=["offline?seed=1"], db=db, test_n=6,
                                  agree=1, models=["offline?seed=1", "offline?seed=2"])
    assert summary.calls == {"ok": 18}  # the same job: its 3 x 6 answers, none asked again
    overall = summary.groups[summary.groups["by"] == "all"]
    assert overall[["model", "correct", "total"]].values.tolist()[0] == ["offline?seed=1", 6, 6]
    (row,) = summary.differences.itertuples()
    assert (row.model_a, row.model_b, row.items) == ("offline?seed=1", "offline?seed=2", 6)
    assert row.difference == pytest.approx(1 - overall["accuracy"].tolist()[1])
