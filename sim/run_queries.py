"""Reads of a run's log for the live view, the report and the Python API's handles.

Callers join these rows with the model calls' figures, so no query here reads another
module's tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from personahub.sim.store import SOURCE

if TYPE_CHECKING:
    import pandas as pd


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_detail(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """Return the run's runs row, or None."""
    found = _dicts(con, "SELECT run_id, scenario, scenario_path, llm, steps_planned, steps_done "
                        "FROM runs WHERE run_id = ?", [run_id])
    return found[0] if found else None


def run_totals(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Emissions and near-duplicates, failed actions, messages and answers, agents so far."""
    emitted = _dicts(con, "SELECT count(*) AS emissions, count(*) FILTER (WHERE is_duplicate) "
                          "AS duplicates FROM emissions WHERE run_id = ?", [run_id])[0]
    counts = _dicts(con, "SELECT coalesce(sum(n_failed), 0) AS failed_actions, "
                         "coalesce(sum(n_messages), 0) AS messages, "
                         "coalesce(sum(n_answers), 0) AS answers FROM steps WHERE run_id = ?",
                    [run_id])[0]
    agents = con.execute("SELECT count(*) FROM run_agents WHERE run_id = ?", [run_id]).fetchall()
    return {**{k: int(v) for k, v in {**emitted, **counts}.items()}, "agents": int(agents[0][0])}


def step_table(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """One row per committed step, in step order."""
    return _dicts(con, """
        SELECT s.step, s.n_active, s.n_emissions, s.n_messages, s.n_failed, s.n_answers,
               coalesce(d.duplicates, 0) AS duplicates,
               epoch(s.finished_at) - epoch(s.started_at) AS seconds
        FROM steps s
        LEFT JOIN (SELECT step, count(*) FILTER (WHERE is_duplicate) AS duplicates
                   FROM emissions WHERE run_id = ? GROUP BY step) d USING (step)
        WHERE s.run_id = ? ORDER BY s.step""", [run_id, run_id])


def survey_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Answers per survey, step and answer (free text counts as "(text)")."""
    return _dicts(con, """
        SELECT survey_id, any_value(question) AS question, any_value(answer_kind) AS kind, step,
               coalesce(answer_choice, CAST(answer_scale AS VARCHAR), '(text)') AS answer,
               count(*) AS n
        FROM survey_answers WHERE run_id = ? GROUP BY survey_id, step, answer
        ORDER BY survey_id, step, answer""", [run_id])


def newest_emissions(con: duckdb.DuckDBPyConnection, run_id: str, limit: int) -> list[dict[str, object]]:
    """Return the newest emissions."""
    return _dicts(con, """
        SELECT e.step, e.agent_id, e.task AS kind, e.text, e.is_duplicate,
               t.agent_id AS to_agent
        FROM emissions e
        LEFT JOIN run_agents t ON t.run_id = e.run_id AND t.persona_id = e.target_persona_id
        WHERE e.run_id = ?
        ORDER BY e.step DESC, e.agent_id DESC LIMIT ?""", [run_id, limit])


def agent_ids(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Persona id to agent id, in agent order."""
    return {str(p): int(a) for p, a in con.execute(
        "SELECT persona_id, agent_id FROM run_agents WHERE run_id = ? ORDER BY agent_id",
        [run_id]).fetchall()}


def starting_edge_list(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[str, str]]:
    """Return the run's relationship edges (persona ids), sorted."""
    return [(str(s), str(d)) for s, d in con.execute(
        "SELECT src, dst FROM run_edges WHERE run_id = ? ORDER BY src, dst", [run_id]).fetchall()]


def kinds_by_agent(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[int, str, int]]:
    """(agent, kind, emissions), sorted."""
    return [(int(a), str(k), int(n)) for a, k, n in con.execute(
        "SELECT agent_id, task, count(*) FROM emissions WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
        [run_id]).fetchall()]


def decisions_per_step(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[int, int, int, int, int]]:
    """Return a deliberate run's decision counts per step."""
    return [tuple(int(v) for v in row) for row in con.execute(  # type: ignore[misc]
        "SELECT step, count(*), count(*) FILTER (WHERE action = 'nothing'), "
        "count(*) FILTER (WHERE fallback IS NOT NULL), "
        "count(*) FILTER (WHERE action IS NULL) FROM decisions "
        "WHERE run_id = ? GROUP BY step ORDER BY step", [run_id]).fetchall()]


def choice_answer_counts(con: duckdb.DuckDBPyConnection,
                         run_id: str | None) -> list[tuple[Any, ...]]:
    """Choice and scale answer counts per survey, step and answer (every run's when run_id is None)."""
    where = "AND run_id = ?" if run_id else ""
    return con.execute(
        "SELECT survey_id, any_value(question), answer_kind, step, "
        "coalesce(answer_choice, CAST(answer_scale AS VARCHAR)) AS answer, count(*) "
        f"FROM survey_answers WHERE answer_kind IN ('choice', 'scale') {where} "
        "GROUP BY survey_id, answer_kind, step, answer ORDER BY survey_id, step",
        [run_id] if where else []).fetchall()


def survey_profiles(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict[str, list[str]]:
    """Return the survey profiles that answered each survey of a run (run --survey-profile), by survey id."""
    if not run_id:
        return {}
    profiles: dict[str, list[str]] = {}
    for survey_id, profile in con.execute(
            "SELECT DISTINCT survey_id, content->>'profile' AS profile FROM survey_answers "
            "WHERE run_id = ? AND content->>'profile' IS NOT NULL ORDER BY ALL",
            [run_id]).fetchall():
        profiles.setdefault(str(survey_id), []).append(str(profile))
    return profiles


#: the run-log tables the Python API hands out, with their row order
_RUN_ROWS = {
    "emissions": "step, agent_id",
    "survey_answers": "step, survey_id, agent_id",
    "messages": "step",
    "decisions": "step, agent_id",
}


def run_rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> pd.DataFrame:
    """Every column of one of those tables for the run, as a DataFrame."""
    order = _RUN_ROWS[table]
    return con.execute(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY {order}", [run_id]).df()


def survey_answer_values(con: duckdb.DuckDBPyConnection, run_id: str,
                         survey: str | None = None) -> pd.DataFrame:
    """(survey_id, step, answer) per answer of the run, the answer as text."""
    return con.execute(
        "SELECT survey_id, step, coalesce(answer_choice, CAST(answer_scale AS VARCHAR), "
        "answer_text) AS answer FROM survey_answers WHERE run_id = ?"
        + (" AND survey_id = ?" if survey else ""),
        [run_id, *([survey] if survey else [])]).df()


def timeline(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """One row per committed step with its counts, injected events, start and seconds."""
    source = SOURCE
    return con.execute(
        "SELECT s.step, s.n_active AS active, s.n_emissions AS emissions, "
        "s.n_messages AS messages, coalesce(s.n_answers, 0) AS survey_answers, "
        "s.n_failed AS failed, coalesce(d.duplicates, 0) AS duplicates, "
        "coalesce(ev.events, 0) AS events, coalesce(ev.injected, []::VARCHAR[]) AS injected, "
        "s.started_at, "
        "round(epoch(s.finished_at) - epoch(s.started_at), 3) AS seconds "
        "FROM steps s LEFT JOIN (SELECT step, count(*) FILTER (WHERE is_duplicate) AS "
        "duplicates FROM emissions WHERE run_id = ? GROUP BY step) d USING (step) "
        f"LEFT JOIN (SELECT step, count(*) AS events, list(text ORDER BY event_index) "
        f"FILTER (WHERE {source} <> 'scenario') AS injected FROM events WHERE run_id = ? "
        "GROUP BY step) ev USING (step) "
        "WHERE s.run_id = ? ORDER BY s.step", [run_id, run_id, run_id]).df()


def agent_persona_ids(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """Return the run's agents' personas, in agent order."""
    return [str(r[0]) for r in con.execute(
        "SELECT persona_id FROM run_agents WHERE run_id = ?", [run_id]).fetchall()]
