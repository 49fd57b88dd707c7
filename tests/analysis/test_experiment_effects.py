"""Effects, tests and power of an experiment (analysis/experiment_effects.py) on planted data:
an A/A experiment rejects at about its nominal rate, a planted effect is covered by its interval,
and the power calculation predicts how often it is detected."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from personahub.analysis.experiment_effects import (
    EFFECT_COLUMNS,
    RESAMPLED_AGENTS,
    RESAMPLED_WORLDS,
    bootstrap_difference,
    cluster_bootstrap,
    detection_rate,
    effects,
    minimum_detectable,
    plan_power,
    scale_test,
    share_effect_size,
    share_test,
)
from personahub.sim.experiment import Arm, Experiment, Outcome

EXPERIMENT = Experiment(arms=(Arm(name="control"), Arm(name="treated")),
                        outcomes=(Outcome(survey="buy", step=2, options=("yes",)),
                                  Outcome(survey="fair", step=2)))


def planted(rng: np.random.Generator, n: int, p_control: float, p_treated: float,
            shift: float = 0.0, replicates: int = 2) -> pd.DataFrame:
    """Values of ``n`` agents per arm, split over replicates: a share outcome (planted shares)
    and a 1..10 scale outcome (treated answers ``shift`` higher)."""
    frames = []
    for arm, p, plus in (("control", p_control, 0.0), ("treated", p_treated, shift)):
        replicate = np.arange(n) % replicates
        frames.append(pd.DataFrame({"outcome": "buy@2", "arm": arm, "replicate": replicate,
                                    "value": (rng.random(n) < p).astype(float)}))
        scale = np.clip(np.round(rng.normal(5.0 + plus, 2.0, n)), 1, 10)
        frames.append(pd.DataFrame({"outcome": "fair@2", "arm": arm, "replicate": replicate,
                                    "value": scale}))
    return pd.concat(frames, ignore_index=True)


def test_effect_table_has_units_intervals_tests_sizes_and_verdicts():
    table = effects(planted(np.random.default_rng(1), 400, 0.3, 0.5, shift=1.5), EXPERIMENT)
    assert list(table.columns) == EFFECT_COLUMNS
    share, scale = table.iloc[0], table.iloc[1]
    assert (share.unit, share.test, share.effect_size_kind) == \
        ("percentage points", "chi-squared", "Cohen's h")
    assert (scale.unit, scale.test, scale.effect_size_kind) == \
        ("scale points", "Mann-Whitney U", "Cohen's d")
    assert share.ci_low < share.effect < share.ci_high and 10 < share.effect < 30
    assert scale.ci_low < scale.effect < scale.ci_high and 1.0 < scale.effect < 2.0
    assert share.effect_size > 0.2 and scale.effect_size > 0.4
    assert share.p_holm >= share.p_value and share.significant and scale.significant
    assert share.replicates == 2 and share.n_control == 400
    assert share.resampled == RESAMPLED_WORLDS  # two replicates: worlds, then agents in them
    assert share.verdict.startswith("buy at step 2 (share answering yes): treated raises it by +")


def test_identical_arms_show_no_effect():
    values = planted(np.random.default_rng(2), 60, 0.4, 0.4)
    same = values[values.arm == "control"].assign(arm="treated")
    table = effects(pd.concat([values[values.arm == "control"], same]), EXPERIMENT)
    assert (table.effect == 0).all() and (table.ci_low < 0).all() and (table.ci_high > 0).all()
    assert (table.p_value == 1).all() and not table.significant.any()
    assert all("no detectable effect of treated against control" in v for v in table.verdict)


def varying_worlds(rng: np.random.Generator, worlds: int, agents: int, effect: float,
                   spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A share outcome over ``worlds`` replicates of ``agents`` agents per arm: the control's
    share 40% everywhere, the treatment's effect drawn per world around ``effect`` (sd
    ``spread``). Returns treated, treated worlds, control, control worlds."""
    shifts = effect + rng.normal(0.0, spread, worlds)
    treated = np.concatenate([(rng.random(agents) < 0.4 + s).astype(float) for s in shifts])
    control = (rng.random(worlds * agents) < 0.4).astype(float)
    labels = np.repeat(np.arange(worlds), agents)
    return treated, labels, control, labels


