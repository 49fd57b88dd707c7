"""calibrate --fit: choose how the model should be asked on training folds, score it on a held-out one.

The questions are dealt into K folds, seeded (fold 0 is held out). Every configuration (each
--elicit method that answers for one persona, times each --steering, times a few seeded sets of
example questions for few-shot:K) asks each panel persona every question for its answer
distribution, as a run's agent would be asked (`survey_profile.ProfileConfig`). On the training
folds, each configuration's temperature is fitted (the group means of its personas' tempered
distributions against the people's answers, by cross-entropy) and it is scored by cross-fitting
over the training folds: each training fold with the temperature fitted on the others. The best
configuration, its temperature refitted on every training fold, is the survey profile. Its score
on the held-out fold is the one the console calls held out: nothing of that fold (its answers,
its people) entered the choice, the temperature or the examples.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_scores import (
    MODEL,
    PANEL_SOURCES,
    POPULATION,
    representativeness,
    score_population,
    score_survey,
    split,
)
from personahub.analysis.survey import Question, Survey
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError, UsageError
from personahub.pipelines.calibrate_data import Group, GroupKey
from personahub.pipelines.calibrate_scores import SCORE_COLUMNS, Scored, store_scores
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    QuestionPlan,
    stated_vector,
)
from personahub.pipelines.elicit.distribution import modal_answer
from personahub.pipelines.elicit.few_shot import FewShot
from personahub.pipelines.elicit.temperature import LOG_T_BOUNDS, at_bound
from personahub.pipelines.prompts.calibration import NO_PERSONA
from personahub.pipelines.survey_profile import (
    ProfileConfig,
    SurveyProfile,
    examples_json,
    examples_of,
)

__all__ = ["FEW_SHOT_SETS", "FOLDS", "HELD_OUT", "MIN_FOLDS", "FitCandidate", "FitOutcome",
           "candidates", "check_fit", "fit_ask_count", "fit_asks", "fit_lines", "fold_split",
           "score_fit"]

FOLDS = 3  # --folds' default
MIN_FOLDS = 3  # the held-out fold and two training folds (each scored with the other's fit)
HELD_OUT = 0  # the held-out fold's number
FEW_SHOT_SETS = 2  # seeded sets of example questions tried per few-shot:K method
FITTED_ROW = store.FITTED_ROW  # the held-out model row's steering
DRAWN_AT_PANEL = ("perfect_panel", "human_overall_panel")  # not scored beside a profile


def fold_split(questions: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """Deal the questions into k folds, seeded: shuffled, then dealt in turn (sizes differ by one).
    """
    order = sorted(questions)
    random.Random(f"{seed}:folds").shuffle(order)
    return {qid: i % k for i, qid in enumerate(order)}


def training_questions(folds: Mapping[str, int]) -> tuple[str, ...]:
    """Return the questions of the training folds (every fold but the held-out one), sorted."""
    return tuple(sorted(q for q, f in folds.items() if f != HELD_OUT))


def held_out_questions(folds: Mapping[str, int]) -> tuple[str, ...]:
    """Return the held-out fold's questions, sorted."""
    return tuple(sorted(q for q, f in folds.items() if f == HELD_OUT))


def check_fit(methods: Sequence[ElicitMethod], questions: Sequence[str], k: int) -> None:
    """Refuse a fit that cannot be made, in one line.

    Raises:
        UsageError: a method that cannot answer for one persona, too few questions for the folds,
            or a few-shot K that leaves too little of the training folds to score.
    """
    for method in methods:
        if not method.answers_agents:
            raise UsageError(f"--fit: --elicit {method.label} cannot answer for one persona (a "
                             "survey profile answers for each agent); leave it out of the fit")
    if len(questions) < k:
        raise UsageError(f"--folds {k}: the calibration asks {len(questions)} questions; each "
                         "fold needs one at least (give fewer folds or more questions)")
    training = len(questions) - math.ceil(len(questions) / k)  # fold 0 is dealt first
    for method in methods:
        if isinstance(method, FewShot) and method.k > training - 2:
            raise UsageError(f"--fit: --elicit {method.label} shows {method.k} of the "
                             f"{training} training questions; K must leave two to score")


