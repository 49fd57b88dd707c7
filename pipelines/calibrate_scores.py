"""A calibration job's scores, from its tables alone: per question x group x source, and means.

Each steering and elicitation method is scored as a model row of its own beside the baselines,
which are scored once. A group no persona matched is scored for no source, so every
source's means cover the same questions and groups. Scoring replaces earlier scores in one
transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_dispersion import cross_fitted
from personahub.analysis.calibration_report import per_attribute_table
from personahub.analysis.calibration_scores import (
    FLOORS,
    MODEL,
    PANEL_SOURCES,
    POPULATION,
    SCORES,
    score_population,
    score_survey,
    source_label,
)
from personahub.analysis.survey import Survey
from personahub.pipelines.calibrate_archetypes import (
    archetype_counts,
    archetype_k,
    archetype_method,
)
from personahub.pipelines.calibrate_data import load_panels, load_survey, panel_personas, profiles
from personahub.pipelines.calibrate_elicit import (
    LOGPROBS,
    SAMPLE,
    at_bound,
    fit_temperature,
    held_out,
    is_group_method,
    scaled,
    split_group_key,
    stated_vector,
)

__all__ = ["DISPERSION_CONTROLS", "OVERALL", "SCORE_COLUMNS", "Scored", "dispersion_lines",
           "dispersion_table", "logprobs_temperature", "per_attribute", "temperature_scaled",
           "elicit_lines", "fitted_temperatures", "interval_lines", "overall_lines", "panel_intervals_of",
           "panel_sizes_of", "sd_by_question",
           "score_job", "size_lines", "source_label",
           "summarise_job", "table_lines", "temperature_lines"]

SCORE_COLUMNS = ["question_id", "attribute", "group", "source", "steering", "metric", *SCORES,
                 "human_n", "sim_n", "sim_failed", "human_refusal", "sim_refusal", "counts",
                 "temperature"]  # temperature: a tempered row's T (--dispersion temper)
SUMMARY_COLUMNS = ["source", "steering", "level", "attribute", "group", *SCORES, "scored"]


@dataclass(frozen=True)
class Scored:
    """A job's scores (one row per question x group x source) and their means."""

    scores: pd.DataFrame
    summary: pd.DataFrame


GroupCounts = dict[tuple[str, str, str], np.ndarray]
NO_CONTROL, TEMPER = "none", "temper"  # --dispersion
DISPERSION_CONTROLS = (NO_CONTROL, TEMPER)
TEMPERED = ":tempered"  # the steering suffix of a tempered model row


def _simulated(con: duckdb.DuckDBPyConnection, job_id: str, survey_questions: dict[str, Any]
               ) -> tuple[dict[str, GroupCounts], dict[str, np.ndarray]]:
    """Counts per steering or method and (question, attribute, group), and no-persona counts per
    question, aligned with each question's options.
    """
    options = {qid: q.options for qid, q in survey_questions.items()}
    groups: dict[str, GroupCounts] = defaultdict(dict)
    for steering, qid, attribute, grp, answer, n in store.panel_answer_counts(con, job_id):
        vector = groups[steering].setdefault((qid, attribute, grp), np.zeros(len(options[qid])))
        vector[options[qid].index(answer)] += n
    none: dict[str, np.ndarray] = {}
    for qid, answer, n in store.no_persona_counts(con, job_id):
        none.setdefault(qid, np.zeros(len(options[qid])))[options[qid].index(answer)] += n
    for method, qid, key, shares in store.stated_answers(con, job_id):
        if archetype_k(method) is not None:  # counted from its members' draws (archetype_counts)
            continue
        attribute, group = split_group_key(key)
        groups[method][(qid, attribute, group)] = stated_vector(survey_questions[qid], shares)
    return groups, none


