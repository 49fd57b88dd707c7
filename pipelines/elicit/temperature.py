"""Temper distributions by one temperature, p^(1/T) renormalised, and fit T to people's answers.

The fit minimises the mean cross-entropy of the human distributions under the scaled model ones,
by scipy's bounded scalar search over log T (scipy is imported when a fit is made).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from personahub.analysis.survey import Survey
    from personahub.pipelines.elicit.base import GroupCounts

__all__ = ["LOG_T_BOUNDS", "at_bound", "fit_temperature", "scaled", "temperature_scaled"]

LOG_T_BOUNDS = (-4.0, 4.0)  # the temperatures searched, as log T: T from 0.018 to 54.6


def scaled(probabilities: ArrayLike, temperature: float) -> np.ndarray:
    """Scale by a temperature, p^(1/T) renormalised; T > 1 flattens the distribution."""
    p = np.asarray(probabilities, float)
    if p.sum() <= 0:
        return p
    logits = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf) / temperature
    out = np.exp(logits - np.max(logits))
    return out / out.sum()


def fit_temperature(pairs: Sequence[tuple[ArrayLike, ArrayLike]]) -> float:
    """Return the temperature minimising the mean cross-entropy of human distributions under the
    scaled model ones, from (model probabilities, human counts) pairs; 1.0 without pairs.
    """
    from scipy.optimize import minimize_scalar

    usable = [(np.clip(np.asarray(m, float), 1e-9, None), np.asarray(h, float))
              for m, h in pairs if np.sum(m) > 0 and np.sum(h) > 0]
    if not usable:
        return 1.0

    def loss(log_t: float) -> float:
        total = 0.0
        for model, human in usable:
            total -= float(np.dot(human / human.sum(), np.log(scaled(model, float(np.exp(log_t))))))
        return total / len(usable)

    fitted = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(fitted.x))


def at_bound(temperature: float) -> str | None:
    """Tell which end of the search a fitted temperature stopped at ("upper", "lower"), or None.

    At the upper end the scaled probabilities are nearly uniform (the raw ones fit people worse
    than guessing); at the lower end nearly all the mass is on one option.
    """
    log_t = float(np.log(temperature))
    if log_t >= LOG_T_BOUNDS[1] - 1e-3:
        return "upper"
    if log_t <= LOG_T_BOUNDS[0] + 1e-3:
        return "lower"
    return None


def temperature_scaled(survey: Survey, stated: Mapping[tuple[str, str, str], np.ndarray],
                       fit_questions: Sequence[str]) -> tuple[GroupCounts, float]:
    """Fit the temperature on the fit questions' cells and scale the other questions' cells by it.

    Args:
        survey: the human answers.
        stated: the model's distribution per (question, attribute, group).
        fit_questions: the questions fitted on (their cells are left out of the result).

    Returns:
        The other questions' cells scaled, and the temperature.
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
