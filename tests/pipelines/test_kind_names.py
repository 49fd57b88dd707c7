"""One name per kind (issue 27): the tool kind is ``tool_spec`` in runs and synthesis alike. A
file written when synthesis called it ``tool`` (schema version 3) reads the same under the new
name, read-only without a byte changed, and is renamed in place by the first writer; ``tool``
still answers on the command line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from personahub.analysis.export import export, load_items
from personahub.api import run_judge, run_synthesis
from personahub.core.jobs_store import find_job
from personahub.core.migrate import SCHEMA_VERSION, schema_version
from personahub.core.store import connect
from personahub.pipelines.judge import JudgeOptions
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def age_to_version_3(path: Path) -> None:
    """Write back what personahub stored before the rename: the synthesis task ``tool``."""
    con = connect(path)
    con.execute("UPDATE synth_items SET task = 'tool'")
    con.execute("UPDATE synth_jobs SET task = 'tool'")
    con.execute("UPDATE judgments SET kind = 'tool'")
    con.execute("UPDATE llm_calls SET purpose = 'synth:tool' WHERE purpose = 'synth:tool_spec'")
    con.execute("UPDATE jobs SET config = json_merge_patch(config, "
                "'{\"task\": \"tool\", \"examples\": \"builtin:tool\"}') WHERE kind = 'synthesis'")
    con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', '3')")
    con.close()


def exported(db: Path, out: Path, job: str, kind: str | None = None) -> list[dict]:
    con = connect(db, read_only=True)
    try:
        export(con, out, "personahub", job=job, kind=kind)
        assert {i.kind for i in load_items(con, job=job, kind=kind)} == {"tool_spec"}
    finally:
        con.close()
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_an_older_files_tool_items_read_and_migrate_to_the_one_name(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    job = run_synthesis(SynthConfig(task="tool", n=3, prompting="few-shot", db=str(db))).job_id
    run_judge(JudgeOptions(job=job, db=str(db)))
    fresh = exported(db, tmp_path / "fresh.jsonl", job)
    assert len(fresh) == 3
    old = tmp_path / "old.duckdb"
    shutil.copy(db, old)
    age_to_version_3(old)

    before = digest(old)  # a reader sees the new name and changes nothing
    assert exported(old, tmp_path / "read.jsonl", job, kind="tool") == fresh
    assert exported(old, tmp_path / "read2.jsonl", job, kind="tool_spec") == fresh
    reader = connect(old, read_only=True)
    assert reader.execute("SELECT DISTINCT task FROM synth_jobs").fetchall() == [("tool_spec",)]
    assert reader.execute("SELECT DISTINCT kind FROM judgments").fetchall() == [("tool_spec",)]
    reader.close()
    assert digest(old) == before

    con = connect(old)  # the first writer renames what was stored
    assert schema_version(con) == SCHEMA_VERSION
    assert con.execute("SELECT DISTINCT task FROM main.synth_items").fetchall() == [("tool_spec",)]
    assert con.execute("SELECT DISTINCT kind FROM main.judgments").fetchall() == [("tool_spec",)]
    purposes = {r[0] for r in con.execute("SELECT purpose FROM llm_calls WHERE run_id = ?",
                                          [job]).fetchall()}
    assert "synth:tool_spec" in purposes and "synth:tool" not in purposes
    config = find_job(con, job).config  # type: ignore[union-attr]
    assert (config["task"], config["examples"]) == ("tool_spec", "builtin:tool_spec")
    con.close()
    assert exported(old, tmp_path / "migrated.jsonl", job) == fresh


def test_the_former_name_still_answers_on_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "hub.duckdb")
    listed = invoke("synthesize", "--list")
    assert listed.exit_code == 0 and "tool_spec" in listed.stdout
    made = invoke("synthesize", "tool", "--n", "2", "--db", db)
    assert made.exit_code == 0, made.output
    con = connect(db, read_only=True)
    assert con.execute("SELECT DISTINCT task FROM synth_items").fetchall() == [("tool_spec",)]
    job = con.execute("SELECT job_id FROM synth_jobs").fetchall()[0][0]
    con.close()
    judged = invoke("judge", "--db", db, "--job", job, "--kind", "tool")
    assert judged.exit_code == 0, judged.output
