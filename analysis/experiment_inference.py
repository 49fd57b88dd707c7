"""Test a treatment against its control with the unit of analysis the experiment's design implies.

An experiment's answers are not independent. The same personas answer in every replicate and
every arm, and the agents of one world share its events and its chance. Pooling every answer as
its own observation made an A/A experiment through a deterministic server declare most of its
outcomes. Here the variance of an effect has two sources, crossed:

- the persona: its answers are alike from one replicate to the next (with a model at temperature
  0, identical), so a persona is one unit however often it answers;
- the world (a replicate): its agents share what happened in it, so a replicate is a cluster.

Between worlds each persona answers in both arms of a replicate, so its two answers are a pair
and its own leaning cancels. The effect is the mean paired difference; its variance is the
persona part (the paired differences clustered by persona, statsmodels' CRV1) plus each arm's
world part, its replicate-to-replicate variation beyond the residual's of a persona + replicate
fit, counted where an F test finds it above chance (the random-effects analysis of variance of a
persona x replicate table); the t test's degrees of freedom come from Satterthwaite's
approximation over the parts it uses. Within a world the arms are randomised among one world's
agents: the world cancels (a replicate fixed effect), and a two-way cluster-robust variance
(persona, world; Cameron, Gelbach and Miller 2011) covers personas met again in later replicates
and effects that differ from world to world, its world part counted by the same rule.
``bench/bench_experiment_inference.py`` checks the false-positive rate of A/A experiments and the
power of planted ones at the sizes users run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, stats
from statsmodels.stats.sandwich_covariance import cov_cluster

#: fewer replicates than this leave the world-to-world part of the variance unmeasured
#: (or measured from one degree of freedom, which a simulation shows rejects an A/A far too often)
MIN_REPLICATES = 3
#: fewer personas than this (paired, or answering in each arm) leave nothing to test
MIN_PERSONAS = 5
#: the replicates the help recommends: the world part's estimate has 4 degrees of freedom
RECOMMENDED_REPLICATES = 5

PAIRED = ("paired by persona within each replicate; persona and world parts of the variance "
          "(the world's counted when above chance), Satterthwaite df")
RANDOMISED = ("arms randomised within each world (a world fixed effect); persona and world parts "
              "of the variance (two-way cluster-robust, the world's counted when above chance), "
              "Satterthwaite df")
PER_RUN = "one value per run: the paired difference of each replicate is the unit (t over replicates)"


@dataclass(frozen=True)
class DesignTest:
    """One treatment against its control, tested with the design's units.

    Attributes:
        treated_value: the treatment's mean over the answers compared (a share as 0..1).
        control_value: the control's mean over the answers compared.
        effect: the treatment's effect in the outcome's own units: the mean paired difference
            between worlds, the difference within worlds (a world fixed effect).
        se: its standard error (NaN without a test).
        df: the t test's degrees of freedom (NaN without a test).
        statistic: t (NaN without a test).
        p_value: two-sided p (NaN without a test).
        personas: personas in the comparison (paired, or answering in either arm).
        replicates: replicates in the comparison.
        design_effect: the design's variance over the variance if every answer were
            independent; how much a pooled test overstated the evidence (NaN without a test).
        inference: the method in words.
        reason: why there is no test ("" when there is one).
    """

    treated_value: float
    control_value: float
    effect: float
    se: float
    df: float
    statistic: float
    p_value: float
    personas: int
    replicates: int
    design_effect: float
    inference: str
    reason: str = ""

    @property
    def tested(self) -> bool:
        """Whether there is a p value to read."""
        return not self.reason

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Return the t interval that matches the test (NaN, NaN without a test)."""
        if not self.tested:
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.effect - half, self.effect + half

    def power_at(self, effect: float, alpha: float = 0.05) -> float:
        """Return the chance this design's test detects a true effect of this size (NaN without a test)."""
        return power_at(effect, self.se, self.df, alpha) if self.tested else math.nan

    def detectable(self, alpha: float = 0.05, power: float = 0.8) -> float:
        """Return the smallest effect detected with this power at this design's precision."""
        return detectable(self.se, self.df, alpha, power) if self.tested else math.nan


