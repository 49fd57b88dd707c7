"""A calibration's HTML report (``personahub report --calibration ID``; matplotlib, Agg).

Read from the job's tables alone. The group bars set the model beside the baselines, so a group
where it does not beat human_overall shows at once.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import matplotlib
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_profile_view import profile_html
from personahub.analysis.calibration_ranking import ranking_html
from personahub.analysis.calibration_scores import (
    FLOORS,
    MODEL,
    SCORES,
    source_label,
)
from personahub.analysis.calibration_verdict import (
    archetype_verdicts,
    intervals,
    is_stated,
    panel_sizes,
    verdict,
)
from personahub.analysis.figures import subplots
from personahub.analysis.report import LITERAL_TEXT
from personahub.analysis.report_header import engine_text
from personahub.analysis.report_page import page_head, save_figure
from personahub.core.errors import PersonahubError
from personahub.core.outputs import atomic_file, staged_folder

__all__ = ["BASELINES", "CALIBRATION_FILES", "answer_bars", "group_bars", "group_marks",
           "per_attribute_table", "source_label", "write_calibration_report"]

CALIBRATION_FILES = ("index.html", "calibration_groups.png", "calibration_answers.png")
BASELINES = ("uniform", "human_overall", "no_persona")
MAX_QUESTIONS = 6  # questions drawn in the answers chart (the table has them all)


def column_order(steerings: Sequence[str]) -> list[str]:
    """Return the sources' columns: the model per steering, the baselines, then the ceilings."""
    return ([source_label(MODEL, s, steerings) for s in steerings] + list(BASELINES)
            + ["human_resample"]
            + [source_label(f, s, steerings) for f in FLOORS[1:] for s in steerings])


