"""One name per kind: the tool kind is ``tool_spec`` in runs and synthesis alike. ``tool``, its
synthesis name before 0.1.0, is an unknown kind: a usage error on the command line (exit 2)
and from Python, never read as ``tool_spec``."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import connect
from personahub.pipelines.judge import JUDGE, JudgeConfig, judge_id_for
from personahub.pipelines.synthesize import SynthConfig
from personahub.tasks.shipped_demos import builtin_text
from tests.cli_helpers import invoke


def test_the_former_name_is_an_unknown_kind_on_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "hub.duckdb")
    listed = invoke("synthesize", "--list")
    assert listed.exit_code == 0 and "tool_spec" in listed.stdout
    refused = invoke("synthesize", "tool", "--n", "2", "--db", db)
    assert refused.exit_code == 2 and "'tool'" in refused.output and "tool_spec" in refused.output
    made = invoke("synthesize", "tool_spec", "--n", "2", "--db", db)
    assert made.exit_code == 0, made.output
    con = connect(db, read_only=True)
    assert con.execute("SELECT DISTINCT task FROM synth_items").fetchall() == [("tool_spec",)]
    job = con.execute("SELECT job_id FROM synth_jobs").fetchall()[0][0]
    con.close()
    judged = invoke("judge", "--db", db, "--job", job, "--task", "tool_spec")
    assert judged.exit_code == 0, judged.output
    exported = invoke("export", "--db", db, "--job", job, "--task", "tool",
                      "--out", str(tmp_path / "out.jsonl"))
    assert exported.exit_code != 0 and "tool" in exported.output


def test_the_former_name_is_an_unknown_kind_from_python() -> None:
    with pytest.raises(UsageError, match="'tool'"):
        SynthConfig(task="tool")
    with pytest.raises(PersonahubError, match="no shipped demonstrations for 'tool'"):
        builtin_text("builtin:tool")  # a job's examples are not renamed either
    assert JudgeConfig(job="j", task="tool").task == "tool"  # kept as given: it matches no item


def test_a_judge_keeps_its_id_and_resumes_from_a_config_stored_as_kind() -> None:
    """The id hashes the task under its former name, so a judge made before the rename is the
    same judge; a stored config that says kind resumes as task."""
    # the id the same settings had before the rename
    assert judge_id_for(JudgeConfig(job="synth-1", task="instruction", sample=3)) == \
        "judge-b92cd0a43fe1"
    assert JUDGE.upgrade({"job": "synth-1", "kind": "instruction"}) == {
        "job": "synth-1", "task": "instruction"}