def temperature_scaled(survey: Survey, stated: GroupCounts,
                       fit_questions: Sequence[str]) -> tuple[GroupCounts, float]:
    """For --elicit logprobs: the temperature fitted on the held-out questions' cells, and the
    other questions' cells scaled by it.
    """
    fit = set(fit_questions)
    pairs = []
    for qid in fit:
        question = survey.questions[qid]
        keep = [i for i, o in enumerate(question.options) if o not in question.refusals]
        for attribute, labels, human in survey.groups(qid):
            model = stated.get((qid, attribute, " / ".join(labels)))
            if model is not None:
                pairs.append((np.asarray(model)[keep], np.asarray(human, float)[keep]))
    temperature = fit_temperature(pairs)
    return ({key: scaled(vector, temperature) for key, vector in stated.items()
             if key[0] not in fit}, temperature)


def logprobs_temperature(con: duckdb.DuckDBPyConnection, job_id: str) -> float | None:
    """The temperature a job's logprobs row is scaled by (None when it has no such row)."""
    job = store.job_row(con, job_id)
    if LOGPROBS not in list((job.get("config") or {}).get("elicit") or []):
        return None
    selected = load_survey(con, job_id)
    simulated, _ = _simulated(con, job_id, dict(selected.survey.questions))
    return temperature_scaled(selected.survey, simulated.get(LOGPROBS, {}), held_out(
        LOGPROBS, selected.questions, int(job["seed"] or 0)))[1]


def _counts(vector: Any) -> str | None:
    return None if vector is None else json.dumps([float(v) for v in vector])


