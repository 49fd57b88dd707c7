"""Scale: 100,000 agents x 2 steps offline with 10% activation — peak memory and actions/s.

    python bench/bench_scale.py [--agents 100000] [--steps 2] [--activation 0.1] [--profile]

Writes 100k distinct synthetic personas (template-built, seeded) to a temporary JSONL file and a
scenario with ``GraphGrowth(hops=0, acquaintances=4)``, runs it end to end through
``run_scenario`` (import, acquaintance links, graph, Mesa placement, steps, DuckDB writes) and
prints peak RSS (``resource.getrusage``) and agent-actions/s end to end and over the steps.
Goals: peak RSS <= 4 GiB, >= 1,000 agent-actions/s end to end.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

from _synthetic import write_personas, write_scenario


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--activation", type=float, default=0.1)
    parser.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key with --profile")
    args = parser.parse_args()
    import duckdb
    from personahub.sim.runner import RunOptions, run_scenario
    from personahub.sim.scenario import load_scenario

    phases: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        phases[f"{phase} {done}"] = now - last[0]
        last[0] = now

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", args.agents, seed=7)
        scenario = load_scenario(write_scenario(base / "scale.py", people, steps=args.steps,
                                                activation=args.activation, name="scale"))
        rss_before = peak_rss_mib()
        profiler = cProfile.Profile() if args.profile else None
        started = last[0] = time.perf_counter()
        if profiler:
            profiler.enable()
        summary = run_scenario(scenario, RunOptions(db=base / "scale.duckdb"), progress=progress)
        if profiler:
            profiler.disable()
        total_s = time.perf_counter() - started
        con = duckdb.connect(str(base / "scale.duckdb"), read_only=True)
        actions, first, final = con.execute(
            "select sum(n_active), min(started_at), max(finished_at) from steps").fetchall()[0]
        con.close()
    steps_s = (final - first).total_seconds()
    print(f"agents={summary.agents:,} edges={summary.edges:,} steps={summary.steps} "
          f"actions={actions:,} emissions={sum(summary.emissions_by_kind.values()):,} "
          f"messages={summary.messages:,} failed={summary.failed_actions}")
    print("phases: setup (import, links, graph, agents) "
          f"{phases.get('step 1', 0) - steps_s / max(summary.steps, 1):.1f} s (approx.), "
          + ", ".join(f"{k}: {v:.1f} s" for k, v in phases.items()))
    print(f"steps phase: {steps_s:.2f} s = {actions / steps_s:,.0f} agent-actions/s")
    print(f"end to end: {total_s:.2f} s = {actions / total_s:,.0f} agent-actions/s "
          f"(goal >= 1,000)")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB (before the run: {rss_before:,.0f} MiB; "
          f"goal <= 4,096)")
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    main()