def power_at(effect: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Return the two-sided t test's power for a true effect, from the noncentral t distribution.

    Args:
        effect: the true effect, in the units of se.
        se: the effect's standard error.
        df: the test's degrees of freedom.
        alpha: the test's level.

    Returns:
        The probability of p < alpha.
    """
    if se <= 0:
        return 1.0 if effect != 0 else alpha
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    shift = abs(effect) / se
    upper = float(stats.nct.sf(critical, df, shift))
    if not math.isfinite(upper):  # scipy's series can fail far out: the normal approximation
        upper = float(stats.norm.sf(critical - shift))
    lower = float(stats.nct.cdf(-critical, df, shift))  # NaN deep in this tail: about 0
    return min(1.0, upper + (lower if math.isfinite(lower) else 0.0))


def detectable(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Return the smallest effect the two-sided t test detects with this power (0 when se is 0)."""
    if se <= 0:
        return 0.0
    top = se * (2 * float(stats.t.ppf(1 - alpha / 2, df)) + 4)
    while power_at(top, se, df, alpha) < power:  # few degrees of freedom: a long tail
        top *= 2
        if top > se * 1e4:
            return math.inf
    return float(optimize.brentq(lambda e: power_at(e, se, df, alpha) - power, 0.0, top))


def _no_test(treated: np.ndarray, control: np.ndarray, personas: int, replicates: int,
             inference: str, reason: str) -> DesignTest:
    treated_value, control_value = float(np.mean(treated)), float(np.mean(control))
    return DesignTest(treated_value=treated_value, control_value=control_value,
                      effect=treated_value - control_value, se=math.nan, df=math.nan, statistic=math.nan,
                      p_value=math.nan, personas=personas, replicates=replicates,
                      design_effect=math.nan, inference=inference, reason=reason)


def _too_few(personas: int, replicates: int, enough_personas: int) -> str:
    if replicates < MIN_REPLICATES:
        return (f"no test: {replicates} replicate{'s' if replicates != 1 else ''} cannot "
                "separate the effect of the arm from chance between worlds; run --replicates "
                f"{RECOMMENDED_REPLICATES} (at least {MIN_REPLICATES})")
    if enough_personas < MIN_PERSONAS:
        return (f"no test: {enough_personas} personas answered in both arms; at least "
                f"{MIN_PERSONAS} are needed")
    return ""


@dataclass(frozen=True)
class _Part:
    """One estimated part of an effect's variance, with its degrees of freedom."""

    variance: float
    df: float


def _clustered(y: np.ndarray, x: np.ndarray, codes: np.ndarray) -> _Part:
    """Return the CRV1 cluster-robust variance of x's coefficient (statsmodels), clusters given by codes."""
    fitted = sm.OLS(y, x.reshape(-1, 1)).fit()
    return _Part(float(cov_cluster(fitted, codes)[0, 0]), float(len(np.unique(codes)) - 1))


def _additive_residuals(y: np.ndarray, personas: np.ndarray, worlds: np.ndarray) -> np.ndarray:
    """Return the residuals of y on persona and world effects (alternating demeaning: exact if balanced)."""
    left = y - y.mean()
    for _ in range(200):
        for codes in (personas, worlds):
            left = left - (np.bincount(codes, left) / np.bincount(codes))[codes]
        if np.abs(np.bincount(personas, left)).max() < 1e-10 * max(1.0, np.abs(y).max()):
            break
    return left


def _residual(y: np.ndarray, personas: np.ndarray, worlds: np.ndarray) -> _Part:
    """Return the persona x world residual's share of the variance of y's mean.

    Its mean square (the residual of the additive persona and world fit) over the answers: what
    chance alone puts into a world's mean, which the world part's estimate also holds.
    """
    n = len(y)
    df = n - len(np.unique(personas)) - len(np.unique(worlds)) + 1
    if df <= 0:
        return _Part(0.0, 1.0)
    residuals = _additive_residuals(y, personas, worlds)
    return _Part(float((residuals ** 2).sum() / df / n), float(df))


#: from RECOMMENDED_REPLICATES on, the world part counts when its excess over chance has p below
#: this: Bancroft's "sometimes pool" rule at the level Paull and Bozivich et al. recommend. With
#: fewer replicates its F test rests on too few degrees of freedom to leave a real world part
#: out, and any excess counts (bench_experiment_inference.py measures both)
POOL_LEVEL = 0.25


def pool_level(replicates: int) -> float:
    """Return the level at which the world part's F test counts it (1: any excess over chance counts)."""
    return POOL_LEVEL if replicates >= RECOMMENDED_REPLICATES else 1.0


def _pooled(parts: list[_Part]) -> _Part:
    """Return the sum of variance parts, with Satterthwaite's degrees of freedom."""
    variance = sum(p.variance for p in parts)
    spread = sum(p.variance ** 2 / p.df for p in parts)
    return _Part(variance, variance ** 2 / spread if spread > 0 else 1.0)


def world_counts(worlds: list[_Part], chance: list[_Part], level: float) -> bool:
    """Whether the world parts exceed chance (an F test of their sums at this level)."""
    world, noise = _pooled(worlds), _pooled(chance)
    if world.variance <= noise.variance:
        return False
    if noise.variance <= 0 or level >= 1:
        return True
    return bool(stats.f.sf(world.variance / noise.variance, world.df, noise.df) < level)


def _combine(kept: list[_Part], worlds: list[_Part], chance: list[_Part],
             level: float) -> tuple[float, float]:
    """Add the world parts where they exceed chance; return the variance and Satterthwaite's df.

    A world part's estimate holds the world-to-world variance plus the residual's; it is added by
    its excess when an F test finds it above chance, and left out when chance explains it (the
    random-effects analysis of variance of a persona x replicate design, pooled by Bancroft's
    rule).
    """
    counted = world_counts(worlds, chance, level)
    used = [*kept, *worlds, *chance] if counted else kept
    excess = sum(p.variance for p in worlds) - sum(p.variance for p in chance)
    variance = sum(p.variance for p in kept) + (excess if counted else 0.0)
    spread = sum(p.variance ** 2 / p.df for p in used)
    df = variance ** 2 / spread if spread > 0 else float(min(p.df for p in kept))
    return max(variance, 0.0), max(df, 1.0)


def _finish(treated: np.ndarray, control: np.ndarray, effect: float, variance: float,
            df: float, personas: int, replicates: int, inference: str) -> DesignTest:
    se = math.sqrt(variance)
    if se == 0:  # every pair alike: nothing varies, so no effect is a certainty either way
        p, statistic = (1.0, 0.0) if effect == 0 else (0.0, math.copysign(math.inf, effect))
    else:
        statistic = effect / se
        p = float(2 * stats.t.sf(abs(statistic), df))
    naive = _naive_variance(treated, control)
    design_effect = variance / naive if naive > 0 else math.nan
    return DesignTest(treated_value=float(np.mean(treated)),
                      control_value=float(np.mean(control)), effect=effect, se=se, df=df,
                      statistic=statistic, p_value=p,
                      personas=personas, replicates=replicates, design_effect=design_effect,
                      inference=inference)


def _naive_variance(treated: np.ndarray, control: np.ndarray) -> float:
    """Return the variance of the difference of means if every answer were independent."""
    if len(treated) < 2 or len(control) < 2:
        return math.nan
    return float(np.var(treated, ddof=1) / len(treated) + np.var(control, ddof=1) / len(control))


def paired_between(treated: pd.DataFrame, control: pd.DataFrame) -> DesignTest:
    """Test arms that are separate worlds with the same personas, pairing each persona's answers.

    Args:
        treated: the treatment's answers: persona_id, replicate, value.
        control: the control's answers, with the same columns.

    Returns:
        The test on the mean paired difference over the pairs (a persona that answered in one
        arm only is left out; no test with too few replicates or pairs).
    """
    keys = ["persona_id", "replicate"]
    pairs = treated[[*keys, "value"]].merge(control[[*keys, "value"]], on=keys,
                                            suffixes=("_t", "_c"))
    mine, theirs = pairs["value_t"].to_numpy(float), pairs["value_c"].to_numpy(float)
    replicates = int(pairs["replicate"].nunique())
    personas = int(pairs["persona_id"].nunique())
    reason = _too_few(personas, replicates, personas)
    if reason or len(pairs) == 0:
        if len(pairs) == 0:
            mine, theirs = treated["value"].to_numpy(float), control["value"].to_numpy(float)
        return _no_test(mine, theirs, personas, replicates, PAIRED,
                        reason or _too_few(0, MIN_REPLICATES, 0))
    persona_codes = pd.factorize(pairs["persona_id"])[0]
    world_codes = pd.factorize(pairs["replicate"])[0]
    ones = np.ones(len(pairs))
    difference = mine - theirs
    variance, df = _combine(
        [_clustered(difference, ones, persona_codes)],
        [_clustered(arm, ones, world_codes) for arm in (mine, theirs)],
        [_residual(arm, persona_codes, world_codes) for arm in (mine, theirs)],
        pool_level(replicates))
    return _finish(mine, theirs, float(difference.mean()), variance, df, personas, replicates,
                   PAIRED)


def randomised_within(treated: pd.DataFrame, control: pd.DataFrame) -> DesignTest:
    """Test arms randomised among one world's agents, replicate by replicate.

    Args:
        treated: the treatment's answers: persona_id, replicate, value.
        control: the control's answers, with the same columns.

    Returns:
        The test on the treatment's coefficient with a world fixed effect (no test with too
        few replicates or personas).
    """
    mine, theirs = treated["value"].to_numpy(float), control["value"].to_numpy(float)
    both = pd.concat([treated.assign(_treated=1.0), control.assign(_treated=0.0)],
                     ignore_index=True)
    replicates = int(both["replicate"].nunique())
    personas = int(both["persona_id"].nunique())
    fewest = int(min(treated["persona_id"].nunique(), control["persona_id"].nunique()))
    reason = _too_few(personas, replicates, fewest)
    if reason:
        return _no_test(mine, theirs, personas, replicates, RANDOMISED, reason.replace(
            "answered in both arms", "answered in the smaller arm"))
    world = pd.factorize(both["replicate"])[0]

    def demeaned(column: str) -> np.ndarray:
        values = both[column].to_numpy(float)
        means = np.bincount(world, values) / np.bincount(world)
        return values - means[world]

    y, x = demeaned("value"), demeaned("_treated")
    persona_codes = pd.factorize(both["persona_id"])[0]
    cells = persona_codes * (int(world.max()) + 1) + world
    estimate = float(sm.OLS(y, x.reshape(-1, 1)).fit().params[0])
    by_cell = _clustered(y, x, cells)
    variance, df = _combine([_clustered(y, x, persona_codes)], [_clustered(y, x, world)],
                            [_Part(by_cell.variance, max(by_cell.df - personas - replicates + 2,
                                                         1.0))],
                            pool_level(replicates))
    return _finish(mine, theirs, estimate, variance, df, personas, replicates, RANDOMISED)


def per_run(treated: pd.DataFrame, control: pd.DataFrame) -> DesignTest:
    """Test an outcome with one value per run: the replicate's paired difference is the unit.

    Args:
        treated: the treatment's values: replicate, value.
        control: the control's values: replicate, value.

    Returns:
        A one-sample t test over replicates (no test below the minimum of replicates).
    """
    pairs = treated[["replicate", "value"]].merge(control[["replicate", "value"]],
                                                  on="replicate", suffixes=("_t", "_c"))
    mine, theirs = pairs["value_t"].to_numpy(float), pairs["value_c"].to_numpy(float)
    replicates = len(pairs)
    if replicates < MIN_REPLICATES:
        if replicates == 0:
            mine, theirs = treated["value"].to_numpy(float), control["value"].to_numpy(float)
        return _no_test(mine, theirs, 0, replicates, PER_RUN, _too_few(0, replicates, 0))
    difference = mine - theirs
    variance = float(np.var(difference, ddof=1) / replicates)
    return _finish(mine, theirs, float(difference.mean()), variance, replicates - 1.0, 0,
                   replicates, PER_RUN)


def mean_interval(values: pd.DataFrame, confidence: float = 0.95) -> tuple[float, float, float]:
    """Return an arm's mean with a t interval whose units are its personas and worlds.

    With fewer than the minimum of replicates the world part cannot be measured, and the
    interval counts personas only (each persona one unit however often it answered).

    Args:
        values: one arm's answers: persona_id, replicate, value.
        confidence: the interval's level.

    Returns:
        The mean, the interval's low and high (the mean itself when nothing varies).
    """
    y = values["value"].to_numpy(float)
    mean = float(y.mean())
    personas = pd.factorize(values["persona_id"])[0]
    worlds = pd.factorize(values["replicate"])[0]
    if len(np.unique(personas)) < 2 or np.ptp(y) == 0:
        return mean, mean, mean
    ones = np.ones(len(y))
    if len(np.unique(worlds)) >= MIN_REPLICATES:
        variance, df = _combine([_clustered(y, ones, personas)], [_clustered(y, ones, worlds)],
                                [_residual(y, personas, worlds)],
                                pool_level(len(np.unique(worlds))))
    else:
        by_persona = _clustered(y, ones, personas)
        variance, df = by_persona.variance, by_persona.df
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance)
    return mean, mean - half, mean + half