def test_cluster_bootstrap_is_wider_than_pooled_agents_when_worlds_differ():
    treated, t_worlds, control, c_worlds = varying_worlds(np.random.default_rng(6), 8, 40,
                                                          0.1, 0.15)
    low, high = cluster_bootstrap(treated, t_worlds, control, c_worlds, seed=1)
    pooled_low, pooled_high = bootstrap_difference(treated, control, seed=1)
    assert high - low > 1.3 * (pooled_high - pooled_low)
    assert low < treated.mean() - control.mean() < high
    # the same seed gives the same interval; alike values give (0, 0)
    assert cluster_bootstrap(treated, t_worlds, control, c_worlds, seed=1) == (low, high)
    ones = np.ones(10)
    assert cluster_bootstrap(ones, np.arange(10) % 2, ones, np.arange(10) % 2) == (0.0, 0.0)


def test_one_replicate_falls_back_to_agents_and_says_so():
    values = planted(np.random.default_rng(7), 100, 0.3, 0.5, replicates=1)
    table = effects(values, EXPERIMENT)
    assert (table.resampled == RESAMPLED_AGENTS).all()
    assert "one replicate" in RESAMPLED_AGENTS


@pytest.mark.slow
def test_cluster_bootstrap_covers_a_varying_effect_at_about_its_nominal_rate():
    """200 experiments of 8 worlds whose treatment effect varies by world (sd 10 points around
    10): the two-stage interval covers the mean effect in about 95% of them, the pooled-agents
    interval clearly less often, and it is wider."""
    rng = np.random.default_rng(8)
    covered, pooled, widths = [], [], []
    for i in range(200):
        treated, t_worlds, control, c_worlds = varying_worlds(rng, 8, 40, 0.1, 0.1)
        low, high = cluster_bootstrap(treated, t_worlds, control, c_worlds, n_resamples=400,
                                      seed=i)
        p_low, p_high = bootstrap_difference(treated, control, n_resamples=400, seed=i)
        covered.append(low <= 0.1 <= high)
        pooled.append(p_low <= 0.1 <= p_high)
        widths.append((high - low) / (p_high - p_low))
    assert 0.9 <= np.mean(covered) <= 0.99
    assert np.mean(pooled) <= 0.9
    assert np.mean(widths) > 1.3


