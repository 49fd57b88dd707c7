"""``personahub evaluate --items FILE``: an outside item set (JSONL, CSV, Parquet or a datasets
folder) evaluated as a synthesis job's items are, by the same job kind: items with a reference
answer scored against it, the others verified by solver agreement; the score equals a hand
count; an edited file is a new item set; bad files and flags are refused in one line."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from personahub import runtime
from personahub.core.contracts import StructuredResult
from personahub.pipelines.evaluate import EVALUATION, EvalConfig, summary_lines
from personahub.pipelines.evaluate_files import read_items
from tests.cli_helpers import invoke, kill_when, one_line_error, usage_error
from tests.fakes import Call, FakeClient
from tests.optional import need_hf
from tests.pipeline_helpers import rows

# (question, reference column, the scored model's answer); a hand count of the model's score
HAND = [
    ("He has 3 apples and buys 4 more. How many?", "3 + 4 = 7\n#### 7", "7"),
    ("A farm sells 1,234 eggs. How many eggs?", "#### 1,234", "1234"),
    ("How many people live in the city?", "3000000", "3 million"),
    ("How many people live in the town?", "3", "3 million"),  # no false match
    ("How many pies are left?", "2.5", "2 and a half"),
    ("How many cakes are left?", "2", "2 and a half"),  # no false match
    ("What share of the class is absent?", "0.2", "20 percent"),
    ("How many eggs are in the box?", "12", "10 to 12"),  # a range: not 12
    ("What is six times seven?", None, "42.0"),  # the solvers agree on 42: verified
    ("What is two plus three?", None, "5"),  # the solvers disagree: unverified, not scored
]
# right: rows 0, 1, 2, 4, 6 (by reference) and 8 (by agreement) of 9 verified
HAND_SCORE = (6, 9)
SOLVED = {8: ("42", "42"), 9: ("5", "6")}  # each unreferenced row: the two solvers' answers


def write_jsonl(path: Path, rows_: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_), encoding="utf-8")
    return path


def hand_file(path: Path) -> Path:
    """HAND as a JSONL file (no "answer" key where a row has no reference), plus one row
    without a question."""
    out = [{"question": q, **({"answer": a} if a is not None else {})} for q, a, _ in HAND]
    return write_jsonl(path, [*out, {"question": "", "answer": "1"}])


def scripted() -> FakeClient:
    """The model answers each question as HAND says; the two solvers as SOLVED says (in the
    order the job asks them: every solver's answers before the model's)."""
    asked: dict[int, int] = {}

    def edit(call: Call, result: StructuredResult[Any]) -> StructuredResult[Any]:
        text = str(getattr(call.messages[-1], "content", ""))
        row = next(i for i, (q, _, _) in enumerate(HAND) if q in text)
        asked[row] = asked.get(row, 0) + 1
        solver = row in SOLVED and asked[row] <= 2
        answer = SOLVED[row][asked[row] - 1] if solver else HAND[row][2]
        fields = {"final_answer": answer}
        if "reasoning" in call.schema.model_fields:
            fields["reasoning"] = "worked out"
        return StructuredResult(call.schema(**fields), result.records)

    return FakeClient(edit=edit)


def test_the_score_equals_a_hand_count(tmp_path: Path) -> None:
    """References (GSM8K's "#### 1,234" too) score 8 items; two solvers verify one of the two
    without a reference; the model's score is the hand count, and the solvers answer only the
    items without a reference."""
    config = EvalConfig(items=str(hand_file(tmp_path / "hand.jsonl")),
                        solvers=("offline?seed=1", "offline?seed=2"), models=("offline?seed=3",),
                        agree=2, db=str(tmp_path / "hand.duckdb"))
    fake = scripted()
    summary = runtime.run(EVALUATION, config, config.db, client=fake).summary
    (score,) = summary.scores
    assert (score.correct, score.total) == HAND_SCORE
    assert (summary.verified, summary.unverified, summary.by_reference) == (9, 1, 8)
    assert fake.calls == 2 * 2 + len(HAND)  # solvers: rows 8 and 9 only; the model: all
    assert rows(config.db, "SELECT file_row, reference FROM eval_items WHERE file_row IN "
                "(0, 1, 8) ORDER BY 1") == [(0, "7"), (1, "1,234"), (8, None)]
    lines = summary_lines(summary)
    assert lines[0].endswith(": 10 items, test 10, train 0 (no --test-n or --test-share: "
                             "every item is a test item)")
    assert lines[1] == ("items: 11 rows, question column 'question', answer column 'answer': "
                        "8 with a reference answer; left out 1 row without a question")
    assert "verified: 9 of 10 test items (90.0%): 8 by their reference answer, 1 by solver " \
        "agreement" in lines
    assert "score offline?seed=3: 6/9 = 66.7% (95% Wilson 35.4%-87.9%)" in lines


def _gsm8k_like(n: int) -> list[dict[str, Any]]:
    """n made-up word problems in GSM8K's shape: the reference after "####"."""
    return [{"question": f"Mia packs {i} boxes of {i % 7 + 2} pens and {i % 5} loose pens. "
                         "How many pens does she have?",
             "answer": f"{i} * {i % 7 + 2} + {i % 5} = {i * (i % 7 + 2) + i % 5}\n"
                       f"#### {i * (i % 7 + 2) + i % 5}"} for i in range(n)]


@pytest.mark.slow
def test_a_jsonl_of_200_questions_runs_offline_with_its_reference_answers(
        tmp_path: Path) -> None:
    """200 questions, every one a test item scored against its reference: the score printed is
    the count of the model's stored answers that equal the reference number."""
    items = write_jsonl(tmp_path / "200.jsonl", _gsm8k_like(200))
    db = tmp_path / "200.duckdb"
    args = ["evaluate", "--items", items, "--model", "offline?seed=3#answer", "--db", db,
            "--batch-size", 50]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "of items " in result.stdout and ": 200 items, test 200, train 0" in result.stdout
    assert "verified: 200 of 200 test items (100.0%): 200 by their reference answer" \
        in result.stdout
    answers = dict(rows(db, "SELECT item_id, answer FROM eval_answers"))
    refs = dict(rows(db, "SELECT item_id, reference FROM eval_items"))
    hand = sum(re.fullmatch(r"\s*-?\d+\s*", answers[k]) is not None
               and int(answers[k]) == int(refs[k]) for k in refs)
    assert f"score offline?seed=3#answer: {hand}/200 = " in result.stdout
    assert "model calls: ok=200" in result.stdout
    # an answer-only call is bounded for the answer alone (ANSWER_MAX_TOKENS), not a solution
    assert rows(db, "SELECT DISTINCT max_tokens FROM llm_calls") == [(96,)]
    assert "progress: evaluating 200/200" in result.stderr  # shown as it runs
    again = invoke(*args)  # finished: the same lines, nothing asked
    assert again.stdout == result.stdout
    (what,), = rows(db, "SELECT config->>'items' FROM jobs WHERE kind = 'evaluation'")
    assert what == str(items)


def test_csv_parquet_and_jsonl_give_the_same_items(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [{"problem": q, "answer": a or ""} for q, a, _ in HAND]
    jsonl = write_jsonl(tmp_path / "i.jsonl", data)
    csv_file = tmp_path / "i.csv"
    import csv as csv_module

    with csv_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv_module.DictWriter(f, ["problem", "answer"])
        writer.writeheader()
        writer.writerows(data)
    parquet = tmp_path / "i.parquet"
    pq.write_table(pa.Table.from_pylist(data), parquet)
    read = [read_items(p) for p in (jsonl, csv_file, parquet)]
    assert read[0].items == read[1].items == read[2].items
    assert read[0].question_column == "problem" and read[0].with_reference == 8
    assert read[0].items[1] == (1, HAND[1][0], "1,234")  # after GSM8K's mark
    renamed = read_items(jsonl, question="problem", answer="-")
    assert renamed.answer_column is None and renamed.with_reference == 0


def test_a_datasets_folder_reads_as_its_rows(tmp_path: Path) -> None:
    need_hf()
    import datasets

    data = {"question": [q for q, _, _ in HAND], "answer": [a or "" for _, a, _ in HAND]}
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "one"))
    jsonl = write_jsonl(tmp_path / "i.jsonl", [{"question": q, "answer": a or ""}
                                                for q, a, _ in HAND])
    assert read_items(tmp_path / "one").items == read_items(jsonl).items
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "hub" / "data").mkdir(parents=True)  # the Hub's layout, as export --format hf
    pq.write_table(pa.Table.from_pydict(data), tmp_path / "hub/data/test-00000-of-00001.parquet")
    assert read_items(tmp_path / "hub").items == read_items(jsonl).items
    both = datasets.DatasetDict({"train": datasets.Dataset.from_dict(data),
                                 "test": datasets.Dataset.from_dict(data)})
    both.save_to_disk(str(tmp_path / "two"))
    refused = invoke("evaluate", "--items", tmp_path / "two", "--model", "offline",
                     "--db", tmp_path / "hf.duckdb")
    assert "holds the splits train, test; name one (e.g. " in usage_error(refused)
    result = invoke("evaluate", "--items", tmp_path / "two" / "test", "--model", "offline",
                    "--solver", "offline?seed=1", "--agree", 1, "--db", tmp_path / "hf.duckdb")
    assert result.exit_code == 0, result.output
    assert ": 10 items, test 10, train 0" in result.stdout


