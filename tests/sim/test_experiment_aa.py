"""An A/A experiment through the simulator rejects at its nominal rate, with the design's units.

Two arms that differ only by a placebo sentence in the world text: the engine answers by a hash
of the prompt, so the placebo makes each arm an independent draw of the same answers, the null
hypothesis by construction. Each survey of a run is its own A/A dataset (different questions,
different prompts): 25 choice and 25 scale surveys a run.

- The offline engine seeded by the run: a persona answers afresh in every replicate. Twenty
  replicates are read as four experiments of five.
- The offline engine with a fixed seed (``offline?seed=7``), as a model at temperature 0 or
  ``personahub serve``: the same personas give the same answers in every replicate, which a test
  counting every answer as independent takes for an effect.

Each gives 200 datasets, and the design's test rejects them at a rate a binomial test does not
tell from its nominal 5% (``bench/bench_experiment_inference.py`` measures the rates over more
datasets and sizes).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from personahub.analysis.experiment_effects import detection_rate, effects, outcome_values
from personahub.core.store import connect
from personahub.experiments import run_experiment
from personahub.sim.experiment import Experiment, load_experiment

SURVEYS = 50  # of each kind a run
SCENARIO = f'''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SURVEYS = {SURVEYS // 2}
CHOICE = tuple(Survey(id=f"buy{{i}}", steps=(1,), options=("yes", "no"),
                      question=f"Would you buy product {{i}}?") for i in range(SURVEYS))
SCALE = tuple(Survey(id=f"fair{{i}}", steps=(1,), answer="scale", low=1, high=5,
                     question=f"Is the price of product {{i}} fair?") for i in range(SURVEYS))
SCENARIO = Scenario(
    name="aa", personas=PersonaSource(limit=30),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=1), surveys=CHOICE + SCALE, seed=0)
EXPERIMENT = Experiment(
    arms=(Arm(name="a"), Arm(name="placebo", world="Nothing else is new this week.")),
    replicates=5,
    outcomes=tuple(Outcome(survey=s.id, step=1, options=("yes",)) for s in CHOICE)
    + tuple(Outcome(survey=s.id, step=1) for s in SCALE))
'''


def aa_values(tmp_path: Path, replicates: int, llm: str) -> tuple[Experiment, pd.DataFrame]:
    path = tmp_path / "aa.py"
    path.write_text(SCENARIO)
    scenario, spec = load_experiment(path)
    spec = spec.with_replicates(replicates)
    db = tmp_path / f"aa-{llm.replace('?', '-').replace('=', '')}.duckdb"
    runs, ran = run_experiment(scenario, spec, db=db, llm=llm)
    assert len(ran) == 2 * replicates
    con = connect(db, read_only=True)
    try:
        values = outcome_values(con, spec, runs)
    finally:
        con.close()
    assert len(values) == 2 * replicates * SURVEYS * 30  # every persona answered every survey
    return spec, values


def pooled_p(values: pd.DataFrame) -> float:
    """The p value of the test that counted every answer as independent (chi-squared or U)."""
    treated = values[values.arm == "placebo"].value.to_numpy()
    control = values[values.arm == "a"].value.to_numpy()
    if values.outcome.iloc[0].startswith("buy"):
        table = [[treated.sum(), len(treated) - treated.sum()],
                 [control.sum(), len(control) - control.sum()]]
        return float(stats.chi2_contingency(table, correction=False).pvalue)
    return float(stats.mannwhitneyu(treated, control).pvalue)


def nominal(rate: float, n: int) -> bool:
    """Whether a rejection rate over n datasets is consistent with 5% (and is no zero)."""
    rejected = round(rate * n)
    return rejected > 0 and stats.binomtest(rejected, n, 0.05).pvalue > 0.05


def rates(groups: list[tuple[Experiment, pd.DataFrame]]) -> tuple[float, float, int]:
    """The design test's and the pooled test's rejection rates over every outcome of every group."""
    design, pooled = [], []
    for spec, values in groups:
        table = effects(values, spec)
        assert table.p_value.notna().all()
        design += list(table.p_value)
        pooled += [pooled_p(one) for _, one in values.groupby("outcome")]
    return detection_rate(design), detection_rate(pooled), len(design)


@pytest.mark.slow
def test_aa_with_fresh_answers_every_replicate_rejects_at_its_nominal_rate(tmp_path: Path):
    spec, values = aa_values(tmp_path, 20, "offline")
    groups = [(spec.with_replicates(5), values[values.replicate // 5 == g]) for g in range(4)]
    design, pooled, n = rates(groups)
    print(f"A/A offline engine: design test {design:.1%}, pooled test {pooled:.1%} of {n}")
    assert n == 200 and nominal(design, n), design


@pytest.mark.slow
def test_aa_with_answers_repeated_every_replicate_rejects_at_its_nominal_rate(tmp_path: Path):
    """Three replicates through a deterministic engine, under four engine seeds (four sets of
    independent draws): 30 pairs a survey, not 90, so a test that counted every answer would
    overstate the evidence three-fold and declare many placebos."""
    groups = []
    for seed in range(4):
        spec, values = aa_values(tmp_path, 3, f"offline?seed={seed}")
        first = values[values.replicate == 0].value.to_numpy()
        for r in (1, 2):  # the engine ignored the run's seed: every replicate repeats the first
            assert np.array_equal(values[values.replicate == r].value.to_numpy(), first)
        groups.append((spec, values))
    design, pooled, n = rates(groups)
    print(f"A/A deterministic: design test {design:.1%}, pooled test {pooled:.1%} of {n}")
    assert n == 200 and nominal(design, n), design
    assert pooled > 0.1, pooled
