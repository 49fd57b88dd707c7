"""The data behind the report's charts, apart from the drawing so tests can check it.

Surveys become shares per step, since a moving share is the point. The graph is sampled
breadth-first: a random sample of a large graph is a ring of unconnected dots.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import duckdb
import networkx as nx

from personahub.core.jobs_store import find_job
from personahub.sim.run_queries import choice_answer_counts
from personahub.sim.store import delivered_events

NO_EMISSION = "no emission"


@dataclass
class SurveyShares:
    """One survey's answers: counts per step and option, options in the declared order."""

    survey_id: str
    question: str
    kind: str  # choice or scale
    options: list[str]
    steps: list[int]
    counts: list[list[int]]  # counts[i][j]: answers at steps[i] with options[j]

    def shares(self) -> list[list[float]]:
        """Each step's share of each option (every row sums to 1)."""
        return [[c / sum(row) for c in row] for row in self.counts]

    def totals(self) -> list[int]:
        return [sum(row) for row in self.counts]


@dataclass
class Event:
    """A delivered event, as the report marks it on the step axis."""

    label: str  # E1, E2, ...
    step: int
    text: str
    recipients: int
    source: str = "scenario"  # or who injected it while the run ran


def declared_surveys(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict[str, dict[str, object]]:
    """Return the run's scenario surveys by id (options, low, high), from its stored configuration."""
    if run_id is None:
        return {}
    job = find_job(con, run_id)
    try:
        surveys = job.config["scenario"]["surveys"] if job is not None else []
    except (KeyError, TypeError):
        return {}
    return {s["id"]: s for s in surveys if isinstance(s, dict) and "id" in s}


def _option_order(declared: dict[str, Any] | None, kind: str, seen: list[str]) -> list[str]:
    if kind == "scale" and declared and declared.get("low") is not None:
        order = [str(v) for v in range(int(declared["low"]), int(declared["high"]) + 1)]
    elif kind == "choice" and declared and declared.get("options"):
        order = [str(o) for o in declared["options"]]
    elif kind == "scale":
        order = sorted(seen, key=float)
    else:
        order = sorted(seen)
    return order + [o for o in seen if o not in order]


def survey_shares(con: duckdb.DuckDBPyConnection, run_id: str | None) -> list[SurveyShares]:
    """Choice and scale surveys of a run (of all runs without one), by survey id."""
    rows = choice_answer_counts(con, run_id)
    declared = declared_surveys(con, run_id)
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault((row[0], row[2]), []).append(row)
    out = []
    for (survey_id, kind), group in grouped.items():
        seen = list(dict.fromkeys(str(r[4]) for r in group if r[4] is not None))
        options = _option_order(declared.get(survey_id), kind, seen)
        steps = sorted({r[3] for r in group})
        counts = [[0] * len(options) for _ in steps]
        for _, _, _, step, answer, n in group:
            if answer is not None:
                counts[steps.index(step)][options.index(str(answer))] += n
        out.append(SurveyShares(survey_id, group[0][1] or "", kind, options, steps, counts))
    order = {survey_id: i for i, survey_id in enumerate(declared)}  # the scenario's order
    return sorted(out, key=lambda s: (order.get(s.survey_id, len(order)), s.survey_id))


def run_events(con: duckdb.DuckDBPyConnection, run_id: str | None) -> list[Event]:
    """Events delivered in the run, labelled E1, E2, ... in step order."""
    if run_id is None:
        return []
    return [Event(f"E{i}", step, text, n or 0, source)
            for i, (step, text, _, n, source) in enumerate(delivered_events(con, run_id), 1)]


def agent_roles(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict[str, str]:
    """Each persona's most frequent emission kind in the run (ties: by name)."""
    if run_id is None:
        return {}
    rows = con.execute("SELECT persona_id, task, count(*) FROM v_items WHERE source = 'run' "
                       "AND source_id = ? GROUP BY ALL", [run_id]).fetchall()
    best: dict[str, tuple[int, str]] = {}
    for persona, kind, n in rows:
        if persona not in best or (-n, kind) < (-best[persona][0], best[persona][1]):
            best[persona] = (n, kind)
    return {persona: kind for persona, (_, kind) in best.items()}


def neighbourhood_sample(graph: nx.Graph, limit: int) -> tuple[list[object], list[object]]:
    """Nodes breadth-first from the best-connected node, then the next unreached one; returns (nodes,
    start nodes).
    """
    if graph.number_of_nodes() <= limit:
        return list(graph.nodes), []
    by_degree = sorted(graph.nodes, key=lambda n: (-graph.degree(n), str(n)))
    chosen: dict[object, None] = {}
    starts = []
    for start in by_degree:
        if len(chosen) >= limit:
            break
        if start in chosen:
            continue
        starts.append(start)
        queue = deque([start])
        chosen[start] = None
        while queue and len(chosen) < limit:
            for neighbour in sorted(graph.neighbors(queue.popleft()), key=str):
                if neighbour not in chosen and len(chosen) < limit:
                    chosen[neighbour] = None
                    queue.append(neighbour)
    return list(chosen), starts


def role_counts(nodes: list[Any], roles: dict[str, str]) -> Counter[str]:
    """How many nodes have each role ("no emission" for the rest)."""
    return Counter(roles.get(n, NO_EMISSION) for n in nodes)
