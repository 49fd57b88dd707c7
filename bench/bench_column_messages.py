"""What messages cost a column society: a step with an unaddressed kind against one that talks.

    python bench/bench_column_messages.py [--agents 100000 ...] [--k 100] [--activation 0.1]
                                          [--steps 2] [--shards 1] [--kinds tool_spec,conversation]

Per size, two runs of ``bench_society_scale.py``'s template population and scenario (offline
engine, ``--society columns``), each in a spawned child: its kinds ``instruction`` and
``tool_spec``, then ``instruction`` and ``conversation`` (an addressed kind, so about half the
active agents send a message to a neighbour each step). Lines: ``STEP`` (kinds, step, active,
emissions, messages, archetype calls, seconds from the ``steps`` row), ``RUN`` (the child's peak
RSS and CPU seconds, user + system, setup included, and the distinct memories among the run's
``agent_states`` rows). ``--kinds`` runs only the kinds named (comma-separated).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_society_scale import write_society  # noqa: E402

KINDS = ("tool_spec", "conversation")


def _run(base: str, n: int, k: int, activation: float, steps: int, shards: int, kind: str,
         out: Any) -> None:
    import duckdb

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    folder = Path(base) / f"{n}-{kind}"
    folder.mkdir(parents=True)
    path = write_society(folder, n, k, activation, steps)
    path.write_text(path.read_text().replace("tasks=('instruction', 'tool_spec')",
                                             f"tasks=('instruction', {kind!r})"))
    db = folder / "run.duckdb"
    began = time.perf_counter()
    run_simulation(RunConfig(scenario=load_scenario(path), db=db, society="columns",
                             shards=shards))
    total = time.perf_counter() - began
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT step, n_active, n_emissions, n_messages, n_archetype_calls, "
            "epoch(finished_at - started_at) FROM steps ORDER BY step").fetchall()
        counted = con.execute(
            "SELECT count(DISTINCT json_extract(state, '$.memory')::VARCHAR), count(*) "
            "FROM agent_states").fetchone()
        assert counted is not None
        distinct, states = counted
    finally:
        con.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((rows, total, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, distinct,
             states))


def main() -> None:
    """Run each size with each kind and print its lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", default=None)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--activation", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="the second kinds to run, comma-separated (default: both)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as base:
        for n in args.agents or [100_000]:
            for kind in kinds:
                out = context.Queue()
                child = context.Process(target=_run, args=(
                    base, n, args.k, args.activation, args.steps, args.shards, kind, out))
                child.start()
                rows, total, rss, cpu, distinct, states = out.get()
                child.join()
                for step, active, emitted, messages, calls, seconds in rows:
                    print(f"STEP agents={n} kind={kind} step={step} active={active} "
                          f"emissions={emitted} messages={messages} calls={calls} "
                          f"seconds={seconds:.2f}", flush=True)
                print(f"RUN agents={n} kind={kind} total_s={total:.1f} cpu_s={cpu:.1f} "
                      f"peak_mb={rss:.0f} "
                      f"distinct_memories={distinct} states={states}", flush=True)


if __name__ == "__main__":
    main()
