"""An experiment's HTML report (``personahub report --experiment ID``; matplotlib, Agg).

Outcomes per arm over steps, the effect forest plot and table, and optionally whether another
experiment's effects agree. Every interval counts a persona once and a world (a replicate) as a
cluster, as the effect table's tests do.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import duckdb
import matplotlib
import numpy as np
import pandas as pd

from personahub.analysis.experiment_effects import (
    agreement,
    agreement_verdict,
    effects,
    outcome_values,
)
from personahub.analysis.experiment_inference import MIN_REPLICATES, mean_interval
from personahub.analysis.figures import subplots
from personahub.analysis.report import LITERAL_TEXT
from personahub.analysis.report_page import page_head, save_figure
from personahub.core.errors import PersonahubError
from personahub.core.outputs import atomic_file, staged_folder
from personahub.sim.experiment import Experiment, load_experiment
from personahub.sim.experiment_store import (
    arm_agents,
    finished_arm_runs,
    outcome_answers,
)
from personahub.sim.scenario import Scenario, ScenarioError
from personahub.sim.store import run_record

__all__ = ["ARM_STEP_COLUMNS", "EXPERIMENT_FILES", "arm_steps", "compared_effects",
           "experiment_agreement", "experiment_tables", "load_recorded_experiment",
           "write_experiment_report"]

EXPERIMENT_FILES = ("index.html", "experiment_arms.png", "experiment_effects.png")
ARM_STEP_COLUMNS = ["outcome", "arm", "step", "n", "value", "ci_low", "ci_high", "unit"]


def load_recorded_experiment(con: duckdb.DuckDBPyConnection, experiment_id: str
                             ) -> tuple[Scenario, Experiment, pd.DataFrame]:
    """Load the scenario, experiment and runs of a recorded experiment, from the scenario file its runs
    recorded; PersonahubError when that file is gone or no longer fits.
    """
    runs = finished_arm_runs(con, experiment_id)
    if runs.empty:
        raise PersonahubError(f"--experiment {experiment_id}: not found in the database (no "
                              "finished run; personahub experiment runs one)")
    records = (run_record(con, run_id) for run_id in runs["run_id"])
    path = next((r.scenario_path for r in records if r and r.scenario_path), None)
    if path is None:
        raise PersonahubError(f"--experiment {experiment_id}: its runs record no scenario file")
    try:
        scenario, spec = load_experiment(path)
    except (ScenarioError, OSError) as exc:
        raise PersonahubError(f"--experiment {experiment_id}: its scenario file cannot be read "
                              f"again: {exc}") from None
    missing = sorted(set(runs["arm"]) - {a.name for a in spec.arms})
    if missing:
        raise PersonahubError(f"--experiment {experiment_id}: arm(s) {', '.join(missing)} are no "
                              f"longer in {path} (the file changed since the experiment ran)")
    spec = spec.with_replicates(int(runs["replicate"].max()) + 1)
    return scenario, dataclasses.replace(spec, id=experiment_id), runs


def arm_steps(con: duckdb.DuckDBPyConnection, scenario: Scenario, experiment: Experiment,
              runs: pd.DataFrame, *, confidence: float = 0.95,
              agents: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tabulate each outcome per arm at every step its survey is asked.

    Each row holds the agents answering and the share (%) or mean with a t interval whose units
    are the arm's personas and worlds (``experiment_inference.mean_interval``). SQL outcomes
    have no steps and are left out.
    """
    steps = {s.id: s.steps for s in scenario.surveys}
    rows = []
    for outcome in experiment.outcomes:
        if outcome.is_sql:
            continue
        unit = "% of agents" if outcome.is_share else "scale points"
        for step in steps[outcome.survey]:
            answers = outcome_answers(con, list(dict.fromkeys(runs["run_id"])), outcome.survey,
                                      step)
            if agents is not None:
                answers = answers.merge(agents[["run_id", "agent_id", "arm", "replicate"]],
                                        on=["run_id", "agent_id"])
            else:
                answers = answers.merge(runs[["run_id", "arm", "replicate"]], on="run_id")
            for arm in experiment.arms:
                mine = answers[answers["arm"] == arm.name]
                if outcome.is_share:
                    mine = mine.assign(value=mine["answer_choice"].isin(outcome.options)
                                       .astype(float))
                else:
                    mine = mine.assign(value=mine["answer_scale"].astype(float)).dropna(
                        subset=["value"])
                if mine.empty:
                    continue
                scale = 100.0 if outcome.is_share else 1.0
                value, low, high = (scale * v for v in mean_interval(mine, confidence))
                rows.append({"outcome": outcome.name, "arm": arm.name, "step": step,
                             "n": len(mine), "value": value, "ci_low": low, "ci_high": high,
                             "unit": unit})
    return pd.DataFrame(rows, columns=ARM_STEP_COLUMNS)


