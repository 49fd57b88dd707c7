"""The facts a report opens with: what ran, on which engine, when, and what it cost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from personahub.analysis.kept import kept_lines
from personahub.core.call_log import cached_calls, call_counts
from personahub.core.jobs_store import find_job
from personahub.sim.run_queries import decisions_per_step, run_detail, run_totals

OFFLINE_ENGINE = "offline engine — not a language model"

Facts = list[tuple[str, str]]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    return con.execute(sql, params).fetchone()


def engine_text(llm: str | None) -> str:
    """Return the engine label, saying in words when it is the offline engine, so no one mistakes its
    output."""
    if not llm:
        return "unknown"
    parts = [p.strip() for p in llm.split(",")]
    if parts == ["offline"]:
        return f"offline ({OFFLINE_ENGINE})"
    if "offline" in parts:
        return f"{llm} (includes the {OFFLINE_ENGINE})"
    return llm


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _dates(started: datetime | None, finished: datetime | None) -> str:
    text = f"{_when(started)} → {_when(finished) if finished else 'not finished'}"
    if started and finished:
        text += f" ({(finished - started).total_seconds():.1f} s)"
    return text


def usage_facts(con: duckdb.DuckDBPyConnection, owner_id: str, offline: bool) -> Facts:
    """Return the calls, failures, kept share per kind, tokens and cost of a run or job."""
    by_status = call_counts(con, run_id=owner_id)
    n, cached = sum(by_status.values()), cached_calls(con, owner_id)
    ok, errors, invalid = (by_status.get(s, 0) for s in ("ok", "error", "invalid"))
    cost = _one(con, "SELECT tokens_in, tokens_out, cost_usd, cached_calls FROM v_run_cost "
                     "WHERE run_id = ?", [owner_id])
    tokens_in, tokens_out, cost_usd = (cost[0], cost[1], cost[2]) if cost else (0, 0, 0.0)
    how = " (approximate, 4 characters a token)" if offline else ""
    cached_note = f", {cached:,} answered from the cache" if cached else ""
    if cost_usd is None:
        money = "unknown: a billed model has no price (set --price-in/--price-out or the prices table)"
    elif offline and not cost_usd:
        money = "$0 (the offline engine costs nothing)"
    else:
        money = f"${cost_usd:,.6f}"
    kept = [("kept" if i == 0 else "", line)
            for i, line in enumerate(kept_lines(con, run_id=owner_id))]
    return [
        ("model calls", f"{n:,} attempts, {ok:,} ok{cached_note}"),
        ("failed calls", f"{errors + invalid:,} ({errors:,} errors, {invalid:,} invalid answers)"),
        *kept,
        ("tokens", f"{tokens_in:,} in, {tokens_out:,} out{how}"),
        ("cost", money),
    ]


def run_facts(con: duckdb.DuckDBPyConnection, run_id: str) -> Facts:
    """Header facts of a simulation run."""
    detail = run_detail(con, run_id)
    job = find_job(con, run_id)
    if detail is None or job is None:
        return [("run", f"{run_id} (not found)")]
    scenario, path, llm = detail["scenario"], detail["scenario_path"], detail["llm"]
    planned, done = detail["steps_planned"], detail["steps_done"]
    seed, status, error = job.seed, job.status, job.error
    started, finished = job.started_at, job.finished_at
    totals = run_totals(con, run_id)
    agents, failed = totals["agents"], totals["failed_actions"]
    facts: Facts = [
        ("run", run_id),
        ("scenario", f"{scenario} ({path})" if path else str(scenario)),
        ("seed", str(seed)),
        ("engine", engine_text(llm)),
        ("status", status + (f": {error}" if error else "")),
        ("dates", _dates(started, finished)),
        ("steps", f"{done or 0} of {planned}"),
        ("agents", f"{agents:,}"),
        ("failed actions", f"{failed:,} (after retries and repair, or refused by the quality gate)"),
    ]
    return facts + decision_facts(con, run_id) + usage_facts(con, run_id, llm == "offline")


def decision_facts(con: duckdb.DuckDBPyConnection, run_id: str) -> Facts:
    """Deliberate runs' decisions per step."""
    per_step = decisions_per_step(con, run_id)
    if not per_step:
        return []
    total, nothing, fallback, failed = (sum(row[i] for row in per_step) for i in range(1, 5))
    steps = ", ".join(f"{n:,}" for _, n, *_ in per_step)
    return [("decisions", f"{total:,} (per step: {steps}); {nothing:,} chose nothing, "
                          f"{fallback:,} addressee fallbacks, {failed:,} failed")]


def job_facts(con: duckdb.DuckDBPyConnection, job_id: str) -> Facts:
    """Header facts of a synthesis job."""
    row = _one(con, "SELECT task, prompting, n, llm, items, duplicates FROM v_synth_jobs "
                    "WHERE job_id = ?", [job_id])
    job = find_job(con, job_id)
    if row is None or job is None:
        return [("job", f"{job_id} (not found)")]
    task, prompting, n, llm, *items = row
    config, status, error = job.config, job.status, job.error
    started, finished = job.started_at, job.finished_at
    seed = config.get("seed", "—")
    facts: Facts = [
        ("job", job_id),
        ("task", f"{task} ({prompting})"),
        ("seed", str(seed)),
        ("engine", engine_text(llm)),
        ("status", status + (f": {error}" if error else "")),
        ("dates", _dates(started, finished)),
        ("items", f"{items[0]:,} of {n:,} personas asked ({items[1]:,} flagged near-duplicate)"),
    ]
    return facts + usage_facts(con, job_id, llm == "offline")