def arms(values: pd.DataFrame, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    mine = values[values.outcome == outcome]
    return (mine.loc[mine.arm == "treated", "value"].to_numpy(),
            mine.loc[mine.arm == "control", "value"].to_numpy())


@pytest.mark.slow
def test_aa_experiments_reject_at_about_the_nominal_rate():
    """200 A/A experiments (no effect planted): each test rejects in about 5% of them, and
    Holm's correction across the two outcomes keeps the family-wise rate at or under it."""
    rng = np.random.default_rng(3)
    shares, scales = [], []
    for _ in range(200):
        values = planted(rng, 120, 0.4, 0.4)
        shares.append(share_test(*arms(values, "buy@2"))[1])
        scales.append(scale_test(*arms(values, "fair@2"))[1])
    assert 0.02 <= detection_rate(shares) <= 0.09
    assert 0.02 <= detection_rate(scales) <= 0.09
    family = [multipletests([a, b], alpha=0.05, method="holm")[0].any()
              for a, b in zip(shares, scales, strict=True)]
    assert np.mean(family) <= 0.08


@pytest.mark.slow
def test_planted_effect_is_covered_and_power_predicts_its_detection():
    """A planted 12-point effect: its bootstrap interval covers it in about 95% of 200
    experiments, and the power plan's agents per arm detect it in about 80% of them."""
    h = share_effect_size(0.3, 0.42)
    plan = plan_power(h, agents_per_run=40)
    assert plan["replicates"] == -(-plan["agents_per_arm"] // 40)
    n = int(plan["agents_per_arm"])
    rng = np.random.default_rng(4)
    covered, p_values = [], []
    for i in range(200):
        treated, control = arms(planted(rng, n, 0.3, 0.42), "buy@2")
        low, high = bootstrap_difference(treated, control, n_resamples=400, seed=i)
        covered.append(low <= 0.12 <= high)
        p_values.append(share_test(treated, control)[1])
    assert 0.9 <= np.mean(covered) <= 0.99
    assert abs(detection_rate(p_values) - 0.8) <= 0.07
    # after running: the minimum detectable effect at that size is the planted one
    mde = minimum_detectable(share=True, n_treatment=n, n_control=n)
    assert mde == pytest.approx(h, abs=0.01)


def test_plan_power_for_a_scale_and_refusals():
    plan = plan_power(0.5, agents_per_run=30, share=False)
    assert plan["agents_per_arm"] == 64 and plan["replicates"] == 3  # the textbook 64 per group
    with pytest.raises(ValueError, match="effect size of 0"):
        plan_power(0.0, agents_per_run=30)
    with pytest.raises(ValueError, match="icc must be between 0 and 1"):
        plan_power(0.5, agents_per_run=30, icc=1.5)


def test_plan_power_inflates_by_the_design_effect_of_clustered_agents():
    """Agents of one world answer alike: an icc of 0.05 over 30 agents a run is a design effect
    of 2.45, so 2.45 times the agents (157 for the textbook 64) and more runs."""
    plain = plan_power(0.5, agents_per_run=30, share=False)
    clustered = plan_power(0.5, agents_per_run=30, share=False, icc=0.05)
    assert clustered["design_effect"] == pytest.approx(2.45)
    assert clustered["agents_per_arm"] == 157 and clustered["replicates"] == 6
    assert plain["design_effect"] == 1.0 and plain["agents_per_arm"] == 64


def test_within_effects_resample_shared_worlds_and_say_so():
    """Within a world the arms' agents share their replicates: the interval draws the replicates
    once for both arms, then agents within them, and the table says which clusters it used."""
    import dataclasses

    from personahub.analysis.experiment_effects import RESAMPLED_WITHIN, RESAMPLED_WITHIN_AGENTS
    within = dataclasses.replace(EXPERIMENT, design="within")
    values = planted(np.random.default_rng(3), 300, 0.3, 0.5, shift=1.0, replicates=3)
    table = effects(values, within)
    assert set(table.resampled) == {RESAMPLED_WITHIN} and "communities are not" in \
        RESAMPLED_WITHIN
    # the same values between worlds: the same numbers, only the words differ
    between = effects(values, EXPERIMENT)
    assert table.drop(columns="resampled").equals(between.drop(columns="resampled"))
    one = effects(values[values.replicate == 0], within)
    assert set(one.resampled) == {RESAMPLED_WITHIN_AGENTS}


def test_plan_power_within_splits_each_run_over_the_arms_and_states_its_limit():
    """Within a world a run of 60 agents gives each of two arms 30: the textbook 64 per arm
    need 3 runs in all; an icc of 0.05 among an arm's 30 agents of a run is the design effect
    2.45; the result states what the figure leaves out (communities, spill-over)."""
    plan = plan_power(0.5, agents_per_run=60, share=False, design="within")
    assert plan["agents_per_arm"] == 64 and plan["replicates"] == 3
    clustered = plan_power(0.5, agents_per_run=60, share=False, icc=0.05, design="within")
    assert clustered["design_effect"] == pytest.approx(2.45)
    assert clustered["agents_per_arm"] == 157 and clustered["replicates"] == 6
    assert "community" in str(plan["limit"]) and "spill-over" in str(plan["limit"])
    three = plan_power(0.5, agents_per_run=60, share=False, design="within", arms=3)
    assert three["replicates"] == 4  # 20 agents per arm and run
    with pytest.raises(ValueError, match="design must be"):
        plan_power(0.5, agents_per_run=60, design="inside")