def test_without_the_hf_extra_a_datasets_folder_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    line = one_line_error(invoke("evaluate", "--items", folder, "--model", "offline",
                                 "--db", tmp_path / "x.duckdb"))
    assert line == (f"error: --items {folder}: a datasets folder needs the datasets package: "
                    "pip install 'personahub[hf]'")
    assert not (tmp_path / "x.duckdb").exists()


def test_bad_item_files_and_flags_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    db = tmp_path / "bad.duckdb"
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"q": "What is 1 + 1?", "a": "2"}])
    ask = ["--model", "offline", "--db", db]
    assert "no question column text / question / problem / prompt / input / content; its " \
        "columns are q, a (choose one with --question-column)" in usage_error(
            invoke("evaluate", "--items", plain, *ask))
    assert "no column 'x'; its columns are q, a (choose with --answer-column)" in usage_error(
        invoke("evaluate", "--items", plain, "--question-column", "q", "--answer-column", "x",
               *ask))
    assert one_line_error(invoke("evaluate", "--items", tmp_path / "none.jsonl", *ask)) == \
        f"error: --items {tmp_path / 'none.jsonl'}: file not found"
    (tmp_path / "plain.txt").write_text("What is 1 + 1?")
    assert "unknown format '.txt' (use .jsonl, .csv, .parquet or a datasets folder)" in \
        usage_error(invoke("evaluate", "--items", tmp_path / "plain.txt", *ask))
    assert "give --job and at least one --solver, or --items and a --solver or --model" in \
        usage_error(invoke("evaluate", "--items", plain, "--db", db))
    assert "give --job (a synthesis job) or --items (a file), not both" in usage_error(
        invoke("evaluate", "--items", plain, "--job", "j", "--solver", "offline", "--db", db))
    # questions without a reference answer need solvers to verify them
    assert "1 item(s) have no reference answer; give --solver to verify them by agreement" in \
        usage_error(invoke("evaluate", "--items", plain, "--question-column", "q", *ask))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "ok"}\n{not json\n')
    assert one_line_error(invoke("evaluate", "--items", broken, *ask)) == \
        f"error: --items {broken}:2: not valid JSON (Expecting property name enclosed in " \
        "double quotes)"
    assert not db.exists()


@pytest.mark.slow
def test_an_edited_item_file_is_a_new_item_set(tmp_path: Path) -> None:
    items = write_jsonl(tmp_path / "e.jsonl", [{"question": q, "answer": a or "0"}
                                               for q, a, _ in HAND])
    db = tmp_path / "e.duckdb"
    args = ["evaluate", "--items", items, "--model", "offline?seed=3", "--db", db]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    write_jsonl(items, [{"question": q, "answer": a or "0"} for q, a, _ in HAND[:6]])
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert ": 10 items, test 10" in first.stdout and ": 6 items, test 6" in second.stdout
    assert "model calls: ok=6" in second.stdout  # the new set's 6 questions, asked anew
    assert len(rows(db, "SELECT source_id FROM eval_item_sets")) == 2
    assert len(rows(db, "SELECT job_id FROM jobs WHERE kind = 'evaluation'")) == 2


@pytest.mark.slow
def test_a_split_of_an_item_set_and_its_report(tmp_path: Path) -> None:
    """--test-n splits an item set as a job's items; report --evaluation shows the item file
    and what it left out; its items are not exported (they are not synthesized data)."""
    items = hand_file(tmp_path / "s.jsonl")
    db = tmp_path / "s.duckdb"
    result = invoke("evaluate", "--items", items, "--test-n", 4, "--seed", 2, "--solver",
                    "offline?seed=1", "--agree", 1, "--model", "offline?seed=3", "--db", db)
    assert result.exit_code == 0, result.output
    assert ": 10 items, test 4, train 6" in result.stdout
    (job_id,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'evaluation'")
    report = invoke("report", "--evaluation", job_id, "--db", db, "--out", tmp_path / "rep")
    assert report.exit_code == 0, report.output
    page = (tmp_path / "rep" / "index.md").read_text()
    assert "| item file | s.jsonl | 11 |" in page and "left out 1 row without a question" in page
    refused = invoke("export", "--evaluation", job_id, "--split", "test", "--db", db,
                     "--out", tmp_path / "t.jsonl")
    assert "evaluates an outside item set (" in one_line_error(refused)


@pytest.mark.slow
def test_a_killed_item_evaluation_resumes_to_the_tables_of_an_uninterrupted_one(
        server: Any, tmp_path: Path) -> None:
    """``kill -9`` mid-way over the loopback server: ``personahub resume ID`` keeps the
    committed batches, asks the rest, and ends with the uninterrupted job's tables."""
    srv = server(latency_s=0.2)
    items = write_jsonl(tmp_path / "k.jsonl", [{"question": r["question"],
                                                "answer": r["answer"] if i % 3 else ""}
                                               for i, r in enumerate(_gsm8k_like(12))])
    url = srv.base_url
    args = ["evaluate", "--items", str(items), "--test-n", "8", "--seed", "1",
            "--solver", f"{url}?model=a", "--solver", f"{url}?model=b",
            "--model", f"{url}?model=c", "--agree", "1", "--batch-size", "2"]
    tables = ("SELECT eval_id, item_id, role, spec, mode, sample, answer FROM eval_answers "
              "ORDER BY ALL", "SELECT * FROM eval_splits ORDER BY ALL",
              "SELECT * FROM eval_verified ORDER BY ALL",
              "SELECT * EXCLUDE (created_at) FROM eval_item_sets ORDER BY ALL",
              "SELECT * FROM eval_items ORDER BY ALL")
    killed, whole = tmp_path / "killed.duckdb", tmp_path / "whole.duckdb"
    code = kill_when([*args, "--db", str(killed)], lambda: srv.stats.answered >= 5,
                     "the evaluation never answered 5 calls")
    assert code == -signal.SIGKILL
    [(job_id, status)] = rows(killed, "SELECT job_id, status FROM jobs")
    assert status == "running"
    assert 0 < len(rows(killed, tables[0]))
    resumed = invoke("resume", job_id, "--db", killed)
    assert resumed.exit_code == 0, resumed.output
    assert invoke(*args, "--db", whole).exit_code == 0
    assert [rows(killed, sql) for sql in tables] == [rows(whole, sql) for sql in tables]
    # 8 test items: the solvers answer the unreferenced ones, the model all 8
    unreferenced = rows(whole, "SELECT count(*) FROM eval_splits s JOIN eval_items i USING "
                        "(item_id) WHERE s.split = 'test' AND i.reference IS NULL")[0][0]
    assert len(rows(whole, tables[0])) == 2 * unreferenced + 8


@pytest.mark.slow
def test_the_api_evaluates_an_item_file(tmp_path: Path) -> None:
    import personahub

    items = write_jsonl(tmp_path / "api.jsonl", [{"question": q, "answer": a or "0"}
                                                 for q, a, _ in HAND[:4]])
    summary = personahub.evaluate(items=items, models=["offline?seed=3"],
                                  db=tmp_path / "api.duckdb", progress=False)
    assert summary.item_set is not None and summary.item_set.rows == 4
    assert (summary.by_reference, summary.scores[0].total, summary.calls) == (4, 4, {"ok": 4})


@pytest.mark.slow
def test_an_item_set_is_checked_against_another_file(tmp_path: Path) -> None:
    """--against works on an outside item set as on a job's items: flagged items are in neither
    side, and the summary says how many and by which file."""
    items = write_jsonl(tmp_path / "mine.jsonl", [{"question": q, "answer": a or "1"}
                                                  for q, a, _ in HAND])
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"question": HAND[0][0]},
                                                   {"question": HAND[2][0]}])
    result = invoke("evaluate", "--items", items, "--model", "offline?seed=3", "--against",
                    bench, "--db", tmp_path / "c.duckdb")
    assert result.exit_code == 0, result.output
    assert ": 10 items, test 8, train 0 (no --test-n" in result.stdout
    assert "contaminated: 2 items flagged by --against (bench.jsonl 2), left out of both sides" \
        in result.stdout
