"""How often an experiment's tests declare an effect that is not there, and find one that is.

    python bench/bench_experiment_inference.py [--datasets 1000] [--serve] [--serve-datasets]

Three parts, each printing the design's test beside the pooled test that counted every answer as
independent (chi-squared for a share, with Holm's correction where outcomes are many):

1. ``SIM``: seeded simulated A/A datasets of a share outcome, 30 personas answering in both arms
   of 3, 5, 10 and 20 replicates: independent answers with a persona leaning (an offline engine),
   answers fixed per persona and arm (a deterministic model), and worlds whose share varies at an
   intra-world correlation of 0.02 and 0.05. Then ``POWER``: ``plan_power``'s sizes for a planted
   12-point effect (arms drawn independently), its predicted power and the detection rate.
2. ``--serve``: the issue's design through ``personahub serve`` (in this process): 30 personas,
   20 replicates, a placebo world sentence, 5 choice and 5 scale outcomes; how many outcomes each
   test declares.
3. ``--serve-datasets``: 200 A/A datasets through ``personahub serve`` (4 server seeds x 25
   choice and 25 scale surveys, 3 replicates): each test's rejection rate.

Lines: ``SIM kind=<k> icc=<x> replicates=<r> datasets=<n> design=<rate> pooled=<rate>``,
``POWER wanted=<p> replicates=<r> predicted=<p> detected=<rate>``, ``SERVE declared_design=<d>
declared_pooled=<d> of=<n>`` and ``SERVE_AA datasets=<n> design=<rate> pooled=<rate>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from personahub.analysis.experiment_effects import (
    detection_rate,
    effects,
    outcome_values,
    plan_power,
    share_effect_size,
)
from personahub.analysis.experiment_inference import paired_between
from personahub.core.store import connect
from personahub.experiments import run_experiment
from personahub.models.fake_server.server import ServerOptions, start_server
from personahub.sim.experiment import Arm, Experiment, Outcome, load_experiment

PERSONAS = 30
SPEC = Experiment(arms=(Arm(name="control"), Arm(name="treated")),
                  outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))


def frame(y: np.ndarray) -> pd.DataFrame:
    """Values of a share outcome from y[arm, persona, replicate]."""
    arms, personas, replicates = y.shape
    arm, persona, replicate = np.meshgrid(np.arange(arms), np.arange(personas),
                                          np.arange(replicates), indexing="ij")
    return pd.DataFrame({"outcome": "buy@1",
                         "arm": np.array(["control", "treated"])[arm.ravel()],
                         "replicate": replicate.ravel(), "persona_id": persona.ravel(),
                         "agent_id": persona.ravel(), "run_id": "r", "value": y.ravel()})


def design_p(y: np.ndarray) -> float:
    """The p value of the test ``effects`` applies between worlds (paired_between)."""
    values = frame(y)
    return paired_between(values[values.arm == "treated"],
                          values[values.arm == "control"]).p_value


def simulated(kind: str, icc: float, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """One A/A dataset y[arm, persona, replicate] of 0/1 answers with the structure named."""
    leaning = 1 / (1 + np.exp(-(np.log(0.35 / 0.65) + rng.normal(0, 1, PERSONAS))))
    shape = (2, PERSONAS, replicates)
    if kind == "world":
        a, b = 0.35 * (1 - icc) / icc, 0.65 * (1 - icc) / icc
        share = np.repeat(rng.beta(a, b, (2, 1, replicates)), PERSONAS, axis=1)
        return (rng.random(shape) < share).astype(float)
    if kind == "deterministic":
        fixed = rng.random((2, PERSONAS)) < leaning
        return np.repeat(fixed[:, :, None], replicates, axis=2).astype(float)
    return (rng.random(shape) < leaning[None, :, None]).astype(float)


def pooled_share_p(y: np.ndarray) -> float:
    """Chi-squared over every answer of the two arms, as if each were independent."""
    table = [[y[a].sum(), y[a].size - y[a].sum()] for a in (1, 0)]
    if min(table[0][0] + table[1][0], table[0][1] + table[1][1]) == 0:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def simulations(datasets: int) -> None:
    for kind, icc in (("independent", 0.0), ("deterministic", 0.0), ("world", 0.02),
                      ("world", 0.05)):
        for replicates in (3, 5, 10, 20):
            rng = np.random.default_rng([replicates, int(icc * 1000), len(kind)])
            design, pooled = [], []
            for _ in range(datasets):
                y = simulated(kind, icc, replicates, rng)
                design.append(design_p(y))
                pooled.append(pooled_share_p(y))
            print(f"SIM kind={kind} icc={icc} replicates={replicates} datasets={datasets} "
                  f"design={detection_rate(design):.3f} pooled={detection_rate(pooled):.3f}",
                  flush=True)
    size = share_effect_size(0.5, 0.62)
    for wanted in (0.5, 0.8):
        plan = plan_power(size, agents_per_run=PERSONAS, power=wanted)
        replicates = int(plan["replicates"])
        rng = np.random.default_rng(int(wanted * 100))
        hits = []
        for _ in range(datasets):
            y = np.stack([rng.random((PERSONAS, replicates)) < p for p in (0.5, 0.62)])
            hits.append(design_p(y.astype(float)))
        print(f"POWER wanted={wanted} replicates={replicates} predicted={plan['achieved']:.3f} "
              f"detected={detection_rate(hits):.3f}", flush=True)


SERVE_SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
CHOICE = tuple(Survey(id=f"buy{i}", steps=(1,), options=("yes", "no"),
                      question=f"Would you buy product {i}?") for i in range(SURVEYS))
SCALE = tuple(Survey(id=f"fair{i}", steps=(1,), answer="scale", low=1, high=5,
                     question=f"Is the price of product {i} fair?") for i in range(SURVEYS))
SCENARIO = Scenario(
    name="placebo", personas=PersonaSource(limit=30), world="A town by a river.",
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1), surveys=CHOICE + SCALE, seed=0)
EXPERIMENT = Experiment(
    arms=(Arm(name="control"), Arm(name="placebo", world="Nothing else is new this week.")),
    replicates=REPLICATES,
    outcomes=tuple(Outcome(survey=s.id, step=1, options=("yes",)) for s in CHOICE)
    + tuple(Outcome(survey=s.id, step=1) for s in SCALE))
'''


def served(folder: Path, surveys: int, replicates: int, seed: int) -> tuple[Experiment,
                                                                             pd.DataFrame]:
    """An A/A experiment's values through the loopback server seeded ``seed``."""
    path = folder / f"placebo-{seed}.py"
    path.write_text(f"SURVEYS = {surveys}\nREPLICATES = {replicates}\n" + SERVE_SCENARIO)
    scenario, spec = load_experiment(path)
    handle = start_server(ServerOptions(seed=seed))
    db = folder / f"placebo-{seed}.duckdb"
    try:
        runs, _ = run_experiment(scenario, spec, db=db, llm=f"{handle.base_url}?model=offline")
    finally:
        handle.stop()
    con = connect(db, read_only=True)
    try:
        return spec, outcome_values(con, spec, runs)
    finally:
        con.close()