@dataclass(frozen=True)
class FitCandidate(ElicitMethod):
    """Ask one configuration of the fit for each panel persona's answer distribution."""

    config: ProfileConfig | None = None

    NAME: ClassVar[str] = "fit"  # never registered: a fit builds its own
    SYNTAX: ClassVar[str] = "fit"
    HELP: ClassVar[str] = "a configuration calibrate --fit tries"
    from_panel: ClassVar[bool] = True

    @property
    def label(self) -> str:
        """Return the configuration's row name."""
        assert self.config is not None
        return self.config.label

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        """Ask the persona's untempered distribution: the modal option, the shares as the reason."""
        assert self.config is not None and ask.persona_id is not None
        text, options = inputs.questions[ask.question_id]
        persona, attributes = inputs.personas[ask.persona_id]
        reading = await self.config.reading(text, options, text=persona, attributes=attributes,
                                            caller=caller, persona_id=ask.persona_id)
        return modal_answer(ask, reading)


def candidates(methods: Sequence[ElicitMethod], steerings: Sequence[str], survey: Survey,
               groups: Mapping[str, Sequence[Group]], folds: Mapping[str, int],
               seed: int) -> tuple[ProfileConfig, ...]:
    """Return every configuration the fit tries, in the order it breaks ties: per method (as
    --elicit gives them), per steering, per example set (few-shot: FEW_SHOT_SETS seeded draws
    from the training questions).
    """
    training = training_questions(folds)
    out: list[ProfileConfig] = []
    for method in methods:
        for steering in steerings:
            if not isinstance(method, FewShot):
                out.append(ProfileConfig(method, steering))
                continue
            for index in range(FEW_SHOT_SETS):
                shown = random.Random(f"{seed}:fit:{method.label}:{index}").sample(
                    list(training), method.k)
                out.append(ProfileConfig(method, steering, examples_of(survey, shown, groups),
                                         index))
    return tuple(out)


def shown_questions(config: ProfileConfig) -> frozenset[str]:
    """Return the questions a configuration shows as examples (it is never scored on them)."""
    return frozenset(e.question_id for e in config.examples)


def fit_asks(plans: Iterable[QuestionPlan], configs: Sequence[ProfileConfig],
             folds: Mapping[str, int], no_persona_n: int) -> list[Ask]:
    """Plan a fit's asks: per question, each configuration's per panel persona (not on the
    questions it shows), then the no-persona baseline's on the held-out fold.
    """
    asks: list[Ask] = []
    for plan in plans:
        for config in configs:
            if plan.question_id not in shown_questions(config):
                asks += [Ask(plan.question_id, config.label, pid, pid) for pid in plan.people]
        if folds.get(plan.question_id) == HELD_OUT:
            asks += [Ask(plan.question_id, NO_PERSONA, f"#{k}", None) for k in range(no_persona_n)]
    return asks


def fit_ask_count(plans: Iterable[QuestionPlan], configs: Sequence[ProfileConfig],
                  folds: Mapping[str, int], no_persona_n: int) -> int:
    """Count fit_asks' asks without making them (a plan too large is refused first)."""
    shown = [shown_questions(c) for c in configs]
    return sum(sum(len(plan.people) for s in shown if plan.question_id not in s)
               + (no_persona_n if folds.get(plan.question_id) == HELD_OUT else 0)
               for plan in plans)


# -- scoring ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Cell:
    """One question x group: its people's answers and its panel personas' distributions."""

    question: Question
    attribute: str
    labels: tuple[str, ...]
    human: np.ndarray  # substantive shares
    personas: np.ndarray  # one untempered distribution per answering panel persona (rows)
    asked: int  # the panel's size

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return self.question.qid, self.attribute, self.labels


def _scaled_rows(rows: np.ndarray, temperature: float) -> np.ndarray:
    """Scale each row p^(1/T), renormalised (zeros stay zero), as survey_profile.tempered does."""
    with np.errstate(divide="ignore"):
        logits = np.log(rows) / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


