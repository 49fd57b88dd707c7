"""An A/A experiment through the simulator rejects at about its nominal rate (issue 47).

Two arms that differ only by a placebo sentence in the world text: offline the engine answers by
a hash of the prompt, so the placebo makes each arm an independent draw of the same answer
distribution, the null hypothesis by construction (two identical arms would be the same world,
with no effect at all). The experiment is run once, on the kernel, over ``SEEDS`` replicates;
each replicate is then read as its own A/A experiment on each of its ``SURVEYS`` choice and
``SURVEYS`` scale surveys (different questions, so different prompts: independent draws), which
gives ``SEEDS * SURVEYS`` = 200 A/A comparisons per kind of outcome, as 200 seeds of one survey
each would, for a tenth of the runs (a run's own cost dwarfs its survey calls).
"""

from pathlib import Path

import pytest
from scipy.stats import binomtest

from personahub.analysis.experiment_effects import detection_rate, effects, outcome_values
from personahub.core.store import connect
from personahub.experiments import run_experiment
from personahub.sim.experiment import load_experiment

SEEDS = 20
SURVEYS = 10  # of each kind: SEEDS * SURVEYS comparisons per kind
COMPARISONS = SEEDS * SURVEYS
SCENARIO = f'''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SURVEYS = {SURVEYS}
CHOICE = tuple(Survey(id=f"buy{{i}}", steps=(1,), options=("yes", "no"),
                      question=f"Would you buy product {{i}}?") for i in range(SURVEYS))
SCALE = tuple(Survey(id=f"fair{{i}}", steps=(1,), answer="scale", low=1, high=5,
                     question=f"Is the price of product {{i}} fair?") for i in range(SURVEYS))
SCENARIO = Scenario(
    name="aa", personas=PersonaSource(limit=20),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, kinds=("npc_dialogue",),
    activation=Activation(mode="count", count=1), surveys=CHOICE + SCALE, seed=0)
EXPERIMENT = Experiment(
    arms=(Arm(name="a"), Arm(name="placebo", world="It is a weekday.")), replicates=1,
    outcomes=tuple(Outcome(survey=s.id, step=1, options=("yes",)) for s in CHOICE)
    + tuple(Outcome(survey=s.id, step=1) for s in SCALE))
'''


@pytest.mark.slow
def test_aa_experiment_over_200_comparisons_rejects_at_about_five_percent(tmp_path: Path) -> None:
    path = tmp_path / "aa.py"
    path.write_text(SCENARIO)
    scenario, spec = load_experiment(path)
    spec = spec.with_replicates(SEEDS)
    db = tmp_path / "aa.duckdb"
    runs, ran = run_experiment(scenario, spec, db=db)
    assert len(ran) == 2 * SEEDS and sorted(set(runs.seed)) == list(range(SEEDS))
    con = connect(db, read_only=True)
    try:
        values = outcome_values(con, spec, runs)
    finally:
        con.close()
    # every agent answered every survey in both arms of every replicate
    assert len(values) == 2 * SEEDS * 2 * SURVEYS * 20
    p_values: dict[str, list[float]] = {"chi-squared": [], "Mann-Whitney U": []}
    for _, one in values.groupby("replicate"):
        table = effects(one, spec, seed=0)
        assert len(table) == 2 * SURVEYS
        for row in table.itertuples():
            p_values[row.test].append(row.p_value)
    for test, ps in p_values.items():
        assert len(ps) == COMPARISONS
        rate = detection_rate(ps, alpha=0.05)
        rejections = round(rate * COMPARISONS)
        print(f"A/A {test}: {rejections} of {COMPARISONS} comparisons rejected at 5% "
              f"({rate:.1%})")
        # about 5%: a binomial test does not reject the nominal rate (and it is no zero: the
        # arms do differ seed by seed, so a test that never rejects would fail here too)
        assert 0 < rejections, test
        assert binomtest(rejections, COMPARISONS, 0.05).pvalue > 0.05, (test, rate)
