"""A calibration job's scores, from its tables alone: per question x group x source, and their
means overall, per attribute and per group (``calibration_scores``, ``calibration_summary``).

The simulated counts of a group are the answers of its panel's personas (a persona in several
groups counts in each); each steering is scored as a ``model`` row of its own, beside the three
baselines, which do not depend on it and are scored once (``analysis.calibration_scores``: the
metrics, refusals left out as OpinionQA does). ``sim_failed`` counts the panel's asks without an
answer. A group no persona matched (an empty panel) is not scored for any source, so the means
of the model and the baselines are over the same questions and groups. Scoring replaces the
job's earlier scores in one transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_report import per_attribute_table, source_label
from personahub.analysis.calibration_scores import FLOORS, MODEL, PANEL_SOURCES, SCORES, score_survey
from personahub.pipelines.calibrate_archetypes import (
    archetype_counts,
    archetype_k,
    archetype_method,
    demographics_of,
)
from personahub.pipelines.calibrate_data import load_panels, load_survey, panel_personas
from personahub.pipelines.calibrate_elicit import (
    SAMPLE,
    held_out,
    is_group_method,
    split_group_key,
    stated_vector,
)

__all__ = ["SCORE_COLUMNS", "Scored", "dispersion_lines", "dispersion_table", "per_attribute",
           "elicit_lines", "panel_sizes_of", "sd_by_question",
           "score_job", "size_lines", "source_label",
           "summarise_job", "table_lines"]

SCORE_COLUMNS = ["question_id", "attribute", "group", "source", "steering", "metric", *SCORES,
                 "human_n", "sim_n", "sim_failed", "human_refusal", "sim_refusal", "counts"]
SUMMARY_COLUMNS = ["source", "steering", "level", "attribute", "group", *SCORES, "scored"]


@dataclass(frozen=True)
class Scored:
    """A job's scores (one row per question x group x source) and their means."""

    scores: pd.DataFrame
    summary: pd.DataFrame


GroupCounts = dict[tuple[str, str, str], np.ndarray]


def _simulated(con: duckdb.DuckDBPyConnection, job_id: str, survey_questions: dict[str, Any]
               ) -> tuple[dict[str, GroupCounts], dict[str, np.ndarray]]:
    """Counts per steering (or group-level method: its stated shares) and (question,
    attribute, group), and the no-persona counts per question, aligned with each question's
    options."""
    options = {qid: q.options for qid, q in survey_questions.items()}
    groups: dict[str, GroupCounts] = defaultdict(dict)
    for steering, qid, attribute, grp, answer, n in store.panel_answer_counts(con, job_id):
        vector = groups[steering].setdefault((qid, attribute, grp), np.zeros(len(options[qid])))
        vector[options[qid].index(answer)] += n
    none: dict[str, np.ndarray] = {}
    for qid, answer, n in store.no_persona_counts(con, job_id):
        none.setdefault(qid, np.zeros(len(options[qid])))[options[qid].index(answer)] += n
    for method, qid, key, shares in store.stated_answers(con, job_id):
        if archetype_k(method) is not None:  # its members' draws: _archetype_rows
            continue
        attribute, group = split_group_key(key)
        groups[method][(qid, attribute, group)] = stated_vector(survey_questions[qid], shares)
    return groups, none


def _counts(vector: Any) -> str | None:
    return None if vector is None else json.dumps([float(v) for v in vector])


