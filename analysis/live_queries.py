"""What the live view shows, as JSON-ready dicts.

Each request reads through its own cursor (connections are not thread-safe) and sees only
committed rows, so a running process shows each step once it commits.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, TypedDict

import duckdb
import networkx as nx

from personahub.core.call_log import calls_by_step, calls_since, run_call_totals
from personahub.core.jobs_store import find_job, latest_job_id
from personahub.core.provider_batch_records import open_batches
from personahub.sim.run_queries import (
    agent_ids,
    kinds_by_agent,
    newest_emissions,
    run_detail,
    run_totals,
    starting_edge_list,
    step_table,
    survey_counts,
)
from personahub.sim.store import delivered_events

#: Nodes the graph drawing keeps: a neighbourhood sample of a larger society.
MAX_GRAPH_NODES = 150
#: Emissions and messages the stream returns (newest first).
STREAM_LIMIT = 40
#: Seconds of recent calls the recent call rate is measured over.
RECENT_S = 10.0


class GraphNode(TypedDict):
    """Hold one agent on the page's graph: its place and its most frequent emission kind."""

    id: int
    x: float
    y: float
    kind: str
    emissions: int


class Graph(TypedDict):
    """Hold the graph the page draws: nodes, edges as id pairs, and whether it was sampled."""

    nodes: list[GraphNode]
    edges: list[list[int]]
    total_nodes: int
    total_edges: int
    sampled: bool


def rows(con: duckdb.DuckDBPyConnection, sql: str,
         params: list[object] | None = None) -> list[dict[str, object]]:
    """Rows of a query as dicts keyed by column name."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_rows(con: duckdb.DuckDBPyConnection, *, status: str | None = None) -> list[dict[str, Any]]:
    """Return the runs with a lifecycle, newest first; only those with a status when given."""
    where = " AND status = ?" if status else ""
    return rows(con, "SELECT run_id, scenario, status, steps_done, steps_planned, started_at, "
                     f"finished_at, llm FROM v_runs WHERE status IS NOT NULL{where} "
                     "ORDER BY started_at DESC NULLS LAST, run_id DESC", [status] if status else [])


def list_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Every run, newest first (id, scenario, status, steps)."""
    keys = ("run_id", "scenario", "status", "steps_done", "steps_planned", "started_at")
    return [_jsonable({key: row[key] for key in keys}) for row in run_rows(con)]


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str | None:
    """Resolve the run id when it exists, else None; without one, the newest run."""
    if run_id:
        job = find_job(con, run_id)
        return job.job_id if job is not None and job.kind == "run" else None
    return latest_job_id(con, "run")


def overview(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, object]:
    """Return the run's header and its running totals: calls, calls/s, tokens, failures, duplicates."""
    job = find_job(con, run_id)
    detail = run_detail(con, run_id)
    assert job is not None and detail is not None, run_id  # resolve_run found it
    run = {"run_id": run_id, "scenario": detail["scenario"], "seed": job.seed, "llm": detail["llm"],
           "status": job.status, "error": job.error, "steps_planned": detail["steps_planned"],
           "steps_done": detail["steps_done"], "started_at": job.started_at,
           "finished_at": job.finished_at}
    calls = run_call_totals(con, run_id)
    recent = 0
    if calls["last_s"] is not None:
        recent = calls_since(con, run_id, calls["last_s"] - RECENT_S)
    span = calls.pop("span_s") or 0.0
    calls.pop("last_s")
    totals = run_totals(con, run_id)
    agents = totals.pop("agents")
    emitted = {k: totals[k] for k in ("emissions", "duplicates")}
    counts = {k: totals[k] for k in ("failed_actions", "messages", "answers")}
    offline = str(run["llm"] or "").startswith("offline")
    return _jsonable({
        **run, **calls, **emitted, **counts, "agents": agents,
        "engine": (run["llm"] or "") + (" (offline engine, not a language model)" if offline else ""),
        "offline": offline,
        "calls_per_s": round(calls["calls"] / span, 2) if span > 0 else None,
        "calls_per_s_recent": round(recent / RECENT_S, 2),
        "duplicate_rate": emitted["duplicates"] / emitted["emissions"] if emitted["emissions"] else 0.0,
        "waiting_on": waiting_on(con, run_id) if run["status"] == "running" else None,
    })


