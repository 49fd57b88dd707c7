"""Memory over a long run: 1,000 agents x 40 steps offline, RSS every 5 steps, before and after.

    python bench/bench_memory.py [--agents 1000] [--steps 40] [--warmup 5]
                                 [--variants before,after] [--every 5]

Each variant runs in a fresh process (so one run's freed memory does not flatter the next) the
same seeded scenario as the other benches (``_synthetic``: template personas, 4 acquaintances,
no expansion, everyone active) and reports resident memory (``/proc/self/statm``, Linux) after
every ``--every`` steps, after the warm-up step and at the end, and the ratio end / warm-up.
Goal: flat, end / warm-up <= ~1.1.

Variants:
  before      the near-duplicate index as it was (``tests/_dict_index.py``: bytes band keys in
              per-band dicts, one array per signature) and DuckDB keeping every block it wrote
  after       as shipped: band hashes in sorted arrays, the newest signatures kept and older
              candidates' texts read back from the run's emissions, DuckDB's written blocks
              released every step
  blocks      as shipped, but every signature kept in memory (the index without a reader)
  no-release  as shipped, but DuckDB keeps its blocks (what the index alone does)
  datasketch  as shipped, but the index is datasketch's ``MinHashLSH`` over the same signatures
              as ``LeanMinHash`` (``tests/_datasketch_index.py``)
Every variant flags the same emissions: the duplicates column must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _synthetic import ROOT, write_personas, write_scenario

VARIANTS = ("before", "after", "blocks", "no-release", "datasketch")


def rss_mib() -> float:
    """Resident set size of this process now, in MiB."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _configure(variant: str) -> None:
    """Swap in the parts a variant runs with (in this process only)."""
    import personahub.personas.near_dup as near_dup
    import personahub.sim.store as runlog

    if variant in ("before", "no-release"):
        runlog.release_cached_blocks = lambda con, **_: None  # type: ignore[assignment]
    if variant == "before":
        from tests._dict_index import DictNearDuplicateIndex

        near_dup.NearDuplicateIndex = lambda **_: DictNearDuplicateIndex()  # type: ignore[assignment,misc]
    if variant == "datasketch":
        from tests._datasketch_index import DatasketchNearDuplicateIndex

        near_dup.NearDuplicateIndex = lambda **_: DatasketchNearDuplicateIndex()  # type: ignore[assignment,misc]
    if variant == "blocks":
        real = near_dup.NearDuplicateIndex

        def without_reader(**kwargs: Any) -> near_dup.NearDuplicateIndex:
            return real(**{**kwargs, "texts": None})

        near_dup.NearDuplicateIndex = without_reader  # type: ignore[assignment,misc]


def child(args: argparse.Namespace) -> None:
    """Run one variant and print its figures as one JSON line."""
    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    _configure(args.child)
    marks: dict[int, float] = {}
    started = time.perf_counter()
    stepped: dict[int, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "step":
            stepped[done] = time.perf_counter()
            if done == args.warmup or done % args.every == 0 or done == total:
                marks[done] = rss_mib()

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", args.agents, seed=7)
        scenario = load_scenario(write_scenario(base / "memory.py", people, steps=args.steps,
                                                name="memory"))
        summary = run_simulation(RunConfig(scenario=scenario, db=base / "memory.duckdb"), progress=progress)
    steps_s = stepped[args.steps] - stepped[args.warmup]
    print(json.dumps({"marks": marks, "duplicates": summary.duplicates,
                      "emissions": sum(summary.emissions_by_kind.values()),
                      "s_per_step": steps_s / max(1, args.steps - args.warmup),
                      "wall_s": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="the step RSS is compared with")
    parser.add_argument("--every", type=int, default=5)
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
                              str(args.agents), "--steps", str(args.steps), "--warmup",
                              str(args.warmup), "--every", str(args.every)],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{variant}: failed\n{out.stderr}")
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        marks = {int(k): v for k, v in figures["marks"].items()}
        warm, end = marks[args.warmup], marks[args.steps]
        series = " ".join(f"{k}:{v:.0f}" for k, v in sorted(marks.items()))
        print(f"{variant:>10}: {series}")
        print(f"{'':>10}  end/warm-up {end:.0f}/{warm:.0f} = {end / warm:.2f} (goal <= ~1.1); "
              f"{figures['emissions']:,} emissions, {figures['duplicates']:,} flagged duplicates; "
              f"{figures['s_per_step']:.2f} s per step after warm-up")


if __name__ == "__main__":
    main()