def score_tables(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """The job's per question x group x source scores (``SCORE_COLUMNS``)."""
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
    ks = [int(k) for k in (job.get("config") or {}).get("archetypes") or []]
    if ks:  # each member's answer drawn from its archetype's stated shares
        personas = {pid: (p.text, demographics_of(p.attributes))
                    for pid, p in panel_personas(con, panels).items()}
        simulated.update(archetype_counts(con, job_id, dict(survey.questions), panels, personas,
                                          ks, seed))
    # one model row per steering (asked one answer per persona), then per group-level method,
    # then per --archetypes K
    rows = ([s for s in steerings] if SAMPLE in elicit else []) + [
        m for m in elicit if is_group_method(m)] + [archetype_method(k) for k in ks]
    frames = []
    for position, steering in enumerate(rows):
        model = {(qid, attribute, labels): simulated[steering].get((qid, attribute, " / ".join(labels)))
                 for qid in survey.questions for attribute, labels, _ in survey.groups(qid)}
        table = score_survey(survey, {k: v for k, v in model.items() if v is not None},
                             no_persona=none, seed=seed)
        on_panel = table["source"].isin(PANEL_SOURCES)
        if is_group_method(steering) or archetype_k(steering) is not None:
            # a stated distribution (or an archetype's draws) has no panel: no perfect_panel
            # at its size; a few-shot row's shown questions are held out of its score
            shown = set(held_out(steering, selected.questions, seed))
            own = (table["source"] == MODEL) & ~table["question_id"].isin(shown)
            keep = own | (~on_panel if position == 0 else False)
            table, on_panel = table[keep], own[keep]
        elif position > 0:  # the baselines do not depend on the steering: scored once
            table, on_panel = table[on_panel], on_panel[on_panel]
        table.insert(4, "steering", np.where(on_panel, steering, ""))
        frames.append(table)
    scores = pd.concat(frames, ignore_index=True)
    # a group no persona matched is not scored, for the baselines either: every source's means
    # are over the same questions and groups
    asked_groups = [panel_size.get((a, g), 0) > 0 for a, g in zip(scores["attribute"],
                                                                  scores["group"], strict=True)]
    scores = scores[asked_groups].reset_index(drop=True)
    failed, counts = [], []
    for row in scores.itertuples(index=False):
        question = survey.questions[row.question_id]
        vector: Any
        if row.source == MODEL:
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
    return scores[SCORE_COLUMNS]


def summarise_job(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean scores per source and steering: overall, per attribute and per group
    (``SUMMARY_COLUMNS``; ``scored`` counts the rows with a representativeness)."""
    keys = ["source", "steering"]
    parts = []
    for level, by in (("overall", []), ("attribute", ["attribute"]), ("group", ["attribute", "group"])):
        grouped = scores.groupby(keys + by, sort=False)
        means = grouped[list(SCORES)].mean()
        means["scored"] = grouped["representativeness"].count()
        means = means.reset_index()
        means["level"] = level
        for column in ("attribute", "group"):
            if column not in by:
                means[column] = ""
        parts.append(means)
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


def score_job(con: duckdb.DuckDBPyConnection, job_id: str) -> Scored:
    """Score a job's answers and store the scores and their means (replacing earlier ones)."""
    scores = score_tables(con, job_id)
    summary = summarise_job(scores)
    store.replace_scores(con, job_id, _records(scores, job_id, {"group": "grp"}),
                         _records(summary, job_id, {"group": "grp"}))
    return Scored(scores, summary)


def _records(frame: pd.DataFrame, job_id: str, rename: dict[str, str]) -> list[dict[str, Any]]:
    """A frame's rows as plain dicts for ``insert_rows`` (NaN as NULL)."""
    frame = frame.rename(columns=rename).astype(object)
    frame = frame.where(pd.notna(frame), None)
    return [{"job_id": job_id, **row} for row in frame.to_dict("records")]


def per_attribute(summary: pd.DataFrame, score: str = "representativeness") -> pd.DataFrame:
    """One row per level (``overall``, then each attribute), one column per source: the model
    under each steering first, then the baselines."""
    return per_attribute_table(summary, score)


def dispersion_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The model's dispersion overall and per attribute: the entropy ratio (every question) and
    the SD ratio (ordinal questions) per steering, beside the SD ratio of ``perfect_panel`` (a
    perfect simulator with as few answers: small panels understate the spread a little)."""
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
    """The model's SD ratio per ordinal question (its mean over the question's groups), one
    column per steering, lowest first."""
    rows = scores[(scores["source"] == MODEL) & scores["sd_ratio"].notna()]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="question_id", columns="steering", values="sd_ratio",
                             aggfunc="mean", sort=False)
    return table.sort_values(list(table.columns)[0])


def dispersion_lines(table: pd.DataFrame, per_question: pd.DataFrame | None = None,
                     shown: int = 8) -> list[str]:
    """The dispersion table, and the ``shown`` most under-dispersed questions per steering, as
    console lines (nothing when nothing was scored)."""
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


def panel_sizes_of(scores: pd.DataFrame) -> pd.DataFrame:
    """The effective panel sizes (``analysis.calibration_verdict.panel_sizes``) of the model
    rows that have a panel: a stated distribution (``--elicit distribution``) has none."""
    from personahub.analysis.calibration_verdict import panel_sizes

    sizes = panel_sizes(scores)
    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    stated = {source_label(MODEL, s, steerings) for s in steerings if is_group_method(s)}
    return sizes[~sizes["who"].isin(stated)].reset_index(drop=True)


def elicit_lines(summary: Any) -> list[str]:
    """Calls per elicitation method (``--elicit``), and per question x group it scores, as
    console lines (a ``CalibrationSummary``; nothing for a plain one-sample-per-persona job)."""
    ks = tuple(getattr(summary, "archetypes", ()))
    if (tuple(summary.elicit) == (SAMPLE,) and not ks) or not summary.calls:
        return []
    cells = []
    for method in (*summary.elicit, *(archetype_method(k) for k in ks)):
        calls, pairs = summary.calls.get(method, 0), summary.cells.get(method, 0)
        per = f", {calls / pairs:.2f} per question x group" if pairs else ""
        failed = calls - summary.answered_calls.get(method, calls)
        cells.append(f"{method} {calls}{per}" + (f" ({failed} failed)" if failed > 0 else ""))
    if summary.calls.get("no_persona"):
        cells.append(f"no_persona baseline {summary.calls['no_persona']}")
    return [f"calls per method (--elicit): {'; '.join(cells)}"]


def size_lines(sizes: pd.DataFrame) -> list[str]:
    """The effective panel sizes (``analysis.calibration_verdict.panel_sizes``) as console
    lines: min / median substantive answers per question x group, overall and per attribute."""
    lines: list[str] = []
    if sizes.empty:
        return lines
    for who, own in sizes.groupby("who", sort=False):
        cells = [f"{row.attribute} {row.min:g}/{row.median:g}" for row in own.itertuples()]
        lines.append(f"effective panel size of {who} (substantive answers per question x group, "
                     f"min/median): {', '.join(cells)}")
    return lines
