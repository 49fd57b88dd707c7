"""The run log writer: one DuckDB transaction per simulation step.

A step is the unit of durability: its emissions, messages, delivered events, interventions,
survey answers, emissions rejected by the quality gate, deliberate agents' decisions, model-call
records, the checkpoint of changed agent states and the ``steps`` row land together or not at
all, so a crash leaves the database at the last complete step and a resume continues from
exactly there.
Writes are Arrow batches, never per-row statements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.commit import JobRef, commit_batch
from personahub.core.contracts import ServesModels
from personahub.core.jobs_store import create_job, finish_job, merge_job_config
from personahub.core.store import insert_columns, insert_rows, scalar, transaction
from personahub.sim.society import StepResult


def release_cached_blocks(con: duckdb.DuckDBPyConnection, *, slack: int = 8 << 20) -> None:
    """Let DuckDB's buffer pool drop its copies of table blocks that are already on disk.

    The pool keeps every block it wrote or read until its memory limit (80% of RAM by default)
    forces blocks out, so a long-running writer holds all it wrote in memory. Lowering the
    limit to what the other buffers (unwritten rows, indexes) use, plus ``slack``, evicts those
    blocks, which costs no write since they are on disk. The limit then goes back to DuckDB's
    default (connections here never set another; the one shown, '18.8 GiB', is rounded, so it
    could not be set back exactly). When the pool cannot shrink that far, or settings are
    locked, nothing changes.
    """
    others = scalar(con, "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                         "WHERE tag <> 'BASE_TABLE'")
    try:
        con.execute(f"SET memory_limit = '{int(others) + slack}B'")
    except duckdb.Error:
        return
    con.execute("RESET memory_limit")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class RunLog:
    """Writes one run's rows; the connection is owned by the caller."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, client: ServesModels) -> None:
        self.con = con
        self.run_id = run_id
        self.client = client  # names the served model of each call record (core.commit.call_rows)
        self.job = JobRef("run", run_id, run_id=run_id)

    def start(self, *, scenario: str, scenario_path: str, seed: int, llm: str,
              config: Mapping[str, Any], steps_planned: int) -> None:
        """Record the run: its ``jobs`` row (status ``running``) and its ``runs`` row."""
        with transaction(self.con):
            create_job(self.con, self.run_id, "run", config, seed=seed)
            insert_rows(self.con, "runs", [{
                "run_id": self.run_id, "scenario": scenario, "scenario_path": scenario_path,
                "llm": llm, "steps_planned": steps_planned, "steps_done": 0,
            }])

    def add_agents(self, persona_ids: Sequence[str], agent_ids: Sequence[int] | np.ndarray,
                   edges: tuple[Any, Any, Any] = ((), (), ())) -> None:
        """Record which persona each agent id plays and the run's starting social graph
        (``edges`` as columns: src, dst, relation; lists or Arrow arrays)."""
        src, dst, relation = edges
        run = pa.scalar(self.run_id, pa.string())
        with transaction(self.con):
            insert_columns(self.con, "run_agents", {
                "run_id": pa.repeat(run, len(agent_ids)),
                "agent_id": pa.array(np.asarray(agent_ids, dtype=np.int32)),
                "persona_id": pa.array(persona_ids, type=pa.string())})
            insert_columns(self.con, "run_edges", {
                "run_id": pa.repeat(run, len(src)), "src": src, "dst": dst, "relation": relation})

    def write_step(self, result: StepResult, duplicates: Mapping[str, str | None],
                   started_at: dt.datetime, *, model: str) -> None:
        """Write a step's emissions (with near-duplicate flags), messages, and the call records
        and newly recorded cache answers the step's result carries, atomically (one kernel
        batch, ``core.commit.commit_batch``)."""
        emissions = [{
            "emission_id": e.emission_id, "run_id": self.run_id, "step": e.step,
            "agent_id": e.agent_id, "persona_id": e.persona_id, "kind": e.kind,
            "content": e.content, "text": e.text, "target_persona_id": e.target_persona_id,
            "model": model, "is_duplicate": duplicates.get(e.emission_id) is not None,
            "duplicate_of": duplicates.get(e.emission_id),
        } for e in result.emissions]
        messages = [{**vars(m), "run_id": self.run_id} for m in result.messages]
        step_row = {
            "run_id": self.run_id, "step": result.step, "n_active": result.n_active,
            "n_emissions": len(result.emissions), "n_messages": len(result.messages),
            "n_failed": len(result.failures), "n_answers": len(result.answers),
            "started_at": started_at, "finished_at": _now(),
        }
        tagged = {"run_id": self.run_id}
        states = [{"run_id": self.run_id, "agent_id": a, "step": result.step, "state": state}
                  for a, state in result.states]
        commit_batch(self.con, self.job, self.client, {
            "emissions": emissions,
            "messages": messages,
            "events": [{**e, **tagged} for e in result.events],
            "interventions": [{**x, **tagged} for x in result.interventions],
            "survey_answers": [{**a, **tagged} for a in result.answers],
            "rejected": result.rejected,
            "decisions": [{**d, **tagged} for d in result.decisions],
            "agent_states": states,
            "steps": [step_row],
        }, [result], then=lambda: self.con.execute(
            "UPDATE runs SET steps_done = ? WHERE run_id = ?", [result.step, self.run_id]))
        release_cached_blocks(self.con)  # the run log is on disk: memory stays flat over steps

    def merge_config(self, items: Mapping[str, Any]) -> None:
        """Add what was learned while running (e.g. structured-output modes) to the run's
        stored configuration (``jobs.config``)."""
        merge_job_config(self.con, self.run_id, items)

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run finished / failed / interrupted."""
        finish_job(self.con, self.run_id, status, error)
