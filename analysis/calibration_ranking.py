"""Ranking alignment: does a simulated group choose what its people choose most, and rank the
options as they do?

Distribution scores alone can hide a simulation that scores well and still misses the option
people prefer (RADIUS, arXiv 2603.19002). For each question x group and each source with answers
(each model row, no_persona, human_overall), two things are read from its shares and the people's,
over the substantive options:

- the top option: a hit when the source's single most-chosen option is one of the people's
  most-chosen (a source whose top is tied is left out: it names no preference); its chance is
  the people's most-chosen options over the options. Hits are tested against chance with an
  exact one-sided Poisson-binomial test (`scipy.stats.poisson_binom`), the pairs taken as
  independent;
- the rank order: Kendall's tau-b between the two share vectors (`scipy.stats.kendalltau`; left
  out when either is constant). Its mean is tested above 0 with a one-sided Wilcoxon
  signed-rank test over the pairs (`scipy.stats.wilcoxon`, zero taus dropped).

uniform has neither a top nor an order and is not listed.
"""

from __future__ import annotations

import html
import json

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import kendalltau, poisson_binom, wilcoxon

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_scores import FLOORS, MODEL, POPULATION, source_label, split
from personahub.analysis.survey import Question, Survey

__all__ = ["CELL_COLUMNS", "SUMMARY_COLUMNS", "ranking_cells", "ranking_html", "ranking_lines",
           "ranking_summary", "ranking_verdict", "stored_survey"]

CELL_COLUMNS = ["who", "question_id", "attribute", "group", "options", "top_hit", "chance",
                "tau", "tau_p"]
SUMMARY_COLUMNS = ["who", "pairs", "hits", "accuracy", "chance", "top_p", "ranked", "mean_tau",
                   "rank_p"]
UNRANKED = ("uniform", *FLOORS)  # no answers of their own to rank
TIE = 1e-12


def _tops(shares: np.ndarray) -> np.ndarray:
    return np.flatnonzero(shares >= shares.max() - TIE)


def _cell(sim: np.ndarray, human: np.ndarray) -> dict[str, float]:
    """One question x group: top hit (NaN when the source's top is tied), chance, tau and its p."""
    sim_tops, human_tops = _tops(sim), set(_tops(human).tolist())
    hit = float("nan") if len(sim_tops) != 1 else float(int(sim_tops[0]) in human_tops)
    tau = p = float("nan")
    if np.ptp(sim) > TIE and np.ptp(human) > TIE:
        result = kendalltau(sim, human)
        tau, p = float(result.statistic), float(result.pvalue)
    return {"top_hit": hit, "chance": len(human_tops) / len(human), "tau": tau, "tau_p": p}


def ranking_cells(scores: pd.DataFrame, survey: Survey) -> pd.DataFrame:
    """Each question x group and source's top hit and rank correlation, from a score table.

    Args:
        scores: a calibration's per question x group x source scores (with their counts).
        survey: the people's answers (the job's stored survey).

    Returns:
        One row per question x group and source with answers, in CELL_COLUMNS.
    """
    humans = {(qid, attribute, " / ".join(labels)): counts for qid in survey.counts
              for attribute, labels, counts in survey.groups(qid)}
    rows = scores[(scores["attribute"] != POPULATION) & ~scores["source"].isin(UNRANKED)
                  & scores["counts"].map(lambda c: isinstance(c, str)).astype(bool)]
    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    out = []
    for row in rows.itertuples(index=False):
        question = survey.questions.get(row.question_id)
        human = humans.get((row.question_id, row.attribute, row.group))
        if question is None or human is None:
            continue
        sim, people = split(question, json.loads(row.counts)), split(question, human)
        if sim.distribution is None or people.distribution is None:
            continue
        out.append({"who": source_label(row.source, row.steering or "", steerings),
                    "question_id": row.question_id, "attribute": row.attribute,
                    "group": row.group, "options": len(question.ordinal),
                    **_cell(sim.distribution, people.distribution)})
    return pd.DataFrame(out, columns=CELL_COLUMNS)


def _top_p(hits: int, chances: np.ndarray) -> float:
    """P(at least this many hits) when each pair hits by chance alone, independently."""
    return float(poisson_binom.sf(hits - 1, chances)) if len(chances) else float("nan")


