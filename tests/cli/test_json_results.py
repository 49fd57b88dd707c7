"""Every job command takes ``--json``: stdout is then exactly one JSON object (ids, status,
counts, paths), what it prints otherwise goes to stderr; a job that stops still prints its
object. ``personahub runs`` lists the runs a database holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import invoke
from tests.core.test_jobs import _corpus, hub, interrupt_at_commit, rows

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="jsonic", personas=PersonaSource(limit=4), graph=GraphGrowth(hops=0,
                    acquaintances=2), steps=2, tasks=("instruction",), seed=1)
"""


def one_object(*argv: object, code: int = 0) -> dict[str, Any]:
    """Run a command with --json: stdout must be one JSON object on one line."""
    result = invoke(*argv, "--json")
    assert result.exit_code == code, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    record = json.loads(lines[0])
    assert isinstance(record, dict)
    return record


@pytest.mark.slow
def test_every_job_command_prints_one_json_object(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    (tmp_path / "jsonic.py").write_text(SCENARIO)
    out_file = tmp_path / "items.jsonl"

    run = one_object("run", tmp_path / "jsonic.py", "--db", db)
    assert run["command"] == "run" and run["status"] == "finished"
    assert run["counts"]["steps"] == 2 and run["paths"] == {"db": str(db)}
    assert run["counts"]["emissions"] == rows(
        db, f"SELECT count(*) FROM emissions WHERE run_id = '{run['run_id']}'")[0][0] > 0

    synth = one_object("synthesize", "instruction", "--n", 3, "--db", db, "--out", out_file)
    assert synth["status"] == "finished" and synth["counts"]["written"] == 3
    assert synth["paths"] == {"db": str(db), "out": str(out_file)} and out_file.exists()
    assert rows(db, f"SELECT count(*) FROM synth_items WHERE job_id = '{synth['job_id']}'") == [(3,)]

    text = one_object("personas", "from-text", _corpus(db), "--relations", "read", "--db", db)
    assert text["command"] == "personas from-text" and text["status"] == "finished"
    assert rows(db, f"SELECT kind FROM jobs WHERE job_id = '{text['job_id']}'") == [("text_to_persona",)]
    assert text["counts"]["texts"] == 6 and text["paths"]["corpus"] == str(_corpus(db))

    grown = one_object("personas", "expand", "--hops", 1, "--limit", 2, "--db", db)
    assert grown["status"] == "finished" and grown["counts"]["asked"] == 2
    assert rows(db, f"SELECT kind FROM jobs WHERE job_id = '{grown['expansion_id']}'") == [("expansion",)]

    dedup = one_object("personas", "dedup", "--db", db)
    assert dedup["status"] == "finished" and "marked" in dedup["counts"]
    assert rows(db, f"SELECT kind FROM jobs WHERE job_id = '{dedup['job_id']}'") == [("dedup",)]

    judged = one_object("judge", "--job", synth["job_id"], "--db", db)
    assert judged["counts"]["judged"] == 3 and judged["target"] == {"kind": "synthesis",
                                                                    "id": synth["job_id"]}
    assert judged["validity"]["n"] == 3

    asked = one_object("interview", "How is the ferry?", "--run", run["run_id"], "--agent", 1,
                       "--db", db)
    assert asked["counts"] == {"asked": 1, "answered": 1, "failed": 0}
    assert rows(db, f"SELECT count(*) FROM interviews WHERE batch_id = '{asked['batch_id']}'"
                ) == [(1,)]

    again = one_object("resume", synth["job_id"], "--db", db)  # a spec: through the kernel
    assert again["job_id"] == synth["job_id"] and again["status"] == "finished"
    assert again["counts"]["written"] == 0


def test_a_job_that_stops_still_prints_its_object(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    (tmp_path / "jsonic.py").write_text(SCENARIO)
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, 2)  # the run stops after its first step
        stopped = one_object("run", tmp_path / "jsonic.py", "--db", db, code=130)
    assert stopped["status"] == "interrupted" and stopped["run_id"]
    resumed = one_object("resume", stopped["run_id"], "--db", db)  # run: through run --resume
    assert resumed["run_id"] == stopped["run_id"] and resumed["status"] == "finished"
    assert resumed["counts"]["steps"] == 2


@pytest.mark.slow
def test_runs_lists_the_runs(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    hub(db, 4)
    (tmp_path / "jsonic.py").write_text(SCENARIO)
    assert "no runs in" in invoke("runs", "--db", db).stdout
    first = one_object("run", tmp_path / "jsonic.py", "--db", db)["run_id"]
    second = one_object("run", tmp_path / "jsonic.py", "--db", db, "--steps", 1)["run_id"]
    one_object("synthesize", "instruction", "--n", 2, "--db", db)  # a job, not a run
    listed = invoke("runs", "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == [second, first]  # newest first
    assert [(r["scenario"], r["status"], r["steps_done"], r["steps_planned"]) for r in runs] == [
        ("jsonic", "finished", 1, 1), ("jsonic", "finished", 2, 2)]
    assert json.loads(invoke("runs", "--db", db, "--json", "--status", "failed").stdout) == []
    table = invoke("runs", "--db", db)
    assert table.exit_code == 0 and first in table.stdout and "2/2" in table.stdout