def waiting_on(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """Return the run's unfinished batches, as "batch ID (in_progress, 40/100)"; None when none."""
    open_ = open_batches(con, run_id)
    if not open_:
        return None
    return ", ".join(f"batch {name} ({status}, {done}/{total})"
                     for name, status, done, total in open_)


def step_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, object]]:
    """One row per committed step: actions, emissions, messages, failures, answers, calls, tokens."""
    by_step = calls_by_step(con, run_id)
    return [_jsonable({**{k: v for k, v in row.items() if k != "seconds"},
                       "calls": by_step.get(row["step"], (0, 0))[0],
                       "tokens": by_step.get(row["step"], (0, 0))[1], "seconds": row["seconds"]})
            for row in step_table(con, run_id)]


def events(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, object]]:
    """Events delivered so far, with who put them in, in order."""
    keys = ("step", "text", "audience", "n_recipients", "source")
    return [_jsonable(dict(zip(keys, row, strict=True))) for row in delivered_events(con, run_id)]


def surveys(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, object]]:
    """Per survey: its question, options in order, and each answer's count per step so far."""
    planned = _planned_surveys(con, run_id)
    found = survey_counts(con, run_id)
    out: dict[str, dict[str, Any]] = {}
    for sid, spec in planned.items():
        out[sid] = {"id": sid, "question": spec.get("question", ""), "kind": spec.get("answer"),
                    "steps_planned": spec.get("steps", []), "options": _options(spec), "steps": {}}
    for row in found:
        survey = out.setdefault(row["survey_id"], {
            "id": row["survey_id"], "question": row["question"], "kind": row["kind"],
            "steps_planned": [], "options": [], "steps": {}})
        if row["answer"] not in survey["options"]:
            survey["options"].append(row["answer"])
        survey["steps"].setdefault(str(row["step"]), {})[row["answer"]] = row["n"]
    return list(out.values())


def stream(con: duckdb.DuckDBPyConnection, run_id: str, limit: int = STREAM_LIMIT) -> list[dict[str, object]]:
    """Return the newest emissions (with whether each is a near-duplicate) and the messages they sent."""
    return [_jsonable(r) for r in newest_emissions(con, run_id, limit)]


def graph(con: duckdb.DuckDBPyConnection, run_id: str, max_nodes: int = MAX_GRAPH_NODES) -> Graph:
    """Return the run's graph with a seeded layout and each node's most frequent emission kind; a large
    graph is sampled breadth-first from the best-connected agent.
    """
    # a fixed order: the layout depends on the order nodes and edges are added
    agents = agent_ids(con, run_id)
    g = nx.Graph()
    g.add_nodes_from(agents.values())
    for src, dst in starting_edge_list(con, run_id):
        if src in agents and dst in agents and src != dst:
            g.add_edge(agents[src], agents[dst])
    total_nodes, total_edges = g.number_of_nodes(), g.number_of_edges()
    if total_nodes > max_nodes:
        g = g.subgraph(_neighbourhood(g, max_nodes)).copy()
    kinds: dict[int, Counter[str]] = {}
    for agent, kind, n in kinds_by_agent(con, run_id):
        kinds.setdefault(agent, Counter())[kind] = n
    pos = _layout(run_id, g)
    nodes: list[GraphNode] = [{"id": int(n), "x": round(float(pos[n][0]), 4), "y": round(float(pos[n][1]), 4),
              "kind": min(kinds[n].items(), key=lambda kv: (-kv[1], kv[0]))[0] if n in kinds else "idle",
              "emissions": sum(kinds[n].values()) if n in kinds else 0}
             for n in sorted(g.nodes)]
    return {"nodes": nodes, "edges": [[int(a), int(b)] for a, b in g.edges],
            "total_nodes": total_nodes, "total_edges": total_edges,
            "sampled": total_nodes > max_nodes}


def validity(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, object] | None:
    """Return the latest judge's validity rate with its 95% interval, overall and per criterion; None if
    unjudged."""
    from personahub.analysis.judgments import latest_validity

    figures = latest_validity(con, run_id)
    return figures.as_dict() if figures is not None else None


def state(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, object]:
    """Everything the page polls each second (the graph comes separately)."""
    return {"run": overview(con, run_id), "steps": step_rows(con, run_id),
            "events": events(con, run_id), "surveys": surveys(con, run_id),
            "stream": stream(con, run_id), "validity": validity(con, run_id)}


