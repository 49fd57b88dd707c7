"""Scores of simulated answer distributions against people's, per question and group.

Representativeness is OpinionQA's (1 - normalised Wasserstein for ordinal questions, 1 - Jensen-
Shannon distance for nominal); dispersion and sd_ratio measure under-dispersion. Baselines and
floor/ceiling rows are scored the same way. Refusals are split off.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.special import entr
from scipy.stats import wasserstein_distance

from personahub.analysis.survey import Question, Survey

__all__ = [
    "BASELINES",
    "DRAWS",
    "FLOORS",
    "PANEL_SOURCES",
    "POPULATION",
    "SCORES",
    "Split",
    "dispersion",
    "drawn_representativeness",
    "modal_agreement",
    "representativeness",
    "sampled_scores",
    "score",
    "score_population",
    "score_survey",
    "sd_ratio",
    "split",
    "summarise",
]

MODEL = "model"
BASELINES = ("uniform", "human_overall", "no_persona")
SCORES = ("representativeness", "dispersion", "modal_agreement", "sd_ratio")
FLOORS = ("human_resample", "perfect_panel", "human_overall_panel")
PANEL_SOURCES = (MODEL, "perfect_panel", "human_overall_panel")  # depend on the model's panel
DRAWS = 200  # multinomial draws behind each floor/ceiling row
POPULATION = "(population)"  # the attribute of the whole-population rows
Counts = Sequence[float] | np.ndarray
GroupAnswers = Mapping[tuple[str, str, tuple[str, ...]], Counts]  # (qid, attribute, group)


@dataclass(frozen=True)
class Split:
    """A count vector split: substantive distribution (None if empty), its size, and the refusal share."""

    distribution: np.ndarray | None
    n: float
    refusal: float


def split(question: Question, counts: Counts) -> Split:
    """Split counts (aligned with the question's options) into opinion and refusals."""
    vector = np.asarray(counts, dtype=float)
    if vector.shape != (len(question.options),):
        raise ValueError(f"question {question.qid}: {vector.size} counts for "
                         f"{len(question.options)} options")
    if (vector < 0).any() or not np.isfinite(vector).all():
        raise ValueError(f"question {question.qid}: counts must be finite and >= 0")
    opinion = vector[: len(question.ordinal)]
    total, n = float(vector.sum()), float(opinion.sum())
    refusal = (total - n) / total if total > 0 else float("nan")
    return Split(opinion / n if n > 0 else None, n, refusal)


def representativeness(question: Question, sim: np.ndarray, human: np.ndarray) -> float:
    """1 - normalised W1 (ordinal) or 1 - Jensen-Shannon distance in bits (nominal)."""
    if question.is_ordinal:
        positions = np.asarray(question.ordinal, dtype=float)
        span = float(positions.max() - positions.min())
        return 1.0 - float(wasserstein_distance(positions, positions, sim, human)) / span
    return 1.0 - float(jensenshannon(sim, human, base=2))


def entropy_bits(distribution: np.ndarray) -> float:
    """Shannon entropy in bits (hand-written: scipy.stats.entropy's argument handling took 85% of
    scoring a wave).
    """
    return float(entr(distribution).sum() / np.log(2))


def dispersion(sim: np.ndarray, human: np.ndarray) -> float:
    """Entropy of sim over entropy of human; NaN when people all agree."""
    human_entropy = entropy_bits(human)
    if human_entropy <= 1e-12:
        return float("nan")
    return entropy_bits(sim) / human_entropy


def _ordinal_sd(positions: np.ndarray, distributions: np.ndarray) -> np.ndarray:
    """Compute the standard deviation of each row over the positions, as matrix products so many draws cost
    one."""
    rows = np.atleast_2d(distributions)
    centred = positions[None, :] - (rows @ positions / rows.sum(axis=1))[:, None]
    return np.sqrt(np.maximum((rows * centred**2).sum(axis=1) / rows.sum(axis=1), 0.0))


def sd_ratio(question: Question, sim: np.ndarray, human: np.ndarray) -> float:
    """Return the simulated SD over the human SD on the ordinal positions; NaN for nominal questions or no
    spread."""
    if not question.is_ordinal:
        return float("nan")
    positions = np.asarray(question.ordinal, dtype=float)
    human_sd = float(_ordinal_sd(positions, human)[0])
    if human_sd <= 1e-12:
        return float("nan")
    return float(_ordinal_sd(positions, sim)[0]) / human_sd


def modal_agreement(sim: np.ndarray, human: np.ndarray) -> float:
    """Share of sim's modal options that are modal in human (ties within 1e-12)."""
    sim_modes = np.flatnonzero(sim >= sim.max() - 1e-12)
    human_modes = set(np.flatnonzero(human >= human.max() - 1e-12).tolist())
    return sum(int(i) in human_modes for i in sim_modes) / len(sim_modes)


def _w1_rows(positions: np.ndarray, sims: np.ndarray, human: np.ndarray) -> np.ndarray:
    """W1 between each row of sims and human: the CDF gap integrated, for many rows at once."""
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(positions[order])
    cdf_gap = np.cumsum(sims[:, order] - human[order], axis=1)[:, :-1]
    return np.abs(cdf_gap) @ gaps


def _representativeness_rows(question: Question, sims: np.ndarray, human: np.ndarray
                             ) -> np.ndarray:
    if question.is_ordinal:
        positions = np.asarray(question.ordinal, dtype=float)
        span = float(positions.max() - positions.min())
        return np.asarray(1.0 - _w1_rows(positions, sims, human) / span)
    return np.asarray(1.0 - jensenshannon(sims, np.broadcast_to(human, sims.shape), base=2,
                                          axis=1))


def drawn_representativeness(question: Question, source: np.ndarray, human: np.ndarray,
                             n: float, rng: np.random.Generator, draws: int) -> np.ndarray:
    """Return the representativeness of each of several multinomial panels of n answers (empty when n
    rounds to 0)."""
    size = int(round(n))
    if size < 1:
        return np.empty(0)
    sims = rng.multinomial(size, source / source.sum(), size=draws) / size
    return _representativeness_rows(question, sims, human)


def sampled_scores(question: Question, source: np.ndarray, human: np.ndarray, n: float,
                   rng: np.random.Generator, draws: int = DRAWS) -> dict[str, float]:
    """Mean scores of multinomial panels of n answers against human (NaN when n rounds to 0)."""
    size = int(round(n))
    if size < 1:
        return dict.fromkeys(SCORES, float("nan"))
    sims = rng.multinomial(size, source / source.sum(), size=draws) / size
    rep = _representativeness_rows(question, sims, human)
    human_entropy = entropy_bits(human)
    disp = (entr(sims).sum(axis=1) / np.log(2) / human_entropy if human_entropy > 1e-12
            else np.full(draws, np.nan))
    sim_modes = sims >= sims.max(axis=1, keepdims=True) - 1e-12
    human_modes = human >= human.max() - 1e-12
    modal = (sim_modes & human_modes).sum(axis=1) / sim_modes.sum(axis=1)
    sd = float("nan")
    if question.is_ordinal:
        positions = np.asarray(question.ordinal, dtype=float)
        human_sd = float(_ordinal_sd(positions, human)[0])
        if human_sd > 1e-12:
            sd = float(np.mean(_ordinal_sd(positions, sims))) / human_sd
    return {"representativeness": float(np.mean(rep)),
            "dispersion": float(np.mean(disp)) if human_entropy > 1e-12 else float("nan"),
            "modal_agreement": float(np.mean(modal)), "sd_ratio": sd}


def row_rng(seed: int, *key: str) -> np.random.Generator:
    """Return a generator for one row from the seed and the row's key, so rows do not depend on each other."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(key).encode())])


def score(question: Question, sim: np.ndarray, human: np.ndarray) -> dict[str, float]:
    """Return the scores of one simulated distribution against one human one."""
    return {"representativeness": representativeness(question, sim, human),
            "dispersion": dispersion(sim, human),
            "modal_agreement": modal_agreement(sim, human),
            "sd_ratio": sd_ratio(question, sim, human)}


def _row(question: Question, attribute: str, group: tuple[str, ...], source: str,
         sim_counts: Counts | None, human: Split) -> dict[str, object]:
    """One table row: a source's scores for one question and group (NaN without answers)."""
    row: dict[str, object] = {
        "question_id": question.qid, "attribute": attribute, "group": " / ".join(group),
        "source": source, "metric": "wasserstein" if question.is_ordinal else "jensen_shannon",
        "human_n": human.n, "human_refusal": human.refusal}
    sim = split(question, sim_counts) if sim_counts is not None else None
    row["sim_n"] = sim.n if sim is not None else float("nan")
    row["sim_refusal"] = sim.refusal if sim is not None else float("nan")
    if sim is not None and sim.distribution is not None and human.distribution is not None:
        row.update(score(question, sim.distribution, human.distribution))
    else:
        row.update(dict.fromkeys(SCORES, float("nan")))
    return row


def score_survey(survey: Survey, model: GroupAnswers, *,
                 no_persona: Mapping[str, Counts] | None = None,
                 matched_only: bool = True, seed: int | None = None,
                 draws: int = DRAWS) -> pd.DataFrame:
    """Every question and group scored for the model and the baselines (and floors, given a seed).

    Like OpinionQA, leaves out groups without a substantive human answer and, by default, groups
    no persona can match ("Refused", "Mixed Race").
    """
    no_persona = no_persona or {}
    rows: list[dict[str, object]] = []
    for qid in survey.counts:
        question = survey.questions[qid]
        uniform = [1.0] * len(question.ordinal) + [0.0] * len(question.refusals)
        overall = survey.overall(qid)
        for attribute, group, counts in survey.groups(qid):
            human = split(question, counts)
            if human.distribution is None or (matched_only
                                              and not survey.conditions(attribute, group)):
                continue
            sources: dict[str, Counts | None] = {
                MODEL: model.get((qid, attribute, group)), "uniform": uniform,
                "human_overall": overall, "no_persona": no_persona.get(qid)}
            rows += [_row(question, attribute, group, source, sim, human)
                     for source, sim in sources.items()]
            if seed is not None:
                rows += _floor_rows(question, attribute, group, human, overall, rows[-4],
                                    seed, draws)
    columns = ["question_id", "attribute", "group", "source", "metric", *SCORES,
               "human_n", "sim_n", "human_refusal", "sim_refusal"]
    return pd.DataFrame(rows, columns=columns)


def _floor_rows(question: Question, attribute: str, group: tuple[str, ...], human: Split,
                overall: Counts, model_row: Mapping[str, object], seed: int,
                draws: int) -> list[dict[str, object]]:
    """Return the floor/ceiling rows of one question and group, at the model row's panel size."""
    assert human.distribution is not None
    everyone = split(question, overall).distribution
    panel_n = float(model_row["sim_n"])  # type: ignore[arg-type]
    plan = {"human_resample": (human.distribution, human.n),
            "perfect_panel": (human.distribution, panel_n),
            "human_overall_panel": (everyone, panel_n)}
    rows = []
    for source, (drawn, n) in plan.items():
        row = _row(question, attribute, group, source, None, human)
        row["sim_n"] = round(n) if np.isfinite(n) else float("nan")
        if drawn is not None and np.isfinite(n):
            rng = row_rng(seed, question.qid, attribute, *group, source)
            row.update(sampled_scores(question, drawn, human.distribution, n, rng, draws))
        rows.append(row)
    return rows


def summarise(table: pd.DataFrame, by: Sequence[str] = ("attribute",)) -> pd.DataFrame:
    """Mean scores per source, overall and per grouping column; scored counts rows with a score."""
    keys = ["source", *by]
    per = table.groupby(keys, sort=False)[list(SCORES)].mean()
    per["scored"] = table.groupby(keys, sort=False)["representativeness"].count()
    overall = table.groupby("source", sort=False)[list(SCORES)].mean()
    overall["scored"] = table.groupby("source", sort=False)["representativeness"].count()
    overall = overall.reset_index()
    for column in by:
        overall[column] = "overall"
    return pd.concat([overall[keys + [*SCORES, "scored"]], per.reset_index()], ignore_index=True)


def population_panel(question: Question, weighted: Sequence[tuple[float, Counts]]
                     ) -> np.ndarray | None:
    """Return the counts of a panel mixed over groups by weight, scaled to the mixture's Kish effective size;
    None when no group has a substantive answer.

    Only the groups' substantive shares are mixed: a group's refusals neither move the mixture's
    opinion nor its weight (mixing shares with refusals in them gave a group that refused more
    less say). The result's refusal share is the weighted mean of the groups'.
    """
    k = len(question.ordinal)
    parts = []  # (weight, substantive shares, substantive answers, counts)
    for w, counts in weighted:
        vector = np.asarray(counts, dtype=float)
        own = split(question, vector)
        if w > 0 and own.distribution is not None:
            parts.append((w, own.distribution, own.n, vector))
    if not parts:
        return None
    shares = np.array([w for w, _, _, _ in parts]) / sum(w for w, _, _, _ in parts)
    opinion = shares @ np.vstack([d for _, d, _, _ in parts])
    refusals = shares @ np.vstack([c[k:] / c.sum() for _, _, _, c in parts])
    effective = 1.0 / float(np.sum(shares**2 / np.array([n for _, _, n, _ in parts])))
    return np.concatenate([opinion * effective,
                           refusals * effective / (1.0 - float(np.sum(refusals)))])


def score_population(survey: Survey, model: GroupAnswers, *,
                     no_persona: Mapping[str, Counts] | None = None,
                     seed: int | None = None, draws: int = DRAWS) -> pd.DataFrame:
    """Whole-population rows: the model's group panels mixed by the groups' weights, scored against
    everyone.
    """
    no_persona = no_persona or {}
    rows: list[dict[str, object]] = []
    for qid in survey.counts:
        question = survey.questions[qid]
        human = split(question, survey.overall(qid))
        if human.distribution is None:
            continue
        uniform = [1.0] * len(question.ordinal) + [0.0] * len(question.refusals)
        weighted: dict[str, list[tuple[float, Counts]]] = {}
        for attribute, group, counts in survey.groups(qid):
            sim = model.get((qid, attribute, group))
            if sim is not None:  # weighed by the group's substantive answers
                weighted.setdefault(attribute, []).append(
                    (float(np.sum(counts[: len(question.ordinal)])), sim))
        for attribute, parts in weighted.items():
            panel = population_panel(question, parts)
            sources: dict[str, Counts | None] = {
                MODEL: panel, "uniform": uniform, "no_persona": no_persona.get(qid)}
            own = [_row(question, POPULATION, (attribute,), source, sim, human)
                   for source, sim in sources.items()]
            rows += own
            if seed is None:
                continue
            panel_n = float(own[0]["sim_n"])  # type: ignore[arg-type]
            assert human.distribution is not None
            for source, n in (("human_resample", human.n), ("perfect_panel", panel_n)):
                row = _row(question, POPULATION, (attribute,), source, None, human)
                row["sim_n"] = round(n) if np.isfinite(n) else float("nan")
                if np.isfinite(n):
                    rng = row_rng(seed, question.qid, POPULATION, attribute, source)
                    row.update(sampled_scores(question, human.distribution, human.distribution,
                                              n, rng, draws))
                rows.append(row)
    columns = ["question_id", "attribute", "group", "source", "metric", *SCORES,
               "human_n", "sim_n", "human_refusal", "sim_refusal"]
    return pd.DataFrame(rows, columns=columns)


def source_label(source: str, steering: str, steerings: Sequence[str]) -> str:
    """How tables name a source: panel sources get [steering] when several steerings are shown."""
    if source not in PANEL_SOURCES:
        return source
    return source if len(steerings) <= 1 else f"{source}[{steering}]"