def score_tables(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """The job's scores per question x group x source, in SCORE_COLUMNS."""
    selected = load_survey(con, job_id)
    survey = selected.survey
    job = store.job_row(con, job_id)
    steerings = list(job["steering"])
    no_persona_n = int(job["no_persona_n"])
    simulated, none = _simulated(con, job_id, dict(survey.questions))
    panels = load_panels(con, job_id)
    panel_size = {key: len(members) for key, members in panels.items()}
    seed = int(job["seed"] or 0)
    elicit = list((job.get("config") or {}).get("elicit") or [SAMPLE])
    control = (job.get("config") or {}).get("dispersion") or NO_CONTROL
    ks = [int(k) for k in (job.get("config") or {}).get("archetypes") or []]
    if ks:  # each member's answer drawn from its archetype's stated shares
        personas = profiles(panel_personas(con, panels))
        simulated.update(archetype_counts(con, job_id, dict(survey.questions), panels, personas,
                                          ks, seed))
    # one model row per steering, then per group-level method, then per --archetypes K
    rows = ([s for s in steerings] if SAMPLE in elicit else []) + [
        m for m in elicit if is_group_method(m)] + [archetype_method(k) for k in ks]
    if LOGPROBS in elicit:  # scaled by the temperature fitted on its held-out questions
        simulated[LOGPROBS], _ = temperature_scaled(
            survey, simulated.get(LOGPROBS, {}), held_out(LOGPROBS, selected.questions, seed))
    frames = []
    for position, steering in enumerate(rows):
        model = {(qid, attribute, labels): simulated[steering].get((qid, attribute, " / ".join(labels)))
                 for qid in survey.questions for attribute, labels, _ in survey.groups(qid)}
        given = {k: v for k, v in model.items() if v is not None}
        table = pd.concat([score_survey(survey, given, no_persona=none, seed=seed),
                           score_population(survey, given, no_persona=none, seed=seed)],
                          ignore_index=True)
        on_panel = table["source"].isin(PANEL_SOURCES)
        if is_group_method(steering) or archetype_k(steering) is not None:
            # a stated distribution (or an archetype's draws) has no panel, so no perfect_panel
            # baseline at its size; a few-shot row does not score the questions it showed
            shown = set(held_out(steering, selected.questions, seed))
            own = (table["source"] == MODEL) & ~table["question_id"].isin(shown)
            keep = own | (~on_panel if position == 0 else False)
            table, on_panel = table[keep], own[keep]
        elif position > 0:  # the baselines do not depend on the steering: scored once
            table, on_panel = table[on_panel], on_panel[on_panel]
        table.insert(4, "steering", np.where(on_panel, steering, ""))
        frames.append(table)
        if control == TEMPER and not is_group_method(steering) and archetype_k(steering) is None:
            frames.append(_tempered(survey, given, none, seed, steering, simulated))
    scores = pd.concat(frames, ignore_index=True)
    # a group no persona matched is scored for no source, so every source's means cover the
    # same questions and groups (whole-population rows mix the groups that were asked)
    asked_groups = [a == POPULATION or panel_size.get((a, g), 0) > 0
                    for a, g in zip(scores["attribute"], scores["group"], strict=True)]
    scores = scores[asked_groups].reset_index(drop=True)
    failed, counts = [], []
    for row in scores.itertuples(index=False):
        question = survey.questions[row.question_id]
        vector: Any
        if row.attribute == POPULATION and row.source in (MODEL, *FLOORS):  # mixed or drawn
            vector, asked = None, None
        elif row.source == MODEL and row.steering.endswith(TEMPERED):  # fitted, not asked
            vector = simulated[row.steering].get((row.question_id, row.attribute, row.group))
            asked = None
        elif row.source == MODEL:
            vector = simulated[row.steering].get((row.question_id, row.attribute, row.group))
            asked = (1 if is_group_method(row.steering)
                     else panel_size.get((row.attribute, row.group), 0))
        elif row.source == "no_persona":
            vector, asked = none.get(row.question_id), no_persona_n
        elif row.source in FLOORS:  # drawn, not asked
            vector, asked = None, None
        else:  # not asked: nothing failed
            vector = (survey.overall(row.question_id) if row.source == "human_overall"
                      else [1.0] * len(question.ordinal) + [0.0] * len(question.refusals))
            asked = None
        answered = 0 if vector is None else int(round(float(np.sum(vector))))
        failed.append(None if asked is None else asked - answered)
        counts.append(_counts(vector))
    scores["sim_failed"] = failed
    scores["counts"] = counts
    if "temperature" not in scores:  # no tempered row
        scores["temperature"] = np.nan
    return scores[SCORE_COLUMNS]


OVERALL = ("per-attribute", "per-group")  # how "overall" weighs its rows (summarise_job)
PER_GROUP_LEVEL = "overall_per_group"  # the summary level of the per-group weighting


def _tempered(survey: Survey, given: dict[Any, Any], none: dict[str, np.ndarray], seed: int,
              steering: str, simulated: dict[str, GroupCounts]) -> pd.DataFrame:
    """The model rows of one steering's panels, tempered with cross-fitted temperatures, under the
    steering name plus ":tempered"; their counts are added to the simulated counts.
    """
    humans = {(qid, a, labels): counts for qid in survey.counts
              for a, labels, counts in survey.groups(qid)}
    tempered, temperatures = cross_fitted(dict(survey.questions), given, humans, seed)
    name = f"{steering}{TEMPERED}"
    simulated[name] = {(q, a, " / ".join(g)): v for (q, a, g), v in tempered.items()}
    table = pd.concat([score_survey(survey, tempered, no_persona=none),
                       score_population(survey, tempered, no_persona=none)], ignore_index=True)
    table = table[table["source"] == MODEL].copy()
    table.insert(4, "steering", name)
    table["temperature"] = table["question_id"].map(temperatures)
    return table


def fitted_temperatures(scores: pd.DataFrame) -> pd.DataFrame:
    """The temperatures that --dispersion temper fitted, per tempered steering.

    Args:
        scores: a job's per question x group x source scores.

    Returns:
        Each steering, its temperature and how many questions were tempered with it; empty
        without tempering.
    """
    columns = ["steering", "temperature", "questions"]
    if "temperature" not in scores:
        return pd.DataFrame(columns=columns)
    rows = scores[scores["temperature"].notna() & (scores["source"] == MODEL)]
    per = rows.drop_duplicates(["steering", "question_id"])
    table = per.groupby(["steering", "temperature"], sort=False)["question_id"].count()
    return table.rename("questions").reset_index()[columns]


def temperature_lines(temperatures: pd.DataFrame) -> list[str]:
    """The fitted temperatures as one console line (nothing without tempering)."""
    if temperatures.empty:
        return []
    halves: dict[str, int] = {}
    cells = []
    for row in temperatures.itertuples(index=False):
        halves[row.steering] = halves.get(row.steering, 0) + 1
        cells.append(f"{row.steering} half {halves[row.steering]}: T={row.temperature:.3g} on "
                     f"its {row.questions} questions")
    return ["dispersion temper: temperatures (each half's fitted on the other half of the "
            "questions): " + ", ".join(cells)]


def summarise_job(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean scores per source and steering: overall, per attribute and per group.

    The overall level weighs each attribute alike, so one of eight groups does not outweigh one of
    two; the overall_per_group level weighs each question x group row alike. Whole-population rows
    get a population level of their own.
    """
    keys = ["source", "steering"]
    population = scores["attribute"] == POPULATION
    scores, mixed = scores[~population], scores[population]
    parts = []
    if not mixed.empty:
        grouped = mixed.groupby([*keys, "attribute", "group"], sort=False)
        means = grouped[list(SCORES)].mean()
        means["scored"] = grouped["representativeness"].count()
        means = means.reset_index()
        means["level"] = "population"
        population_part = [means]
    else:
        population_part = []
    for level, by in ((PER_GROUP_LEVEL, []), ("attribute", ["attribute"]),
                      ("group", ["attribute", "group"])):
        grouped = scores.groupby(keys + by, sort=False)
        means = grouped[list(SCORES)].mean()
        means["scored"] = grouped["representativeness"].count()
        means = means.reset_index()
        means["level"] = level
        for column in ("attribute", "group"):
            if column not in by:
                means[column] = ""
        parts.append(means)
    per_attribute = parts[1].groupby(keys, sort=False)
    overall = per_attribute[list(SCORES)].mean()  # NaN attribute means are left out
    overall["scored"] = per_attribute["scored"].sum()
    overall = overall.reset_index()
    overall["level"], overall["attribute"], overall["group"] = "overall", "", ""
    return pd.concat([overall, *parts, *population_part], ignore_index=True)[SUMMARY_COLUMNS]


def score_job(con: duckdb.DuckDBPyConnection, job_id: str) -> Scored:
    """Score a job's answers and store the scores and their means (replacing earlier ones)."""
    scores = score_tables(con, job_id)
    summary = summarise_job(scores)
    store.replace_scores(con, job_id, _records(scores, job_id, {"group": "grp"}),
                         _records(summary, job_id, {"group": "grp"}))
    return Scored(scores, summary)


def _records(frame: pd.DataFrame, job_id: str, rename: dict[str, str]) -> list[dict[str, Any]]:
    """A frame's rows as plain dicts for the store (NaN as NULL)."""
    frame = frame.rename(columns=rename).astype(object)
    frame = frame.where(pd.notna(frame), None)
    return [{"job_id": job_id, **row} for row in frame.to_dict("records")]


def per_attribute(summary: pd.DataFrame, score: str = "representativeness",
                  overall: str = "per-attribute") -> pd.DataFrame:
    """One row per level, one column per source (the model's steerings first, then the baselines).

    Args:
        summary: a job's means.
        score: which score.
        overall: how the overall row weighs its rows: "per-attribute" (default) or "per-group".

    Returns:
        The table, indexed by attribute.
    """
    if overall not in OVERALL:
        raise ValueError(f"overall must be one of {', '.join(OVERALL)}, not {overall!r}")
    if overall == "per-group":
        summary = summary[summary["level"] != "overall"].replace({"level": {PER_GROUP_LEVEL: "overall"}})
    return per_attribute_table(summary, score)


def dispersion_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The model's entropy and SD ratios overall and per attribute, beside perfect_panel's SD ratio
    (small panels understate the spread a little).
    """
    parts = []
    for score, suffix, sources in (("dispersion", "entropy", (MODEL,)),
                                   ("sd_ratio", "sd", (MODEL, "perfect_panel"))):
        rows = summary[summary["source"].isin(sources)]
        if rows.empty:
            continue
        table = per_attribute_table(rows, score)
        table.columns = [f"{c} {suffix}" for c in table.columns]
        parts.append(table)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1)
    return table[sorted(table.columns, key=lambda c: not c.startswith(MODEL))]


def sd_by_question(scores: pd.DataFrame) -> pd.DataFrame:
    """The model's SD ratio per ordinal question, one column per steering, lowest first."""
    rows = scores[(scores["source"] == MODEL) & scores["sd_ratio"].notna()
                  & (scores["attribute"] != POPULATION)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="question_id", columns="steering", values="sd_ratio",
                             aggfunc="mean", sort=False)
    return table.sort_values(list(table.columns)[0])


def dispersion_lines(table: pd.DataFrame, per_question: pd.DataFrame | None = None,
                     shown: int = 8) -> list[str]:
    """The dispersion table and the most under-dispersed questions, as console lines."""
    if table.empty:
        return []
    lines = table_lines(table, "dispersion (simulated / human: entropy on every question, SD on "
                               "ordinal ones; 1 = as spread as people, below 1 under-dispersed)")
    per_question = pd.DataFrame() if per_question is None else per_question
    for steering in per_question.columns:
        own = per_question[steering].dropna().sort_values()
        cells = [f"{qid} {value:.2f}" for qid, value in own.head(shown).items()]
        lines.append(f"SD ratio per ordinal question, lowest first ({MODEL}[{steering}]): "
                     + ", ".join(cells) + (" ..." if len(own) > shown else ""))
    return lines


def table_lines(table: pd.DataFrame, title: str = "representativeness (1 = as people answer)") -> list[str]:
    """A per-attribute table as fixed-width console lines."""
    if table.empty:
        return ["no group was scored"]
    width = max(9, *(len(str(i)) for i in table.index))
    columns = [str(c) for c in table.columns]
    widths = [max(7, len(c)) for c in columns]
    lines = [title, f"{'attribute':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in
                                                            zip(columns, widths, strict=True))]
    for index, row in table.iterrows():
        cells = ["-" if pd.isna(v) else f"{v:.3f}" for v in row]
        lines.append(f"{str(index):<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in
                                                           zip(cells, widths, strict=True)))
    return lines


