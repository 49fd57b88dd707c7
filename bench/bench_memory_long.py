"""Memory over a long run (issue 32): 1,000 agents x 80 steps offline, RSS after every step.

    python bench/bench_memory_long.py [--agents 1000] [--steps 80] [--early 20]
                                      [--variants before,after]

Each variant runs in a fresh process the seeded synthetic scenario of the other benches
(``_synthetic``: template personas, 4 acquaintances, no expansion, everyone active). After each
step's commit it reads the resident set (``/proc/self/statm``) and the process's peak so far
(``ru_maxrss``: spikes between two commits count too). It prints the RSS per step and a RESULT
line per variant: the peak at ``--early`` steps, the peak at the end and their ratio (goal: within
10%, i.e. <= 1.10).

Variants:
  before  the step's end as it was: the buffer pool released, no checkpoint, so DuckDB
          checkpointed on its own inside a commit whenever the WAL passed 16 MiB (about every
          tenth step), each checkpoint reading back a table's whole last row group
  after   as shipped (``sim/store.py``: ``release_cached_blocks``): a checkpoint every step
          under a bounded buffer pool, then the pool released
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _synthetic import ROOT, write_personas, write_scenario

VARIANTS = ("before", "after")


def rss_mib() -> float:
    """Resident set size of this process now, in MiB."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """The process's peak resident set so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _release_without_checkpoint(con: Any, *, slack: int = 8 << 20) -> None:
    """``release_cached_blocks`` as it was before issue 32 (no checkpoint)."""
    others = con.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                         "WHERE tag <> 'BASE_TABLE'").fetchall()[0][0]
    con.execute(f"SET memory_limit = '{int(others) + slack}B'")
    con.execute("RESET memory_limit")


def _configure(variant: str) -> None:
    """Swap in the parts a variant runs with (in this process only)."""
    import personahub.sim.store as runlog

    if variant == "before":
        runlog.release_cached_blocks = _release_without_checkpoint  # type: ignore[assignment]


def child(args: argparse.Namespace) -> None:
    """Run one variant and print its figures as one JSON line."""
    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    _configure(args.child)
    rss: dict[int, float] = {}
    peak: dict[int, float] = {}
    started = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "step":
            rss[done], peak[done] = rss_mib(), peak_mib()

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", args.agents, seed=7)
        scenario = load_scenario(write_scenario(base / "memory.py", people, steps=args.steps,
                                                name="memory"))
        summary = run_simulation(RunConfig(scenario=scenario, db=base / "memory.duckdb"),
                                 progress=progress)
    print(json.dumps({"rss": rss, "peak": peak, "duplicates": summary.duplicates,
                      "emissions": sum(summary.emissions_by_kind.values()),
                      "wall_s": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--early", type=int, default=20, help="the step the end is compared with")
    parser.add_argument("--variants", default="before,after",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"{args.agents:,} agents x {args.steps} steps offline; RSS in MiB after step n")
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}")
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--agents",
                              str(args.agents), "--steps", str(args.steps)],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{variant}: failed\n{out.stderr}")
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        rss = {int(k): v for k, v in figures["rss"].items()}
        peak = {int(k): v for k, v in figures["peak"].items()}
        print(f"{variant:>7} RSS: " + " ".join(f"{k}:{v:.0f}" for k, v in sorted(rss.items())))
        early, end = peak[args.early], peak[args.steps]
        print(f"RESULT {variant}: peak at {args.early} steps {early:.0f} MiB, at {args.steps} "
              f"steps {end:.0f} MiB, ratio {end / early:.2f} (goal <= 1.10); RSS after step "
              f"{args.early} {rss[args.early]:.0f}, after step {args.steps} {rss[args.steps]:.0f}; "
              f"{figures['emissions']:,} emissions, {figures['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
