"""A job left ``running`` by a process that is gone (``kill -9``, a crash, a power cut) is found
by the next command that opens the database to write: DuckDB lets one process at a time hold the
file read-write, so a ``running`` job this process does not run has no process. It is marked
``interrupted``, resumable; a job this process runs, on another connection, is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from personahub import runtime
from personahub.core import jobs_store
from personahub.core.live_jobs import PROCESS_GONE
from personahub.core.store import connect
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.core.test_toy_job import TOY, CountConfig

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario
SCENARIO = Scenario(name="left", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=1,
                    tasks=("npc_dialogue",), seed=3)
"""


def statuses(db: Path) -> dict[str, tuple[str, str | None]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {j: (s, e) for j, s, e in con.execute("SELECT job_id, status, error FROM jobs")
                .fetchall()}
    finally:
        con.close()


def test_a_running_job_no_process_runs_is_marked_interrupted_by_the_next_writer(
        tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    jobs_store.create_job(con, "synth-left", "synthesis", {"task": "instruction"})
    jobs_store.create_job(con, "synth-done", "synthesis", {"task": "npc"})
    jobs_store.finish_job(con, "synth-done", "finished")
    con.close()
    connect(db, read_only=True).close()  # a reader writes nothing
    assert statuses(db)["synth-left"] == ("running", None)
    connect(db).close()
    assert statuses(db) == {"synth-left": ("interrupted", PROCESS_GONE),
                            "synth-done": ("finished", None)}


def test_a_job_this_process_runs_stays_running_for_its_other_connections(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    seen: list[list[str]] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        con = connect(db)  # a second writer's connection, opened while the job runs
        try:
            seen.append([row.status for row in jobs_store.list_jobs(con)])
        finally:
            con.close()

    result = runtime.run(TOY, CountConfig(texts=("a b", "c d e", "f g h i")), db,
                         progress=progress)
    assert result.status == "finished"
    assert seen and all(found == ["running"] for found in seen)


@pytest.mark.slow  # two runs; connect's marking is covered by the fast tests above
def test_the_same_run_command_marks_a_run_left_running_and_names_its_resume(
        tmp_path: Path) -> None:
    """The run's row as a kill -9 leaves it (running, no end), then the same command."""
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(4)))
    path = tmp_path / "left.py"
    path.write_text(SCENARIO)
    db = tmp_path / "hub.duckdb"
    assert invoke("run", path, "--db", db).exit_code == 0
    (left,) = statuses(db)
    con = duckdb.connect(str(db))
    con.execute("UPDATE jobs SET status = 'running', finished_at = NULL WHERE job_id = ?", [left])
    con.close()

    again = invoke("run", path, "--db", db)
    assert again.exit_code == 0, again.output
    found = statuses(db)
    (new,) = set(found) - {left}
    assert found == {left: ("interrupted", PROCESS_GONE), new: ("finished", None)}
    assert (f"note: run {left} of this scenario with the same settings is unfinished "
            f"(interrupted: {PROCESS_GONE}); this is a new run, {new}; resume that one with "
            f"personahub run --resume {left} --db {db}") in " ".join(again.stderr.split())