def overall_lines(table: pd.DataFrame, per_group: pd.DataFrame) -> list[str]:
    """A console line on how the overall row weighs its rows, with per-group figures when they
    differ.
    """
    if table.empty or per_group.empty:
        return []
    overall = table.loc["overall"].reindex(per_group.columns)
    if ((overall - per_group.iloc[0]).abs() < 5e-4).all():  # one attribute, or sizes alike
        return []
    cells = [f"{c} {v:.3f}" for c, v in per_group.iloc[0].items() if pd.notna(v)]
    return ["overall weighs each attribute alike (the mean of the attribute rows); weighing each "
            "question x group alike instead "
            "(Calibration.per_attribute(overall='per-group')): " + ", ".join(cells)]


def panel_sizes_of(scores: pd.DataFrame) -> pd.DataFrame:
    """Effective panel sizes of the model rows that have a panel (a stated distribution has none).
    """
    from personahub.analysis.calibration_verdict import panel_sizes

    sizes = panel_sizes(scores)
    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    stated = {source_label(MODEL, s, steerings) for s in steerings
              if is_group_method(s) or s.endswith(TEMPERED)}
    return sizes[~sizes["who"].isin(stated)].reset_index(drop=True)


def panel_intervals_of(scores: pd.DataFrame, survey: Survey, seed: int) -> pd.DataFrame:
    """The model's means with an interval over panel answers, for rows with a panel to redraw."""
    from personahub.analysis.calibration_verdict import panel_intervals

    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    skip = [s for s in steerings if is_group_method(s) or s.endswith(TEMPERED)]
    return panel_intervals(scores, survey, seed, skip=skip)


