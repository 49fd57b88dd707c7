"""Effects of an experiment's treatments against its control: intervals, tests, effect sizes, power.

Every test, interval, Holm p and smallest detectable effect uses the unit of analysis the design
implies (``analysis/experiment_inference.py``): between worlds a persona's answers in the two
arms of a replicate are a pair, personas and worlds are crossed random factors, and too few
replicates give no test rather than a p value built on answers that are not independent.
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
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from personahub.analysis.experiment_inference import (
    MIN_REPLICATES,
    DesignTest,
    paired_between,
    paired_power,
    per_run,
    power_at,
    randomised_within,
)
from personahub.core.errors import PersonahubError
from personahub.sim.experiment import Experiment, Outcome
from personahub.sim.experiment_store import outcome_answers, run_personas, sql_outcome_values

SHARE_UNIT = "percentage points"
SCALE_UNIT = "scale points"
SQL_UNIT = "units of the query's value"
EFFECT_COLUMNS = ["outcome", "treatment", "control", "unit", "control_value", "treatment_value",
                  "effect", "ci_low", "ci_high", "inference", "test", "statistic", "df",
                  "p_value", "p_holm", "effect_size", "effect_size_kind", "n_control",
                  "n_treatment", "personas", "replicates", "design_effect", "mde",
                  "significant", "verdict"]
VALUE_COLUMNS = ["outcome", "arm", "replicate", "run_id", "agent_id", "persona_id", "value"]


def outcome_values(con: duckdb.DuckDBPyConnection, experiment: Experiment,
                   runs: pd.DataFrame, agents: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per outcome, arm and agent answer.

    Args:
        con: the experiment's database.
        experiment: its outcomes.
        runs: its runs (arm, replicate, run_id).
        agents: within a world, each agent's arm per replicate; None between worlds.

    Returns:
        The columns outcome, arm, replicate, run_id, agent_id, persona_id and value: 1.0/0.0
        for a share, the answer for a scale, the query's number for a SQL outcome (agent_id and
        persona_id NULL for one value per run).

    Raises:
        PersonahubError: a SQL outcome fails.
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
            got = attach(_with_personas(con, got, run_ids))
            frames.append(pd.DataFrame({"outcome": outcome.name, "arm": got["arm"],
                                        "replicate": got["replicate"], "run_id": got["run_id"],
                                        "agent_id": got["agent_id"],
                                        "persona_id": got["persona_id"],
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
                                    "persona_id": answers["persona_id"],
                                    "value": value}).dropna(subset=["value"]))
    if not frames:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    return _in_design_order(pd.concat(frames, ignore_index=True), experiment, agents is None)


def _with_personas(con: duckdb.DuckDBPyConnection, got: pd.DataFrame,
                   run_ids: Sequence[str]) -> pd.DataFrame:
    """Return a SQL outcome's values with each agent's persona (NULL for a value per run)."""
    if got.empty or got["agent_id"].isna().all():
        return got.assign(persona_id=None)
    personas = run_personas(con, run_ids).astype({"agent_id": "float64"})
    return got.astype({"agent_id": "float64"}).merge(personas, on=["run_id", "agent_id"],
                                                     how="left")


def _in_design_order(values: pd.DataFrame, experiment: Experiment,
                     between: bool) -> pd.DataFrame:
    """Sort in design order: runs started in the same second have random run ids."""
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
    inference: str
    test: str
    statistic: float
    df: float
    p_value: float
    effect_size: float
    effect_size_kind: str
    n_control: int
    n_treatment: int
    personas: int
    replicates: int
    design_effect: float
    mde: float


def cohens_d(treated: np.ndarray, control: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation (0 when there is no spread)."""
    n1, n2 = len(treated), len(control)
    pooled = math.sqrt(((n1 - 1) * np.var(treated, ddof=1) + (n2 - 1) * np.var(control, ddof=1))
                       / (n1 + n2 - 2)) if n1 + n2 > 2 else 0.0
    return float((treated.mean() - control.mean()) / pooled) if pooled > 0 else 0.0


