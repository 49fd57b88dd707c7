"""Group shares from a simulated panel corrected by a few humans: prediction-powered inference.

PPI++ (Angelopoulos, Duchi and Zrnic 2023, via ppi-python) adds the humans' mean error to the
panel's mean prediction, so a biased simulator is corrected and an accurate one narrows the
humans' interval. A person's prediction is the answer shares of personas sharing their
demographics; the panel-alone share is its own answers. Assumptions: docs/calibration.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis.calibration_store import answers_frame, job_row, panel_rows
from personahub.analysis.survey import Question, match_option
from personahub.analysis.survey_respondents import Respondents
from personahub.core.errors import PersonahubError
from personahub.personas.demographics import group_conditions
from personahub.personas.store import fetch_personas

__all__ = ["MIN_CELL", "PPI_COLUMNS", "Interval", "ppi_lines", "ppi_shares", "ppi_table"]

MIN_CELL = 5  # personas a demographic cell needs before its shares are the prediction
PPI_COLUMNS = ["question_id", "attribute", "group", "option", "humans_n", "sim_n",
               "ppi", "ppi_low", "ppi_high", "humans", "humans_low", "humans_high",
               "simulated", "simulated_low", "simulated_high"]


@dataclass(frozen=True)
class Interval:
    """Per option: the estimate and its interval (arrays aligned with the options)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def ppi_shares(answers: np.ndarray, predicted: np.ndarray, unlabelled: np.ndarray,
               panel: np.ndarray, *, alpha: float = 0.05, weights: np.ndarray | None = None
               ) -> dict[str, Interval]:
    """Each option's share three ways, with 1 - alpha intervals clipped to [0, 1]: PPI++, the humans
    alone, and the simulated panel alone.

    The panel-alone share is the panel's own answers (one-hot rows of ``panel``) with a Wilson
    interval, not the mean of its smoothed predictions: those are cell shares averaged over the
    panel, narrower than its answers allow and off its own share.
    """
    from ppi_py import classical_mean_ci, ppi_mean_ci  # heavy (numba): only when asked
    from statsmodels.stats.proportion import proportion_confint

    answers, predicted, unlabelled, panel = (np.asarray(a, dtype=float)
                                             for a in (answers, predicted, unlabelled, panel))
    if (answers.shape != predicted.shape or answers.shape[1] != unlabelled.shape[1]
            or panel.shape[1:] != answers.shape[1:]):
        raise ValueError("answers, predictions, panel predictions and panel answers must have K "
                         "columns alike")
    if len(answers) < 2 or len(unlabelled) < 2 or len(panel) < 2:
        raise ValueError("PPI needs at least two humans and two panel personas")
    out: dict[str, list[list[float]]] = {"ppi": [], "humans": [], "simulated": []}
    for k in range(answers.shape[1]):
        y, yhat, yu = answers[:, k], predicted[:, k], unlabelled[:, k]
        pl, ph = (float(np.ravel(v)[0]) for v in ppi_mean_ci(y, yhat, yu, alpha=alpha, w=weights))
        hl, hh = (float(np.ravel(v)[0]) for v in classical_mean_ci(y, w=weights, alpha=alpha))
        # the normal intervals are symmetric, so their midpoint is the estimate; clipping to
        # [0, 1] cuts off no truth
        for name, (low, high) in (("ppi", (pl, ph)), ("humans", (hl, hh))):
            out[name].append([(low + high) / 2, max(low, 0.0), min(high, 1.0)])
        chose = float(panel[:, k].sum())
        sl, sh = proportion_confint(chose, len(panel), alpha=alpha, method="wilson")
        out["simulated"].append([chose / len(panel), float(sl), float(sh)])
    return {name: Interval(*np.asarray(rows).T) for name, rows in out.items()}


def _profile(attributes: Mapping[str, object], keys: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(attributes[k])) for k in keys if attributes.get(k) not in (None, ""))


def _human_profile(groups: Mapping[str, str]) -> dict[str, str]:
    profile: dict[str, str] = {}
    for column, value in groups.items():
        for key, slug in group_conditions(column, (value,)):
            profile[key] = slug
    return profile


def _shares(answers: Sequence[int], k: int) -> np.ndarray:
    return np.bincount(np.asarray(answers, dtype=int), minlength=k)[:k] / max(len(answers), 1)


