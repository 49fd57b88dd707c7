"""A calibration job's scores, from its tables alone: per question x group x source, and means.

Each steering and elicitation method is scored as a model row of its own beside the baselines,
which are scored once. A group no persona matched is scored for no source, so every
source's means cover the same questions and groups. Scoring replaces earlier scores in one
transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
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
from personahub.pipelines.calibrate_archetypes import archetype_k, archetype_method, archetype_methods
from personahub.pipelines.calibrate_data import GroupKey, load_panels, load_survey
from personahub.pipelines.elicit import job_order, parse, parse_all, stated_row
from personahub.pipelines.elicit.base import (
    ElicitMethod,
    GroupCounts,
    Stored,
    split_group_key,
    stated_vector,
)
from personahub.pipelines.elicit.logprobs import LOGPROBS
from personahub.pipelines.elicit.sample import SAMPLE
from personahub.pipelines.elicit.temperature import at_bound

__all__ = ["DISPERSION_CONTROLS", "OVERALL", "SCORE_COLUMNS", "Scored", "dispersion_lines",
           "dispersion_table", "logprobs_temperature", "per_attribute",
           "elicit_lines", "fitted_temperatures", "interval_lines", "overall_lines", "panel_intervals_of",
           "panel_sizes_of", "sd_by_question",
           "score_job", "size_lines", "source_label", "store_scores",
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


NO_CONTROL, TEMPER = "none", "temper"  # --dispersion
DISPERSION_CONTROLS = (NO_CONTROL, TEMPER)
TEMPERED = ":tempered"  # the steering suffix of a tempered model row


@dataclass
class _Job:
    """Hold what scoring reads of a job: its stored answers, methods and rows, and the counts."""

    stored: Stored
    none: dict[str, np.ndarray]  # the no-persona answer counts per question
    no_persona_n: int
    panel_size: dict[GroupKey, int]
    rows: list[tuple[str, ElicitMethod]]  # each model row and its method, in scoring order
    counts: dict[str, GroupCounts]  # each model row's distribution per question x group
    temper: bool  # --dispersion temper


def _stored(con: duckdb.DuckDBPyConnection, job_id: str, seed: int
            ) -> tuple[Stored, dict[str, np.ndarray]]:
    """Read a job's answers: panel counts per steering, group-level answers per row, and the
    no-persona counts per question, aligned with each question's options.
    """
    selected = load_survey(con, job_id)
    questions = selected.survey.questions
    counted: dict[str, GroupCounts] = defaultdict(dict)
    for steering, qid, attribute, grp, answer, n in store.panel_answer_counts(con, job_id):
        vector = counted[steering].setdefault((qid, attribute, grp),
                                              np.zeros(len(questions[qid].options)))
        vector[questions[qid].options.index(answer)] += n
    none: dict[str, np.ndarray] = {}
    for qid, answer, n in store.no_persona_counts(con, job_id):
        none.setdefault(qid, np.zeros(len(questions[qid].options)))[
            questions[qid].options.index(answer)] += n
    stated: dict[str, GroupCounts] = defaultdict(dict)
    for row, qid, key, shares in store.stated_answers(con, job_id):
        attribute, group = split_group_key(key)
        stated[row][(qid, attribute, group)] = stated_vector(questions[qid], shares)
    return Stored(selected.survey, selected.questions, seed, counted, stated, con, job_id,
                  load_panels(con, job_id)), none


def _methods(config: dict[str, Any]) -> tuple[ElicitMethod, ...]:
    """Return a stored config's methods in scoring order, its archetype rows last."""
    elicit = list(config.get("elicit") or [SAMPLE])
    ks = [int(k) for k in config.get("archetypes") or []]
    return (*job_order(parse_all(elicit)), *archetype_methods(ks))


def _job(con: duckdb.DuckDBPyConnection, job_id: str) -> _Job:
    """Read what scoring needs of a job, each method's distributions computed."""
    job = store.job_row(con, job_id)
    config = job.get("config") or {}
    stored, none = _stored(con, job_id, int(job["seed"] or 0))
    methods = _methods(config)
    counts: dict[str, GroupCounts] = defaultdict(dict)
    for method in methods:
        counts.update(method.distributions(stored))
    return _Job(stored, none, int(job["no_persona_n"]),
                {key: len(members) for key, members in stored.panels.items()},
                [(row, m) for m in methods for row in m.rows(list(job["steering"]))], counts,
                (config.get("dispersion") or NO_CONTROL) == TEMPER)