def experiment_tables(con: duckdb.DuckDBPyConnection, experiment_id: str, *,
                      confidence: float = 0.95
                      ) -> tuple[Experiment, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return a recorded experiment, its runs, its per-step arm table and its effect table."""
    scenario, spec, runs = load_recorded_experiment(con, experiment_id)
    agents = None
    if spec.design == "within":
        agents = arm_agents(con, experiment_id)
        agents = agents[agents["run_id"].isin(runs["run_id"])]
    values = outcome_values(con, spec, runs, agents)
    table = effects(values, spec, confidence=confidence)
    return spec, runs, arm_steps(con, scenario, spec, runs, confidence=confidence,
                                 agents=agents), table


def compared_effects(con: duckdb.DuckDBPyConnection, experiment_id: str, *,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Return the effect table of the experiment compared with."""
    try:
        return experiment_tables(con, experiment_id, confidence=confidence)[3]
    except PersonahubError as exc:
        raise PersonahubError(str(exc).replace("--experiment", "--compare", 1)) from None


def experiment_agreement(base: pd.DataFrame, base_id: str, own: pd.DataFrame, own_id: str
                         ) -> tuple[pd.DataFrame, str]:
    """Whether one experiment's effects lie within another's intervals.

    Args:
        base: the reference effect table (e.g. asking every agent).
        base_id: its id.
        own: this experiment's effect table (e.g. with archetypes).
        own_id: its id.

    Returns:
        The agreement table and its verdict line.
    """
    label = f"experiment {base_id}"
    table = agreement(base, own, base_label=label, compared_label=f"experiment {own_id}")
    return table, f"experiment {own_id} " + agreement_verdict(table, label)


def _draw_arms(steps: pd.DataFrame, experiment: Experiment, path: Path) -> None:
    outcomes = list(dict.fromkeys(steps["outcome"]))
    fig, axes = subplots(len(outcomes), 1, figsize=(8, 3.2 * len(outcomes)), squeeze=False)
    for ax, outcome in zip(axes[:, 0], outcomes, strict=True):
        mine = steps[steps["outcome"] == outcome]
        for i, arm in enumerate(a.name for a in experiment.arms):
            line = mine[mine["arm"] == arm]
            if line.empty:
                continue
            x = line["step"].to_numpy(float) + 0.06 * (i - (len(experiment.arms) - 1) / 2)
            y = line["value"].to_numpy(float)
            err = np.vstack([y - line["ci_low"].to_numpy(float),
                             line["ci_high"].to_numpy(float) - y])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arm)
        ticks = sorted(set(mine["step"]))
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 0.5, ticks[-1] + 0.5)
        ax.set_xlabel("step")
        ax.set_ylabel(str(mine["unit"].iloc[0]))
        ax.set_title(outcome, fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(fig, path)


def _draw_forest(table: pd.DataFrame, path: Path) -> None:
    units = list(dict.fromkeys(table["unit"]))
    heights = [max(1.2, 0.45 * int((table["unit"] == u).sum()) + 0.9) for u in units]
    fig, axes = subplots(len(units), 1, figsize=(8, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, unit in zip(axes[:, 0], units, strict=True):
        mine = table[table["unit"] == unit]
        labels = [f"{r.outcome}: {r.treatment}" for r in mine.itertuples()]
        y = np.arange(len(mine))
        effect = mine["effect"].to_numpy(float)
        err = np.nan_to_num(np.vstack([effect - mine["ci_low"].to_numpy(float),
                                       mine["ci_high"].to_numpy(float) - effect]))  # no test: no bar
        ax.errorbar(effect, y, xerr=err, fmt="o", capsize=3)
        ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"effect against the control ({unit})")
    save_figure(fig, path)


def _frame_html(frame: pd.DataFrame) -> str:
    esc = html.escape

    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else esc(str(v))

    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(spec: Experiment, facts: list[tuple[str, str]], steps: pd.DataFrame,
          table: pd.DataFrame, images: list[tuple[str, str, str]],
          compared: tuple[str, pd.DataFrame, str] | None = None) -> str:
    esc = html.escape
    title = f"personahub report — experiment {spec.id}"
    parts = page_head(title, facts, images)
    parts += ["<h2>Verdicts</h2>", "<ul>",
              *(f"<li>{esc(str(v))}</li>" for v in table["verdict"]), "</ul>",
              "<h2>Effects</h2>", _frame_html(table.drop(columns="verdict"))]
    if compared is not None:
        other, agreed, said = compared
        parts += [f"<h2>Agreement with experiment {esc(other)}</h2>", f"<p>{esc(said)}</p>",
                  _frame_html(agreed.drop(columns="line")), "<ul>",
                  *(f"<li>{esc(str(v))}</li>" for v in agreed["line"]), "</ul>"]
    parts += ["<h2>Outcomes per arm and step</h2>", _frame_html(steps), "</body></html>"]
    return "\n".join(parts)


def write_experiment_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path,
                            experiment_id: str, *, confidence: float = 0.95,
                            overwrite: bool = False, compare: str | None = None) -> Path:
    """Write the experiment's index.html and charts into a folder, all or nothing; returns its path."""
    spec, runs, steps, table = experiment_tables(con, experiment_id, confidence=confidence)
    compared = None
    if compare is not None:
        agreed, said = experiment_agreement(
            compared_effects(con, compare, confidence=confidence), compare, table,
            spec.id)
        compared = (compare, agreed, said)
    record = run_record(con, runs["run_id"].iloc[0])
    facts = [("experiment", spec.id), ("scenario file", record.scenario_path if record else ""),
             ("arms", ", ".join(f"{a.name} (control)" if a is spec.control else a.name
                                for a in spec.arms)),
             ("replicates", str(spec.replicates)), ("runs", str(len(runs))),
             ("design", f"{spec.design} worlds")]
    level = f"{confidence:.0%}"
    images = []
    with staged_folder(Path(out_dir), overwrite=overwrite, names=EXPERIMENT_FILES) as staged, \
            matplotlib.rc_context(LITERAL_TEXT):
        if not steps.empty:
            _draw_arms(steps, spec, staged / "experiment_arms.png")
        images.append(("Outcomes per arm over the steps", "experiment_arms.png"
                       if not steps.empty else "", f"Each arm over its replicates, with {level} t "
                       "intervals whose units are its personas and its worlds (with fewer than "
                       f"{MIN_REPLICATES} replicates, its personas only)."))
        if not table.empty:
            _draw_forest(table, staged / "experiment_effects.png")
        images.append(("Effects against the control", "experiment_effects.png"
                       if not table.empty else "", f"Each treatment's effect with the {level} "
                       "interval of its test (personas paired, worlds as clusters); an interval "
                       "crossing the dashed zero line is no clear effect, and an effect with "
                       "too few replicates to test is drawn without one."))
        with atomic_file(staged / "index.html", overwrite=False) as f:
            f.write(_html(spec, facts, steps, table, images, compared))
    return Path(out_dir) / "index.html"
