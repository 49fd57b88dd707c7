"""Scale: 100,000 agents x 2 steps offline with 10% activation — setup time, memory, actions/s.

    python bench/bench_scale.py [--agents 100000] [--steps 2] [--activation 0.1] [--profile]

Writes 100k distinct synthetic personas (template-built, seeded) to a temporary JSONL file and a
scenario with ``GraphGrowth(hops=0, acquaintances=4)``, runs it end to end through
``run_scenario`` (import, acquaintance links, graph, Mesa placement, steps, DuckDB writes) and
prints the setup phases (timed by wrapping the runner's setup functions), peak RSS
(``resource.getrusage``) and agent-actions/s end to end and over the steps. The last line is
``RESULT setup_s=... actions_per_s=... peak_rss_gib=...`` (actions/s end to end).
Goals (issue 16): 1,000,000 agents at 1% activation set up in <= 30 s within 4 GiB; 100,000
agents >= 2,000 agent-actions/s end to end.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _synthetic import write_personas, write_scenario


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# (module, class or "", attribute, label): the setup steps of ``run_scenario``, in order
SETUP_STEPS = (
    ("personahub.sim.runner", "", "load_scenario_personas", "read personas"),
    ("personahub.pipelines.run", "", "upsert_personas", "insert personas"),
    ("personahub.sim.runner", "", "save_acquaintances", "acquaintance links"),
    ("personahub.sim.runner", "", "social_edges", "social graph"),
    ("personahub.sim.store", "", "add_agents", "insert run agents/edges"),
    ("personahub.sim.society", "SocietyModel", "__init__", "Mesa model and agents"),
    # the smaller parts of what used to be "other"
    ("personahub.runtime", "StandardModels", "build", "model client"),
    ("personahub.core.kernel", "", "connect", "open database"),
    ("personahub.sim.runner", "", "check_references", "check references"),
    ("personahub.core.kernel", "", "_record", "runs and jobs rows"),
)


def time_commits(phases: dict[str, float], label: str = "commits (personas, links)") -> None:
    """Time the commits of the runner's own transactions (persona insert, links): the context
    manager's exit, where DuckDB writes what the transaction inserted."""
    import contextlib

    from personahub.sim import runner

    original = runner.transaction

    @contextlib.contextmanager
    def timed(con: Any) -> Any:
        manager = original(con)
        value = manager.__enter__()
        try:
            yield value
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            started = time.perf_counter()
            manager.__exit__(None, None, None)
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

    runner.transaction = timed  # type: ignore[assignment]


def time_setup_steps(phases: dict[str, float]) -> None:
    """Wrap each setup step so its wall time adds up in ``phases`` (missing steps are skipped)."""
    import importlib

    for module, cls, name, label in SETUP_STEPS:
        owner: Any = importlib.import_module(module)
        if cls:
            owner = getattr(owner, cls)
        original = getattr(owner, name, None)
        if original is None:
            continue

        def timed(*args: Any, _f: Any = original, _label: str = label, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                phases[_label] = phases.get(_label, 0.0) + time.perf_counter() - started

        setattr(owner, name, functools.wraps(original)(timed))


def mark_first_step() -> list[float]:
    """Wrap ``SocietyModel.advance`` (a step: its agents asked, then Mesa's ``step``) so the
    returned list holds when the first step started: setup is everything before it (the step
    times in ``steps`` start later, after their own work)."""
    from personahub.sim.society import SocietyModel

    mark: list[float] = []
    original = SocietyModel.advance

    async def advance(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not mark:
            mark.append(time.perf_counter())
        return await original(self, *args, **kwargs)

    SocietyModel.advance = functools.wraps(original)(advance)  # type: ignore[method-assign]
    return mark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--activation", type=float, default=0.1)
    parser.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key with --profile")
    args = parser.parse_args()
    import duckdb

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    phases: dict[str, float] = {}
    setup: dict[str, float] = {}
    time_setup_steps(setup)
    time_commits(setup)
    first_step = mark_first_step()
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
        summary = run_simulation(RunConfig(scenario=scenario, db=base / "scale.duckdb"), progress=progress)
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
    setup_s = first_step[0] - started if first_step else phases.get("step 1", 0)
    if "runs and jobs rows" in setup and "insert personas" in setup:  # the personas go in with them
        setup["runs and jobs rows"] -= setup["insert personas"]
    print("setup phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in setup.items())
          + f"; other {setup_s - sum(setup.values()):.2f} s")
    print(f"setup (until step 1 starts): {setup_s:.2f} s; "
          + ", ".join(f"{k}: {v:.1f} s" for k, v in phases.items()))
    print(f"steps phase: {steps_s:.2f} s = {actions / steps_s:,.0f} agent-actions/s")
    print(f"end to end: {total_s:.2f} s = {actions / total_s:,.0f} agent-actions/s "
          f"(goal at 100,000 agents >= 2,000)")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB (before the run: {rss_before:,.0f} MiB; "
          f"goal <= 4,096)")
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(args.sort).print_stats(45)
    print(f"RESULT setup_s={setup_s:.2f} actions_per_s={actions / total_s:.0f} "
          f"peak_rss_gib={peak_rss_mib() / 1024:.2f}")


if __name__ == "__main__":
    main()
