"""The planted-effect check on a shipped scenario: how many paired answers of a marked arm differ
from its unmarked twin when almost nothing is planted.

    python bench/bench_plant.py [scenarios/product_launch.py] [--share 0.0001] [--replicates 1]
                                [--limit N] [--marker TREATED]

For every arm of the scenario's EXPERIMENT, the arm and its marked twin (the same arm with
``world=MARKER``) run through the loopback server (``personahub serve --plant
MARKER=OPTION:SHARE``, in this process, no added latency), seeded alike, ``--replicates`` seeds
each. OPTION is the first option of the scenario's first choice survey. Every survey answer of
the twin is paired with the arm's (same persona, survey, step and replicate). With the plant
working, a marked prompt is answered as its control's, so at a tiny share almost no pair differs,
and every pair that differs holds the planted option.

Lines: ``ARM <name> replicate=<r> pairs=<n> differ=<d> share_differ=<d/n> differ_not_planted=<m>``
per arm and replicate, then ``TOTAL pairs=<n> differ=<d> share_differ=<x> differ_not_planted=<m>
planted_share=<s> seconds=<t>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from personahub.api import run_simulation
from personahub.core.store import connect
from personahub.models.fake_server.plant import Plant
from personahub.models.fake_server.server import ServerOptions, start_server
from personahub.pipelines.run import RunConfig
from personahub.sim.experiment import arm_scenario, load_experiment

ROOT = Path(__file__).resolve().parents[1]


def answers(db: Path, run_id: str) -> dict[tuple[str, str, int], object]:
    """(persona, survey, step) -> the answer, of one run."""
    con = connect(db)
    try:
        rows = con.execute("SELECT persona_id, survey_id, step, coalesce(answer_choice, "
                           "CAST(answer_scale AS VARCHAR), answer_text) FROM survey_answers "
                           "WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return {(str(p), str(s), int(t)): a for p, s, t, a in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios/product_launch.py"))
    parser.add_argument("--share", type=float, default=0.0001)
    parser.add_argument("--replicates", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="personas (default: the scenario's)")
    parser.add_argument("--marker", default="TREATED")
    args = parser.parse_args()
    scenario, experiment = load_experiment(args.scenario)
    if args.limit is not None:
        scenario = dataclasses.replace(scenario, personas=dataclasses.replace(
            scenario.personas, limit=args.limit))
    option = next(s.options[0] for s in scenario.surveys if s.answer == "choice")
    handle = start_server(ServerOptions(plants=(Plant(args.marker, option, args.share),)))
    started = time.perf_counter()
    pairs = differ = not_planted = 0
    try:
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "plant.duckdb"
            llm = f"{handle.base_url}?model=offline"
            for arm in experiment.arms:
                marked = dataclasses.replace(arm, name=f"{arm.name}_marked", world=args.marker)
                for replicate in range(args.replicates):
                    seed = scenario.seed + replicate
                    runs = [run_simulation(RunConfig(scenario=arm_scenario(scenario, a), db=db,
                                                     llm=llm, seed=seed)).run_id
                            for a in (arm, marked)]
                    base, treated = (answers(db, r) for r in runs)
                    keys = sorted(base.keys() & treated.keys())
                    changed = [k for k in keys if base[k] != treated[k]]
                    odd = [k for k in changed if treated[k] != option]
                    pairs, differ, not_planted = (pairs + len(keys), differ + len(changed),
                                                  not_planted + len(odd))
                    print(f"ARM {arm.name} replicate={replicate} pairs={len(keys)} "
                          f"differ={len(changed)} share_differ={len(changed) / max(1, len(keys)):.4f} "
                          f"differ_not_planted={len(odd)}", flush=True)
    finally:
        handle.stop()
    print(f"TOTAL pairs={pairs} differ={differ} share_differ={differ / max(1, pairs):.4f} "
          f"differ_not_planted={not_planted} planted_share={args.share} "
          f"seconds={time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    sys.exit(main())