def logprobs_temperature(con: duckdb.DuckDBPyConnection, job_id: str) -> float | None:
    """Return the temperature a job's logprobs row is scaled by (None when it has no such row)."""
    job = store.job_row(con, job_id)
    if LOGPROBS not in list((job.get("config") or {}).get("elicit") or []):
        return None
    stored, _ = _stored(con, job_id, int(job["seed"] or 0))
    return parse(LOGPROBS).fitted(stored)["temperature"]


def _counts(vector: Any) -> str | None:
    return None if vector is None else json.dumps([float(v) for v in vector])


def _row_table(job: _Job, position: int, row: str, method: ElicitMethod,
               given: dict[Any, np.ndarray]) -> pd.DataFrame:
    """Score one model row, with the baselines it carries: the first row all of them, a later
    sampled row those at its panel's size; a method without a panel no panel-size baseline, and
    not the questions it holds out.
    """
    survey, seed = job.stored.survey, job.stored.seed
    table = pd.concat([score_survey(survey, given, no_persona=job.none, seed=seed),
                       score_population(survey, given, no_persona=job.none, seed=seed)],
                      ignore_index=True)
    on_panel = table["source"].isin(PANEL_SOURCES)
    if not method.sampled:
        shown = set(method.held_out(job.stored.questions, seed))
        own = (table["source"] == MODEL) & ~table["question_id"].isin(shown)
        keep = own | (~on_panel if position == 0 else False)
        table, on_panel = table[keep], own[keep]
    elif position > 0:  # the baselines do not depend on the steering: scored once
        table, on_panel = table[on_panel], on_panel[on_panel]
    table.insert(4, "steering", np.where(on_panel, row, ""))
    return table


def _cell(job: _Job, methods: dict[str, ElicitMethod], row: Any
          ) -> tuple[object, int | None]:
    """Return a score row's counts and how many answers it asked for (None: nothing was asked)."""
    survey = job.stored.survey
    if row.attribute == POPULATION and row.source in (MODEL, *FLOORS):  # mixed or drawn
        return None, None
    if row.source == MODEL:
        vector = job.counts[row.steering].get((row.question_id, row.attribute, row.group))
        if row.steering.endswith(TEMPERED):  # fitted, not asked
            return vector, None
        return vector, (job.panel_size.get((row.attribute, row.group), 0)
                        if methods[row.steering].from_panel else 1)
    if row.source == "no_persona":
        return job.none.get(row.question_id), job.no_persona_n
    if row.source in FLOORS:  # drawn, not asked
        return None, None
    question = survey.questions[row.question_id]  # not asked: nothing failed
    return (survey.overall(row.question_id) if row.source == "human_overall"
            else [1.0] * len(question.ordinal) + [0.0] * len(question.refusals)), None


def _given(job: _Job, row: str) -> dict[tuple[str, str, tuple[str, ...]], np.ndarray]:
    """Return a model row's distribution per question x group, as the scores take it."""
    survey, counts = job.stored.survey, job.counts[row]
    model = {(qid, attribute, labels): counts.get((qid, attribute, " / ".join(labels)))
             for qid in survey.questions for attribute, labels, _ in survey.groups(qid)}
    return {k: v for k, v in model.items() if v is not None}


def _asked_groups(scores: pd.DataFrame, panel_size: dict[GroupKey, int]) -> pd.DataFrame:
    """Keep the rows of groups a persona matched, so every source's means cover the same
    questions and groups (whole-population rows mix the groups that were asked).
    """
    asked = [a == POPULATION or panel_size.get((a, g), 0) > 0
             for a, g in zip(scores["attribute"], scores["group"], strict=True)]
    return scores[asked].reset_index(drop=True)