def interval_lines(panel: pd.DataFrame, questions: pd.DataFrame) -> list[str]:
    """One console line per model row: its overall mean with both named 95% intervals."""
    if panel.empty:
        return []
    over_questions = questions.set_index(["attribute", "who"]) if not questions.empty else None
    lines = []
    for row in panel[panel["attribute"] == "overall"].itertuples(index=False):
        cell = ""
        if over_questions is not None and ("overall", row.who) in over_questions.index:
            q = over_questions.loc[("overall", row.who)]
            if pd.notna(q["low"]):
                cell = f"over questions [{q['low']:.3f}, {q['high']:.3f}], "
        lines.append(f"95% intervals of {row.who} overall {row.mean:.3f}: {cell}over panel "
                     f"answers [{row.panel_low:.3f}, {row.panel_high:.3f}] (the same questions, "
                     "each panel redrawn at its size; not stacked: docs/calibration.md)")
    return lines


class _ElicitCalls(Protocol):
    """What elicit_lines reads of a calibration summary."""

    @property
    def elicit(self) -> tuple[str, ...]: ...
    @property
    def calls(self) -> dict[str, int]: ...
    @property
    def answered_calls(self) -> dict[str, int]: ...
    @property
    def cells(self) -> dict[str, int]: ...


def elicit_lines(summary: _ElicitCalls) -> list[str]:
    """Calls per --elicit method and per question x group, as console lines."""
    ks = tuple(getattr(summary, "archetypes", ()))
    if (tuple(summary.elicit) == (SAMPLE,) and not ks) or not summary.calls:
        return []
    cells = []
    for method in (*summary.elicit, *(archetype_method(k) for k in ks)):
        calls, pairs = summary.calls.get(method, 0), summary.cells.get(method, 0)
        if archetype_k(method) is not None:
            per = f", one per question x archetype ({pairs} question x group pairs scored)"
        elif is_group_method(method):  # one call per question x group asked, held-out ones too
            per = (f", one per question x group asked ({pairs} scored)" if calls != pairs
                   else ", one per question x group")
        else:
            per = f", {calls / pairs:.2f} per question x group" if pairs else ""
        failed = calls - summary.answered_calls.get(method, calls)
        cells.append(f"{method} {calls}{per}" + (f" ({failed} failed)" if failed > 0 else ""))
    if summary.calls.get("no_persona"):
        cells.append(f"no_persona baseline {summary.calls['no_persona']}")
    lines = [f"calls per method (--elicit): {'; '.join(cells)}"]
    temperature = getattr(summary, "logprobs_temperature", None)
    if temperature is not None:
        fitted_on = getattr(summary, "logprobs_fit_questions", 0)
        lines.append(f"logprobs: temperature {temperature:.3g}, fitted on {fitted_on} held-out "
                     "questions (not scored in its row)")
        lines += _bound_lines(temperature)
    return lines


def _bound_lines(temperature: float) -> list[str]:
    """A warning when the logprobs temperature stopped at an end of its search."""
    end = at_bound(temperature)
    if end is None:
        return []
    head = (f"warning: logprobs: the temperature stopped at its {end} bound ({temperature:.3g}): "
            "its scaled")
    if end == "upper":
        return [head, "  probabilities are nearly uniform: the raw ones fit the held-out answers "
                "worse than guessing"]
    return [head, "  probabilities put nearly all their mass on one option"]


def size_lines(sizes: pd.DataFrame) -> list[str]:
    """Effective panel sizes (min / median per question x group) as console lines."""
    lines: list[str] = []
    if sizes.empty:
        return lines
    for who, own in sizes.groupby("who", sort=False):
        cells = [f"{row.attribute} {row.min:g}/{row.median:g}" for row in own.itertuples()]
        lines.append(f"effective panel size of {who} (substantive answers per question x group, "
                     f"min/median): {', '.join(cells)}")
    return lines