# a run's graph changes rarely, the page asks every few seconds
_LAYOUTS: dict[tuple[str, int, int, int], dict[int, Sequence[float]]] = {}


def _layout(run_id: str, g: nx.Graph) -> dict[int, Sequence[float]]:
    """Return a seeded spring layout, computed once per shape of the run's graph."""
    if not g.number_of_nodes():
        return {}
    key = (run_id, g.number_of_nodes(), g.number_of_edges(), hash(tuple(sorted(g.edges))))
    if key not in _LAYOUTS:
        if len(_LAYOUTS) > 16:
            _LAYOUTS.clear()
        _LAYOUTS[key] = nx.spring_layout(g, seed=7, iterations=60)
    return _LAYOUTS[key]


def _neighbourhood(g: nx.Graph, max_nodes: int) -> list[int]:
    """Up to max_nodes nodes breadth-first from the highest-degree node (ties: lowest id)."""
    start = min(g.nodes, key=lambda n: (-g.degree[n], n))
    seen = {start}
    queue = deque([start])
    while queue and len(seen) < max_nodes:
        for nxt in sorted(g.neighbors(queue.popleft())):
            if nxt not in seen and len(seen) < max_nodes:
                seen.add(nxt)
                queue.append(nxt)
    return sorted(seen)


def _planned_surveys(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, dict[str, object]]:
    job = find_job(con, run_id)
    config = job.config if job is not None else {}
    return {s["id"]: s for s in (config.get("scenario") or {}).get("surveys") or [] if "id" in s}


def _options(spec: dict[str, Any]) -> list[str]:
    """Return a survey's possible answers in order: its options, or the scale's points."""
    if spec.get("answer") == "choice":
        return [str(o) for o in spec.get("options") or []]
    if spec.get("answer") == "scale":
        return [str(v) for v in range(int(spec.get("low", 1)), int(spec.get("high", 5)) + 1)]
    return []


def _jsonable(row: dict[str, object]) -> dict[str, object]:
    """Timestamps as ISO text; everything else as it is."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def experiment_state(con: duckdb.DuckDBPyConnection, experiment_id: str,
                     replicates_planned: int | None = None) -> dict[str, object] | None:
    """Return an experiment's arms side by side, pooled over its finished runs so far; None before any.

    Outcomes carry a per-arm series of (step, n, value, interval).
    """
    import dataclasses

    from personahub.analysis.experiment_report import arm_steps, load_recorded_experiment
    from personahub.sim.experiment_store import arm_agents, finished_arm_runs

    if finished_arm_runs(con, experiment_id).empty:
        return None
    scenario, spec, runs = load_recorded_experiment(con, experiment_id)
    agents = None
    if spec.design == "within":
        agents = arm_agents(con, experiment_id)
        agents = agents[agents["run_id"].isin(runs["run_id"])]
    by_steps = [o for o in spec.outcomes if not o.is_sql]
    steps = (arm_steps(con, scenario, dataclasses.replace(spec, outcomes=tuple(by_steps)), runs,
                       agents=agents) if by_steps else None)
    surveys = {s.id: list(s.steps) for s in scenario.surveys}
    outcomes = []
    for outcome in by_steps:
        mine = steps[steps["outcome"] == outcome.name] if steps is not None else None
        series: dict[str, list[dict[str, float]]] = {arm.name: [] for arm in spec.arms}
        for row in (mine.to_dict("records") if mine is not None else []):
            series[row["arm"]].append({k: (int(row[k]) if k in ("step", "n") else float(row[k]))
                                       for k in ("step", "n", "value", "ci_low", "ci_high")})
        outcomes.append({"name": outcome.name, "survey": outcome.survey,
                         "unit": "% of agents" if outcome.is_share else "scale points",
                         "steps": surveys.get(outcome.survey, []), "series": series})
    arms = []
    for arm in spec.arms:
        mine = runs[runs["arm"] == arm.name]
        arms.append({"name": arm.name, "control": arm is spec.control,
                     "replicates_done": int(mine["replicate"].nunique()),
                     "runs": list(dict.fromkeys(mine["run_id"]))})
    return {"experiment_id": experiment_id, "design": spec.design, "arms": arms,
            "replicates_planned": replicates_planned, "outcomes": outcomes,
            "not_over_steps": [o.name for o in spec.outcomes if o.is_sql]}