def _expected(cell: _Cell, temperature: float) -> np.ndarray:
    """Return the group's expected answer shares: the mean of its personas' tempered distributions."""
    return np.asarray(_scaled_rows(cell.personas, temperature).mean(axis=0))


def _cells(survey: Survey, groups: Mapping[str, Sequence[Group]],
           panels: Mapping[GroupKey, Sequence[str]],
           vectors: Mapping[str, Mapping[str, np.ndarray]],
           questions: Collection[str]) -> list[_Cell]:
    """Each question x group of the questions with a panel persona's answer and people's."""
    out = []
    for qid in sorted(questions):
        question, own = survey.questions[qid], vectors.get(qid, {})
        for group in groups.get(qid, ()):
            panel = panels.get(group.key, [])
            rows = [own[pid] for pid in panel if pid in own]
            human = split(question, survey.counts[qid][(group.attribute, group.labels)])
            if rows and human.distribution is not None:
                out.append(_Cell(question, group.attribute, group.labels, human.distribution,
                                 np.vstack(rows), len(panel)))
    return out


def _substantive(cell: _Cell, shares: np.ndarray) -> np.ndarray | None:
    opinion = shares[: len(cell.question.ordinal)]
    total = float(opinion.sum())
    return opinion / total if total > 0 else None


def _score(cell: _Cell, temperature: float) -> float:
    """Return the representativeness of the group's expected shares (NaN: nothing substantive)."""
    sim = _substantive(cell, _expected(cell, temperature))
    return float("nan") if sim is None else representativeness(cell.question, sim, cell.human)


