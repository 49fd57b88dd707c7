"""Evaluation of a synthesis job's items: the held-out split, solver agreement,
the agreement matrix and a model's score with its Wilson interval."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import duckdb
import pytest
from scipy.stats import binomtest

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import connect
from personahub.models.client import make_client
from personahub.pipelines.evaluate import (
    agreement_matrix,
    answer_name,
    held_out_items,
    score,
    solve,
    solver_settings,
    spec_mode,
    split_job,
    undecided_pairs,
    verify_items,
)
from personahub.pipelines.evaluate_scores import pair_key, same_answers, solver_answers

JOB = "synth-test"


def _items(con: duckdb.DuckDBPyConnection, n: int = 100) -> dict[str, str]:
    """n items; every 10th item starts a chain of two near-duplicates (i+1 -> i, i+2 -> i+1)."""
    duplicate_of: dict[str, str] = {}
    rows = []
    for i in range(n):
        item = f"item-{i:03d}"
        original = None
        if i % 10 in (1, 2):
            original = f"item-{i - 1:03d}"
            duplicate_of[item] = original
        rows.append([item, JOB, f"p{i}", "math_problem", "default",
                     json.dumps({"problem": f"What is {i} + {i}?"}), f"What is {i} + {i}?",
                     original is not None, original])
    con.executemany("INSERT INTO synth_items (item_id, job_id, persona_id, task, prompting, "
                    "content, text, is_duplicate, duplicate_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows)
    return duplicate_of


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "eval.duckdb")
    yield con
    con.close()


def _split(con, eval_id):
    return dict(con.execute("SELECT item_id, split FROM eval_splits WHERE eval_id = ?",
                            [eval_id]).fetchall())


def test_split_is_seeded_and_near_duplicates_never_straddle(con):
    _items(con)
    first = split_job(con, JOB, test_share=0.2, seed=1, eval_id="e1")
    assert (first.items, first.test, first.train) == (100, 20, 80)
    # the job's flags chain 10 families of 3; the 70 others have no near-duplicate
    assert (first.families, first.family_items) == (10, 30)
    split = _split(con, "e1")
    for start in range(0, 100, 10):  # each chain on one side
        assert len({split[f"item-{start + k:03d}"] for k in range(3)}) == 1
    split_job(con, JOB, test_share=0.2, seed=1, eval_id="e2")
    assert _split(con, "e2") == split  # the same seed, the same split
    split_job(con, JOB, test_share=0.2, seed=2, eval_id="e3")
    assert _split(con, "e3") != split
    again = split_job(con, JOB, test_share=0.5, seed=9, eval_id="e1")  # stored: read back
    assert (again.test, _split(con, "e1")) == (20, split)
    assert len(held_out_items(con, "e1")) == 20


def test_split_with_a_count_never_exceeds_it_and_refuses_bad_settings(con):
    _items(con, 30)
    summary = split_job(con, JOB, test_n=7, seed=3, eval_id="n")
    assert summary.test == 7
    with pytest.raises(UsageError):
        split_job(con, JOB, test_share=0.2, test_n=3)
    with pytest.raises(UsageError):
        split_job(con, JOB, test_share=1.5)


def test_offline_seed_in_a_solver_spec():
    """The model layer reads ``offline?seed=N`` (any ``--llm``): the offline engine, seed N."""
    client = make_client(solver_settings("offline?seed=2", seed=7))
    assert (client.settings.spec, client.settings.seed) == ("offline", 2)
    assert make_client(solver_settings("offline")).settings.seed == 0
    with pytest.raises(UsageError, match="only \\?seed=N"):
        solver_settings("offline?temperature=1")
    with pytest.raises(UsageError, match="seed must be an integer"):
        solver_settings("offline?seed=x")


@pytest.mark.slow
def test_offline_solvers_answer_every_test_item_and_every_call_is_logged(con):
    _items(con, 20)
    split_job(con, JOB, test_n=5, seed=0, eval_id="ev")
    for seed in (1, 2):
        caller = make_client(solver_settings(f"offline?seed={seed}"))
        done = asyncio.run(solve(con, "ev", f"offline?seed={seed}", caller, samples=2))
        assert (done.written, done.failed) == (10, 0)
    answers = solver_answers(con, "ev")
    assert set(answers) == {"offline?seed=1", "offline?seed=2"}
    assert all(len(per) == 5 for per in answers.values())
    assert answers["offline?seed=1"] != answers["offline?seed=2"]  # seeds make them differ
    calls = con.execute("SELECT count(*), count(run_id) FROM llm_calls "
                        "WHERE job_kind = 'evaluation' AND job_id = 'ev' AND purpose = 'solve'"
                        ).fetchone()
    assert calls == (20, 0)  # the evaluation's calls, none of a scenario run (run_id NULL)
    assert con.execute("SELECT DISTINCT max_tokens FROM llm_calls WHERE job_id = 'ev'"
                       ).fetchall() == [(600,)]  # every call bounded (SOLVE_MAX_TOKENS)
    # a second pass (a resume) asks nothing again
    again = asyncio.run(solve(con, "ev", "offline?seed=1",
                              make_client(solver_settings("offline?seed=1")), samples=2))
    assert (again.written, again.skipped) == (0, 10)
    assert con.execute("SELECT count(*) FROM llm_calls WHERE job_id = 'ev'").fetchone() == (20,)


def _answers(con, eval_id, role, spec, answers, sample=0):
    con.executemany("INSERT INTO eval_answers (eval_id, item_id, role, spec, mode, sample, answer) "
                    "VALUES (?, ?, ?, ?, 'cot', ?, ?)",
                    [[eval_id, item, role, spec, sample, a] for item, a in answers.items()])


def test_items_are_verified_by_equivalent_answers_and_models_scored_on_them(con):
    _answers(con, "v", "solver", "a", {"i1": "0.5", "i2": "7", "i3": "{1, 2}", "i4": "x=3"})
    _answers(con, "v", "solver", "b", {"i1": "1/2", "i2": "8", "i3": r"\{2,1\}", "i4": "4"})
    _answers(con, "v", "solver", "c", {"i1": r"\frac{1}{2}", "i2": "9", "i3": "2", "i4": "3"})
    counts = verify_items(con, "v", agree=2)
    assert counts == {"verified": 3, "unverified": 1}
    rows = {r[0]: r[1:] for r in con.execute(
        "SELECT item_id, verified, reference, agreed FROM eval_verified WHERE eval_id = 'v'"
    ).fetchall()}
    assert rows["i1"] == (True, "0.5", json.dumps(["a", "b", "c"]))
    assert rows["i2"] == (False, None, "[]")
    assert rows["i3"][:2] == (True, "{1, 2}") and json.loads(rows["i3"][2]) == ["a", "b"]
    assert json.loads(rows["i4"][2]) == ["a", "c"]
    assert verify_items(con, "v", agree=3) == {"verified": 1, "unverified": 3}
    with pytest.raises(UsageError):
        verify_items(con, "v", agree=4)
    verify_items(con, "v", agree=2)

    matrix = agreement_matrix(con, "v")
    assert matrix["a"]["a"] == 1.0
    assert matrix["a"]["b"] == pytest.approx(2 / 4)
    assert matrix["a"]["c"] == pytest.approx(2 / 4)  # i1 and i4 (x=3 is 3)
    assert matrix["b"]["c"] == pytest.approx(1 / 4)
    assert matrix["b"]["a"] == matrix["a"]["b"]

    _answers(con, "v", "model", "m", {"i1": "0.50", "i3": "{1,3}", "i4": "3"})
    result = score(con, "v", "m")
    assert (result.correct, result.total) == (2, 3)  # i3 wrong; i2 unverified, not scored
    low, high = binomtest(2, 3).proportion_ci(method="wilson")
    assert (result.low, result.high) == pytest.approx((low, high))
    assert score(con, "v", "nobody").correct == 0


def test_undecidable_pairs_count_as_unequal_unless_a_judge_said_equal(con):
    _answers(con, "j", "solver", "a", {"i1": "three", "i2": "7", "i3": "a dozen"})
    _answers(con, "j", "solver", "b", {"i1": "3", "i2": "7.0", "i3": "12"})
    _answers(con, "j", "model", "m", {"i1": "3", "i3": "twelve"})
    # math-verify cannot read the words: those pairs are what a judge is asked, each once
    assert undecided_pairs(con, "j") == [("12", "a dozen"), ("12", "twelve"),
                                         ("3", "three"), ("a dozen", "twelve")]
    assert verify_items(con, "j", agree=2) == {"verified": 1, "unverified": 2}
    assert agreement_matrix(con, "j")["a"]["b"] == pytest.approx(1 / 3)
    # a judge said i1's pair equal and i3's not: i1 is verified, the matrix and score follow
    same = same_answers({pair_key("three", "3"): True, pair_key("a dozen", "12"): False,
                         pair_key("twelve", "12"): True})
    assert verify_items(con, "j", agree=2, same=same) == {"verified": 2, "unverified": 1}
    assert agreement_matrix(con, "j", same)["a"]["b"] == pytest.approx(2 / 3)
    # i1 (reference "three") is right only by the verdict; i2 unanswered; i3 unverified
    assert (score(con, "j", "m", same=same).correct, score(con, "j", "m").correct) == (1, 0)
    # a verdict never overrides what math-verify decides
    assert same_answers({pair_key("7", "8"): True})("7", "8") is False


def test_a_spec_carries_its_own_prompting_mode():
    assert spec_mode("offline?seed=2#answer") == ("offline?seed=2", "answer")
    assert spec_mode("offline?seed=2", "answer") == ("offline?seed=2", "answer")
    assert spec_mode("http://h:8080/v1#cot", "answer") == ("http://h:8080/v1", "cot")
    assert answer_name("offline#cot", "answer") == "offline"
    assert answer_name("offline", "answer") == "offline#answer"
    assert answer_name("http://user:secret@h:8080/v1#answer") == "http://***@h:8080/v1#answer"
    with pytest.raises(UsageError, match="one of cot, answer"):
        spec_mode("offline#pot")
    assert solver_settings("offline?seed=3#answer").spec == "offline?seed=3"


def test_a_solvers_samples_vote_for_its_answer(con):
    _answers(con, "s", "solver", "a", {"i1": "3"}, sample=0)
    _answers(con, "s", "solver", "a", {"i1": "1/2"}, sample=1)
    _answers(con, "s", "solver", "a", {"i1": "0.5"}, sample=2)
    assert solver_answers(con, "s") == {"a": {"i1": "1/2"}}


def _word_items(con: duckdb.DuckDBPyConnection, n: int) -> list[str]:
    """n items of 20 words drawn from a large vocabulary (no two near-duplicates)."""
    import random

    rng = random.Random(7)
    vocab = [f"w{k}" for k in range(5000)]
    texts = [" ".join(rng.sample(vocab, 20)) for _ in range(n)]
    con.executemany("INSERT INTO synth_items (item_id, job_id, persona_id, task, prompting, "
                    "content, text) VALUES (?, ?, ?, 'math_problem', 'default', '{}', ?)",
                    [[f"item-{i:03d}", JOB, f"p{i}", t] for i, t in enumerate(texts)])
    return texts


def test_a_whole_evaluation_flags_planted_items_scores_and_resumes(tmp_path):
    from personahub.api import run_evaluation_config as run_evaluation
    from personahub.pipelines.evaluate import EvalConfig, summary_lines

    db = tmp_path / "whole.duckdb"
    con = connect(db)
    texts = _word_items(con, 60)
    con.close()
    planted = [3, 10, 17, 25, 40]
    reworded = {17: "changed", 25: "other"}  # one word of the item replaced
    bench = tmp_path / "bench.jsonl"
    with bench.open("w") as f:
        for i in planted:
            words = texts[i].split()
            if i in reworded:
                words[0] = reworded[i]
            f.write(json.dumps({"question": " ".join(words)}) + "\n")
        for k in range(30):
            f.write(json.dumps({"question": f"unrelated benchmark question number {k} here"}) + "\n")
    config = EvalConfig(job=JOB, solvers=("offline?seed=1", "offline?seed=2", "offline?seed=3"),
                        models=("offline?seed=4",), test_n=10, seed=5, agree=2,
                        against=(str(bench),), db=str(db))
    first = run_evaluation(config)
    flagged = {f"item-{i:03d}" for i in planted}
    assert first.contaminated == 5
    assert (first.split.test, first.split.train) == (10, 45)
    assert first.verified + first.unverified == 10
    assert set(first.matrix) == set(config.solvers)
    assert [s.total for s in first.scores] == [first.verified]
    assert first.calls == {"ok": 40}  # 3 solvers and 1 model, 10 test items each
    lines = summary_lines(first)
    assert "contaminated: 5 items flagged by --against (bench.jsonl 5), left out of both sides" \
        in lines and lines[-2].startswith("score offline?seed=4")

    again = run_evaluation(config)  # a re-run (as after a kill): nothing asked again
    assert again.calls == {"ok": 40} and again.matrix == first.matrix
    assert (again.verified, again.split) == (first.verified, first.split)
    con = connect(db)
    try:
        stored = {r[0] for r in con.execute(
            "SELECT item_id FROM eval_splits WHERE split = 'excluded'").fetchall()}
        assert stored == flagged
        assert con.execute("SELECT count(*) FROM eval_answers").fetchone() == (40,)
    finally:
        con.close()
    kept = run_evaluation(dataclasses.replace(config, keep_contaminated=True, models=()))
    assert kept.eval_id != first.eval_id
    assert (kept.contaminated, kept.split.test, kept.split.train) == (5, 10, 50)
    assert "contaminated: 5 items flagged by --against (bench.jsonl 5), kept in the split " \
        "(--keep-contaminated)" in summary_lines(kept)


@pytest.mark.slow
def test_editing_the_against_file_changes_the_result(tmp_path):
    """The check is keyed by the benchmark's contents, not its path: after the file is edited,
    the same command flags what the new file holds, not what the old one did."""
    from personahub.api import run_evaluation_config as run_evaluation
    from personahub.pipelines.evaluate import EvalConfig

    db = tmp_path / "edited.duckdb"
    con = connect(db)
    texts = _word_items(con, 40)
    con.close()
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": texts[i]}) + "\n" for i in (1, 5, 9)))

    def evaluate():
        return run_evaluation(EvalConfig(job=JOB, solvers=("offline?seed=1",), agree=1,
                                         test_n=5, against=(str(bench),), db=str(db)))

    before = evaluate()
    assert (before.contaminated, before.split.train) == (3, 32)
    bench.write_text(json.dumps({"question": "an unrelated benchmark question"}) + "\n")
    after = evaluate()
    assert (after.contaminated, after.split.train) == (0, 35)
    assert after.eval_id != before.eval_id and after.job_id != before.job_id


def test_a_split_that_would_leave_one_side_empty_is_refused(con):
    _items(con, 10)
    with pytest.raises(PersonahubError, match="would leave one split empty"):
        split_job(con, JOB, test_n=10)
    with pytest.raises(PersonahubError, match="would leave one split empty"):
        split_job(con, JOB, test_share=0.01)


def test_answers_commit_batch_by_batch_so_a_kill_keeps_the_batches_done(con):
    """A pass stopped in its third batch keeps the first two (answers and calls), and the next
    pass asks only the rest."""
    _items(con, 40)
    split_job(con, JOB, test_n=10, seed=0, eval_id="k")
    caller = make_client(solver_settings("offline?seed=1"))

    class Killed(Exception):
        pass

    asked = 0
    real = caller.structured

    async def dying(*args, **kwargs):
        nonlocal asked
        asked += 1
        if asked > 8:
            raise Killed
        return await real(*args, **kwargs)

    caller.structured = dying  # type: ignore[method-assign]
    with pytest.raises(Killed):
        asyncio.run(solve(con, "k", "offline?seed=1", caller, batch_size=4))
    stored = con.execute("SELECT count(*) FROM eval_answers WHERE eval_id = 'k'").fetchone()
    assert stored == (8,)
    assert con.execute("SELECT count(*) FROM llm_calls WHERE job_id = 'k'").fetchone() == (8,)
    rest = asyncio.run(solve(con, "k", "offline?seed=1",
                             make_client(solver_settings("offline?seed=1")), batch_size=4))
    assert (rest.skipped, rest.written) == (8, 2)