def _rank_p(taus: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p of the taus above 0 (NaN without a non-zero tau)."""
    if not np.any(np.abs(taus) > TIE):
        return float("nan")
    return float(wilcoxon(taus, alternative="greater", zero_method="wilcox").pvalue)


def ranking_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per source: top-option hits against chance and the mean rank correlation, each with its p.

    Args:
        cells: ranking_cells' table.

    Returns:
        One row per source in SUMMARY_COLUMNS: pairs with a top, hits, accuracy, mean chance and
        the exact test's p; pairs with a tau, their mean and the Wilcoxon test's p.
    """
    rows = []
    for who, own in cells.groupby("who", sort=False):
        topped = own.dropna(subset=["top_hit"])
        hits = int(topped["top_hit"].sum())
        chances = topped["chance"].to_numpy(float)
        taus = own["tau"].dropna().to_numpy(float)
        rows.append({"who": who, "pairs": len(topped), "hits": hits,
                     "accuracy": hits / len(topped) if len(topped) else float("nan"),
                     "chance": float(chances.mean()) if len(chances) else float("nan"),
                     "top_p": _top_p(hits, chances), "ranked": len(taus),
                     "mean_tau": float(taus.mean()) if len(taus) else float("nan"),
                     "rank_p": _rank_p(taus)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _number(value: float, form: str = ".3f") -> str:
    return "-" if pd.isna(value) else format(value, form)


def ranking_lines(summary: pd.DataFrame) -> list[str]:
    """Return the ranking table as console lines (nothing without a source to rank)."""
    if summary.empty:
        return []
    width = max(9, *(len(str(w)) for w in summary["who"]))
    lines = ["ranking (per question x group: is the most-chosen option people's, and do the "
             "options rank as theirs? p: one-sided, top against chance by an exact test, tau "
             "above 0 by Wilcoxon signed-rank)",
             f"{'source':<{width}}  {'top hits':>10}  {'accuracy':>8}  {'chance':>6}  "
             f"{'p':>6}  {'mean tau':>8}  {'pairs':>5}  {'p':>6}"]
    for row in summary.itertuples(index=False):
        lines.append(f"{str(row.who):<{width}}  {f'{row.hits}/{row.pairs}':>10}  "
                     f"{_number(row.accuracy):>8}  {_number(row.chance, '.2f'):>6}  "
                     f"{_number(row.top_p):>6}  {_number(row.mean_tau):>8}  {row.ranked:>5}  "
                     f"{_number(row.rank_p):>6}")
    return lines


def ranking_verdict(summary: pd.DataFrame, level: float = 0.05) -> list[str]:
    """Return the model rows' ranking in plain sentences: top option against chance, rank correlation."""
    lines = []
    for row in summary[summary["who"].astype(str).str.startswith(MODEL)].itertuples(index=False):
        if row.pairs:
            side = ("above chance" if not pd.isna(row.top_p) and row.top_p < level
                    else "not above chance")
            lines.append(f"{row.who}'s most-chosen option is people's in {row.hits} of "
                         f"{row.pairs} question x group pairs ({row.accuracy:.0%}; chance "
                         f"{row.chance:.0%}): {side} (p = {_number(row.top_p)}, exact test)")
        if row.ranked:
            side = ("ranks the options as people do more than chance"
                    if not pd.isna(row.rank_p) and row.rank_p < level
                    else "does not rank the options as people do more than chance")
            lines.append(f"{row.who} {side}: mean Kendall tau {row.mean_tau:+.3f} over "
                         f"{row.ranked} pairs (p = {_number(row.rank_p)}, Wilcoxon signed-rank)")
    return lines



def stored_survey(con: duckdb.DuckDBPyConnection, job_id: str) -> Survey:
    """Return a calibration's stored questions and people's answers, as a Survey (the report's)."""
    questions = {qid: Question(qid, text, tuple(json.loads(options)),
                               tuple(float(v) for v in json.loads(ordinal)))
                 for qid, text, options, ordinal in store.question_rows(con, job_id)}
    counts: dict[str, dict[tuple[str, tuple[str, ...]], tuple[float, ...]]] = {
        q: {} for q in questions}
    for qid, attribute, labels, vector in store.human_rows(con, job_id):
        counts[qid][(attribute, tuple(json.loads(labels)))] = tuple(json.loads(vector))
    return Survey(questions, counts)


def ranking_html(con: duckdb.DuckDBPyConnection, job_id: str, scores: pd.DataFrame) -> list[str]:
    """Return the report's ranking section: the table and its sentences (nothing to rank: none)."""
    summary = ranking_summary(ranking_cells(scores, stored_survey(con, job_id)))
    if summary.empty:
        return []
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ("source", "top-option hits", "accuracy",
                                                    "chance", "p (exact)", "mean Kendall tau",
                                                    "pairs", "p (Wilcoxon)"))
    body = "".join(
        f"<tr><td>{esc(str(r.who))}</td><td>{r.hits}/{r.pairs}</td><td>{_number(r.accuracy)}</td>"
        f"<td>{_number(r.chance, '.2f')}</td><td>{_number(r.top_p)}</td>"
        f"<td>{_number(r.mean_tau)}</td><td>{r.ranked}</td><td>{_number(r.rank_p)}</td></tr>"
        for r in summary.itertuples(index=False))
    said = "".join(f"<li>{esc(line)}</li>" for line in ranking_verdict(summary))
    return ["<h2>Ranking</h2>",
            "<p>Per question x group: is the source's most-chosen option people's (against "
            "chance, an exact one-sided test), and do its options rank as people's (Kendall's "
            "tau, its mean above 0 by a one-sided Wilcoxon signed-rank test)?</p>",
            f"<table><tr>{head}</tr>{body}</table>", f"<ul>{said}</ul>"]
