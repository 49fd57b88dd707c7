"""An A/A experiment through the simulator rejects at about its nominal rate (issue 47).

Two arms that differ only by a placebo sentence in the world text, over 200 seeds: offline the
engine answers by a hash of the prompt, so the placebo makes each arm an independent draw of the
same answer distribution, the null hypothesis by construction (two identical arms would be the
same world, with no effect at all). Every seed's two runs are run once, on the kernel, as one
experiment of 200 replicates; each replicate is then read as its own A/A experiment.
"""

from pathlib import Path

import pytest
from scipy.stats import binomtest

from personahub.analysis.experiment_effects import detection_rate, effects, outcome_values
from personahub.core.store import connect
from personahub.experiments import run_experiment
from personahub.sim.experiment import load_experiment

SEEDS = 200
SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="aa", personas=PersonaSource(limit=20),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, kinds=("npc_dialogue",),
    activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),
             Survey(id="fair", steps=(1,), answer="scale", low=1, high=5, question="Fair?")),
    seed=0)
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="placebo", world="It is a weekday.")),
                        replicates=1, outcomes=(Outcome(survey="buy", step=1, options=("yes",)),
                                                Outcome(survey="fair", step=1)))
'''


@pytest.mark.slow
def test_aa_experiment_over_200_seeds_rejects_at_about_five_percent(tmp_path: Path) -> None:
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
    p_values: dict[str, list[float]] = {"buy@1": [], "fair@1": []}
    for _, one in values.groupby("replicate"):
        table = effects(one, spec, seed=0)
        for row in table.itertuples():
            p_values[row.outcome].append(row.p_value)
    for outcome, ps in p_values.items():
        assert len(ps) == SEEDS
        rate = detection_rate(ps, alpha=0.05)
        rejections = round(rate * SEEDS)
        print(f"A/A {outcome}: {rejections} of {SEEDS} seeds rejected at 5% ({rate:.1%})")
        # about 5%: a binomial test does not reject the nominal rate (and it is no zero: the
        # arms do differ seed by seed, so a test that never rejects would fail here too)
        assert 0 < rejections, outcome
        assert binomtest(rejections, SEEDS, 0.05).pvalue > 0.05, (outcome, rate)
