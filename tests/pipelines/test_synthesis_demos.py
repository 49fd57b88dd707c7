"""Few-shot synthesis without ``--examples``: the task's shipped demonstrations are used, the job
records them as ``builtin:<task>`` (so resume and record/replay read the same ones), and
``--examples FILE`` still overrides. The README's example runs as written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from personahub.api import run_synthesis
from personahub.core.store import connect
from personahub.pipelines.synthesis_inputs import load_examples
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke
from tests.fakes import FakeClient
from tests.synth_helpers import write_examples


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def config(db: Path, job_id: str) -> dict:
    return json.loads(query(db, "SELECT config FROM synth_jobs "
                                "JOIN jobs USING (job_id) WHERE job_id = ?", [job_id])[0][0])


ITEMS = "SELECT persona_id, content, text, solution, is_duplicate FROM synth_items ORDER BY ALL"


def test_few_shot_modes_default_to_the_shipped_demonstrations() -> None:
    assert SynthConfig(task="tool_spec", prompting="few-shot").examples == "builtin:tool_spec"
    assert SynthConfig(task="npc", prompting="persona-few-shot").examples == "builtin:npc"
    assert SynthConfig(task="tool_spec").examples is None  # zero-shot takes none
    given = SynthConfig(task="tool_spec", prompting="few-shot", examples="mine.jsonl")
    assert given.examples == "mine.jsonl"


@pytest.mark.parametrize("mode", ["few-shot", "persona-few-shot"])
def test_job_prompts_with_and_records_the_shipped_demonstrations(tmp_path: Path,
                                                                 mode: str) -> None:
    db = tmp_path / "s.duckdb"
    client = FakeClient()
    summary = run_synthesis(SynthConfig(task="tool_spec", n=3, prompting=mode, db=str(db)),
                            client=client)
    assert summary.written == 3 and summary.failed == 0
    shipped = load_examples("builtin:tool_spec")
    stored = config(db, summary.job_id)
    assert stored["examples"] == "builtin:tool_spec"
    assert stored["demos"] == [{"text": d.text, "persona": d.persona} for d in shipped]
    assert client.by_purpose["text_to_persona"] == 0  # shipped demonstrations have personas
    prompts = [text for purpose, _, text in client.prompts if purpose != "text_to_persona"]
    assert prompts and all(d.text in p for p in prompts for d in shipped)
    assert all((shipped[0].persona in p) == (mode == "persona-few-shot") for p in prompts)


def test_examples_file_overrides_the_shipped_demonstrations(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    examples = write_examples(tmp_path / "ex.jsonl")
    summary = run_synthesis(SynthConfig(task="math_problem", n=2, prompting="few-shot",
                                         examples=str(examples), db=str(db)))
    stored = config(db, summary.job_id)
    assert stored["examples"] == str(examples)
    assert [d["text"] for d in stored["demos"]] == [d.text for d in load_examples(examples)]


def test_resume_reads_the_jobs_demonstrations(tmp_path: Path) -> None:
    """An interrupted job (half its items gone, marked interrupted) resumes to the same rows."""
    db = tmp_path / "s.duckdb"
    options = SynthConfig(task="instruction", n=6, prompting="persona-few-shot", db=str(db))
    job_id = run_synthesis(options).job_id
    whole = query(db, ITEMS)
    con = connect(db)
    con.execute("DELETE FROM synth_items WHERE item_id IN (SELECT item_id FROM synth_items "
                "ORDER BY item_id DESC LIMIT 3)")
    con.execute("UPDATE jobs SET status = 'interrupted' WHERE job_id = ?", [job_id])
    con.close()
    summary = run_synthesis(SynthConfig(task="instruction", db=str(db)), resume=job_id)
    assert (summary.prompting, summary.skipped_done, summary.written) == ("persona-few-shot", 3, 3)
    assert query(db, ITEMS) == whole
    assert config(db, job_id)["examples"] == "builtin:instruction"


def test_record_then_replay_with_shipped_demonstrations(tmp_path: Path) -> None:
    recorded, replayed = tmp_path / "rec.duckdb", tmp_path / "rep.duckdb"
    start = ["synthesize", "reasoning_problem", "--n", 3, "--prompting", "few-shot", "--solve"]
    assert invoke(*start, "--db", recorded, "--cache", "record").exit_code == 0
    shutil.copy(recorded, replayed)
    con = connect(replayed)  # the same hub, the recorded answers only
    con.execute("DELETE FROM synth_items; DELETE FROM synth_jobs; DELETE FROM jobs; DELETE FROM llm_calls")
    con.close()
    result = invoke(*start, "--db", replayed, "--cache", "replay")
    assert result.exit_code == 0, result.output
    assert query(replayed, ITEMS) == query(recorded, ITEMS)
    assert {r[0] for r in query(replayed, "SELECT cached FROM llm_calls")} == {True}


def test_readme_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``personahub synthesize math_problem --n 50 --prompting persona-few-shot --solve``."""
    monkeypatch.chdir(tmp_path)
    result = invoke("synthesize", "math_problem", "--n", "50", "--prompting",
                    "persona-few-shot", "--solve")
    assert result.exit_code == 0, result.output
    db = tmp_path / "personahub.duckdb"
    (job_id, status), = query(db, "SELECT job_id, status FROM synth_jobs JOIN jobs USING (job_id)")
    assert status == "finished" and config(db, job_id)["examples"] == "builtin:math_problem"
    assert query(db, "SELECT count(*), count(solution) FROM synth_items") == [(50, 50)]