def ppi_table(con: duckdb.DuckDBPyConnection, job_id: str, humans: Respondents, *,
              steering: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """PPI shares for every question the job and the human file share, per group a panel stands for.

    Args:
        con: the hub holding the calibration.
        job_id: the calibration job.
        humans: the human sample, one row per respondent.
        steering: whose answers predict (default: the job's first steering).
        alpha: one minus the intervals' coverage.

    Returns:
        One row per question x group x substantive option; empty if nothing is shared.
    """
    steerings = job_row(con, job_id)["steering"]
    steering = steering or steerings[0]
    if steering not in steerings:
        raise PersonahubError(f"steering {steering!r}: the job asked {', '.join(steerings)}")
    frame = answers_frame(con, job_id)
    frame = frame[(frame["steering"] == steering) & frame["persona_id"].notna()]
    profiles = {p.persona_id: p.attributes
                for p in fetch_personas(con, sorted(set(frame["persona_id"])))}
    answered = [(qid, pid, answer, profiles[pid]) for qid, pid, answer in
                frame[["question_id", "persona_id", "answer"]].itertuples(index=False)
                if pid in profiles]
    panels: dict[tuple[tuple[str, str], ...], tuple[str, str, set[str]]] = {}
    for attribute, grp, pid in panel_rows(con, job_id):
        conditions = group_conditions(attribute, tuple(grp.split(" / ")))
        if conditions:
            panels.setdefault(conditions, (attribute, grp, set()))[2].add(pid)
    keys = sorted({k for _, groups, _ in humans.rows for k in _human_profile(groups)})
    rows: list[dict[str, object]] = []
    for question in humans.questions.values():
        rows += _question_rows(question, answered, panels, humans, keys, alpha)
    return pd.DataFrame(rows, columns=PPI_COLUMNS)


def _question_rows(question: Question,
                   answered: list[tuple[str, str, str, Mapping[str, object]]],
                   panels: Mapping[tuple[tuple[str, str], ...], tuple[str, str, set[str]]],
                   humans: Respondents, keys: Sequence[str], alpha: float
                   ) -> list[dict[str, object]]:
    k = len(question.ordinal)
    sim: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {}  # persona -> answer, profile
    for qid, pid, answer, attributes in answered:
        index = match_option(question, answer) if qid == question.qid else None
        if index is not None and index < k:
            sim[pid] = (index, _profile(attributes, keys))
    if not sim:
        return []
    cells: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for index, profile in sim.values():
        cells.setdefault(profile, []).append(index)
    rows: list[dict[str, object]] = []
    for column in humans.demographics:
        for value in sorted({g[column] for _, g, _ in humans.rows if column in g}):
            conditions = group_conditions(column, (value,))
            if conditions not in panels:
                continue
            attribute, grp, members = panels[conditions]
            panel = [sim[p] for p in members if p in sim]
            if len(panel) < 2:
                continue
            fallback = _shares([i for i, _ in panel], k)

            def predict(profile: tuple[tuple[str, str], ...],
                        fallback: np.ndarray = fallback) -> np.ndarray:
                """Return the shares of the personas with this profile (the group's when too few)."""
                matched = [i for p, answers in cells.items()
                           if set(profile) <= set(p) for i in answers]
                return _shares(matched, k) if len(matched) >= MIN_CELL else fallback

            labelled = []
            for w, groups, answers in humans.rows:
                option = match_option(question, answers.get(question.qid, "\x00"))
                if groups.get(column) == value and option is not None and option < k:
                    profile = tuple(sorted(_human_profile(groups).items()))
                    labelled.append((w, option, predict(profile)))
            if len(labelled) < 2:
                continue
            y = np.eye(k)[[o for _, o, _ in labelled]]
            yhat = np.vstack([f for _, _, f in labelled])
            yu = np.vstack([predict(profile) for _, profile in panel])
            weights = (np.asarray([w for w, _, _ in labelled])
                       if humans.weight_column is not None else None)
            chosen = np.eye(k)[[i for i, _ in panel]]  # the panel's own answers
            got = ppi_shares(y, yhat, yu, chosen, alpha=alpha, weights=weights)
            for i, label in enumerate(question.substantive):
                row: dict[str, object] = {
                    "question_id": question.qid, "attribute": attribute, "group": grp,
                    "option": label, "humans_n": len(labelled), "sim_n": len(panel)}
                for name, interval in got.items():
                    row[name] = interval.estimate[i]
                    row[f"{name}_low"], row[f"{name}_high"] = interval.low[i], interval.high[i]
                rows.append(row)
    return rows


def _estimate(value: float, low: float, high: float) -> str:
    """Return an estimate with its interval; a normal interval of no width (every answer in the sample
    alike, so no spread to measure) is said to be none, not printed as certainty."""
    if high - low < 0.005:
        return f"{value:.2f} (no interval: its answers do not vary)"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def ppi_lines(table: pd.DataFrame, shown: int = 6) -> list[str]:
    """Return a PPI table as console lines: the median interval widths, then its first rows."""
    if table.empty:
        return ["prediction-powered shares: no question and group shared by the human file and "
                "the calibration's panels"]
    width = {name: float((table[f"{name}_high"] - table[f"{name}_low"]).median())
             for name in ("ppi", "humans", "simulated")}
    lines = [f"prediction-powered shares ({table['humans_n'].max()} humans at most per group; "
             f"median 95% interval width: PPI {width['ppi']:.3f}, humans only "
             f"{width['humans']:.3f}, simulated only {width['simulated']:.3f})",
             "  simulated: the panel's own answers (Wilson interval); PPI: the panel's "
             "predictions corrected by the humans"]
    for row in table.head(shown).itertuples(index=False):
        lines.append(f"  {row.question_id} {row.attribute}={row.group} {row.option!r}: "
                     f"PPI {_estimate(row.ppi, row.ppi_low, row.ppi_high)}  humans "
                     f"{_estimate(row.humans, row.humans_low, row.humans_high)}  simulated "
                     f"{_estimate(row.simulated, row.simulated_low, row.simulated_high)}")
    if len(table) > shown:
        lines.append(f"  ... {len(table) - shown} more rows (Calibration.ppi(FILE) in the API)")
    return lines