def score_tables(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Score a job's answers per question x group x source, in SCORE_COLUMNS.

    Each model row is its method's distribution per question x group (one per steering for the
    sample method), scored beside the baselines, which are scored once.
    """
    job = _job(con, job_id)
    frames = []
    for position, (row, method) in enumerate(job.rows):
        given = _given(job, row)
        frames.append(_row_table(job, position, row, method, given))
        if job.temper and method.sampled:
            frames.append(_tempered(job.stored.survey, given, job.none, job.stored.seed, row,
                                    job.counts))
    scores = _asked_groups(pd.concat(frames, ignore_index=True), job.panel_size)
    methods = dict(job.rows)
    cells = [_cell(job, methods, row) for row in scores.itertuples(index=False)]
    scores["sim_failed"] = [None if asked is None else asked - _answered(vector)
                            for vector, asked in cells]
    scores["counts"] = [_counts(vector) for vector, _ in cells]
    if "temperature" not in scores:  # no tempered row
        scores["temperature"] = np.nan
    return scores[SCORE_COLUMNS]


def _answered(vector: Any) -> int:
    return 0 if vector is None else int(round(float(np.sum(vector))))


OVERALL = ("per-attribute", "per-group")  # how "overall" weighs its rows (summarise_job)
PER_GROUP_LEVEL = "overall_per_group"  # the summary level of the per-group weighting


def _tempered(survey: Survey, given: dict[Any, Any], none: dict[str, np.ndarray], seed: int,
              steering: str, simulated: dict[str, GroupCounts]) -> pd.DataFrame:
    """Return the model rows of one steering's panels, tempered with cross-fitted temperatures, under the
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
    """Return the temperatures that --dispersion temper fitted, per tempered steering.

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
    """Return the fitted temperatures as one console line (nothing without tempering)."""
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
    return store_scores(con, job_id, score_tables(con, job_id))


def store_scores(con: duckdb.DuckDBPyConnection, job_id: str, scores: pd.DataFrame) -> Scored:
    """Store a job's scores (in SCORE_COLUMNS) and their means, replacing earlier ones."""
    summary = summarise_job(scores)
    store.replace_scores(con, job_id, _records(scores, job_id, {"group": "grp"}),
                         _records(summary, job_id, {"group": "grp"}))
    return Scored(scores, summary)


def _records(frame: pd.DataFrame, job_id: str, rename: dict[str, str]) -> list[dict[str, object]]:
    """Return a frame's rows as plain dicts for the store (NaN as NULL)."""
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
    """Return the model's entropy and SD ratios overall and per attribute, beside perfect_panel's SD ratio
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
    """Return the model's SD ratio per ordinal question, one column per steering, lowest first."""
    rows = scores[(scores["source"] == MODEL) & scores["sd_ratio"].notna()
                  & (scores["attribute"] != POPULATION)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="question_id", columns="steering", values="sd_ratio",
                             aggfunc="mean", sort=False)
    return table.sort_values(list(table.columns)[0])


def dispersion_lines(table: pd.DataFrame, per_question: pd.DataFrame | None = None,
                     shown: int = 8) -> list[str]:
    """Return the dispersion table and the most under-dispersed questions, as console lines."""
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
    """Return a per-attribute table as fixed-width console lines."""
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
    """Return a console line on how the overall row weighs its rows, with per-group figures when they
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


def _no_panel(steering: str) -> bool:
    """Whether a model row has no panel of answers to size or redraw: a stated distribution, a
    tempered panel, or a fit's profile (expected shares).
    """
    return stated_row(steering) or steering.endswith(TEMPERED) or steering == store.FITTED_ROW


def panel_sizes_of(scores: pd.DataFrame) -> pd.DataFrame:
    """Effective panel sizes of the model rows that have a panel (a stated distribution has none).
    """
    from personahub.analysis.calibration_verdict import panel_sizes

    sizes = panel_sizes(scores)
    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    stated = {source_label(MODEL, s, steerings) for s in steerings if _no_panel(s)}
    return sizes[~sizes["who"].isin(stated)].reset_index(drop=True)


def panel_intervals_of(scores: pd.DataFrame, survey: Survey, seed: int) -> pd.DataFrame:
    """Return the model's means with an interval over panel answers, for rows with a panel to redraw."""
    from personahub.analysis.calibration_verdict import panel_intervals

    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    skip = [s for s in steerings if _no_panel(s)]
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
    """Return the calls per --elicit method and per question x group, as console lines."""
    ks = tuple(getattr(summary, "archetypes", ()))
    if (tuple(summary.elicit) == (SAMPLE,) and not ks) or not summary.calls:
        return []
    cells = []
    for method in (*summary.elicit, *(archetype_method(k) for k in ks)):
        calls, pairs = summary.calls.get(method, 0), summary.cells.get(method, 0)
        if archetype_k(method) is not None:
            per = f", one per question x archetype ({pairs} question x group pairs scored)"
        elif stated_row(method):  # one call per question x group asked, held-out ones too
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
    """Return a warning when the logprobs temperature stopped at an end of its search."""
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