def design_test(treated: pd.DataFrame, control: pd.DataFrame, *, within: bool) -> DesignTest:
    """Return the test that fits the design and the outcome's values.

    Args:
        treated: the treatment's values (replicate, persona_id, value).
        control: the control's values.
        within: whether the arms share their worlds (randomised among one world's agents).

    Returns:
        A paired test between worlds, a randomised one within, or one over replicates when
        the outcome has one value per run.
    """
    if treated["persona_id"].isna().all() or control["persona_id"].isna().all():
        return per_run(treated, control)
    if within:
        return randomised_within(treated, control)
    return paired_between(treated, control)


def compare(outcome: str, share: bool, treatment: str, control: str, treated: pd.DataFrame,
            controls: pd.DataFrame, *, confidence: float = 0.95, alpha: float = 0.05,
            unit: str | None = None, within: bool = False) -> Effect:
    """One treatment against the control on one outcome, with the design's test and interval.

    Args:
        outcome: the outcome's name.
        share: whether values are 1/0 (a share, reported in percentage points).
        treatment: the treatment arm's name.
        control: the control arm's name.
        treated: the treatment's values (replicate, persona_id, value).
        controls: the control's values.
        confidence: the interval's level.
        alpha: the level of the smallest detectable effect (80% power).
        unit: the unit in words (default: by share).
        within: whether the arms were randomised within worlds.

    Returns:
        The effect row (p, interval and smallest detectable effect NaN without a test).
    """
    scale = 100.0 if share else 1.0
    tested = design_test(treated, controls, within=within)
    low, high = tested.interval(confidence)
    mine, theirs = treated["value"].to_numpy(float), controls["value"].to_numpy(float)
    if share:
        shares = (tested.treated_value, tested.control_value)
        size = (float(proportion_effectsize(*shares)) if all(0 <= v <= 1 for v in shares)
                else math.nan)
    else:
        size = cohens_d(mine, theirs)
    return Effect(outcome=outcome, treatment=treatment, control=control,
                  unit=unit or (SHARE_UNIT if share else SCALE_UNIT),
                  control_value=tested.control_value, treatment_value=tested.treated_value,
                  effect=tested.effect * scale, ci_low=low * scale, ci_high=high * scale,
                  inference=tested.inference, test="t" if tested.tested else tested.reason,
                  statistic=tested.statistic, df=tested.df, p_value=tested.p_value,
                  effect_size=size, effect_size_kind="Cohen's h" if share else "Cohen's d",
                  n_control=len(theirs), n_treatment=len(mine), personas=tested.personas,
                  replicates=tested.replicates, design_effect=tested.design_effect,
                  mde=tested.detectable(alpha) * scale)


def effects(values: pd.DataFrame, experiment: Experiment, *, confidence: float = 0.95,
            alpha: float = 0.05) -> pd.DataFrame:
    """Return the effect table: one row per outcome and treatment.

    Args:
        values: one value per outcome, arm and agent (outcome_values).
        experiment: its outcomes and arms (the first arm is the control).
        confidence: the intervals' level.
        alpha: the tests' level after Holm's correction.

    Returns:
        The effect columns, with Holm's p over the rows that have a test, significance and a
        plain verdict per row.
    """
    rows: list[Effect] = []
    control = experiment.control.name
    if "persona_id" not in values.columns:
        values = values.assign(persona_id=values["agent_id"] if "agent_id" in values.columns
                               else None)
    for outcome in experiment.outcomes:
        mine = values[values["outcome"] == outcome.name]
        control_rows = mine[mine["arm"] == control]
        for arm in experiment.arms[1:]:
            treated_rows = mine[mine["arm"] == arm.name]
            if len(treated_rows) < 2 or len(control_rows) < 2:
                continue
            rows.append(compare(outcome.name, outcome.is_share, arm.name, control,
                                treated_rows, control_rows, confidence=confidence,
                                alpha=alpha, unit=SQL_UNIT if outcome.is_sql else None,
                                within=experiment.design == "within"))
    if not rows:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    table = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", math.nan)
    table["significant"] = False
    has_test = table["p_value"].notna()
    if has_test.any():
        rejected, adjusted = holm(table.loc[has_test, "p_value"].to_numpy(), alpha)
        table.loc[has_test, "p_holm"] = adjusted
        table.loc[has_test, "significant"] = rejected
    table["significant"] = table["significant"].astype(bool)
    described = {o.name: describe_outcome(o) for o in experiment.outcomes}
    table["verdict"] = [verdict(row, described[row["outcome"]], confidence)
                        for row in table.to_dict("records")]
    return table[EFFECT_COLUMNS]