def fit_temperature(cells: Sequence[_Cell]) -> float:
    """Fit the temperature minimising the mean cross-entropy of the people's answers under the groups'
    expected shares (each persona tempered, then averaged); 1.0 without cells.
    """
    from scipy.optimize import minimize_scalar

    if not cells:
        return 1.0

    def loss(log_t: float) -> float:
        total = 0.0
        for cell in cells:
            sim = _substantive(cell, _expected(cell, float(np.exp(log_t))))
            model = np.full(len(cell.human), 1e-9) if sim is None else np.clip(sim, 1e-9, None)
            total -= float(np.dot(cell.human, np.log(model)))
        return total / len(cells)

    return float(np.exp(minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded").x))


def _tuned(config: ProfileConfig) -> bool:
    """Whether a temperature changes anything (not for one sampled answer per persona)."""
    return not config.method.sampled


@dataclass
class FitOutcome:
    """What the fit chose and on which questions, for the console, the store and tests."""

    folds: dict[str, int]
    k: int
    training: tuple[str, ...]
    held_out: tuple[str, ...]
    candidates: pd.DataFrame  # label, method, steering, temperature, training, cells, chosen
    profile: SurveyProfile
    chosen: str  # the chosen configuration's label


def _training_score(config: ProfileConfig, cells: Sequence[_Cell], folds: Mapping[str, int]
                    ) -> tuple[float, int]:
    """Cross-fit over the training folds: each fold's cells scored with a temperature fitted on the
    other folds' cells. Returns the mean score and the cells scored.
    """
    scores: list[float] = []
    for fold in sorted({folds[c.question.qid] for c in cells}):
        fitted_on = [c for c in cells if folds[c.question.qid] != fold]
        temperature = fit_temperature(fitted_on) if _tuned(config) else 1.0
        scores += [_score(c, temperature) for c in cells if folds[c.question.qid] == fold]
    kept = [s for s in scores if not math.isnan(s)]
    return (float(np.mean(kept)) if kept else float("nan")), len(kept)


def _vectors(con: duckdb.DuckDBPyConnection, job_id: str, survey: Survey,
             labels: Sequence[str], questions: Collection[str]
             ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Each configuration's stored persona distributions on the given questions only:
    label -> question -> persona -> shares over the question's options.
    """
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {label: {} for label in labels}
    for row, qid, pid, reason in store.persona_answers(con, job_id, labels):
        if qid not in questions:
            continue
        vector = stated_vector(survey.questions[qid], reason)
        if float(vector.sum()) > 0:
            out[row].setdefault(qid, {})[pid] = vector / float(vector.sum())
    return out


def choose(con: duckdb.DuckDBPyConnection, job_id: str, survey: Survey,
           groups: Mapping[str, Sequence[Group]], panels: Mapping[GroupKey, Sequence[str]],
           configs: Sequence[ProfileConfig], folds: Mapping[str, int]
           ) -> tuple[ProfileConfig, float, pd.DataFrame]:
    """Choose the configuration on the training folds alone.

    Only the training questions' answers are read: the held-out fold's never reach the choice,
    the temperature or the examples.

    Returns:
        The chosen configuration, its temperature (fitted on every training question it does not
        show) and one row per configuration tried.

    Raises:
        PersonahubError: no configuration has a scored training answer.
    """
    training = training_questions(folds)
    vectors = _vectors(con, job_id, survey, [c.label for c in configs], training)
    rows: list[dict[str, Any]] = []
    best: int | None = None
    for position, config in enumerate(configs):
        scored = set(training) - shown_questions(config)
        cells = _cells(survey, groups, panels, vectors[config.label], scored)
        score, n = _training_score(config, cells, folds)
        temperature = fit_temperature(cells) if _tuned(config) else 1.0
        rows.append({"label": config.label, "method": config.method.label,
                     "steering": config.steering, "temperature": temperature, "training": score,
                     "cells": n, "examples": [e.question_id for e in config.examples]})
        if not math.isnan(score) and (best is None or score > rows[best]["training"]):
            best = position
    if best is None:
        raise PersonahubError(f"calibration {job_id}: no configuration of the fit has an answer "
                              "on the training folds to score (resume it to ask again)")
    table = pd.DataFrame(rows)
    table["chosen"] = [i == best for i in range(len(rows))]
    return configs[best], float(rows[best]["temperature"]), table


def _held_out_survey(survey: Survey, questions: Collection[str]) -> Survey:
    return Survey({q: survey.questions[q] for q in survey.questions if q in questions},
                  {q: v for q, v in survey.counts.items() if q in questions}, source=survey.source)


def _counts(vector: Any) -> str | None:
    return None if vector is None else json.dumps([float(v) for v in vector])


def held_out_table(survey: Survey, cells: Sequence[_Cell], temperature: float,
                   none: Mapping[str, np.ndarray], no_persona_n: int, seed: int,
                   asked_groups: Collection[tuple[str, str]]) -> pd.DataFrame:
    """Score the profile's expected shares on the held-out questions beside the baselines and
    human_resample (the people's own noise: a perfect simulator's ceiling), in SCORE_COLUMNS;
    model rows have steering FITTED_ROW.
    """
    held = _held_out_survey(survey, {c.question.qid for c in cells} | set(none))
    model = {c.key: _expected(c, temperature) * len(c.personas) for c in cells}
    table = pd.concat([score_survey(held, model, no_persona=none, seed=seed),
                       score_population(held, model, no_persona=none, seed=seed)],
                      ignore_index=True)
    # expected shares are no panel of answers: no ceiling drawn at a panel's size (human_resample,
    # the people's own noise, is the ceiling of a perfect simulator's expected shares)
    table = table[~table["source"].isin(DRAWN_AT_PANEL)].reset_index(drop=True)
    on_panel = table["source"].isin(PANEL_SOURCES)
    table.insert(4, "steering", np.where(on_panel, FITTED_ROW, ""))
    keep = [a == POPULATION or (a, g) in asked_groups
            for a, g in zip(table["attribute"], table["group"], strict=True)]
    table = table[keep].reset_index(drop=True)
    by_key = {(c.question.qid, c.attribute, " / ".join(c.labels)): c for c in cells}
    counts: list[str | None] = []
    failed: list[int | None] = []
    for row in table.itertuples(index=False):
        vector: object
        question = held.questions[row.question_id]
        cell = by_key.get((row.question_id, row.attribute, row.group))
        if row.attribute == POPULATION and row.source != "uniform" and row.source != "no_persona":
            vector, asked = None, None
        elif row.source == MODEL:
            vector = None if cell is None else model[cell.key]
            asked = None if cell is None else cell.asked - len(cell.personas)
        elif row.source == "no_persona":
            vector = none.get(row.question_id)
            asked = None if vector is None else no_persona_n - int(round(float(np.sum(vector))))
        elif row.source == "uniform":
            vector = [1.0] * len(question.ordinal) + [0.0] * len(question.refusals)
            asked = None
        elif row.source == "human_overall":
            vector, asked = held.overall(row.question_id), None
        else:  # drawn, not asked
            vector, asked = None, None
        counts.append(_counts(vector))
        failed.append(asked)
    table["counts"], table["sim_failed"] = counts, failed
    table["temperature"] = np.nan
    return table[SCORE_COLUMNS]


def _no_persona(con: duckdb.DuckDBPyConnection, job_id: str, survey: Survey,
                questions: Collection[str]) -> dict[str, np.ndarray]:
    none: dict[str, np.ndarray] = {}
    for qid, answer, n in store.no_persona_counts(con, job_id):
        if qid in questions:
            none.setdefault(qid, np.zeros(len(survey.questions[qid].options)))[
                survey.questions[qid].options.index(answer)] += n
    return none


def score_fit(con: duckdb.DuckDBPyConnection, job_id: str, *, survey: Survey,
              groups: Mapping[str, Sequence[Group]], panels: Mapping[GroupKey, Sequence[str]],
              configs: Sequence[ProfileConfig], folds: Mapping[str, int], k: int,
              no_persona_n: int, seed: int, model: str, llm: str | None
              ) -> tuple[Scored, FitOutcome]:
    """Choose the profile on the training folds, store it, and score it on the held-out fold.

    The held-out table is the job's scores (replacing earlier ones): the profile as the model
    row, the baselines, floor and ceiling, on the held-out questions only.

    Returns:
        The stored scores and what the fit chose.
    """
    chosen, temperature, table = choose(con, job_id, survey, groups, panels, configs, folds)
    held = held_out_questions(folds)
    vectors = _vectors(con, job_id, survey, [chosen.label], held)[chosen.label]
    cells = _cells(survey, groups, panels, vectors, held)
    asked = {g.key for qid in held for g in groups.get(qid, ()) if panels.get(g.key)}
    scores = held_out_table(survey, cells, temperature,
                            _no_persona(con, job_id, survey, held), no_persona_n, seed, asked)
    store.replace_profile(con, {
        "job_id": job_id, "method": chosen.method.label, "steering": chosen.steering,
        "temperature": temperature, "params": chosen.method.params(),
        "examples": examples_json(chosen.examples), "model": model, "llm": llm,
        "candidates": json.loads(table.to_json(orient="records"))})
    profile = SurveyProfile(job_id, chosen, temperature, model, llm)
    outcome = FitOutcome(dict(folds), k, training_questions(folds), held, table, profile,
                         chosen.label)
    return store_scores(con, job_id, scores), outcome


# -- console ----------------------------------------------------------------------------------------

def _listed(ids: Sequence[str], shown: int = 8) -> str:
    return ", ".join(ids[:shown]) + (" ..." if len(ids) > shown else "")


def held_out_title(outcome: FitOutcome) -> str:
    """Return the title of a fit's table: what its rows are scored on."""
    return (f"held-out representativeness (1 = as people answer): the profile as model, on the "
            f"{len(outcome.held_out)} questions of the held-out fold, which the fit never saw")


def fit_lines(outcome: FitOutcome | None, intervals: pd.DataFrame | None = None,
              standing: pd.DataFrame | None = None, *, calls: Mapping[str, int] | None = None,
              answered: Mapping[str, int] | None = None) -> list[str]:
    """Return what the fit chose and how its held-out score compares, as console lines.

    Args:
        outcome: the fit (None: the job did not fit; no lines).
        intervals: the held-out table's means with their intervals (calibration_verdict.intervals).
        standing: the model row against uniform and no_persona (calibration_verdict.standings).
        calls: the calls planned per configuration.
        answered: the calls answered per configuration.
    """
    if outcome is None:
        return []
    profile = outcome.profile
    lines = [f"fit: {len(outcome.folds)} questions in {outcome.k} folds (seeded); chosen on "
             f"{outcome.k - 1} training folds ({len(outcome.training)} questions), scored on the "
             f"held-out fold ({len(outcome.held_out)} questions the fit never saw: "
             f"{_listed(outcome.held_out)})",
             "configurations tried (training score: each training fold scored with a "
             "temperature fitted on the others; not a held-out score):"]
    for row in outcome.candidates.itertuples(index=False):
        score = "-" if pd.isna(row.training) else f"{row.training:.3f}"
        mark = "  <- chosen" if row.chosen else ""
        asked = (calls or {}).get(row.label)
        failed = asked - (answered or {}).get(row.label, asked) if asked is not None else 0
        count = "" if asked is None else f"  {asked} calls" + (f" ({failed} failed)"
                                                               if failed > 0 else "")
        lines.append(f"  {row.label:<32} {score}  T={row.temperature:.3g} on {row.cells} "
                     f"question x group pairs{count}{mark}")
    shown = [e.question_id for e in profile.config.examples]
    lines.append(f"profile {profile.job_id}: {profile.config.method.label}, steering "
                 f"{profile.config.steering}, temperature {profile.temperature:.3g} (fitted on "
                 f"the training folds)" + (f", examples {', '.join(shown)}" if shown else "")
                 + f"; model {profile.model}")
    end = at_bound(profile.temperature) if _tuned(profile.config) else None
    if end == "upper":
        lines.append(f"warning: the profile's temperature stopped at its upper bound "
                     f"({profile.temperature:.3g}): its answers are nearly uniform (the "
                     "method's own distributions fit the training folds worse than guessing)")
    elif end == "lower":
        lines.append(f"warning: the profile's temperature stopped at its lower bound "
                     f"({profile.temperature:.3g}): nearly all of each agent's mass is on one "
                     "option")
    lines += _beats_uniform(standing)
    if intervals is None or intervals.empty:
        return lines
    overall = intervals[intervals["attribute"] == "overall"].set_index("who")
    cells = []
    for who in ("model", "uniform", "no_persona", "human_overall", "human_resample"):
        if who in overall.index:
            r = overall.loc[who]
            ci = "" if pd.isna(r["low"]) else f" [{r['low']:.3f}, {r['high']:.3f}]"
            name = {"model": "profile", "human_resample": "ceiling (human_resample)"}.get(who, who)
            cells.append(f"{name} {r['mean']:.3f}{ci}")
    if cells:
        lines.append("held-out representativeness (95% interval over the held-out questions): "
                     + ", ".join(cells))
    return lines


def _beats_uniform(standing: pd.DataFrame | None) -> list[str]:
    """One line: whether the profile beats uniform on the held-out questions, with the paired gap."""
    if standing is None or standing.empty:
        return []
    rows = standing[standing["baseline"] == "uniform"]
    if rows.empty:
        return []
    row = rows.iloc[0]
    questions = int(row["questions"])
    on = f"on the {questions} held-out question{'s' * (questions != 1)}"
    digits = 4 if abs(float(row["gap"])) < 0.0005 else 3  # a gap that rounds to 0 is still shown
    gap = f"{row['gap']:+.{digits}f}" + ("" if pd.isna(row["low"]) else
                                         f" [{row['low']:.{digits}f}, {row['high']:.{digits}f}]")
    said = {"above": "beats uniform", "below": "is below uniform",
            "indistinguishable": "does not beat uniform (the interval holds 0)",
            "no interval": "cannot be told from uniform (one question: no interval)"}
    return [f"held out: the fitted profile {said[str(row['standing'])]}: {gap} {on}"]
