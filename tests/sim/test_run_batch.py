"""``run --provider-batch``: each step's calls go out as one provider batch.

The default scenario run with --provider-batch against the loopback server's Batch API writes the
tables the online run writes (same seed), one batch per step; a run killed while its step's
batch runs is resumed at the step barrier by polling that batch; the live view names the batch
a step waits on. Tests poll; none times anything.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.analysis.live_queries import waiting_on
from personahub.api import run_simulation
from personahub.core.provider_batch_records import BatchHandle, save_handle
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import cli, env, kill_when

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "riverside_town.py"
#: a run's tables (its id, times and model label left out, the id inside values as RUN)
TABLES = ("steps", "emissions", "messages", "survey_answers", "events", "agent_states",
          "decisions", "run_edges", "run_agents")
SKIP = {"run_id", "created_at", "started_at", "finished_at", "wall_s", "updated_at",
        "model"}  # the model label names the server's port


def tables(db: Path, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in TABLES:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table]).fetchall() if c not in SKIP]
            got = con.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = ?",
                              [run_id]).fetchall()
            out[table] = sorted(tuple(str(v).replace(run_id, "RUN") for v in row) for row in got)
        return out
    finally:
        con.close()


def config(url: str, db: Path, **changes: Any) -> RunConfig:
    return RunConfig(scenario=load_scenario(SCENARIO), db=db, steps=2, llm=f"{url}?model=offline",
                     structured="json_schema", provider_batch_poll_s=0.02, **changes)


@pytest.fixture
def online_tables(server: Any, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    srv = server()
    db = tmp_path / "online.duckdb"
    summary = run_simulation(config(srv.base_url, db))
    assert srv.stats.batches_created == 0
    got = tables(db, summary.run_id)
    assert got["emissions"] and got["steps"]
    return got


def step_calls(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT step, count(*), count(provider_batch_id), "
                           "count(DISTINCT provider_batch_id) FROM llm_calls WHERE run_id = ? "
                           "AND step IS NOT NULL GROUP BY step ORDER BY step", [run_id]).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_a_batched_run_writes_the_online_tables_one_batch_a_step(
        server: Any, tmp_path: Path, online_tables: dict[str, list[tuple[Any, ...]]]) -> None:
    srv = server(batch_delay_s=0.05)
    db = tmp_path / "batch.duckdb"
    phases: list[str] = []
    summary = run_simulation(config(srv.base_url, db, provider_batch=True),
                             progress=lambda phase, done, total: phases.append(phase))
    assert tables(db, summary.run_id) == online_tables
    assert srv.stats.batches_created == 2
    per_step = step_calls(db, summary.run_id)
    assert [step for step, *_ in per_step] == [1, 2]
    assert all(n == batched and ids == 1 for _, n, batched, ids in per_step)
    assert any(p.startswith("batch ") for p in phases)


def test_the_live_view_names_the_batch_a_step_waits_on(tmp_path: Path) -> None:
    con = connect(tmp_path / "view.duckdb")
    try:
        assert waiting_on(con, "run-1") is None
        save_handle(con, BatchHandle(key="run-1:a", endpoint=0, model="m",
                                     custom_ids=("x#1", "y#1"), job_kind="run", job_id="run-1",
                                     batch_id="batch_7", status="in_progress", completed=1))
        assert waiting_on(con, "run-1") == "batch batch_7 (in_progress, 1/2)"
        save_handle(con, BatchHandle(key="run-1:a", endpoint=0, model="m",
                                     custom_ids=("x#1", "y#1"), job_kind="run", job_id="run-1",
                                     batch_id="batch_7", status="completed", completed=2))
        assert waiting_on(con, "run-1") is None
    finally:
        con.close()


@pytest.mark.slow
def test_a_run_killed_during_its_steps_batch_resumes_by_polling_it(
        server: Any, tmp_path: Path, online_tables: dict[str, list[tuple[Any, ...]]]) -> None:
    srv = server(batch_delay_s=3.0)
    db = tmp_path / "killed.duckdb"
    url = f"{srv.base_url}?model=offline"
    code = kill_when(["run", str(SCENARIO), "--steps", "2", "--db", str(db), "--llm", url,
                      "--structured", "json_schema", "--provider-batch", "--provider-batch-poll",
                      "0.05", "-q"],
                     lambda: srv.stats.batches_created >= 1,
                     "the run never created its step's batch")
    assert code == -signal.SIGKILL
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(run_id, steps_done)] = con.execute("SELECT run_id, steps_done FROM runs").fetchall()
    finally:
        con.close()
    assert steps_done == 0
    done = subprocess.run(cli("run", "--resume", run_id, "--db", str(db), "--llm", url, "--provider-batch",
                              "--provider-batch-poll", "0.05", "-q"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert tables(db, run_id) == online_tables
    assert srv.stats.batches_created == 2  # step 1's batch polled after the kill, then step 2's
