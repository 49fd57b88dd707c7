"""``plan_power``'s promise checked over seeds: the planned sizes detect a planted effect at the
power the plan predicts, within 5 points, through the test ``effects`` applies.

A planted effect as the loopback server plants one (``models/fake_server/plant.py``): on a
two-option survey the control answers ``yes`` by 1/2, and the treated arm by 62%, a 12-point
effect. Each arm is drawn independently (as a plan before running must assume; a plant on the
same personas pairs the arms and is found more often), 30 personas a run in every replicate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personahub.analysis.experiment_effects import (
    detection_rate,
    effects,
    plan_power,
    share_effect_size,
)
from personahub.analysis.experiment_inference import MIN_REPLICATES, paired_power
from personahub.sim.experiment import Arm, Experiment, Outcome

REPLICATIONS = 400
PERSONAS = 30
P_CONTROL, P_TREATED = 0.5, 0.62  # a 12-point effect
SCALE_D = 0.3  # a scale outcome's planted shift, in standard deviations
SPEC = Experiment(arms=(Arm(name="control"), Arm(name="treated")),
                  outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))


def draw(share: bool, replicates: int, seed: int) -> pd.DataFrame:
    """One experiment's values: every persona answers in both arms of every replicate."""
    rng = np.random.default_rng(seed)
    shape = (PERSONAS, replicates)
    if share:
        treated = (rng.random(shape) < P_TREATED).astype(float)
        control = (rng.random(shape) < P_CONTROL).astype(float)
    else:
        treated, control = rng.normal(SCALE_D, 1.0, shape), rng.normal(0.0, 1.0, shape)
    frames = []
    for arm, values in (("control", control), ("treated", treated)):
        persona, replicate = np.meshgrid(np.arange(PERSONAS), np.arange(replicates),
                                         indexing="ij")
        frames.append(pd.DataFrame({"outcome": "buy@1", "arm": arm,
                                    "replicate": replicate.ravel(), "run_id": "r",
                                    "agent_id": persona.ravel(),
                                    "persona_id": [f"p{i}" for i in persona.ravel()],
                                    "value": values.ravel()}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize(("share", "wanted"), [(True, 0.5), (True, 0.8), (False, 0.8)],
                         ids=["share-50", "share-80", "scale-80"])
def test_the_planned_power_is_the_detection_rate_over_seeds(share: bool, wanted: float) -> None:
    size = share_effect_size(P_CONTROL, P_TREATED) if share else SCALE_D
    plan = plan_power(size, agents_per_run=PERSONAS, share=share, power=wanted)
    replicates = int(plan["replicates"])
    assert replicates >= MIN_REPLICATES and float(plan["achieved"]) >= wanted
    p_values = [effects(draw(share, replicates, seed), SPEC).iloc[0].p_value
                for seed in range(REPLICATIONS)]
    rate = detection_rate(p_values, alpha=0.05)
    print(f"{'share' if share else 'scale'}: {replicates} replicates of {PERSONAS}, predicted "
          f"power {plan['achieved']:.3f}, detected in {rate:.3f} of {REPLICATIONS} seeds")
    assert abs(rate - float(plan["achieved"])) <= 0.05, (rate, plan["achieved"])


def test_a_plan_has_at_least_the_replicates_a_test_needs() -> None:
    plan = plan_power(2.0, agents_per_run=200)  # a huge effect: one run would do, if it could
    assert plan["replicates"] == MIN_REPLICATES
    assert paired_power(0.5, personas=30, replicates=2) == 0.0


@pytest.mark.slow
def test_worlds_that_differ_need_more_replicates() -> None:
    size = share_effect_size(0.3, 0.42)
    alike = plan_power(size, agents_per_run=60)
    apart = plan_power(size, agents_per_run=60, icc=0.05)
    assert int(apart["replicates"]) > int(alike["replicates"])
    assert apart["design_effect"] == pytest.approx(1 + 59 * 0.05)
    with pytest.raises(ValueError, match="icc"):
        plan_power(size, agents_per_run=60, icc=1.0)
