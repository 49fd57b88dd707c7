"""``plan_power``'s promise checked over seeds (issue 47, "Done when": the power calculation
predicts the detection rate within a few points).

A planted effect as the loopback server plants one (``models/fake_server/plant.py``): on a
two-option survey the control answers ``yes`` by 1/2, and a plant of share ``SHARE`` makes the
treated arm answer it by ``SHARE + (1 - SHARE) / 2``. ``plan_power`` gives the agents per arm
for a wanted power; over ``REPLICATIONS`` seeded experiments of that size, each arm drawn
independently (as ``plan_power`` assumes: a plant on the same world pairs the arms agent by
agent, and is found more often than predicted), the test ``effects`` applies (chi-squared for a
share, Mann-Whitney U for a scale) rejects at the power statsmodels predicts for those sizes,
within a few points. Offline draws, not runs: the runs add nothing to the test's power, and
``tests/models/fake_server/test_server_plant.py`` checks a plant through real runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from personahub.analysis.experiment_effects import (
    detection_rate,
    effects,
    plan_power,
    scale_test,
    share_effect_size,
    share_test,
)
from personahub.sim.experiment import Arm, Experiment, Outcome

REPLICATIONS = 400
AGENTS_PER_RUN = 40
SHARE = 0.3  # the plant's share (--plant "TREATED=yes:0.3")
P_CONTROL = 0.5  # the offline engine picks each of two options alike
P_TREATED = SHARE + (1 - SHARE) / 2  # 0.65
SCALE_D = 0.3  # a scale outcome's planted shift, in standard deviations


def draw(share: bool, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One experiment's (treated, control) values, ``n`` agents per arm."""
    rng = np.random.default_rng(seed)
    if share:
        return ((rng.random(n) < P_TREATED).astype(float),
                (rng.random(n) < P_CONTROL).astype(float))
    return rng.normal(SCALE_D, 1.0, n), rng.normal(0.0, 1.0, n)


@pytest.mark.parametrize(("share", "wanted"), [(True, 0.5), (True, 0.8), (False, 0.8)],
                         ids=["share-50", "share-80", "scale-80"])
def test_the_planned_power_is_the_detection_rate_over_seeds(share: bool, wanted: float) -> None:
    size = share_effect_size(P_CONTROL, P_TREATED) if share else SCALE_D
    plan = plan_power(size, agents_per_run=AGENTS_PER_RUN, share=share, power=wanted)
    n = int(plan["replicates"]) * AGENTS_PER_RUN  # whole runs: at least the agents asked for
    assert n >= int(plan["agents_per_arm"])
    analysis = NormalIndPower() if share else TTestIndPower()
    predicted = float(analysis.power(effect_size=size, nobs1=n, ratio=1.0, alpha=0.05))
    assert predicted >= wanted  # the plan's sizes reach the power asked for
    test = share_test if share else scale_test
    p_values = [test(*draw(share, n, seed))[1] for seed in range(REPLICATIONS)]
    rate = detection_rate(p_values, alpha=0.05)
    print(f"{'share' if share else 'scale'}: {n} agents per arm, predicted power "
          f"{predicted:.3f}, detected in {rate:.3f} of {REPLICATIONS} seeds")
    # a few points: 2.5 standard errors of the rate at 400 seeds; Mann-Whitney U has ~95% of
    # the t test's efficiency on normal data, so it detects a little less than t power says
    assert abs(rate - predicted) <= 0.045, (rate, predicted)


def test_the_power_check_reads_the_p_values_effects_reports() -> None:
    """The test above calls the tests ``effects`` applies; ``effects`` reports the same p (one
    outcome: Holm's correction changes nothing) and calls it significant below 5%."""
    n = 3 * AGENTS_PER_RUN
    spec = Experiment(arms=(Arm(name="control"), Arm(name="treated")), replicates=3,
                      outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
    treated, control = draw(True, n, seed=7)
    replicate = np.repeat(np.arange(3), AGENTS_PER_RUN)
    values = pd.DataFrame({
        "outcome": "buy@1", "arm": ["treated"] * n + ["control"] * n,
        "replicate": np.concatenate([replicate, replicate]), "run_id": "r",
        "agent_id": np.concatenate([np.arange(n), np.arange(n)]),
        "value": np.concatenate([treated, control])})
    row = effects(values, spec, seed=0).iloc[0]
    assert row.test == "chi-squared"
    assert row.p_value == pytest.approx(share_test(treated, control)[1], rel=1e-12)
    assert row.p_holm == pytest.approx(row.p_value)
    assert row.significant == (row.p_value < 0.05)
