"""Dispersion control: bring a simulated panel's under-dispersed spread towards people's.

A Jeffreys prior lets a one-answer panel spread, then shares are raised to 1 / T. T is
cross-fitted on the other half of the questions, so no question is scored with a T fitted on
its own people. Panel size and refusals are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from personahub.analysis.calibration_scores import dispersion, sd_ratio, split
from personahub.analysis.survey import Question

__all__ = ["BOUNDS", "PRIOR", "cross_fitted", "fit_temperature", "temper"]

PRIOR = 0.5  # Jeffreys: half an answer per substantive option
BOUNDS = (0.25, 8.0)  # the temperatures searched

Key = tuple[str, str, tuple[str, ...]]  # (question id, attribute, group)


def temper(question: Question, counts: Sequence[float] | np.ndarray, temperature: float
           ) -> np.ndarray:
    """Return a panel's counts with substantive shares tempered (a temperature above 1 flattens); totals and
    refusals are kept.
    """
    vector = np.asarray(counts, dtype=float)
    k = len(question.ordinal)
    substantive = vector[:k]
    total = float(substantive.sum())
    if total <= 0:
        return vector.copy()
    smoothed = (substantive + PRIOR) / (total + PRIOR * k)
    powered = np.exp(np.log(smoothed) / temperature)
    return np.concatenate([powered / powered.sum() * total, vector[k:]])


def _spread(question: Question, sim: np.ndarray, human: np.ndarray) -> float:
    """Return the dispersion ratio a fit aims at 1: SD ratio (ordinal) or entropy ratio (nominal)."""
    return sd_ratio(question, sim, human) if question.is_ordinal else dispersion(sim, human)


def fit_temperature(questions: Mapping[str, Question], panels: Mapping[Key, np.ndarray],
                    humans: Mapping[Key, np.ndarray]) -> float:
    """Fit the T whose tempered panels have a mean log dispersion ratio of 0; 1 when nothing can be fitted."""
    pairs = []
    for key, counts in panels.items():
        question = questions[key[0]]
        human = split(question, humans[key]).distribution if key in humans else None
        if human is not None and split(question, counts).n > 0:
            if np.isfinite(_spread(question, human, human)):
                pairs.append((question, counts, human))
    if not pairs:
        return 1.0

    def loss(log_t: float) -> float:
        logs = []
        for question, counts, human in pairs:
            sim = split(question, temper(question, counts, float(np.exp(log_t)))).distribution
            assert sim is not None
            logs.append(np.log(max(_spread(question, sim, human), 1e-9)))
        return float(np.mean(logs)) ** 2

    low, high = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    result = minimize_scalar(loss, bounds=(low, high), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def cross_fitted(questions: Mapping[str, Question], panels: Mapping[Key, np.ndarray],
                 humans: Mapping[Key, np.ndarray], seed: int
                 ) -> tuple[dict[Key, np.ndarray], dict[str, float]]:
    """Every panel tempered with the T fitted on the other seeded half of the questions; returns the
    counts per key and each question's T (both empty below two questions).
    """
    ids = sorted({key[0] for key in panels})
    if len(ids) < 2:
        return {}, {}
    order = np.random.default_rng(seed).permutation(len(ids))
    halves = [{ids[i] for i in order[0::2]}, {ids[i] for i in order[1::2]}]
    tempered: dict[Key, np.ndarray] = {}
    temperatures: dict[str, float] = {}
    for own, other in (halves, halves[::-1]):
        fit_on = {k: v for k, v in panels.items() if k[0] in other}
        t = fit_temperature(questions, fit_on, humans)
        for key, counts in panels.items():
            if key[0] in own:
                tempered[key] = temper(questions[key[0]], counts, t)
                temperatures[key[0]] = t
    return tempered, temperatures
