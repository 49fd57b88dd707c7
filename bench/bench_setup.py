"""Scenario setup at scale: each persona-side phase a 100,000-persona run goes through before step 1.

    python bench/bench_setup.py [--personas 100000] [--repeat 3]

Writes synthetic Persona Hub JSONL (template-built, seeded) and times, on a fresh database per
repeat: reading the file (``iter_personas``), the acquaintance pairs (``small_world_pairs``, k=4,
rewire 0.1), ``upsert_personas``, ``save_relations`` of the acquaintance links and
``social_graph`` over all ids. Prints min-max per phase over the repeats (the machine is noisy).
``sim.runner`` is imported first, as in a run: its modules make the heap the garbage collector
walks, and pyarrow's first table would otherwise pay for importing pandas inside a phase.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _synthetic import write_personas

import personahub.sim.runner  # noqa: F401  the process a run is set up in: heap (GC) and pandas (pyarrow) loaded
from personahub.core.store import connect, transaction
from personahub.personas.graph import Relation, save_relations, small_world_pairs, social_graph
from personahub.personas.importers import iter_personas
from personahub.personas.store import upsert_personas

PHASES = ("read personas", "small_world_pairs", "upsert_personas", "save_relations", "social_graph")


def timed(times: dict[str, list[float]], phase: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` once, add its wall time to ``times[phase]`` and return its result."""
    started = time.perf_counter()
    result = work()
    times.setdefault(phase, []).append(time.perf_counter() - started)
    return result


def one_run(people: Path, db: Path, times: dict[str, list[float]]) -> tuple[int, int, int]:
    """Every phase once on a fresh database; returns (personas, pairs, graph edges) as a check."""
    personas = timed(times, "read personas", lambda: list(iter_personas(people)))
    pairs = timed(times, "small_world_pairs", lambda: small_world_pairs(len(personas), 4, 0.1, 1))
    ids = [p.persona_id for p in personas]
    relations = [Relation(ids[u], ids[v], "acquaintance", 0, "scenario:bench") for u, v in pairs]
    con = connect(db)
    try:
        with transaction(con):
            timed(times, "upsert_personas", lambda: upsert_personas(con, personas))
        with transaction(con):
            timed(times, "save_relations", lambda: save_relations(con, relations))
        graph = timed(times, "social_graph", lambda: social_graph(con, ids))
    finally:
        con.close()
    return len(personas), len(pairs), graph.number_of_edges()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", args.personas, seed=7)
        for i in range(args.repeat):
            counts = one_run(people, base / f"setup{i}.duckdb", times)
    print(f"personas={counts[0]:,} pairs={counts[1]:,} graph edges={counts[2]:,} "
          f"repeats={args.repeat}")
    for phase in PHASES:
        low, high = min(times[phase]), max(times[phase])
        print(f"{phase:>18}: {low:.3f}-{high:.3f} s")
    total = [sum(times[p][i] for p in PHASES) for i in range(args.repeat)]
    print(f"{'total':>18}: {min(total):.3f}-{max(total):.3f} s")


if __name__ == "__main__":
    main()
