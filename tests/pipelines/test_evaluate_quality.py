"""An evaluation's splits in exports and its quality at a glance: an
offline synthesis job, a benchmark file that plants three of its items, an offline evaluation;
``export --split`` writes one side without the contaminated items, the Hugging Face folder gets
both sides and a card stating the figures, and ``quality_table`` agrees with the evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personahub.api import run_evaluation_config, run_synthesis
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.pipelines.evaluate import EvalConfig, EvalSummary
from personahub.pipelines.evaluate_quality import (
    export_selection,
    find_evaluation,
    quality_lines,
    quality_table,
    split_item_ids,
)
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows

PLANTED = 3


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, EvalSummary, set[str]]:
    """(db, synthesis job, its evaluation, the planted items)."""
    tmp = tmp_path_factory.mktemp("quality")
    db = tmp / "q.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=30, db=str(db))).job_id
    items = rows(db, "SELECT item_id, text FROM synth_items ORDER BY item_id")
    bench = tmp / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": text}) + "\n"
                             for _, text in items[:PLANTED]))
    summary = run_evaluation_config(EvalConfig(
        job=job, solvers=("offline?seed=1", "offline?seed=2", "offline?seed=3"),
        models=("offline?seed=4",), test_n=8, agree=1, against=(str(bench),), db=str(db)))
    # agree=1: every answered test item is verified, so the model has a score whatever items the
    # time-stamped job ids put in the test split (offline solvers agree only by chance)
    # the planted items, and any item the offline engine's templates made near one of them
    flagged = {r[0] for r in rows(db, "SELECT DISTINCT item_id FROM eval_contamination")}
    assert flagged >= {item for item, _ in items[:PLANTED]}
    assert summary.contaminated == len(flagged)
    return db, job, summary, flagged


def _ids(path: Path) -> set[str]:
    return {json.loads(line)["item_id"] for line in path.read_text().splitlines()}


def test_export_split_writes_one_side_without_contaminated_items(
        evaluated: tuple[Path, str, EvalSummary, set[str]], tmp_path: Path) -> None:
    db, job, summary, planted = evaluated
    written = {}
    for side in ("train", "test"):
        out = tmp_path / f"{side}.parquet"
        result = invoke("export", "--job", job, "--split", side, "--format", "parquet",
                        "--out", out, "--db", db)
        assert result.exit_code == 0, result.output
        written[side] = {r[0] for r in rows(db, f"SELECT item_id FROM '{out}'")}
    assert len(written["test"]) == summary.split.test == 8
    assert len(written["train"]) == summary.split.train == 30 - 8 - len(planted)
    assert not written["train"] & written["test"]
    assert not (written["train"] | written["test"]) & planted
    # the split's own id names the same evaluation
    out = tmp_path / "by-id.parquet"
    assert invoke("export", "--evaluation", summary.eval_id, "--split", "test", "--format",
                  "parquet", "--out", out, "--db", db).exit_code == 0
    assert {r[0] for r in rows(db, f"SELECT item_id FROM '{out}'")} == written["test"]


def test_a_split_of_a_job_without_an_evaluation_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "plain.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=5, db=str(db))).job_id
    con = connect(db, read_only=True)
    try:
        assert find_evaluation(con, job=job) is None
        assert export_selection(con, job=job, hf=True) == {"job": job}
        with pytest.raises(PersonahubError, match="has no evaluation"):
            export_selection(con, job=job, split="test")
        with pytest.raises(PersonahubError, match="no such evaluation"):
            find_evaluation(con, "evaluation-nope")
    finally:
        con.close()


def test_quality_table_states_the_evaluations_figures(
        evaluated: tuple[Path, str, EvalSummary, set[str]]) -> None:
    db, job, summary, planted = evaluated
    con = connect(db, read_only=True)
    try:
        ev = find_evaluation(con, job=job)
        assert ev is not None and ev.job_id == summary.job_id and ev.eval_id == summary.eval_id
        assert split_item_ids(con, ev, "test") == {
            r[0] for r in rows(db, "SELECT item_id FROM eval_splits WHERE split = 'test'")}
        table = quality_table(con, ev)
    finally:
        con.close()
    by = {(r.figure, r.group): r for r in table.itertuples()}
    verified = by[("verified share", "test")]
    assert verified.value == pytest.approx(summary.verified_share)
    assert verified.low <= verified.value <= verified.high
    assert by[("contaminated share", "bench.jsonl")].value == pytest.approx(len(planted) / 30)
    pairs = [summary.matrix[a][b] for a in summary.matrix for b in summary.matrix if a < b]
    assert by[("solver agreement", "mean of pairs")].value == pytest.approx(
        sum(p for p in pairs if p is not None) / len(pairs))
    accuracy = summary.scores[0]
    assert by[("model accuracy", "offline?seed=4")].value == pytest.approx(accuracy.accuracy)
    assert ("distinct-2", "synth math_problem") in by
    assert ("judge validity", "offline") not in by  # no judge ran on the job
    lines = quality_lines(table)
    assert lines[0].startswith("figure") and any("verified share" in line for line in lines)


def _card(folder: Path) -> str:
    return (folder / "README.md").read_text()


def test_the_hf_folder_holds_both_splits_and_a_card_with_the_figures(
        evaluated: tuple[Path, str, EvalSummary, set[str]], tmp_path: Path) -> None:
    from tests.optional import need_hf

    need_hf()
    import datasets

    db, job, summary, planted = evaluated
    folder = tmp_path / "hf"
    result = invoke("export", "--job", job, "--format", "hf", "--out", folder, "--db", db)
    assert result.exit_code == 0, result.output
    loaded: Any = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert {s: len(loaded[s]) for s in loaded} == {"train": summary.split.train,
                                                    "test": summary.split.test}
    assert not set(loaded["train"]["item_id"]) & planted
    card = _card(folder)
    assert "## Evaluation" in card and summary.job_id in card
    assert "| verified share | test |" in card and "| contaminated share | bench.jsonl |" in card


def test_the_api_gives_the_same_table_by_evaluation_or_by_job(
        evaluated: tuple[Path, str, EvalSummary, set[str]]) -> None:
    import personahub

    db, job, summary, _ = evaluated
    by_job = personahub.evaluation_quality(job=job, db=db)
    by_id = personahub.evaluation_quality(summary.job_id, db=db)
    assert by_job.equals(by_id)
    assert list(by_job.columns) == ["figure", "group", "value", "low", "high", "detail"]


def test_report_evaluation_draws_the_table_and_the_scores(
        evaluated: tuple[Path, str, EvalSummary, set[str]], tmp_path: Path) -> None:
    db, job, summary, _ = evaluated
    out = tmp_path / "report"
    result = invoke("report", "--evaluation", summary.job_id, "--out", out, "--db", db)
    assert result.exit_code == 0, result.output
    assert "verified share" in result.output and "report written to" in result.output
    page = (out / "index.html").read_text()
    assert "Quality at a glance" in page and "evaluation_scores.png" in page
    assert (out / "evaluation_scores.png").stat().st_size > 0
    markdown = (out / "index.md").read_text()
    score = summary.scores[0]
    assert (f"| offline?seed=4 | all | all | {score.correct} | {score.total} | "
            f"{score.accuracy:.3f} | {score.low:.3f}–{score.high:.3f} |") in markdown
    assert "| verified share | test |" in markdown
    again = invoke("report", "--evaluation", summary.job_id, "--job", job, "--out", out,
                   "--db", db)
    assert again.exit_code != 0  # one target at a time
