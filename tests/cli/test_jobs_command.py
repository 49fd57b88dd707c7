"""``personahub jobs`` lists jobs of every kind from the one ``jobs`` table; ``personahub resume
ID`` finds a job's kind by its id alone and resumes it through the kernel (every kind, stopped
and resumed through the command and the API: tests/pipelines/test_every_kind_resumes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import invoke
from tests.core.test_jobs import _corpus, hub, interrupt_at_commit, rows

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="listed", personas=PersonaSource(limit=4), graph=GraphGrowth(hops=0,
                    acquaintances=2), steps=3, tasks=("instruction",), seed=1)
"""


def listed(db: Path, *flags: object) -> list[dict]:
    result = invoke("jobs", "--db", db, "--json", *flags)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_jobs_lists_every_kind_and_resume_goes_through_the_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    (tmp_path / "listed.py").write_text(SCENARIO)
    for argv in (["synthesize", "instruction", "--n", 3], ["personas", "from-text", _corpus(db),
                 "--relations", "read"], ["personas", "expand", "--hops", 1, "--limit", 2],
                 ["personas", "dedup"]):
        assert invoke(*argv, "--db", db).exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, 2)  # the run stops after its first step
        assert invoke("run", tmp_path / "listed.py", "--db", db).exit_code == 130
    jobs = listed(db)
    assert {j["kind"] for j in jobs} == {"synthesis", "text_to_persona", "expansion", "dedup", "run"}
    assert [j["kind"] for j in jobs][0] == "run"  # newest first
    assert {j["kind"]: j["status"] for j in jobs}["run"] == "interrupted"
    assert all(j["status"] == "finished" for j in jobs if j["kind"] != "run")
    assert {j["kind"]: j["what"] for j in jobs}["synthesis"] == "instruction x3"
    assert [j["kind"] for j in listed(db, "--kind", "dedup")] == ["dedup"]
    assert [j["kind"] for j in listed(db, "--status", "interrupted")] == ["run"]

    run_id = next(j["job_id"] for j in jobs if j["kind"] == "run")
    resumed = invoke("resume", run_id, "--db", db)
    assert resumed.exit_code == 0, resumed.output
    assert rows(db, f"SELECT status FROM jobs WHERE job_id = '{run_id}'") == [("finished",)]
    assert rows(db, f"SELECT steps_done FROM runs WHERE run_id = '{run_id}'") == [(3,)]
    synth_id = next(j["job_id"] for j in jobs if j["kind"] == "synthesis")
    again = invoke("resume", synth_id, "--db", db)  # ended: nothing asked
    assert again.exit_code == 0 and "already finished; nothing to resume" in again.stderr
    assert "3 instruction items written" not in again.stdout and "0 instruction" in again.stdout


def test_resume_of_an_unknown_job_is_one_line(tmp_path: Path) -> None:
    from tests.cli_helpers import one_line_error

    db = tmp_path / "hub.duckdb"
    hub(db, 2)
    assert "no such job" in one_line_error(invoke("resume", "nope", "--db", db))
    assert listed(db) == []