def pooled_p(values: pd.DataFrame) -> float:
    """Chi-squared (a share) or Mann-Whitney U (a scale) over every answer."""
    treated = values[values.arm == "placebo"].value.to_numpy()
    control = values[values.arm == "control"].value.to_numpy()
    if values.outcome.iloc[0].startswith("buy"):
        return pooled_share_p(np.stack([control, treated])[:, :, None])
    return float(stats.mannwhitneyu(treated, control).pvalue)


def serve_design() -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        spec, values = served(Path(folder), 5, 20, 0)
        table = effects(values, spec)
        pooled = [pooled_p(one) for _, one in values.groupby("outcome", sort=False)]
        rejected = multipletests(pooled, method="holm")[0]
        print(f"SERVE declared_design={int(table.significant.sum())} "
              f"declared_pooled={int(rejected.sum())} of={len(table)} "
              f"seconds={time.perf_counter() - started:.0f}", flush=True)


def serve_datasets() -> None:
    design, pooled = [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(4):
            spec, values = served(Path(folder), 25, 3, seed)
            design += list(effects(values, spec).p_value)
            pooled += [pooled_p(one) for _, one in values.groupby("outcome", sort=False)]
    print(f"SERVE_AA datasets={len(design)} design={detection_rate(design):.3f} "
          f"pooled={detection_rate(pooled):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help="the 20-replicate placebo design")
    parser.add_argument("--serve-datasets", action="store_true", help="200 A/A datasets")
    args = parser.parse_args()
    simulations(args.datasets)
    if args.serve:
        serve_design()
    if args.serve_datasets:
        serve_datasets()


if __name__ == "__main__":
    sys.exit(main())