def group_bars(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Mean representativeness per group, one column per source."""
    summary = store.summary_frame(con, job_id)
    rows = summary[summary["level"] == "group"].copy()
    if rows.empty:
        return pd.DataFrame()
    steerings = list(dict.fromkeys(rows.loc[rows["source"] == MODEL, "steering"]))
    rows["who"] = [source_label(s, t, steerings) for s, t in zip(rows["source"], rows["steering"],
                                                        strict=True)]
    rows["name"] = rows["attribute"] + "=" + rows["group"]
    table = rows.pivot_table(index="name", columns="who", values="representativeness",
                             sort=False, dropna=False)
    order = [source_label(MODEL, s, steerings) for s in steerings] + list(BASELINES)
    table = table.reindex(columns=[c for c in order if c in table.columns])
    table.index.name, table.columns.name = "group", None
    return table


def group_marks(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Per group, the two ceilings drawn beside its bars: the best the data allows and the best at
    the model's panel size."""
    summary = store.summary_frame(con, job_id)
    rows = summary[(summary["level"] == "group")
                   & summary["source"].isin(["human_resample", "perfect_panel"])].copy()
    if rows.empty:
        return pd.DataFrame(columns=["human_resample", "perfect_panel"])
    first = rows.loc[rows["source"] == "perfect_panel", "steering"]
    if len(first):
        rows = rows[(rows["source"] != "perfect_panel") | (rows["steering"] == first.iloc[0])]
    rows["name"] = rows["attribute"] + "=" + rows["group"]
    table = rows.pivot_table(index="name", columns="source", values="representativeness",
                             sort=False, dropna=False)
    table.index.name, table.columns.name = "group", None
    return table.reindex(columns=["human_resample", "perfect_panel"])


@dataclass(frozen=True)
class QuestionBars:
    """One question's stacked bars: labels (top to bottom) and their option shares."""

    question_id: str
    text: str
    options: tuple[str, ...]  # the substantive options
    labels: list[str]
    shares: np.ndarray  # rows sum to 1 (or 0: no answer)


def _shares(counts: object, k: int) -> np.ndarray:
    vector = np.asarray(json.loads(counts) if isinstance(counts, str) else counts, float)[:k]
    total = vector.sum()
    return vector / total if total > 0 else np.zeros(k)


def answer_bars(con: duckdb.DuckDBPyConnection, job_id: str,
                limit: int = MAX_QUESTIONS) -> list[QuestionBars]:
    """Per question: everyone's and the no-persona answers, then each group's people and panel, as
    shares of the substantive options.
    """
    scores = store.scores_frame(con, job_id)
    questions = store.question_rows(con, job_id)[:limit]
    human = {(q, a, json.loads(labels) and " / ".join(json.loads(labels))): counts
             for q, a, labels, counts in store.human_rows(con, job_id)}
    bars = []
    for qid, text, options_json, ordinal_json in questions:
        k = len(json.loads(ordinal_json))
        options = tuple(json.loads(options_json)[:k])
        mine = scores[scores["question_id"] == qid]
        labels, shares = [], []
        overall = [c for (q, a, _), c in human.items() if q == qid and a == "Overall"]
        if overall:
            labels.append("everyone · people")
            shares.append(_shares(overall[0], k))
        none = mine[mine["source"] == "no_persona"]["counts"].dropna()
        if len(none):
            labels.append("no persona · model")
            shares.append(_shares(none.iloc[0], k))
        model = mine[mine["source"] == MODEL]
        first = model["steering"].iloc[0] if len(model) else ""
        for row in model[model["steering"] == first].itertuples(index=False):
            name = f"{row.attribute}={row.group}"
            labels += [f"{name} · people", f"{name} · model"]
            shares += [_shares(human.get((qid, row.attribute, row.group), [0] * k), k),
                       _shares(row.counts if isinstance(row.counts, str) else [0] * k, k)]
        bars.append(QuestionBars(qid, text, options, labels,
                                 np.vstack(shares) if shares else np.zeros((0, k))))
    return bars


MARKS = {"human_resample": ("|", "black", "best the data allows (human_resample)"),
         "perfect_panel": ("D", "dimgray", "best at this panel size (perfect_panel)")}


def _draw_groups(table: pd.DataFrame, path: Path, marks: pd.DataFrame | None = None) -> None:
    height = max(2.5, 0.28 * len(table) * max(1, len(table.columns)) ** 0.5 + 1.2)
    fig, ax = subplots(figsize=(8, height))
    width = 0.8 / max(1, len(table.columns))
    y = np.arange(len(table))
    for i, column in enumerate(table.columns):
        ax.barh(y + i * width, table[column].to_numpy(float), height=width, label=str(column))
    if marks is not None and not marks.empty:
        centre = y + width * (len(table.columns) - 1) / 2
        placed = marks.reindex(table.index)
        for source, (marker, colour, label) in MARKS.items():
            values = placed[source].to_numpy(float)
            if np.isfinite(values).any():
                ax.scatter(values, centre, marker=marker, color=colour, s=60, zorder=3,
                           label=label)
    ax.set_yticks(y + width * (len(table.columns) - 1) / 2, [str(i) for i in table.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("representativeness (1 = as people answer)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(fig, path)


def _draw_answers(bars: list[QuestionBars], path: Path) -> None:
    heights = [max(1.2, 0.25 * len(b.labels) + 0.8) for b in bars]
    fig, axes = subplots(len(bars), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, bar in zip(axes[:, 0], bars, strict=True):
        left = np.zeros(len(bar.labels))
        colours = matplotlib.colormaps["RdYlBu"](np.linspace(0.1, 0.9, max(2, len(bar.options))))
        for j, option in enumerate(bar.options):
            ax.barh(bar.labels, bar.shares[:, j], left=left, color=colours[j], label=option)
            left += bar.shares[:, j]
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{bar.question_id}: {bar.text[:90]}", fontsize=9, loc="left")
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(fig, path)


def _facts(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[str, str]]:
    job = store.job_row(con, job_id)
    answered, refused = store.answer_totals(con, job_id)
    return [("calibration", job_id), ("survey", str(job["survey"])),
            ("population", f"{job['population']} (n={job['n']} per group, "
                           f"{job['no_persona_n']} no-persona asks per question)"),
            ("steering", ", ".join(job["steering"])), ("seed", str(job["seed"])),
            ("engine", engine_text(job["llm"])), ("status", str(job["status"])),
            ("answers", f"{answered:,} ({refused:,} refusals, left out of the scores)")]


def _table_html(table: pd.DataFrame, title: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in ["attribute", *table.columns])
    body = "".join("<tr>" + f"<td>{esc(str(i))}</td>" + "".join(
        f"<td>{'-' if pd.isna(v) else f'{v:.3f}'}</td>" for v in row) + "</tr>"
        for i, row in table.iterrows())
    return f"<h3>{esc(title)}</h3><table><tr>{head}</tr>{body}</table>"


def _verdict_html(scores: pd.DataFrame, seed: int) -> list[str]:
    """Return the verdict lines and each source's mean with its interval over questions (the panel interval
    needs the survey file, which the report does not read).
    """
    esc = html.escape
    if scores.empty:
        return []
    lines = "".join(f"<li>{esc(line)}</li>" for line in verdict(scores, seed))
    table = intervals(scores, seed)
    rows = "".join(
        f"<tr><td>{esc(str(r.attribute))}</td><td>{esc(str(r.who))}</td><td>{r.mean:.3f}</td>"
        f"<td>{r.low:.3f} to {r.high:.3f}</td><td>{r.questions}</td></tr>"
        for r in table.itertuples())
    return ["<h2>Verdict</h2>", f"<ul>{lines}</ul>",
            "<h3>Representativeness with its 95% interval over questions</h3>",
            "<table><tr><th>level</th><th>source</th><th>mean</th><th>95% CI</th>"
            f"<th>questions</th></tr>{rows}</table>"]


def _sizes_html(scores: pd.DataFrame) -> list[str]:
    """Return the model's effective panel sizes per attribute (substantive answers per question x
    group: min and median), as on the console under -v."""
    esc = html.escape
    model = scores[scores["source"] == MODEL] if not scores.empty else scores
    stated = [steering for steering, own in model.groupby("steering", sort=False)
              if steering.endswith(":tempered")
              or is_stated([json.loads(c) for c in own["counts"] if isinstance(c, str)])]
    scores = scores[~scores["steering"].isin(stated)] if stated else scores  # no panel of answers
    sizes = panel_sizes(scores) if not scores.empty else pd.DataFrame()
    if sizes.empty:
        return []
    rows = "".join(f"<tr><td>{esc(str(r.who))}</td><td>{esc(str(r.attribute))}</td>"
                   f"<td>{r.min:g}</td><td>{r.median:g}</td></tr>" for r in sizes.itertuples())
    return ["<h3>Effective panel size (substantive answers per question x group)</h3>",
            "<table><tr><th>source</th><th>level</th><th>min</th><th>median</th></tr>"
            f"{rows}</table>"]


def _price_html(scores: pd.DataFrame, price: pd.DataFrame | None, seed: int) -> list[str]:
    """Return the price of archetypes: its verdict in words, then the table per K and group."""
    esc = html.escape
    if price is None or price.empty:
        return []
    said = "".join(f"<li>{esc(line)}</li>" for line in archetype_verdicts(scores, price, seed))
    columns = ["method", "attribute", "group", "similarity", "tvd", "archetype_refusal",
               "sample_refusal", "archetype_representativeness", "sample_representativeness",
               "human_resample", "calls", "sample_calls"]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{esc(str(v))}</td>"
        for v in (getattr(r, c) for c in columns)) + "</tr>" for r in price.itertuples())
    return ["<h2>The price of archetypes</h2>", f"<ul>{said}</ul>",
            f"<table><tr>{head}</tr>{body}</table>"]


def _html(job_id: str, facts: list[tuple[str, str]], images: list[tuple[str, str, str]],
          tables: list[str], judged: list[str]) -> str:
    title = f"personahub report — calibration {job_id}"
    parts = page_head(title, facts, images)
    parts += [*judged, "<h2>Scores per attribute</h2>", *tables, "</body></html>"]
    return "\n".join(parts)


def write_calibration_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path, job_id: str,
                             *, overwrite: bool = False, price: pd.DataFrame | None = None) -> Path:
    """Write the calibration's index.html and charts into a folder, all or nothing.

    Args:
        con: the database holding the calibration.
        out_dir: the folder to write.
        job_id: the calibration.
        overwrite: replace an earlier report's files.
        price: its archetype price table (``Calibration.archetype_price()``), shown with its
            verdict in words; None or empty: no such section.

    Returns:
        The path of index.html.
    """
    if not store.calibration_exists(con, job_id):
        raise PersonahubError(f"--calibration {job_id}: not found in the database "
                              "(personahub calibrations lists them)")
    summary = store.summary_frame(con, job_id)
    if summary.empty:
        raise PersonahubError(f"--calibration {job_id}: no scores yet (resume it first: "
                              f"personahub resume {job_id})")
    groups, bars = group_bars(con, job_id), answer_bars(con, job_id)
    images = []
    with staged_folder(Path(out_dir), overwrite=overwrite, names=CALIBRATION_FILES) as staged, \
            matplotlib.rc_context(LITERAL_TEXT):
        if not groups.empty:
            _draw_groups(groups, staged / "calibration_groups.png", group_marks(con, job_id))
        images.append(("Representativeness per group", "calibration_groups.png"
                       if not groups.empty else "", "The model beside the baselines, per group: "
                       "uniform (guessing), human_overall (knows the question, not the group), "
                       "no_persona (the model without a persona). Marks, two ceilings: | the best "
                       "the data allows (the people's own answers resampled at their size), ◆ "
                       "the best at this panel size (what a perfect simulator scores with this "
                       "many answers); the lower of the two is the one a model can reach."))
        if bars:
            _draw_answers(bars, staged / "calibration_answers.png")
        images.append(("Answers: people against the simulated panel", "calibration_answers.png"
                       if bars else "", f"The first {len(bars)} questions, shares of the "
                       "substantive options (refusals left out)."))
        tables = [_table_html(per_attribute_table(summary, score), score) for score in SCORES]
        scores = store.scores_frame(con, job_id)
        seed = int(store.job_row(con, job_id)["seed"] or 0)
        judged = [*profile_html(con, job_id), *_verdict_html(scores, seed),
                  *_price_html(scores, price, seed), *_sizes_html(scores),
                  *ranking_html(con, job_id, scores)]
        with atomic_file(staged / "index.html", overwrite=False) as f:
            f.write(_html(job_id, _facts(con, job_id), images, tables, judged))
    return Path(out_dir) / "index.html"


def per_attribute_table(summary: pd.DataFrame, score: str) -> pd.DataFrame:
    """One row overall, per attribute and per whole-population mixture; one column per source."""
    rows = summary[summary["level"].isin(["overall", "attribute", "population"])].copy()
    steerings = list(dict.fromkeys(rows.loc[rows["source"] == MODEL, "steering"]))
    rows["who"] = [source_label(s, t, steerings) for s, t in zip(rows["source"], rows["steering"],
                                                        strict=True)]
    rows["where"] = np.where(rows["level"] == "overall", "overall",
                             np.where(rows["level"] == "population",
                                      "population by " + rows["group"].astype(str),
                                      rows["attribute"]))
    table = rows.pivot_table(index="where", columns="who", values=score, sort=False, dropna=False)
    order = column_order(steerings)
    table = table.reindex(columns=[c for c in order if c in table.columns])
    places = list(dict.fromkeys(rows["where"]))
    table = table.reindex(["overall", *[p for p in places if p != "overall"]])
    table.index.name = "attribute"
    table.columns.name = None
    return table