def holm(p_values: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Adjust p-values by Holm's step-down method and say which reject at alpha.

    statsmodels' ``multipletests(method="holm")`` gives the same values (a test compares them),
    but runs a full garbage collection on every call: a tenth of a second in a small process,
    seconds in one holding a large heap (bench/RESULTS.md, "Holm without a collection").

    Args:
        p_values: The tests' p-values.
        alpha: The family-wise error rate.

    Returns:
        The rejections and the adjusted p-values, in the order given.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = p.size - np.arange(p.size)  # m, m-1, ..., 1
    adjusted = np.empty(p.size)
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * steps), 1.0)
    rejected = np.empty(p.size, dtype=bool)
    rejected[order] = np.logical_and.accumulate(p[order] <= alpha / steps)
    return rejected, adjusted


def describe_outcome(outcome: Outcome) -> str:
    """Say an outcome in words, e.g. "purchase_intent at step 5 (share answering definitely, probably)"."""
    if outcome.is_sql:
        return f"{outcome.name} (mean of its SQL values)"
    what = f"share answering {', '.join(outcome.options)}" if outcome.is_share else "mean answer"
    return f"{outcome.survey} at step {outcome.step} ({what})"


def _units(row: Mapping[str, Any]) -> str:
    """Say what the test counted as independent, e.g. "30 personas x 5 replicates"."""
    replicates = f"{row['replicates']} replicate{'s' if row['replicates'] != 1 else ''}"
    if not row["personas"]:
        return replicates
    return f"{row['personas']} personas x {replicates}"


def verdict(row: Mapping[str, Any], described: str, confidence: float = 0.95) -> str:
    """Write one plain line for an effect row: the effect, its interval and test, and what it means."""
    unit = row["unit"]
    who = f"{row['treatment']} against {row['control']}"
    if pd.isna(row["p_value"]):
        return (f"{described}: {who} differs by {row['effect']:+.1f} {unit} ({_units(row)}); "
                f"{row['test']}.")
    change = (f"{row['effect']:+.1f} {unit} ({confidence:.0%} CI {row['ci_low']:+.1f} to "
              f"{row['ci_high']:+.1f}; t({row['df']:.0f}) p={row['p_value']:.3g}, "
              f"Holm p={row['p_holm']:.3g}; {_units(row)})")
    if row["significant"]:
        way = "raises" if row["effect"] > 0 else "lowers"
        return f"{described}: {row['treatment']} {way} it by {change}, {who}."
    return (f"{described}: no detectable effect of {who}, {change}; the smallest effect this "
            f"design detects is about {abs(row['mde']):.1f} {unit}.")


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
        if pd.isna(row["ci_low"]):  # the reference has no test: nothing to agree with
            rows.append({**{k: row[k] for k in (*keys, "unit", "effect", "ci_low", "ci_high",
                                                 "compared_effect")},
                         "agrees": False, "significant": False,
                         "compared_ci_low": row["compared_ci_low"],
                         "compared_ci_high": row["compared_ci_high"],
                         "compared_significant": bool(row["compared_significant"]),
                         "missed": False,
                         "line": (f"{row['outcome']}, {row['treatment']} against "
                                  f"{row['control']}: {base_label} has no interval to compare "
                                  f"with (too few replicates to test; give it at least "
                                  f"{MIN_REPLICATES}).")})
            continue
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
MAX_PLANNED_REPLICATES = 1000
PERSONAS_LIMIT = ("the personas are the same in every replicate: with a deterministic model "
                  "(temperature 0) their answers repeat, and only more personas per run (not "
                  "more replicates) narrow the part of the interval that comes from them")


