"""Offline end-to-end throughput: agent actions per second through the whole stack.

    python bench/bench_offline_e2e.py [--personas 150] [--steps 10] [--hops 1]

Runs a scenario (shipped seed personas, acquaintance links, expansion, Mesa steps, LangGraph
agents, offline engine, MinHash flags, DuckDB writes) and reports actions/s over the steps phase
and over the whole run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=150)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hops", type=int, default=1)
    parser.add_argument("--fanout", type=int, default=2)
    args = parser.parse_args()
    scenario = Scenario(name="bench", personas=PersonaSource(limit=args.personas),
                        graph=GraphGrowth(hops=args.hops, fanout=args.fanout),
                        steps=args.steps, world="A river town.", seed=1)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.duckdb"
        started = time.perf_counter()
        summary = run_simulation(RunConfig(scenario=scenario, db=db))
        total_s = time.perf_counter() - started
        con = duckdb.connect(str(db), read_only=True)
        actions, first, last = con.execute(
            "select sum(n_active), min(started_at), max(finished_at) from steps").fetchall()[0]
        con.close()
    steps_s = (last - first).total_seconds()
    print(f"agents={summary.agents} steps={summary.steps} actions={actions} "
          f"emissions={sum(summary.emissions_by_kind.values())} duplicates={summary.duplicates}")
    print(f"steps phase: {steps_s:.2f} s = {actions / steps_s:,.0f} agent-actions/s")
    print(f"whole run (import, graph, expansion, steps): {total_s:.2f} s "
          f"= {actions / total_s:,.0f} agent-actions/s")


if __name__ == "__main__":
    main()
