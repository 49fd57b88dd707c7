"""``personahub judge`` (personahub/cli/judge.py): figures printed, the offline label, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from personahub.api import run_synthesis
from personahub.core.store import connect
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, one_line_error, usage_error


def _job(db: Path) -> str:
    return run_synthesis(SynthConfig(task="instruction", n=6, db=str(db))).job_id


def test_judge_prints_the_rate_with_its_interval_and_says_offline(tmp_path: Path):
    db = tmp_path / "cli.duckdb"
    job = _job(db)
    result = invoke("judge", "--db", db, "--job", job, "--sample", "5", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "no language model is used" in result.stderr
    assert re.search(r"^valid: \d+\.\d% \(\d/5; 95% CI \d+\.\d–\d+\.\d%\)", result.output, re.M)
    assert re.search(r"^  clear: .*\n  answerable: ", result.output, re.M)
    assert "the offline engine is not a judge of quality" in result.output
    assert "5 items judged (0 already judged, 0 failed)" in result.output
    again = invoke("judge", "--db", db, "--job", job, "--sample", "5", "--seed", "2")
    assert "0 items judged (5 already judged, 0 failed)" in again.output
    con = connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM judgments").fetchone() == (5,)
    con.close()


def test_judge_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # a plain progress line is due every 5 s; a slow machine's unreachable call can take longer
    monkeypatch.setenv("PERSONAHUB_PROGRESS_EVERY", "3600")
    db = tmp_path / "err.duckdb"
    job = _job(db)
    assert "exactly one of --job or --run" in usage_error(invoke("judge", "--db", db))
    assert "no such run" in one_line_error(invoke("judge", "--db", db, "--run", "nope"))
    assert "no items of task 'tool_spec'" in one_line_error(
        invoke("judge", "--db", db, "--job", job, "--task", "tool_spec"))
    line = one_line_error(invoke("judge", "--db", db, "--job", job,
                                 "--llm", "http://127.0.0.1:9/v1?model=m"))
    assert "unreachable" in line


def test_judge_help_is_listed():
    result = invoke("judge", "--help")
    assert result.exit_code == 0 and "--sample" in result.output and "--run" in result.output


def test_the_old_kind_flag_still_selects_a_task_and_says_it_is_renamed(tmp_path: Path):
    db = tmp_path / "alias.duckdb"
    job = _job(db)
    new = invoke("judge", "--db", db, "--job", job, "--task", "instruction", "--sample", "2")
    assert new.exit_code == 0, new.output
    assert "deprecated" not in new.stderr
    old = invoke("judge", "--db", db, "--job", job, "--kind", "instruction", "--sample", "2")
    assert old.exit_code == 0, old.output
    assert "--kind is deprecated; it is called --task now" in old.stderr
    assert "0 items judged (2 already judged, 0 failed)" in old.output  # the same judge
    out = tmp_path / "x.jsonl"
    exported = invoke("export", "--db", db, "--job", job, "--kind", "instruction", "--out", out)
    assert exported.exit_code == 0, exported.output
    assert "--kind is deprecated; it is called --task now" in exported.stderr
    both = usage_error(invoke("export", "--db", db, "--job", job, "--kind", "instruction",
                              "--task", "instruction", "--out", tmp_path / "y.jsonl"))
    assert "--kind is the old name of --task" in both