def _power_within(effect_size: float, replicates: int, per_arm_run: float,
                  design_effect: float, alpha: float, icc: float) -> float:
    """Power of a t test after this many within-world replicates (df from worlds when icc > 0)."""
    agents = replicates * per_arm_run
    se = math.sqrt(2 * design_effect / agents)  # in standard deviations (Cohen's h or d)
    df = replicates - 1.0 if icc > 0 else 2 * agents - 2.0
    return power_at(effect_size, se, df, alpha)


def plan_power(effect_size: float, *, agents_per_run: int, share: bool = True,
               alpha: float = 0.05, power: float = 0.8, icc: float = 0.0,
               design: str = "between", arms: int = 2) -> dict[str, int | float | str]:
    """Plan the agents per arm and replicates that detect an effect size (Cohen's h or d).

    Between worlds the replicates grow until the test ``effects`` applies (personas paired,
    each arm's worlds a random part) reaches the power, by a seeded simulation of that test
    (``paired_power``): its world part, estimated from few replicates, costs power that a
    formula for independent answers does not see. Within a world the Kish design effect
    1 + (m - 1) * icc inflates the agents and the worlds give the test's degrees of freedom.
    Every plan has at least the replicates a test needs. The arms are taken as independent
    samples; a persona's own leaning, which cancels in its pair, only adds power.

    Args:
        effect_size: Cohen's h (share_effect_size) or d.
        agents_per_run: agents in one run.
        share: whether the outcome is a share (normal power) or a scale (t power).
        alpha: the test's level.
        power: the power wanted.
        icc: the outcome's intraclass correlation within a run.
        design: between (each arm its own world) or within (arms share a world).
        arms: the arms sharing a world (within).

    Returns:
        effect_size, alpha, power, icc, design, design_effect, agents_per_arm, agents_per_run,
        replicates, the power those replicates reach (achieved) and a limit line.
    """
    if effect_size == 0:
        raise ValueError("an effect size of 0 cannot be detected by any sample size")
    if not 0.0 <= icc < 1.0:
        raise ValueError(f"icc must be at least 0 and below 1, got {icc}")
    if design not in ("between", "within"):
        raise ValueError(f"design must be 'between' or 'within', got {design!r}")
    analysis = NormalIndPower() if share else TTestIndPower()
    n = float(analysis.solve_power(effect_size=abs(effect_size), nobs1=None, ratio=1.0,
                                   alpha=alpha, power=power))
    per_arm_run = agents_per_run / arms if design == "within" else float(agents_per_run)
    design_effect = 1.0 + (per_arm_run - 1) * icc
    start = max(MIN_REPLICATES, math.ceil(math.ceil(n * design_effect) / per_arm_run))

    def reached(replicates: int) -> float:
        if design == "within":
            return _power_within(effect_size, replicates, per_arm_run, design_effect, alpha,
                                 icc)
        return paired_power(effect_size, personas=agents_per_run, replicates=replicates,
                            icc=icc, alpha=alpha)

    replicates = start  # the formula for independent answers: the test needs at least this
    while reached(replicates) < power and replicates < MAX_PLANNED_REPLICATES:
        replicates += 1
    limit = WITHIN_LIMIT if design == "within" else (
        "icc 0 treats agents of one run as independent; " + PERSONAS_LIMIT if icc == 0
        else PERSONAS_LIMIT)
    return {"effect_size": effect_size, "alpha": alpha, "power": power, "icc": icc,
            "design": design, "design_effect": design_effect,
            "agents_per_arm": math.ceil(replicates * per_arm_run),
            "agents_per_run": agents_per_run, "replicates": replicates,
            "achieved": reached(replicates), "limit": limit}


def share_effect_size(p_control: float, p_treatment: float) -> float:
    """Cohen's h between two shares."""
    return float(proportion_effectsize(p_treatment, p_control))


def detection_rate(p_values: Sequence[float], alpha: float = 0.05) -> float:
    """Share of p values below alpha: an A/A experiment's false-positive rate."""
    return float(np.mean(np.asarray(p_values) < alpha))
