"""Effects of an experiment's treatments against its control: intervals, tests, effect sizes, power.

The bootstrap resamples replicates, then agents, so world-to-world variation widens the
interval; the tests treat one run's agents as independent, which is optimistic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from personahub.core.errors import PersonahubError
from personahub.sim.experiment import Experiment, Outcome
from personahub.sim.experiment_store import outcome_answers, sql_outcome_values

SHARE_UNIT = "percentage points"
SCALE_UNIT = "scale points"
SQL_UNIT = "units of the query's value"
RESAMPLED_WORLDS = "replicates, then agents within them"
RESAMPLED_AGENTS = "agents (one replicate: world-to-world variation not measured)"
RESAMPLED_WITHIN = ("replicates (worlds, each holding every arm), then agents within them; "
                    "graph communities are not clusters")
RESAMPLED_WITHIN_AGENTS = ("agents within the one world (one replicate: world-to-world "
                           "variation not measured)")
EFFECT_COLUMNS = ["outcome", "treatment", "control", "unit", "control_value", "treatment_value",
                  "effect", "ci_low", "ci_high", "resampled", "test", "statistic", "p_value",
                  "p_holm",
                  "effect_size", "effect_size_kind", "n_control", "n_treatment", "replicates",
                  "mde", "significant", "verdict"]


def outcome_values(con: duckdb.DuckDBPyConnection, experiment: Experiment,
                   runs: pd.DataFrame, agents: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per outcome, arm and agent answer (outcome, arm, replicate, run_id, agent_id, value).

    The value is 1.0/0.0 for a share, the answer for a scale, the query's number for a SQL outcome
    (agent_id NULL for one per run). Raises PersonahubError when a SQL outcome fails.
    """
    frames = []
    run_ids = list(dict.fromkeys(runs["run_id"]))  # within a world every arm has the same run
    if agents is not None:
        members = agents[["run_id", "agent_id", "arm", "replicate"]].astype({"agent_id": "int64"})

        def attach(found: pd.DataFrame) -> pd.DataFrame:
            return found.astype({"agent_id": "int64"}).merge(members, on=["run_id", "agent_id"])
    else:
        def attach(found: pd.DataFrame) -> pd.DataFrame:
            return found.merge(runs[["run_id", "arm", "replicate"]], on="run_id")
    for outcome in experiment.outcomes:
        if outcome.is_sql:
            got = sql_outcome_values(con, run_ids, outcome.name, outcome.sql)
            if agents is not None and got["agent_id"].isna().any():
                raise PersonahubError(f"outcome {outcome.name!r}: a within-world experiment "
                                      "compares agents of one run; its sql must return one "
                                      "value per agent (agent_id, value)")
            got = attach(got)
            frames.append(pd.DataFrame({"outcome": outcome.name, "arm": got["arm"],
                                        "replicate": got["replicate"], "run_id": got["run_id"],
                                        "agent_id": got["agent_id"],
                                        "value": got["value"]}).dropna(subset=["value"]))
            continue
        answers = attach(outcome_answers(con, run_ids, outcome.survey, outcome.step))
        if outcome.is_share:
            value = answers["answer_choice"].isin(outcome.options).astype(float)
        else:
            value = answers["answer_scale"].astype(float)
        frames.append(pd.DataFrame({"outcome": outcome.name, "arm": answers["arm"],
                                    "replicate": answers["replicate"],
                                    "run_id": answers["run_id"], "agent_id": answers["agent_id"],
                                    "value": value}).dropna(subset=["value"]))
    columns = ["outcome", "arm", "replicate", "run_id", "agent_id", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return _in_design_order(pd.concat(frames, ignore_index=True), experiment, agents is None)


def _in_design_order(values: pd.DataFrame, experiment: Experiment,
                     between: bool) -> pd.DataFrame:
    """Sort in design order: runs started in the same second have random run ids, and the bootstrap
    depends on the order.
    """
    position = {o.name: i for i, o in enumerate(experiment.outcomes)}
    keys = pd.DataFrame({"outcome": values["outcome"].map(position),
                         "replicate": values["replicate"]})
    if between:
        keys["arm"] = values["arm"].map({a.name: i for i, a in enumerate(experiment.arms)})
    keys["agent_id"] = values["agent_id"]
    order = keys.sort_values(list(keys.columns), kind="stable", na_position="first").index
    return values.loc[order].reset_index(drop=True)


def arm_table(values: pd.DataFrame) -> pd.DataFrame:
    """Per outcome and arm: agents answering, replicates, and the share or mean."""
    grouped = values.groupby(["outcome", "arm"], sort=False)
    return grouped.agg(n=("value", "size"), replicates=("replicate", "nunique"),
                       value=("value", "mean")).reset_index()


@dataclass(frozen=True)
class Effect:
    """One treatment against the control on one outcome."""

    outcome: str
    treatment: str
    control: str
    unit: str
    control_value: float
    treatment_value: float
    effect: float
    ci_low: float
    ci_high: float
    resampled: str
    test: str
    statistic: float
    p_value: float
    effect_size: float
    effect_size_kind: str
    n_control: int
    n_treatment: int
    replicates: int
    mde: float


def _mean_difference(treated: np.ndarray, control: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(treated, axis=axis) - np.mean(control, axis=axis))


def bootstrap_difference(treated: np.ndarray, control: np.ndarray, *, confidence: float = 0.95,
                         n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(treated) - mean(control), each arm resampled alone."""
    if np.ptp(np.concatenate([treated, control])) == 0:
        return 0.0, 0.0
    result = stats.bootstrap((treated, control), _mean_difference, vectorized=True,
                             paired=False, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def cluster_bootstrap(treated: np.ndarray, treated_clusters: np.ndarray, control: np.ndarray,
                      control_clusters: np.ndarray, *, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Two-stage percentile bootstrap of mean(treated) - mean(control); (0, 0) if flat.

    Replicates are drawn once for both arms (they share seeds), then agents within each; agents
    alone give too narrow an interval when worlds differ.
    """
    if np.ptp(np.concatenate([treated, control])) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    labels = np.unique(np.concatenate([treated_clusters, control_clusters]))
    drawn = rng.integers(0, len(labels), size=(n_resamples, len(labels)))
    means = []
    for values, clusters in ((treated, treated_clusters), (control, control_clusters)):
        sums = np.zeros(n_resamples)
        counts = np.zeros(n_resamples)
        for k, label in enumerate(labels):
            members = values[clusters == label]
            times = (drawn == k).sum(axis=1)  # how often resample b drew this cluster
            if len(members) == 0 or not times.any():
                continue
            total = int(times.sum())
            picks = members[rng.integers(0, len(members), size=(total, len(members)))]
            draw_sums = picks.sum(axis=1)
            owner = np.repeat(np.arange(n_resamples), times)
            sums += np.bincount(owner, weights=draw_sums, minlength=n_resamples)
            counts += times * len(members)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(sums / counts)
    difference = means[0] - means[1]
    difference = difference[np.isfinite(difference)]  # a resample without one arm's agents
    tail = (1 - confidence) / 2
    low, high = np.quantile(difference, [tail, 1 - tail])
    return float(low), float(high)


def share_test(treated: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    """Chi-squared (no continuity correction) on arm x chose-or-not: (chi2, p); (0, 1) if degenerate."""
    table = np.array([[treated.sum(), len(treated) - treated.sum()],
                      [control.sum(), len(control) - control.sum()]])
    if (table.sum(axis=0) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def scale_test(treated: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U: (U, p); (U, 1) when every answer is alike."""
    if np.ptp(np.concatenate([treated, control])) == 0:
        return float(len(treated) * len(control) / 2), 1.0
    result = stats.mannwhitneyu(treated, control, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def cohens_d(treated: np.ndarray, control: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation (0 when there is no spread)."""
    n1, n2 = len(treated), len(control)
    pooled = math.sqrt(((n1 - 1) * np.var(treated, ddof=1) + (n2 - 1) * np.var(control, ddof=1))
                       / (n1 + n2 - 2)) if n1 + n2 > 2 else 0.0
    return float((treated.mean() - control.mean()) / pooled) if pooled > 0 else 0.0


def minimum_detectable(*, share: bool, n_treatment: int, n_control: int, alpha: float = 0.05,
                       power: float = 0.8) -> float:
    """Smallest Cohen's h (share) or d (scale) a two-sided test detects at these sizes."""
    analysis = NormalIndPower() if share else TTestIndPower()
    return float(analysis.solve_power(effect_size=None, nobs1=n_treatment,
                                      ratio=n_control / n_treatment, alpha=alpha, power=power))


def share_from_h(p_control: float, h: float) -> float:
    """The share Cohen's h above the control's reaches (capped at 1)."""
    angle = min(math.asin(math.sqrt(p_control)) + h / 2, math.pi / 2)
    return math.sin(angle) ** 2


def compare(outcome: str, share: bool, treatment: str, control: str, treated: np.ndarray,
            controls: np.ndarray, replicates: int, *, confidence: float = 0.95,
            alpha: float = 0.05, seed: int = 0, treated_clusters: np.ndarray | None = None,
            control_clusters: np.ndarray | None = None, unit: str | None = None,
            within: bool = False) -> Effect:
    """One treatment against the control on one outcome (a cluster bootstrap over several replicates)."""
    scale = 100.0 if share else 1.0
    if (treated_clusters is not None and control_clusters is not None
            and len(np.unique(np.concatenate([treated_clusters, control_clusters]))) > 1):
        low, high = cluster_bootstrap(treated, treated_clusters, controls, control_clusters,
                                      confidence=confidence, seed=seed)
        resampled = RESAMPLED_WITHIN if within else RESAMPLED_WORLDS
    else:
        low, high = bootstrap_difference(treated, controls, confidence=confidence, seed=seed)
        resampled = RESAMPLED_WITHIN_AGENTS if within else RESAMPLED_AGENTS
    if share:
        statistic, p = share_test(treated, controls)
        size = float(proportion_effectsize(treated.mean(), controls.mean()))
        mde_h = minimum_detectable(share=True, n_treatment=len(treated),
                                   n_control=len(controls), alpha=alpha)
        mde = (share_from_h(float(controls.mean()), mde_h) - float(controls.mean())) * scale
    else:
        statistic, p = scale_test(treated, controls)
        size = cohens_d(treated, controls)
        mde_d = minimum_detectable(share=False, n_treatment=len(treated),
                                   n_control=len(controls), alpha=alpha)
        spread = float(np.std(np.concatenate([treated, controls]), ddof=1))
        mde = mde_d * spread
    return Effect(outcome=outcome, treatment=treatment, control=control,
                  unit=unit or (SHARE_UNIT if share else SCALE_UNIT),
                  control_value=float(controls.mean()), treatment_value=float(treated.mean()),
                  effect=float(treated.mean() - controls.mean()) * scale, ci_low=low * scale,
                  ci_high=high * scale, resampled=resampled,
                  test="chi-squared" if share else "Mann-Whitney U",
                  statistic=statistic, p_value=p, effect_size=size,
                  effect_size_kind="Cohen's h" if share else "Cohen's d",
                  n_control=len(controls), n_treatment=len(treated), replicates=replicates,
                  mde=mde)


def effects(values: pd.DataFrame, experiment: Experiment, *, confidence: float = 0.95,
            alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The effect table: one row per outcome and treatment.

    Args:
        values: one value per outcome, arm and agent.
        experiment: its outcomes and arms (the first arm is the control).
        confidence: the bootstrap interval's level.
        alpha: the tests' level after Holm's correction.
        seed: the bootstrap's seed.

    Returns:
        The effect columns, with Holm's p, significance and a plain verdict per row.
    """
    rows: list[Effect] = []
    control = experiment.control.name
    for outcome in experiment.outcomes:
        mine = values[values["outcome"] == outcome.name]
        control_rows = mine[mine["arm"] == control]
        controls = control_rows["value"].to_numpy(dtype=float)
        for arm in experiment.arms[1:]:
            treated_rows = mine[mine["arm"] == arm.name]
            treated = treated_rows["value"].to_numpy(dtype=float)
            if len(treated) < 2 or len(controls) < 2:
                continue
            replicates = int(treated_rows["replicate"].nunique())
            rows.append(compare(outcome.name, outcome.is_share, arm.name, control, treated,
                                controls, replicates, confidence=confidence, alpha=alpha,
                                seed=seed, treated_clusters=treated_rows["replicate"].to_numpy(),
                                control_clusters=control_rows["replicate"].to_numpy(),
                                unit=SQL_UNIT if outcome.is_sql else None,
                                within=experiment.design == "within"))
    if not rows:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    table = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    rejected, holm, _, _ = multipletests(table["p_value"].to_numpy(), alpha=alpha, method="holm")
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", holm)
    table["significant"] = rejected
    described = {o.name: describe_outcome(o) for o in experiment.outcomes}
    table["verdict"] = [verdict(row, described[row["outcome"]], confidence)
                        for row in table.to_dict("records")]
    return table[EFFECT_COLUMNS]


def describe_outcome(outcome: Outcome) -> str:
    """An outcome in words, e.g. "purchase_intent at step 5 (share answering definitely, probably)"."""
    if outcome.is_sql:
        return f"{outcome.name} (mean of its SQL values)"
    what = f"share answering {', '.join(outcome.options)}" if outcome.is_share else "mean answer"
    return f"{outcome.survey} at step {outcome.step} ({what})"


def verdict(row: Mapping[str, Any], described: str, confidence: float = 0.95) -> str:
    """One plain line for an effect row: the effect, its interval and test, and what it means."""
    unit = row["unit"]
    change = (f"{row['effect']:+.1f} {unit} ({confidence:.0%} CI {row['ci_low']:+.1f} to "
              f"{row['ci_high']:+.1f}; {row['test']} p={row['p_value']:.3g}, "
              f"Holm p={row['p_holm']:.3g})")
    who = f"{row['treatment']} against {row['control']}"
    if row["significant"]:
        way = "raises" if row["effect"] > 0 else "lowers"
        return f"{described}: {row['treatment']} {way} it by {change}, {who}."
    return (f"{described}: no detectable effect of {who}, {change}; the smallest effect these "
            f"sizes detect is about {abs(row['mde']):.1f} {unit}.")


AGREEMENT_COLUMNS = ["outcome", "treatment", "control", "unit", "effect", "ci_low", "ci_high",
                     "compared_effect", "agrees", "significant", "compared_ci_low",
                     "compared_ci_high", "compared_significant", "missed", "line"]


def agreement(base: pd.DataFrame, compared: pd.DataFrame, *, base_label: str,
              compared_label: str) -> pd.DataFrame:
    """Whether another estimate of the effects (e.g. with archetypes) agrees with the reference.

    An effect agrees when the other estimate lies within the reference interval and, where the
    reference finds an effect (significant after Holm), the other finds it too: an estimate that
    is not significant, or whose own interval holds 0, misses it. A near-zero estimate inside a
    wide interval would otherwise pass for agreement while the answer it gives is "no effect".

    Args:
        base: the reference effect table.
        compared: the other effect table.
        base_label: the reference in words.
        compared_label: the other in words.

    Returns:
        One row per outcome and treatment in both tables.
    """
    keys = ["outcome", "treatment", "control"]
    theirs = compared[[*keys, "effect", "ci_low", "ci_high", "significant"]].rename(columns={
        "effect": "compared_effect", "ci_low": "compared_ci_low", "ci_high": "compared_ci_high",
        "significant": "compared_significant"})
    joined = base.merge(theirs, on=keys)
    rows = []
    for row in joined.to_dict("records"):
        within = bool(row["ci_low"] <= row["compared_effect"] <= row["ci_high"])
        found, also = bool(row["significant"]), bool(row["compared_significant"])
        holds_zero = bool(row["compared_ci_low"] <= 0 <= row["compared_ci_high"])
        missed = found and (not also or holds_zero)
        agrees = within and not missed
        line = (f"{row['outcome']}, {row['treatment']} against {row['control']}: "
                f"{compared_label} estimates {row['compared_effect']:+.1f} {row['unit']}")
        if missed:
            line += (f" ({row['compared_ci_low']:+.1f} to {row['compared_ci_high']:+.1f}, "
                     + ("its interval holds 0" if also else "not significant") + ")")
        line += (", " + ("within" if within else "OUTSIDE")
                 + f" {base_label}'s interval {row['ci_low']:+.1f} to {row['ci_high']:+.1f} "
                 f"(its effect {row['effect']:+.1f}" + (", significant" if found else "") + ")")
        if agrees:
            line += "."
        elif missed:
            line += f": {compared_label} misses the effect {base_label} finds; the two do not agree."
        else:
            line += ": the two estimates do not agree."
        rows.append({**{k: row[k] for k in (*keys, "unit", "effect", "ci_low", "ci_high",
                                             "compared_effect")},
                     "agrees": agrees, "significant": found,
                     "compared_ci_low": row["compared_ci_low"],
                     "compared_ci_high": row["compared_ci_high"],
                     "compared_significant": also, "missed": missed, "line": line})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def agreement_verdict(table: pd.DataFrame, base_label: str) -> str:
    """One plain line over an agreement table: how many effects agree, and which do not.

    Args:
        table: an agreement table.
        base_label: the reference in words.

    Returns:
        The line.
    """
    if table.empty:
        return f"no outcome and treatment in common with {base_label}"
    held = int(table["agrees"].sum())
    said = (f"agrees on {held} of {len(table)} effects with {base_label} (each effect within "
            "its interval, and each effect it finds found)")
    if held == len(table):
        return said
    off = table[~table["agrees"].astype(bool)]
    return said + "; does not agree on " + ", ".join(
        f"{r['outcome']} ({r['treatment']} against {r['control']}"
        + (f": {base_label} finds an effect, this misses it" if r["missed"] else "") + ")"
        for r in off.to_dict("records"))


WITHIN_LIMIT = ("within a world, icc is the outcome's correlation among one arm's agents of a "
                "run; agents of one graph community answer more alike than that, and "
                "spill-over from treated to control neighbours shrinks the effect itself: "
                "neither is in this figure, which is a lower bound on what is needed")


def plan_power(effect_size: float, *, agents_per_run: int, share: bool = True,
               alpha: float = 0.05, power: float = 0.8, icc: float = 0.0,
               design: str = "between", arms: int = 2) -> dict[str, int | float | str]:
    """Agents per arm and replicates needed to detect an effect size (Cohen's h or d), before running.

    icc, the outcome's correlation within a run, inflates the agents by the Kish design effect
    1 + (m - 1) * icc; 0 treats agents as independent, which is optimistic.
    """
    if effect_size == 0:
        raise ValueError("an effect size of 0 cannot be detected by any sample size")
    if not 0.0 <= icc <= 1.0:
        raise ValueError(f"icc must be between 0 and 1, got {icc}")
    analysis = NormalIndPower() if share else TTestIndPower()
    n = float(analysis.solve_power(effect_size=abs(effect_size), nobs1=None, ratio=1.0,
                                   alpha=alpha, power=power))
    if design not in ("between", "within"):
        raise ValueError(f"design must be 'between' or 'within', got {design!r}")
    per_arm_run = agents_per_run / arms if design == "within" else float(agents_per_run)
    design_effect = 1.0 + (per_arm_run - 1) * icc
    agents = math.ceil(n * design_effect)
    limit = WITHIN_LIMIT if design == "within" else (
        "icc 0 treats agents of one run as independent" if icc == 0 else "")
    return {"effect_size": effect_size, "alpha": alpha, "power": power, "icc": icc,
            "design": design, "design_effect": design_effect, "agents_per_arm": agents,
            "agents_per_run": agents_per_run,
            "replicates": math.ceil(agents / per_arm_run), "limit": limit}


def share_effect_size(p_control: float, p_treatment: float) -> float:
    """Cohen's h between two shares."""
    return float(proportion_effectsize(p_treatment, p_control))


def detection_rate(p_values: Sequence[float], alpha: float = 0.05) -> float:
    """Share of p values below alpha: an A/A experiment's false-positive rate."""
    return float(np.mean(np.asarray(p_values) < alpha))
