"""How a calibration elicits the model's answers (--elicit); each method is scored as a model row.

The sample method asks each panel persona; the distribution, logprobs and few-shot:K methods ask
once per question x group. Stating a group's distribution, and showing the group's other answers,
came closer to people than one sample per persona on OpinionQA groups (arXiv 2411.05403), at a
fraction of the calls.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, create_model
from scipy.optimize import minimize_scalar

from personahub.analysis.survey import Question, Survey
from personahub.core.errors import UsageError

__all__ = ["DISTRIBUTION", "DISTRIBUTION_PANEL", "FEW_SHOT", "LETTERS", "LOGPROBS", "PANEL_SHOWN",
           "SAMPLE", "asks_held_out",
           "LOG_T_BOUNDS", "MIN_FIT_QUESTIONS", "asks_per_method", "at_bound", "fit_temperature",
           "scaled", "check_elicit", "check_shares",
           "distribution_schema", "few_shot_k", "group_key", "held_out", "is_group_method", "shares_of",
           "shots_text",
           "split_group_key", "stated_vector"]

SAMPLE = "sample"
DISTRIBUTION = "distribution"
DISTRIBUTION_PANEL = "distribution:panel"  # the panel's persona texts shown
PANEL_SHOWN = 10  # persona texts a distribution:panel prompt shows per group (the panel's first)
FEW_SHOT = "few-shot"
LOGPROBS = "logprobs"
_USE = (f"use {SAMPLE}, {DISTRIBUTION}, {DISTRIBUTION_PANEL}, {LOGPROBS} or {FEW_SHOT}:K "
        "(K a whole number from 1)")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# logprobs fits its temperature on a quarter of the questions, and on no fewer than this: a fit to
# one question's few groups is a fit to that question (SmolLM2's, on one, stopped at its bound)
MIN_FIT_QUESTIONS = 3
LOG_T_BOUNDS = (-4.0, 4.0)  # the temperatures searched, as log T: T from 0.018 to 54.6


def few_shot_k(method: str) -> int | None:
    """The K of a "few-shot:K" method (None for any other method or a malformed one)."""
    head, colon, tail = method.partition(":")
    if head != FEW_SHOT or not colon or not tail.isdigit() or int(tail) < 1:
        return None
    return int(tail)


def check_elicit(methods: Iterable[str]) -> tuple[str, ...]:
    """The --elicit methods in the order given; UsageError when none is given, or one is unknown or
    repeated.
    """
    chosen = tuple(str(m).strip() for m in methods)
    if not chosen:
        raise UsageError(f"--elicit: give one or more methods: {_USE}")
    for method in chosen:
        if (method not in (SAMPLE, DISTRIBUTION, DISTRIBUTION_PANEL, LOGPROBS)
                and few_shot_k(method) is None):
            raise UsageError(f"--elicit {method!r}: {_USE}")
    if len(set(chosen)) != len(chosen):
        raise UsageError("--elicit: a method is given twice")
    return chosen


def is_group_method(method: str) -> bool:
    """Whether a method asks once per question x group (not once per persona)."""
    return method in (DISTRIBUTION, DISTRIBUTION_PANEL, LOGPROBS) or few_shot_k(method) is not None


def asks_held_out(method: str) -> bool:
    """Whether a method asks its held-out questions too: logprobs does (it fits on them); few-shot
    only shows them.
    """
    return method == LOGPROBS


def group_key(attribute: str, group: str) -> str:
    """The respondent name of a group-level ask, "attribute=group"."""
    return f"{attribute}={group}"


def split_group_key(key: str) -> tuple[str, str]:
    """The attribute and group of a group_key."""
    attribute, _, group = key.partition("=")
    return attribute, group


def held_out(method: str, questions: Sequence[str], seed: int) -> tuple[str, ...]:
    """The questions a row does not score: the K a few-shot row shows, or the quarter (at least
    MIN_FIT_QUESTIONS) logprobs fits its temperature on. The draw is seeded, so it is the same on
    resume and when scoring.

    Raises:
        UsageError: no question would be left to score, or too few to fit logprobs' temperature.
    """
    k = few_shot_k(method)
    if method == LOGPROBS:
        if len(questions) <= MIN_FIT_QUESTIONS:
            raise UsageError(f"--elicit {LOGPROBS}: the calibration asks {len(questions)} "
                             f"question{'s' * (len(questions) != 1)}; its temperature is fitted "
                             f"on {MIN_FIT_QUESTIONS} held-out questions and one more is needed "
                             f"to score ({MIN_FIT_QUESTIONS + 1} in all)")
        k = max(MIN_FIT_QUESTIONS, len(questions) // 4)
    if k is None:
        return ()
    if k >= len(questions):
        raise UsageError(f"--elicit {method}: the calibration asks {len(questions)} questions; "
                         "K must leave at least one to score")
    return tuple(random.Random(f"{seed}:{method}").sample(sorted(questions), k))


def _percent(shares: Sequence[float]) -> list[str]:
    return [f"{round(100 * s)}%" for s in shares]


def shots_text(survey: Survey, shots: Sequence[str], attribute: str,
               labels: tuple[str, ...]) -> str:
    """The group's answer shares to the shown questions, as prompt text."""
    blocks = []
    for qid in shots:
        counts = survey.counts.get(qid, {}).get((attribute, labels))
        if counts is None or float(np.sum(counts)) <= 0:
            continue
        question = survey.questions[qid]
        shares = np.asarray(counts, float) / float(np.sum(counts))
        lines = [f"- {o}: {p}" for o, p in zip(question.options, _percent(shares.tolist()),
                                                 strict=True)]
        blocks.append(f"Question: {question.text}\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def distribution_schema(options: Sequence[str]) -> type[BaseModel]:
    """Schema of a stated distribution: options as keys, percentages 0..100 (normalised afterwards).
    """
    fields: dict[str, Any] = {
        f"o{i}": (float, Field(ge=0, le=100, alias=option, description="percent of the group"))
        for i, option in enumerate(options)}
    model: type[BaseModel] = create_model(
        "StatedShares", __doc__="The group's answer shares, one per option.",
        __config__=ConfigDict(populate_by_name=True), **fields)
    return model


def shares_of(value: BaseModel) -> dict[str, float] | None:
    """The normalised shares of a stated distribution (None: they sum to 0, no answer)."""
    raw = {str(k): float(v) for k, v in value.model_dump(by_alias=True).items()}
    total = sum(raw.values())
    if not np.isfinite(total) or total <= 0:
        return None
    return {k: v / total for k, v in raw.items()}


def check_shares(value: BaseModel) -> str | None:
    """The seam's check of a stated distribution: shares that sum to 0 are rejected."""
    return None if shares_of(value) is not None else "the shares sum to 0"


def stated_vector(question: Question, shares_json: str) -> np.ndarray:
    """Stored shares (JSON, option to share) as a vector over the question's options."""
    shares = json.loads(shares_json)
    return np.array([float(shares.get(o, 0.0)) for o in question.options])


class _Steered(Protocol):
    """An ask, as asks_per_method reads it."""

    @property
    def steering(self) -> str: ...


def asks_per_method(asks: Iterable[_Steered], methods: Mapping[str, str]) -> dict[str, int]:
    """Calls per method; methods maps an ask's steering to its method."""
    counts: dict[str, int] = {}
    for ask in asks:
        method = methods.get(ask.steering, ask.steering)
        counts[method] = counts.get(method, 0) + 1
    return counts


def scaled(probabilities: ArrayLike, temperature: float) -> np.ndarray:
    """Temperature scaling p^(1/T), renormalised; T > 1 flattens the distribution."""
    p = np.asarray(probabilities, float)
    if p.sum() <= 0:
        return p
    logits = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf) / temperature
    out = np.exp(logits - np.max(logits))
    return out / out.sum()


def fit_temperature(pairs: Sequence[tuple[ArrayLike, ArrayLike]]) -> float:
    """The temperature minimising the mean cross-entropy of human distributions under the scaled model
    ones, from (model probabilities, human counts) pairs; 1.0 without pairs.
    """
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
    """Which end of the search a fitted temperature stopped at ("upper", "lower"), or None.

    At the upper end the scaled probabilities are nearly uniform (the raw ones fit people worse
    than guessing); at the lower end nearly all the mass is on one option.
    """
    log_t = float(np.log(temperature))
    if log_t >= LOG_T_BOUNDS[1] - 1e-3:
        return "upper"
    if log_t <= LOG_T_BOUNDS[0] + 1e-3:
        return "lower"
    return None