def _mean_squares(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced two-way mean squares of y (draws x personas x replicates): persona, world, residual."""
    _, personas, replicates = y.shape
    grand = y.mean(axis=(1, 2), keepdims=True)
    by_persona = y.mean(axis=2, keepdims=True)
    by_world = y.mean(axis=1, keepdims=True)
    persona = replicates * ((by_persona - grand) ** 2).sum(axis=(1, 2)) / (personas - 1)
    world = personas * ((by_world - grand) ** 2).sum(axis=(1, 2)) / (replicates - 1)
    residual = ((y - by_persona - by_world + grand) ** 2).sum(axis=(1, 2)) / (
        (personas - 1) * (replicates - 1))
    return persona, world, residual


def paired_power(effect_size: float, *, personas: int, replicates: int, icc: float = 0.0,
                 alpha: float = 0.05, draws: int = 4000, seed: int = 0) -> float:
    """Return the chance ``paired_between``'s test detects an effect, by seeded simulation of its design.

    Each arm's answers are its worlds' parts (variance icc) plus independent noise, in standard
    deviations, so the effect size is Cohen's d (or h for a share); the arms are independent
    draws, as a plan before running must assume, and personas add no leaning of their own (a
    leaning cancels in the pairs). The test is the one ``paired_between`` applies, in its
    closed form for a full persona x replicate table.

    Args:
        effect_size: the effect in standard deviations.
        personas: personas per run.
        replicates: replicates per arm.
        icc: the outcome's intraclass correlation within a world.
        alpha: the test's level.
        draws: simulated experiments.
        seed: their seed.

    Returns:
        The share of simulated experiments whose p is below alpha (0 below the minimum sizes).
    """
    if replicates < MIN_REPLICATES or personas < MIN_PERSONAS:
        return 0.0
    rng = np.random.default_rng(seed)
    shape = (draws, personas, replicates)
    arms = [rng.normal(0.0, math.sqrt(icc), (draws, 1, replicates))
            + rng.normal(0.0, math.sqrt(1 - icc), shape) for _ in range(2)]
    arms[0] = arms[0] + effect_size
    n = personas * replicates
    persona_part, _, _ = _mean_squares(arms[0] - arms[1])
    squares = [_mean_squares(a) for a in arms]
    world = sum(w for _, w, _ in squares)
    chance = sum(r for _, _, r in squares)
    excess = world - chance
    world_df = world ** 2 / sum(w ** 2 / (replicates - 1) for _, w, _ in squares)
    chance_df = chance ** 2 / sum(r ** 2 / ((personas - 1) * (replicates - 1))
                                  for _, _, r in squares)
    with np.errstate(divide="ignore", invalid="ignore"):
        counted = (excess > 0) & (stats.f.sf(world / chance, world_df, chance_df)
                                  < pool_level(replicates))
    variance = (persona_part + np.where(counted, excess, 0.0)) / n
    spread = persona_part ** 2 / (personas - 1) + np.where(counted, sum(
        world ** 2 / (replicates - 1) + residual ** 2 / ((personas - 1) * (replicates - 1))
        for _, world, residual in squares), 0.0)
    df = np.maximum((variance * n) ** 2 / spread, 1.0)
    t = (arms[0] - arms[1]).mean(axis=(1, 2)) / np.sqrt(variance)
    return float(np.mean(2 * stats.t.sf(np.abs(t), df) < alpha))
